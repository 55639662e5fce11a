//! Presence DTOs: `presence.set`, `who`, and the `presence` event.

use serde::{Deserialize, Deserializer, Serialize};

/// A user's presence as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStateName {
    /// In a chat and at the keyboard.
    Available,
    /// In a chat, away (said so, or idle).
    Away,
    /// Not in a chat (only in events: the user left, or their node went).
    Offline,
}

impl PresenceStateName {
    /// The lower-case name used in JSON and human output.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStateName::Available => "available",
            PresenceStateName::Away => "away",
            PresenceStateName::Offline => "offline",
        }
    }
}

/// `presence.set` params: marks the calling connection's user as in a chat
/// on this node, until the connection closes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSetParams {
    /// `available` or `away`; absent: unchanged (`available` at first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PresenceStateName>,
    /// The status line (at most 128 bytes); `null` clears it; absent:
    /// unchanged.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one
/// (`None`, by `#[serde(default)]`).
fn present_or_null<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// `presence.set` result: the caller's presence on this node now (merged
/// over all of that user's connections).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSetResult {
    /// The user, from the connection's peer credentials.
    pub user: String,
    /// `available` if any of the user's connections is, else `away`.
    pub state: PresenceStateName,
    /// The status line in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// One user in a chat somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceView {
    /// Their login name on their node.
    pub user: String,
    /// Their node's id (hex).
    pub node: String,
    /// Their node's name.
    pub node_name: String,
    /// `user@node_name`.
    pub from: String,
    /// Their display name, if they set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// `available` or `away` (`offline` only in events).
    pub state: PresenceStateName,
    /// Their status line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Since when they are in `state`, ms since the Unix epoch (their
    /// node's clock; for `offline`, this node's).
    pub since: u64,
    /// Whether they are on this node.
    pub local: bool,
}

/// `who` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoResult {
    /// Everyone in a chat on every node this node knows, this node's too,
    /// sorted by node name, node id, then user.
    pub users: Vec<PresenceView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_tells_null_from_absent() {
        let absent: PresenceSetParams = serde_json::from_str("{}").expect("absent");
        assert_eq!(absent.status, None);
        let null: PresenceSetParams = serde_json::from_str(r#"{"status":null}"#).expect("null");
        assert_eq!(null.status, Some(None));
        let set: PresenceSetParams =
            serde_json::from_str(r#"{"state":"away","status":"lunch"}"#).expect("set");
        assert_eq!(set.status, Some(Some("lunch".into())));
        assert_eq!(set.state, Some(PresenceStateName::Away));
        assert!(serde_json::from_str::<PresenceSetParams>(r#"{"mood":1}"#).is_err());
    }
}
