//! Peer-supplied text (node names) in log lines. A name arrives from the
//! network (an mDNS record, a signed identity: signed by whoever chose it),
//! and a log line is read by people and parsers: a newline in a name would
//! forge a line, a terminal escape would drive the terminal of whoever runs
//! `tail -f` on the log, a bidi override would reorder what they read.

use std::fmt::{self, Write as _};

/// `name` for a log line: printable characters as they are; control,
/// bidi, line-separator and other invisible formatting characters, and the
/// backslash, escaped (`\n`, `\u{1b}`, `\u{202e}`, `\\`).
#[derive(Debug, Clone, Copy)]
pub struct LogText<'a>(pub &'a str);

impl fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if escaped(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Control characters, and the invisible format characters that change how
/// the rest of a line reads (direction marks, embeddings, overrides and
/// isolates; zero-width characters).
fn escaped(c: char) -> bool {
    // The backslash too: a name's own `\n` must not read as an escaped one.
    c.is_control()
        || matches!(
            c,
            '\\'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_forge_lines_or_drive_terminals() {
        assert_eq!(LogText("build box 2").to_string(), "build box 2");
        assert_eq!(LogText("zoë").to_string(), "zoë");
        assert_eq!(
            LogText("a\nINFO fake line").to_string(),
            "a\\nINFO fake line"
        );
        assert_eq!(LogText("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(LogText("abc\u{202e}fed").to_string(), "abc\\u{202e}fed");
        assert_eq!(LogText("a\u{2028}b").to_string(), "a\\u{2028}b");
        assert_eq!(
            LogText("looks\\nescaped").to_string(),
            "looks\\\\nescaped",
            "a literal backslash is escaped, so it cannot pass for an escape"
        );
    }
}
