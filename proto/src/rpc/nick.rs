//! `nick`: the display name of the caller's user on this node.

use serde::{Deserialize, Serialize};

/// `nick` params: set (`nick`), clear (`clear`), or neither to ask.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NickParams {
    /// The new display name (trimmed; 1–32 characters, no `@`, no control
    /// characters; see [`crate::nick::normalize_nick`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// Remove the display name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

/// `nick` result: the caller's user (as the socket's peer credentials say)
/// and its display name after the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NickResult {
    /// The local user the daemon takes the caller for.
    pub user: String,
    /// The display name its messages carry from now on; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
}
