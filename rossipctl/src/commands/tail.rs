//! `rossipctl tail`: print recent messages (`history`), or follow them (see [`super::follow`]).

use std::io::Write;

use jiff::tz::TimeZone;
use rossip_proto::message::DEFAULT_CHANNEL;
use rossip_proto::rpc::{HistoryParams, HistoryResult, MessageView, NameTrust, method};

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
        after: None,
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

/// `2026-11-24 05:20:01 ann@alpha [3fa2b1c9]: text`, with ` #channel` after the sender
/// unless the channel is `general`. The sender is who sent it as `user@node` (the user its
/// node's kernel vouched for, and the node's name), then the start of its node id: the id
/// derives from the key that signed the message, so it is who sent it, verified; the name is
/// only what that node calls itself, and is flagged when it was first seen with another key.
/// A display name comes first, with `user@node` beside it in parentheses, never instead of it.
/// Everything that came over the network is sanitized, so the result is one line that cannot
/// drive the terminal.
pub fn human_line(message: &MessageView, tz: &TimeZone) -> String {
    let time = format_time(message.ts, tz);
    let name = sender(message);
    let text = sanitize(&message.text);
    let name = match &message.to {
        Some(to) => format!("{name} {}", direct_mark(to)),
        None => name,
    };
    if message.channel == DEFAULT_CHANNEL {
        format!("{time} {name}: {text}")
    } else {
        format!("{time} {name} #{}: {text}", sanitize(&message.channel))
    }
}

/// `[dm → bob@3fa2b1c9]`: a direct message, and to whom (the recipient node by its short
/// id); the sender is already at the start of the line.
fn direct_mark(to: &rossip_proto::rpc::RecipientView) -> String {
    let short: String = to.node.chars().take(8).collect();
    let recipient = match &to.user {
        Some(user) => format!("{}@{}", display_name(user), sanitize(&short)),
        None => sanitize(&short).into_owned(),
    };
    format!("[dm → {recipient}]")
}

/// A name for a human line (a node's, a user's, a display name): sanitized, and quoted if it
/// contains what could pass for another part of the line (`@`, `:`, `#`, spaces,
/// parentheses), so a node named `alice [3fa2b1c9]: hi` cannot print a line that looks like
/// alice's.
pub fn display_name(name: &str) -> String {
    let clean = sanitize(name);
    if clean.is_empty()
        || clean.contains(['@', ':', '#', '"', '(', ')'])
        || clean.contains(char::is_whitespace)
    {
        format!("\"{}\"", clean.replace('"', "\\\""))
    } else {
        clean.into_owned()
    }
}

