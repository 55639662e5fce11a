//! What a typed line means (text to send, or a `/command`), and the history of typed lines
//! that Up and Down walk.

/// A typed line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// Text for the current window (`//text` sends `/text`).
    Say(String),
    /// `/join CH`: open (or go to) a channel window.
    Join(String),
    /// `/part`: close the current window.
    Part,
    /// `/msg NAME text`: a direct message.
    Msg {
        /// Node name, `user@node` or node id.
        to: String,
        /// The text.
        text: String,
    },
    /// `/query NAME`: open a direct-message window.
    Query(String),
    /// `/me action`.
    Me(String),
    /// `/nick`: show; `/nick NAME`: set; `/nick -`: clear.
    Nick(NickChange),
    /// `/who`.
    Who,
    /// `/away [text]`: away (with a status), or back when already away and no text.
    Away(Option<String>),
    /// `/back`.
    Back,
    /// `/peers`.
    Peers,
    /// `/channels`.
    Channels,
    /// `/presence`: show or hide join/leave/away lines.
    TogglePresence,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// Nothing to do (a blank line).
    Nothing,
    /// A command used wrongly: the usage to show.
    Usage(&'static str),
    /// An unknown `/command`.
    Unknown(String),
}

/// What `/nick` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NickChange {
    /// Show the current one.
    Show,
    /// Set this one.
    Set(String),
    /// Remove it.
    Clear,
}

/// The commands and what they do, for `/help`.
pub const HELP: &[&str] = &[
    "/join CH        open channel CH (or go to its window) and talk there",
    "/part           close this window",
    "/msg NAME text  direct message to NAME (node, user@node or node id)",
    "/query NAME     open a window of direct messages with NAME",
    "/me action      say an action (* you waves)",
    "/nick [NAME|-]  show, set or (-) clear your display name",
    "/who            who is in a chat, here and on other nodes",
    "/away [text]    away with a status; /away again or /back: back",
    "/peers          the other nodes",
    "/channels       channels with messages",
    "/presence       hide or show join/leave/away lines (also F2)",
    "/quit           leave (also Ctrl-C)",
    "keys: PgUp/PgDn scroll, Up/Down typed lines, Ctrl-N/Ctrl-P next/previous window",
];

/// Reads one typed line.
pub fn parse(line: &str) -> Typed {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Typed::Nothing;
    }
    if let Some(text) = line.strip_prefix("//") {
        return Typed::Say(format!("/{text}"));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Typed::Say(line.to_owned());
    };
    let (name, rest) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(name, rest)| (name, rest.trim()));
    let word = |usage| match rest.split_whitespace().collect::<Vec<_>>()[..] {
        [one] => Ok(one.to_owned()),
        _ => Err(Typed::Usage(usage)),
    };
    match name.to_ascii_lowercase().as_str() {
        "join" | "j" => word("/join CHANNEL").map_or_else(
            |usage| usage,
            |ch| Typed::Join(ch.trim_start_matches('#').to_owned()),
        ),
        "part" | "close" | "leave" => Typed::Part,
        "msg" | "m" => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Typed::Msg {
                to: to.to_owned(),
                text: text.trim().to_owned(),
            },
            _ => Typed::Usage("/msg NAME text"),
        },
        "query" | "q" => word("/query NAME").map_or_else(|usage| usage, Typed::Query),
        "me" => {
            if rest.is_empty() {
                Typed::Usage("/me action")
            } else {
                Typed::Me(rest.to_owned())
            }
        }
        "nick" => match rest {
            "" => Typed::Nick(NickChange::Show),
            "-" => Typed::Nick(NickChange::Clear),
            nick => Typed::Nick(NickChange::Set(nick.to_owned())),
        },
        "who" | "names" => Typed::Who,
        "away" => Typed::Away((!rest.is_empty()).then(|| rest.to_owned())),
        "back" => Typed::Back,
        "peers" => Typed::Peers,
        "channels" | "list" => Typed::Channels,
        "presence" | "toggle-presence" => Typed::TogglePresence,
        "help" | "?" => Typed::Help,
        "quit" | "exit" | "q!" => Typed::Quit,
        other => Typed::Unknown(other.to_owned()),
    }
}

/// The lines typed, oldest first, and where Up/Down is among them.
#[derive(Debug, Default)]
pub struct InputHistory {
    entries: Vec<String>,
    /// Which entry is shown; None: the line being typed.
    position: Option<usize>,
    /// The line being typed when Up was first pressed, given back by Down past the end.
    draft: String,
}

/// Typed lines remembered.
const HISTORY_CAPACITY: usize = 500;

impl InputHistory {
    /// Remembers a line that was entered (not twice in a row), and goes back to a new line.
    pub fn push(&mut self, line: &str) {
        self.position = None;
        self.draft.clear();
        if line.trim().is_empty() || self.entries.last().is_some_and(|last| last == line) {
            return;
        }
        if self.entries.len() == HISTORY_CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push(line.to_owned());
    }

    /// The line before the one shown (`current` is what the input line holds now), or None
    /// at the oldest.
    pub fn older(&mut self, current: &str) -> Option<&str> {
        let next = match self.position {
            None if self.entries.is_empty() => return None,
            None => {
                self.draft = current.to_owned();
                self.entries.len() - 1
            }
            Some(0) => return None,
            Some(at) => at - 1,
        };
        self.position = Some(next);
        self.entries.get(next).map(String::as_str)
    }

    /// The line after the one shown, the draft past the newest, or None when already there.
    pub fn newer(&mut self) -> Option<&str> {
        let at = self.position?;
        if at + 1 < self.entries.len() {
            self.position = Some(at + 1);
            self.entries.get(at + 1).map(String::as_str)
        } else {
            self.position = None;
            Some(&self.draft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read() {
        assert_eq!(parse("hello"), Typed::Say("hello".into()));
        assert_eq!(parse("//etc/hosts"), Typed::Say("/etc/hosts".into()));
        assert_eq!(parse("/join #ops"), Typed::Join("ops".into()));
        assert_eq!(parse("/join"), Typed::Usage("/join CHANNEL"));
        assert_eq!(
            parse("/msg bob@h2 hi there"),
            Typed::Msg {
                to: "bob@h2".into(),
                text: "hi there".into()
            }
        );
        assert_eq!(parse("/msg bob"), Typed::Usage("/msg NAME text"));
        assert_eq!(parse("/me waves"), Typed::Me("waves".into()));
        assert_eq!(parse("/nick"), Typed::Nick(NickChange::Show));
        assert_eq!(
            parse("/nick Ally"),
            Typed::Nick(NickChange::Set("Ally".into()))
        );
        assert_eq!(parse("/nick -"), Typed::Nick(NickChange::Clear));
        assert_eq!(parse("/away"), Typed::Away(None));
        assert_eq!(
            parse("/away lunch break"),
            Typed::Away(Some("lunch break".into()))
        );
        assert_eq!(parse("/QUIT"), Typed::Quit);
        assert_eq!(parse("/frob"), Typed::Unknown("frob".into()));
        assert_eq!(parse("   "), Typed::Nothing);
    }

    #[test]
    fn up_and_down_walk_the_typed_lines_and_keep_the_draft() {
        let mut history = InputHistory::default();
        assert_eq!(history.older("x"), None);
        history.push("one");
        history.push("two");
        history.push("two");
        assert_eq!(history.older("draft"), Some("two"));
        assert_eq!(history.older("two"), Some("one"));
        assert_eq!(history.older("one"), None);
        assert_eq!(history.newer(), Some("two"));
        assert_eq!(history.newer(), Some("draft"));
        assert_eq!(history.newer(), None);
    }
}
