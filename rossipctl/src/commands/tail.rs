//! `rossipctl tail`: print recent messages (`history`), or follow them (see [`super::follow`]).

use std::io::Write;

use jiff::tz::TimeZone;
use rossip_proto::message::DEFAULT_CHANNEL;
use rossip_proto::rpc::{HistoryParams, HistoryResult, MessageView, method};

use super::peer_printer::PeerPrinter;
use super::{Ctx, follow};
use crate::cli::TailArgs;
use crate::output::Out;
use crate::sanitize::sanitize;
use crate::timefmt::format_time;

/// Prints the messages `args` selects, then follows if `-f` was given.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: TailArgs) -> anyhow::Result<()> {
    let printer = MessagePrinter::new(ctx.json, TimeZone::system());
    if args.follow {
        // `--peers` without `-f` was refused as a usage error before we got here.
        let peers = args
            .peers
            .then(|| PeerPrinter::new(ctx.json, TimeZone::system()));
        return follow::run(ctx, out, printer, peers, &args);
    }
    let mut client = ctx.connect()?;
    let params = HistoryParams {
        n: args.count(),
        since: args.since.clone(),
        channel: args.channel.clone(),
    };
    let history: HistoryResult = client.call(method::HISTORY, params)?;
    for message in &history.messages {
        printer.print(out, message)?;
    }
    Ok(())
}

/// Prints messages as human lines or JSON objects.
#[derive(Debug, Clone)]
pub struct MessagePrinter {
    json: bool,
    tz: TimeZone,
}

impl MessagePrinter {
    /// `json`: one `MessageView` object per line; else [`human_line`] in zone `tz`.
    pub fn new(json: bool, tz: TimeZone) -> Self {
        MessagePrinter { json, tz }
    }

    /// Prints one message.
    pub fn print(&self, out: &mut Out<impl Write>, message: &MessageView) -> anyhow::Result<()> {
        if self.json {
            out.json(message)
        } else {
            out.line(&human_line(message, &self.tz))
        }
    }
}

/// `2026-11-24 05:20:01 alice: text`, with ` #channel` after the name unless the channel
/// is `general`. Everything that came over the network is sanitized, so the result is one
/// line that cannot drive the terminal.
pub fn human_line(message: &MessageView, tz: &TimeZone) -> String {
    let time = format_time(message.ts, tz);
    let name = sanitize(&message.origin_name);
    let text = sanitize(&message.text);
    if message.channel == DEFAULT_CHANNEL {
        format!("{time} {name}: {text}")
    } else {
        format!("{time} {name} #{}: {text}", sanitize(&message.channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: &str, channel: &str, text: &str) -> MessageView {
        MessageView {
            id: format!("{}-7", "ab".repeat(16)),
            origin: "ab".repeat(16),
            origin_name: name.to_owned(),
            seq: 7,
            // 2026-11-24T05:20:01.250Z
            ts: 1_795_497_601_250,
            ts_logical: 0,
            channel: channel.to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn general_channel_is_not_shown() {
        let line = human_line(
            &message("alice", "general", "deploy finished"),
            &TimeZone::UTC,
        );
        assert_eq!(line, "2026-11-24 05:20:01 alice: deploy finished");
    }

    #[test]
    fn other_channels_are_shown() {
        let line = human_line(&message("bob", "ops", "disk full"), &TimeZone::UTC);
        assert_eq!(line, "2026-11-24 05:20:01 bob #ops: disk full");
    }

    #[test]
    fn untrusted_fields_are_sanitized() {
        let m = message(
            "eve\x1b[2K",
            "x\ny",
            "hi\n2026-11-24 05:20:02 root: fake\x1b[A",
        );
        let line = human_line(&m, &TimeZone::UTC);
        assert_eq!(
            line,
            "2026-11-24 05:20:01 eve\\x1b[2K #x\\ny: hi\\n2026-11-24 05:20:02 root: fake\\x1b[A"
        );
        assert!(!line.chars().any(char::is_control));
    }

    #[test]
    fn json_output_is_the_message_view() {
        let m = message("alice", "general", "a\u{1b}b");
        let mut out = Out::new(Vec::new());
        MessagePrinter::new(true, TimeZone::UTC)
            .print(&mut out, &m)
            .expect("write to Vec");
        let text = String::from_utf8(out.get_ref().clone()).expect("UTF-8");
        assert_eq!(text.lines().count(), 1);
        let back: MessageView = serde_json::from_str(&text).expect("MessageView JSON");
        assert_eq!(back, m);
    }
}
