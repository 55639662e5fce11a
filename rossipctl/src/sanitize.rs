//! Makes untrusted text safe to print on a terminal.
//!
//! Names, channels and message text come from other machines on the LAN. Printed raw, an
//! escape sequence in a chat message could move the cursor, recolour the terminal, rewrite
//! earlier lines or (with some terminals) set the window title; a newline could forge a
//! second message line; a bidi override could make text read differently from what it is.
//! Every such character is replaced by a visible escape, so one message stays one line and
//! shows what was actually sent. `--json` output does not go through here: serde_json
//! already escapes control characters.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Returns `text` with every terminal-unsafe character replaced by a visible escape:
/// `\n`, `\r`, `\t` for the usual whitespace controls, `\xNN` for other C0 controls and
/// DEL, `\u{NNNN}` for C1 controls, bidi embeddings/overrides/isolates and the Unicode
/// line and paragraph separators. Everything else, including non-ASCII letters and emoji,
/// passes through unchanged. Borrows when there is nothing to replace.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            push_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` must not reach a terminal as is.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        // C0 controls (includes ESC, BEL, BS, CR, LF, TAB) and DEL.
        '\u{0}'..='\u{1f}' | '\u{7f}'
        // C1 controls: 8-bit CSI (U+009B) and OSC (U+009D) start sequences on some terminals.
        | '\u{80}'..='\u{9f}'
        // Bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and isolates (LRI, RLI,
        // FSI, PDI): they reorder how the rest of the line is displayed.
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Directional marks (ALM, LRM, RLM): invisible, and they move neutral characters
        // such as the `@` and `:` of a sender across the line.
        | '\u{061c}' | '\u{200e}' | '\u{200f}'
        // Line and paragraph separators: some terminals and tools break lines there.
        | '\u{2028}' | '\u{2029}')
}

fn push_escape(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        // Writing to a String cannot fail.
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "deploy finished ✓ — größer 日本語 🎉";
        assert!(matches!(sanitize(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        assert_eq!(sanitize("\x1b[2J\x1b[31mred"), "\\x1b[2J\\x1b[31mred");
        assert_eq!(sanitize("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
        assert_eq!(
            sanitize("bell\x07 del\x7f nul\0"),
            "bell\\x07 del\\x7f nul\\x00"
        );
    }

    #[test]
    fn one_message_stays_one_line() {
        let out = sanitize("line one\n2026-01-01 00:00:00 root: forged\r\tend");
        assert!(!out.contains('\n') && !out.contains('\r') && !out.contains('\t'));
        assert_eq!(out, "line one\\n2026-01-01 00:00:00 root: forged\\r\\tend");
        assert_eq!(sanitize("a\u{2028}b\u{2029}c"), "a\\u{2028}b\\u{2029}c");
    }

    #[test]
    fn c1_controls_are_escaped() {
        assert_eq!(sanitize("\u{9b}31m"), "\\u{009b}31m");
        assert_eq!(
            sanitize("\u{85}\u{80}\u{9f}"),
            "\\u{0085}\\u{0080}\\u{009f}"
        );
        // U+00A0 (no-break space) is the first character after C1 and is harmless.
        assert_eq!(sanitize("\u{a0}"), "\u{a0}");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(sanitize("abc\u{202e}fed"), "abc\\u{202e}fed");
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2069}',
        ] {
            let s = c.to_string();
            assert_eq!(sanitize(&s), format!("\\u{{{:04x}}}", c as u32));
        }
        // Neighbours of the ranges are ordinary characters.
        assert_eq!(
            sanitize("\u{2029}\u{202f}\u{2065}\u{206a}"),
            "\\u{2029}\u{202f}\u{2065}\u{206a}"
        );
    }
}
