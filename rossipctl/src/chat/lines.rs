//! What a chat window holds, one entry per thing that happened, built from what the
//! daemon sent: every field that came over the network is sanitized here, once, so that
//! drawing and printing cannot forget it.

use jiff::tz::TimeZone;
use rossip_proto::rpc::{MessageView, NameTrust};

use super::api::WhoEntry;
use crate::sanitize::sanitize;

/// The prefix of a message that is an action (`/me waves` shows as `* alice@h1 waves`).
/// Sent as plain text, so that `rossipctl tail` and other clients show it readably.
pub const ACTION_PREFIX: &str = "/me ";

/// One entry of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Where it goes among the others: the message's (ts, logical), or the local time an
    /// entry was made at.
    pub order: (u64, u32),
    /// `HH:MM`, local time.
    pub time: String,
    /// What it is.
    pub body: LineBody,
}

/// The kinds of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineBody {
    /// A message someone sent.
    Message(MessageLine),
    /// Someone joined, left, went away or came back (hideable).
    Presence(String),
    /// What the chat says: answers to commands, connection state.
    Info(String),
    /// What went wrong.
    Error(String),
}

/// A message, ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLine {
    /// The message id (to leave out duplicates).
    pub id: String,
    /// Who sent it: `user@node`, sanitized, with marks for an unverified sender.
    pub from: String,
    /// Their display name, sanitized: shown beside `from`, never instead.
    pub nick: Option<String>,
    /// The text (for an action, without the `/me ` prefix), sanitized.
    pub text: String,
    /// How it reads.
    pub kind: MessageKind,
    /// It names this chat's user or nick (and is not theirs).
    pub mention: bool,
}

/// Said in a channel, an action, or a direct message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// `from: text`.
    Said,
    /// `* from text`.
    Action,
    /// A direct message, to `to` (sanitized).
    Direct {
        /// The recipient as people read it.
        to: String,
    },
}

impl ChatLine {
    /// A message line.
    pub fn message(
        message: &MessageView,
        to: Option<String>,
        mention: bool,
        tz: &TimeZone,
    ) -> Self {
        let (text, action) = match message.text.strip_prefix(ACTION_PREFIX) {
            Some(rest) if to.is_none() => (rest, true),
            _ => (message.text.as_str(), false),
        };
        let kind = match to {
            Some(to) => MessageKind::Direct {
                to: sanitize(&to).into_owned(),
            },
            None if action => MessageKind::Action,
            None => MessageKind::Said,
        };
        ChatLine {
            order: (message.ts, message.ts_logical),
            time: clock(message.ts, tz),
            body: LineBody::Message(MessageLine {
                id: message.id.clone(),
                from: sender(message),
                nick: message.nick.as_deref().map(|n| sanitize(n).into_owned()),
                text: sanitize(text).into_owned(),
                kind,
                mention,
            }),
        }
    }

    /// A presence change line, or None for a change not worth a line.
    pub fn presence(
        entry: &WhoEntry,
        previous: Option<&str>,
        now_ms: u64,
        tz: &TimeZone,
    ) -> Option<Self> {
        let who = person(entry);
        let status = entry
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| format!(": {}", sanitize(s)))
            .unwrap_or_default();
        let what = match (entry.state.as_str(), previous) {
            ("offline", None | Some("offline")) => return None,
            ("offline", Some(_)) => format!("{who} left the chat"),
            ("away", Some("away")) => format!("{who} is away{status}"),
            ("away", None | Some("offline")) => format!("{who} joined the chat, away{status}"),
            ("away", _) => format!("{who} is away{status}"),
            ("available", None | Some("offline")) => format!("{who} joined the chat{status}"),
            ("available", Some("away")) => format!("{who} is back{status}"),
            ("available", _) => format!("{who} is available{status}"),
            (other, _) => format!("{who} is {}{status}", sanitize(other)),
        };
        Some(ChatLine::local(LineBody::Presence(what), now_ms, tz))
    }

    /// An entry made here and now (info, error, presence).
    pub fn local(body: LineBody, now_ms: u64, tz: &TimeZone) -> Self {
        ChatLine {
            order: (now_ms, u32::MAX),
            time: clock(now_ms, tz),
            body,
        }
    }

    /// The line as plain text, for pipes (and tests).
    pub fn plain(&self) -> String {
        match &self.body {
            LineBody::Message(m) => {
                let who = with_nick(&m.from, m.nick.as_deref());
                match &m.kind {
                    MessageKind::Said => format!("{} {who}: {}", self.time, m.text),
                    MessageKind::Action => format!("{} * {who} {}", self.time, m.text),
                    MessageKind::Direct { to } => {
                        format!("{} [DM] {who} -> {to}: {}", self.time, m.text)
                    }
                }
            }
            LineBody::Presence(text) => format!("{} -- {text}", self.time),
            LineBody::Info(text) => format!("{} -- {text}", self.time),
            LineBody::Error(text) => format!("{} !! {text}", self.time),
        }
    }

    /// The message id, for a message.
    pub fn message_id(&self) -> Option<&str> {
        match &self.body {
            LineBody::Message(m) => Some(&m.id),
            _ => None,
        }
    }
}

