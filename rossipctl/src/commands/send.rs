//! `rossipctl send`: publish a message, print its id.

use std::io::{self, BufRead as _, Read as _, Write};

use anyhow::Context as _;
use rossip_proto::rpc::{SendParams, SendResult, method};

use super::Ctx;
use crate::cli::SendArgs;
use crate::client::Client;
use crate::output::Out;
use crate::sanitize::sanitize;

/// Sends the message(s) described by `args`.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: SendArgs) -> anyhow::Result<()> {
    // Connect first: with `-`, an unreachable daemon is reported before anyone types.
    let mut client = ctx.connect()?;
    let channel = args.channel.as_deref();
    let to = args.to.as_deref();
    let send_one = |out: &mut Out<_>, client: &mut Client, text: String| {
        send_one(ctx, out, client, text, channel, to)
    };
    if !args.reads_stdin() {
        return send_one(out, &mut client, args.text.join(" "));
    }
    let stdin = io::stdin();
    if args.lines {
        // Line by line as it arrives, so `some-log | rossipctl send --lines -` streams.
        for line in stdin.lock().lines() {
            let line = line.context("cannot read a line of stdin (is it UTF-8 text?)")?;
            if !line.trim().is_empty() {
                send_one(out, &mut client, line)?;
            }
        }
        return Ok(());
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .context("cannot read the message from stdin (is it UTF-8 text?)")?;
    send_one(out, &mut client, strip_one_newline(text))
}

fn send_one(
    ctx: &Ctx,
    out: &mut Out<impl Write>,
    client: &mut Client,
    text: String,
    channel: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<()> {
    let params = SendParams {
        text,
        channel: channel.map(str::to_owned),
        to: to.map(str::to_owned),
    };
    let sent: SendResult = client.call(method::SEND, params)?;
    if ctx.json {
        return out.json(&sent);
    }
    match &sent.direct {
        // `delivered to bob@b: ID`, or `queued for bob@b: ID`.
        Some(direct) => {
            let preposition = if direct.status == "delivered" {
                "to"
            } else {
                "for"
            };
            out.line(&format!(
                "{} {preposition} {}: {}",
                sanitize(&direct.status),
                sanitize(&direct.to),
                sanitize(&sent.id)
            ))
        }
        None => out.line(&sanitize(&sent.id)),
    }
}

/// `echo hi | rossipctl send -` sends `hi`, not `hi\n`; a CRLF counts as one newline.
fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_trailing_newline_is_removed() {
        assert_eq!(strip_one_newline("hi\n".into()), "hi");
        assert_eq!(strip_one_newline("hi\r\n".into()), "hi");
        assert_eq!(strip_one_newline("hi\n\n".into()), "hi\n");
        assert_eq!(strip_one_newline("a\nb".into()), "a\nb");
        assert_eq!(strip_one_newline(String::new()), "");
    }
}
