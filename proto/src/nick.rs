//! Display names (`/nick`): what a person chooses to be called, shown
//! beside `user@node`, never instead of it. A display name proves nothing
//! (anyone may choose any), so the rules only keep it readable and unable
//! to pass for the part that does prove something: no `@` (it would read
//! as a `user@node`), no control or bidi characters (they could rewrite the
//! line it is printed in), short enough for a chat's nick column.

use crate::message::MAX_NICK_BYTES;

/// Longest display name, in characters (and never over [`MAX_NICK_BYTES`]).
pub const MAX_NICK_CHARS: usize = 32;

/// Why a display name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NickError {
    /// Nothing left after trimming white space.
    #[error("the display name is empty")]
    Empty,
    /// Over [`MAX_NICK_CHARS`] characters.
    #[error("the display name is {0} characters; the limit is {MAX_NICK_CHARS}")]
    TooManyChars(usize),
    /// Over [`MAX_NICK_BYTES`] bytes of UTF-8 (long non-Latin names).
    #[error("the display name is {0} bytes of UTF-8; the limit is {MAX_NICK_BYTES}")]
    TooManyBytes(usize),
    /// `@` would make it read as `user@node`.
    #[error("a display name may not contain '@' (it would read as user@node)")]
    At,
    /// A control, bidi or other invisible formatting character.
    #[error("a display name may not contain control or formatting characters, found U+{:04X}", u32::from(*.0))]
    Unprintable(char),
}

/// The display name `raw` stands for: trimmed of surrounding white space,
/// then checked (1–[`MAX_NICK_CHARS`] characters, at most
/// [`MAX_NICK_BYTES`] bytes, no `@`, no control or formatting characters).
pub fn normalize_nick(raw: &str) -> Result<String, NickError> {
    let nick = raw.trim();
    if nick.is_empty() {
        return Err(NickError::Empty);
    }
    if let Some(c) = nick.chars().find(|&c| is_unprintable(c)) {
        return Err(NickError::Unprintable(c));
    }
    if nick.contains('@') {
        return Err(NickError::At);
    }
    let chars = nick.chars().count();
    if chars > MAX_NICK_CHARS {
        return Err(NickError::TooManyChars(chars));
    }
    if nick.len() > MAX_NICK_BYTES {
        return Err(NickError::TooManyBytes(nick.len()));
    }
    Ok(nick.to_owned())
}

/// Characters a name must not hold: controls (C0, DEL, C1), every format
/// character (zero-width and directional marks, bidi embeddings, overrides
/// and isolates, word joiners, invisible operators, tag characters, the
/// byte order mark), line and paragraph separators, private-use,
/// surrogate and unassigned code points, and the letters and marks that
/// render as nothing (Hangul fillers, the combining grapheme joiner,
/// variation selectors). By general category, so it keeps up with Unicode.
pub fn is_unprintable(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
    ) || matches!(c,
        '\u{034f}'
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}'
        | '\u{180b}'..='\u{180f}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{e0100}'..='\u{e01ef}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for c in [
            '\u{061c}',
            '\u{00ad}',
            '\u{180e}',
            '\u{115f}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{e0041}',
            '\u{200b}',
            '\u{200e}',
            '\u{202e}',
            '\u{2066}',
            '\u{feff}',
            '\u{e000}',
            '\u{1b}',
        ] {
            assert_eq!(
                normalize_nick(&format!("a{c}b")),
                Err(NickError::Unprintable(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn a_display_name_is_trimmed_and_may_have_inner_spaces_and_any_script() {
        assert_eq!(normalize_nick("  Ann S.  "), Ok("Ann S.".to_owned()));
        assert_eq!(normalize_nick("Zoë ☕"), Ok("Zoë ☕".to_owned()));
        assert_eq!(normalize_nick("日本語"), Ok("日本語".to_owned()));
        assert_eq!(normalize_nick(&"x".repeat(32)), Ok("x".repeat(32)));
    }

    #[test]
    fn empty_and_blank_names_are_refused() {
        assert_eq!(normalize_nick(""), Err(NickError::Empty));
        assert_eq!(normalize_nick(" \u{3000} "), Err(NickError::Empty));
    }

    #[test]
    fn long_names_are_refused_by_characters_and_by_bytes() {
        assert_eq!(
            normalize_nick(&"x".repeat(33)),
            Err(NickError::TooManyChars(33))
        );
        // 22 three-byte characters: few enough characters, too many bytes.
        assert_eq!(
            normalize_nick(&"語".repeat(22)),
            Err(NickError::TooManyBytes(66))
        );
    }

    #[test]
    fn names_that_could_pass_for_user_at_node_are_refused() {
        assert_eq!(normalize_nick("root@alpha"), Err(NickError::At));
        assert_eq!(normalize_nick("@"), Err(NickError::At));
    }

    #[test]
    fn control_and_formatting_characters_are_refused() {
        for c in [
            '\n', '\t', '\x1b', '\x7f', '\u{85}', '\u{9b}', '\u{200b}', '\u{200e}', '\u{202e}',
            '\u{2066}', '\u{2028}', '\u{feff}',
        ] {
            assert_eq!(
                normalize_nick(&format!("a{c}b")),
                Err(NickError::Unprintable(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
        let message = NickError::Unprintable('\x1b').to_string();
        assert!(message.ends_with("U+001B"), "{message}");
    }
}