/// `alice@h1 (Ally)`, or `alice@h1` without a display name.
pub fn with_nick(from: &str, nick: Option<&str>) -> String {
    match nick {
        Some(nick) => format!("{from} ({nick})"),
        None => from.to_owned(),
    }
}

/// A person in presence lines and `/who`: `user@node (nick)`, sanitized.
pub fn person(entry: &WhoEntry) -> String {
    let from = if entry.from.is_empty() {
        rossip_proto::rpc::user_at_node(&entry.user, &entry.node_name)
    } else {
        entry.from.clone()
    };
    let nick = entry.nick.as_deref().map(sanitize);
    with_nick(&sanitize(&from), nick.as_deref())
}

/// `user@node` of a message, sanitized, with a loud mark when the name or the signature
/// cannot be trusted.
fn sender(message: &MessageView) -> String {
    let from = if message.from.is_empty() {
        rossip_proto::rpc::user_at_node(&message.user, &message.origin_name)
    } else {
        message.from.clone()
    };
    let mut out = sanitize(&from).into_owned();
    if !message.verified {
        out.push_str(" [UNVERIFIED]");
    }
    if message.name_trust == NameTrust::Changed {
        out.push_str(" [NAME CHANGED KEY]");
    }
    out
}

/// `HH:MM` in `tz`.
pub fn clock(ts_ms: u64, tz: &TimeZone) -> String {
    i64::try_from(ts_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || "--:--".to_owned(),
            |t| t.to_zoned(tz.clone()).strftime("%H:%M").to_string(),
        )
}

/// Whether `text` names `name` as a word (case-insensitive): `bob,` and `@bob` do,
/// `bobby` does not.
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let name = name.to_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(&name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> MessageView {
        MessageView {
            id: "ab-1".into(),
            origin: "ab".into(),
            origin_name: "h1".into(),
            seq: 1,
            ts: 1_795_497_601_250,
            ts_logical: 0,
            channel: "general".into(),
            text: text.into(),
            user: "alice".into(),
            from: "alice@h1".into(),
            nick: Some("Ally\x1b[31m".into()),
            to: None,
            key: String::new(),
            verified: true,
            name_trust: NameTrust::Pinned,
            cursor: String::new(),
        }
    }

    #[test]
    fn a_message_shows_who_said_it_and_is_sanitized() {
        let line = ChatLine::message(&message("hi\x1b[2J"), None, false, &TimeZone::UTC);
        assert_eq!(line.plain(), "05:20 alice@h1 (Ally\\x1b[31m): hi\\x1b[2J");
        let line = ChatLine::message(&message("/me waves"), None, false, &TimeZone::UTC);
        assert_eq!(line.plain(), "05:20 * alice@h1 (Ally\\x1b[31m) waves");
        let line = ChatLine::message(
            &message("psst"),
            Some("bob@h2".into()),
            false,
            &TimeZone::UTC,
        );
        assert_eq!(
            line.plain(),
            "05:20 [DM] alice@h1 (Ally\\x1b[31m) -> bob@h2: psst"
        );
    }

    #[test]
    fn presence_lines_say_what_changed() {
        let mut entry = WhoEntry {
            user: "bob".into(),
            node_name: "h2".into(),
            from: "bob@h2".into(),
            nick: None,
            state: "available".into(),
            status: None,
            since: 0,
        };
        let text = |entry: &WhoEntry, previous| {
            ChatLine::presence(entry, previous, 0, &TimeZone::UTC).map(|l| l.plain())
        };
        assert_eq!(
            text(&entry, None).as_deref(),
            Some("00:00 -- bob@h2 joined the chat")
        );
        entry.state = "away".into();
        entry.status = Some("lunch".into());
        assert_eq!(
            text(&entry, Some("available")).as_deref(),
            Some("00:00 -- bob@h2 is away: lunch")
        );
        entry.state = "offline".into();
        assert_eq!(
            text(&entry, Some("away")).as_deref(),
            Some("00:00 -- bob@h2 left the chat")
        );
        assert_eq!(text(&entry, None), None);
    }

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("hey Bob, look", "bob"));
        assert!(mentions("@bob", "bob"));
        assert!(mentions("bob", "bob"));
        assert!(!mentions("bobby tables", "bob"));
        assert!(!mentions("kabob", "bob"));
        assert!(!mentions("anything", ""));
    }
}
