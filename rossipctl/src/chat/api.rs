//! The JSON-RPC shapes the chat uses beyond `send`/`history`/`subscribe`: the people-facing
//! methods (`channels`, `nick`, `who`, `presence.set`, `send` with `to`) and the event kinds
//! a chat follows (`presence`, `direct_status`).
//!
//! They are the chat's own view of the API contract, read leniently (unknown fields are
//! ignored, missing optional ones default), so that the chat works with a daemon that has
//! more than it knows, and says clearly what a daemon that has less does not support.

use rossip_proto::rpc::MessageView;
use serde::{Deserialize, Serialize};

/// Method names not (yet) in [`rossip_proto::rpc::method`].
pub mod method {
    /// Lists the channels with messages.
    pub const CHANNELS: &str = "channels";
    /// Sets, clears or reads the caller's display name.
    pub const NICK: &str = "nick";
    /// Lists the users in a chat, here and on the other nodes.
    pub const WHO: &str = "who";
    /// Marks the caller as in a chat, available or away.
    pub const PRESENCE_SET: &str = "presence.set";
}

/// `send` params with an optional recipient (a direct message).
#[derive(Debug, Clone, Serialize)]
pub struct SendParams {
    /// The text.
    pub text: String,
    /// The channel, for a channel message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// A node name, `user@node` or node id: a direct message to them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `send` result.
#[derive(Debug, Clone, Deserialize)]
pub struct SendResult {
    /// The message id.
    pub id: String,
    /// Set for a direct message: whether it reached the recipient yet.
    #[serde(default)]
    pub direct: Option<DirectSendStatus>,
}

/// What became of a direct message when `send` answered.
#[derive(Debug, Clone, Deserialize)]
pub struct DirectSendStatus {
    /// `delivered` or `queued`.
    pub status: String,
    /// The recipient as people read it: `user@node` or `node`.
    pub to: String,
    /// The recipient node's id (hex).
    #[serde(default)]
    pub node: String,
}

/// `nick` params: no field reads the nick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NickParams {
    /// The new display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// Removes the display name.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

/// `nick` result.
#[derive(Debug, Clone, Deserialize)]
pub struct NickResult {
    /// The caller's user name on this node.
    pub user: String,
    /// The display name, if one is set.
    #[serde(default)]
    pub nick: Option<String>,
}

/// `presence.set` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceParams {
    /// `available` or `away`.
    pub state: PresenceState,
    /// A status line (`lunch`), or null for none.
    pub status: Option<String>,
}

/// Available or away, as `presence.set` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    /// At the keyboard.
    Available,
    /// Away (by `/away`, or idle).
    Away,
}

/// `presence.set` result.
#[derive(Debug, Clone, Deserialize)]
pub struct PresenceResult {
    /// The caller's user name on this node.
    pub user: String,
}

/// `who` result.
#[derive(Debug, Clone, Deserialize)]
pub struct WhoResult {
    /// Everyone in a chat.
    pub users: Vec<WhoEntry>,
}

/// One user in a chat, in `who` and in `presence` events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WhoEntry {
    /// The user name on their node.
    #[serde(default)]
    pub user: String,
    /// Their node's name.
    #[serde(default)]
    pub node_name: String,
    /// `user@node`.
    #[serde(default)]
    pub from: String,
    /// Their display name.
    #[serde(default)]
    pub nick: Option<String>,
    /// `available`, `away`, or (in events) `offline`.
    #[serde(default)]
    pub state: String,
    /// Their status line.
    #[serde(default)]
    pub status: Option<String>,
    /// Since when, ms since the Unix epoch.
    #[serde(default)]
    pub since: u64,
}

/// `channels` result.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelsResult {
    /// The channels with messages.
    pub channels: Vec<ChannelEntry>,
}

/// One channel in `channels`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelEntry {
    /// Its name.
    pub name: String,
    /// How many messages this node holds for it.
    #[serde(default)]
    pub messages: u64,
    /// When the last one was sent, ms since the Unix epoch.
    #[serde(default)]
    pub last_ts: Option<u64>,
}

/// `params` of an event notification, as the chat reads them.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamEventParams {
    /// Which subscription.
    pub subscription: u64,
    /// The event.
    #[serde(flatten)]
    pub event: StreamEvent,
}

/// The events a chat follows. Kinds it does not know are read as [`StreamEvent::Other`].
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A message was delivered.
    Message {
        /// The message.
        message: MessageView,
    },
    /// Someone joined, left, went away or came back.
    Presence {
        /// Them, after the change (`state` may be `offline`).
        presence: WhoEntry,
        /// Their state before: None when they were not in a chat.
        #[serde(default)]
        previous: Option<String>,
    },
    /// A direct message this node sent was delivered, expired or failed.
    DirectStatus {
        /// The message id.
        id: String,
        /// `delivered`, `expired` or `failed`.
        status: String,
        /// Why, when it failed.
        #[serde(default)]
        reason: Option<String>,
    },
    /// This subscriber fell behind and events were dropped.
    Lagged {
        /// How many.
        dropped: u64,
        /// Where the stream goes on.
        #[serde(default)]
        cursor: Option<String>,
    },
    /// A kind this chat does not follow.
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_events_and_unknown_kinds_are_read() {
        let event: StreamEventParams = serde_json::from_str(
            r#"{"subscription":3,"kind":"presence","presence":{"user":"bob","node":"ab",
            "node_name":"h2","from":"bob@h2","state":"away","status":"lunch","since":5,
            "local":false},"previous":"available"}"#,
        )
        .expect("presence event");
        assert_eq!(event.subscription, 3);
        assert!(matches!(
            event.event,
            StreamEvent::Presence { presence, previous: Some(p) }
                if presence.from == "bob@h2" && presence.status.as_deref() == Some("lunch")
                    && p == "available"
        ));
        let event: StreamEventParams =
            serde_json::from_str(r#"{"subscription":1,"kind":"peer","peer":{}}"#)
                .expect("other kinds");
        assert!(matches!(event.event, StreamEvent::Other));
    }

    #[test]
    fn send_params_name_the_recipient_only_for_a_direct_message() {
        let channel = SendParams {
            text: "hi".into(),
            channel: Some("ops".into()),
            to: None,
        };
        assert_eq!(
            serde_json::to_string(&channel).expect("json"),
            r#"{"text":"hi","channel":"ops"}"#
        );
        let direct = SendParams {
            text: "hi".into(),
            channel: None,
            to: Some("bob@h2".into()),
        };
        assert_eq!(
            serde_json::to_string(&direct).expect("json"),
            r#"{"text":"hi","to":"bob@h2"}"#
        );
        let presence = PresenceParams {
            state: PresenceState::Away,
            status: None,
        };
        assert_eq!(
            serde_json::to_string(&presence).expect("json"),
            r#"{"state":"away","status":null}"#
        );
    }
}