/// `ann@alpha [3fa2b1c9]`; `"Ann S." (ann@alpha) [3fa2b1c9]` with a display name; `alpha
/// [3fa2b1c9]` when the origin named no user; plus a loud mark when the name or the signature
/// cannot be trusted.
fn sender(message: &MessageView) -> String {
    let short: String = message.origin.chars().take(8).collect();
    let node = display_name(&message.origin_name);
    let who = if message.user.is_empty() {
        node
    } else {
        format!("{}@{node}", display_name(&message.user))
    };
    let mut out = match &message.nick {
        Some(nick) => format!("{} ({who})", display_name(nick)),
        None => who,
    };
    out.push_str(&format!(" [{}]", sanitize(&short)));
    if !message.verified {
        out.push_str(" [UNVERIFIED]");
    }
    if message.name_trust == NameTrust::Changed {
        out.push_str(" [NAME CHANGED KEY]");
    }
    out
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
            user: String::new(),
            from: String::new(),
            nick: None,
            to: None,
            key: "3fa2:91c0:0000:0000".to_owned(),
            verified: true,
            name_trust: NameTrust::Pinned,
            cursor: String::new(),
        }
    }

    #[test]
    fn general_channel_is_not_shown() {
        let line = human_line(
            &message("alice", "general", "deploy finished"),
            &TimeZone::UTC,
        );
        assert_eq!(
            line,
            "2026-11-24 05:20:01 alice [abababab]: deploy finished"
        );
    }

    #[test]
    fn the_sender_is_user_at_node_and_a_display_name_goes_beside_it() {
        let mut m = message("alpha", "general", "hi");
        m.user = "ann".into();
        assert_eq!(
            human_line(&m, &TimeZone::UTC),
            "2026-11-24 05:20:01 ann@alpha [abababab]: hi"
        );
        m.nick = Some("Annie".into());
        assert_eq!(
            human_line(&m, &TimeZone::UTC),
            "2026-11-24 05:20:01 Annie (ann@alpha) [abababab]: hi"
        );
        m.nick = Some("Ann S.".into());
        m.channel = "ops".into();
        assert_eq!(
            human_line(&m, &TimeZone::UTC),
            "2026-11-24 05:20:01 \"Ann S.\" (ann@alpha) [abababab] #ops: hi"
        );
    }

    #[test]
    fn a_display_name_or_user_that_mimics_a_sender_is_quoted() {
        // Another node may send any display name: one that reads as user@node, or
        // brings its own parentheses, is quoted, and the real user@node still follows.
        let mut m = message("alpha", "general", "x");
        m.user = "eve".into();
        m.nick = Some("root@alpha".into());
        assert_eq!(
            human_line(&m, &TimeZone::UTC),
            "2026-11-24 05:20:01 \"root@alpha\" (eve@alpha) [abababab]: x"
        );
        m.nick = Some("x) (root@alpha".into());
        m.user = "a\x1b[2K".into();
        let line = human_line(&m, &TimeZone::UTC);
        assert_eq!(
            line,
            "2026-11-24 05:20:01 \"x) (root@alpha\" (a\\x1b[2K@alpha) [abababab]: x"
        );
        assert!(!line.chars().any(char::is_control));
    }

    #[test]
    fn a_name_first_seen_with_another_key_is_flagged() {
        let mut m = message("alice", "general", "hi");
        m.name_trust = NameTrust::Changed;
        let line = human_line(&m, &TimeZone::UTC);
        assert_eq!(
            line,
            "2026-11-24 05:20:01 alice [abababab] [NAME CHANGED KEY]: hi"
        );
        m.name_trust = NameTrust::Unchecked;
        m.verified = false;
        let line = human_line(&m, &TimeZone::UTC);
        assert_eq!(
            line,
            "2026-11-24 05:20:01 alice [abababab] [UNVERIFIED]: hi"
        );
    }

    #[test]
    fn a_name_that_mimics_a_sender_is_quoted() {
        let m = message("alice [3fa2b1c9]: hi", "general", "x");
        let line = human_line(&m, &TimeZone::UTC);
        assert_eq!(
            line,
            "2026-11-24 05:20:01 \"alice [3fa2b1c9]: hi\" [abababab]: x"
        );
    }

    #[test]
    fn direct_messages_are_marked_with_sender_and_recipient() {
        let mut m = message("a", "general", "lunch?");
        m.from = "alice@a".to_owned();
        m.to = Some(rossip_proto::rpc::RecipientView {
            node: "cd".repeat(16),
            user: Some("bob\x1b[2K".to_owned()),
        });
        let line = human_line(&m, &TimeZone::UTC);
        assert_eq!(
            line,
            "2026-11-24 05:20:01 a [abababab] [dm → bob\\x1b[2K@cdcdcdcd]: lunch?"
        );
        if let Some(to) = &mut m.to {
            to.user = None;
        }
        let line = human_line(&m, &TimeZone::UTC);
        assert_eq!(
            line,
            "2026-11-24 05:20:01 a [abababab] [dm → cdcdcdcd]: lunch?"
        );
    }

    #[test]
    fn other_channels_are_shown() {
        let line = human_line(&message("bob", "ops", "disk full"), &TimeZone::UTC);
        assert_eq!(line, "2026-11-24 05:20:01 bob [abababab] #ops: disk full");
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
            "2026-11-24 05:20:01 eve\\x1b[2K [abababab] #x\\ny: hi\\n2026-11-24 05:20:02 root: fake\\x1b[A"
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
