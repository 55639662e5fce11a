//! `rossipctl channels`: the channels this node holds messages of, as a table or one JSON
//! object per channel.

use std::io::Write;

use jiff::tz::TimeZone;
use rossip_proto::rpc::{ChannelView, ChannelsResult, method};
use serde_json::json;

use super::Ctx;
use crate::output::Out;
use crate::sanitize::sanitize;
use crate::timefmt::{format_ago, format_time, now_ms};

/// Lists the channels.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let result: ChannelsResult = client.call(method::CHANNELS, json!({}))?;
    out.listing(
        ctx.json,
        &result.channels,
        "no messages in any channel",
        |channels| table(channels, now_ms(), &TimeZone::system()),
    )
}

const HEADER: [&str; 3] = ["CHANNEL", "MESSAGES", "LAST ACTIVITY"];

/// The table's lines, header first, columns padded to their widest cell; the count is
/// right-aligned.
fn table(channels: &[ChannelView], now_ms: u64, tz: &TimeZone) -> Vec<String> {
    let rows: Vec<[String; 3]> = channels
        .iter()
        .map(|c| {
            [
                sanitize(&c.name).into_owned(),
                c.messages.to_string(),
                format!(
                    "{} ({} ago)",
                    format_time(c.last_ts, tz),
                    format_ago(now_ms, c.last_ts)
                ),
            ]
        })
        .collect();
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .chain([HEADER[column].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let (name_width, count_width) = (width(0), width(1));
    std::iter::once(HEADER.map(str::to_owned))
        .chain(rows.iter().cloned())
        .enumerate()
        .map(|(i, [name, count, last])| {
            if i == 0 {
                format!("{name:<name_width$}  {count:<count_width$}  {last}")
            } else {
                format!("{name:<name_width$}  {count:>count_width$}  {last}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, messages: u64, last_ts: u64) -> ChannelView {
        ChannelView {
            name: name.to_owned(),
            messages,
            last_ts,
        }
    }

    #[test]
    fn table_is_aligned_and_says_when() {
        // 2026-11-24T05:20:01Z and 3m12s before it.
        let now = 1_795_497_601_000;
        let lines = table(
            &[
                channel("ops", 3, now),
                channel("general", 1234, now - 192_000),
            ],
            now,
            &TimeZone::UTC,
        );
        assert_eq!(
            lines,
            [
                "CHANNEL  MESSAGES  LAST ACTIVITY",
                "ops             3  2026-11-24 05:20:01 (0s ago)",
                "general      1234  2026-11-24 05:16:49 (3m12s ago)",
            ]
        );
    }

    #[test]
    fn names_are_sanitized() {
        let lines = table(&[channel("x\x1b[2J", 1, 0)], 0, &TimeZone::UTC);
        assert!(lines[1].starts_with("x\\x1b[2J  "), "{}", lines[1]);
    }
}
