//! JSON-RPC 2.0 types for the local API, shared by the daemon, the CLI and
//! the tests. Field names here are the public contract (see README.md).
//!
//! One JSON value per line on the local socket; at most [`MAX_LINE_BYTES`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::Message;

mod channels;
mod nick;

pub use channels::{ChannelView, ChannelsResult};
pub use nick::{NickParams, NickResult};
pub mod presence;
pub use presence::{
    PresenceSetParams, PresenceSetResult, PresenceStateName, PresenceView, WhoResult,
};

/// The `jsonrpc` member every request and response carries.
pub const JSONRPC_VERSION: &str = "2.0";

/// Longest request line the daemon reads (1 MiB); longer lines are answered
/// with [`code::INVALID_REQUEST`] and skipped, and the connection survives.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Method names.
pub mod method {
    /// Publish a message: [`super::SendParams`] → [`super::SendResult`].
    pub const SEND: &str = "send";
    /// Read history: [`super::HistoryParams`] → [`super::HistoryResult`].
    pub const HISTORY: &str = "history";
    /// Start notifications: [`super::SubscribeParams`] → [`super::SubscribeResult`].
    pub const SUBSCRIBE: &str = "subscribe";
    /// Stop notifications: [`super::UnsubscribeParams`] → [`super::UnsubscribeResult`].
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    /// List members: [`super::PeersParams`] → [`super::PeersResult`].
    pub const PEERS: &str = "peers";
    /// This node: no params → [`super::StatusResult`].
    pub const STATUS: &str = "status";
    /// Contact a node: [`super::JoinParams`] → [`super::JoinResult`].
    pub const JOIN: &str = "join";
    /// Leave the cluster gracefully: no params → [`super::LeaveResult`].
    pub const LEAVE: &str = "leave";
    /// Every member's cluster keys: no params → [`super::KeysListResult`].
    pub const KEYS_LIST: &str = "keys.list";
    /// Install a cluster key on every member: [`super::KeysInstallParams`]
    /// → [`super::KeysChangeResult`].
    pub const KEYS_INSTALL: &str = "keys.install";
    /// Seal with an installed key on every member: [`super::KeysIdParams`]
    /// → [`super::KeysChangeResult`].
    pub const KEYS_USE: &str = "keys.use";
    /// Remove a key from every member: [`super::KeysIdParams`] →
    /// [`super::KeysChangeResult`].
    pub const KEYS_REMOVE: &str = "keys.remove";
    /// Name of the notification method the daemon sends to subscribers.
    pub const EVENT: &str = "event";
    /// The channels this node holds messages of: no params →
    /// [`super::ChannelsResult`].
    pub const CHANNELS: &str = "channels";
    /// Set, clear or show the caller's display name:
    /// [`super::NickParams`] → [`super::NickResult`].
    pub const NICK: &str = "nick";
    /// Mark the caller as in a chat, available or away:
    /// [`super::PresenceSetParams`] → [`super::PresenceSetResult`].
    pub const PRESENCE_SET: &str = "presence.set";
    /// Who is in a chat, on every node: no params → [`super::WhoResult`].
    pub const WHO: &str = "who";
    /// The web chat's address for the caller (a login link when the
    /// gateway needs a token): no params → [`super::WebLinkResult`].
    pub const WEB_LINK: &str = "web.link";
}

/// Error codes: the standard JSON-RPC ones and rossip's own (from -32000
/// down). README.md documents each.
pub mod code {
    /// The line is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Valid JSON, but not a request object (or the line was too long).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The daemon failed in a way that is not the caller's fault.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// `send`: the message is larger than the configured maximum.
    pub const MESSAGE_TOO_LARGE: i64 = -32001;
    /// `send`: the text is empty.
    pub const EMPTY_MESSAGE: i64 = -32002;
    /// A channel name is not valid.
    pub const INVALID_CHANNEL: i64 = -32003;
    /// `history`/`subscribe`: `since` names a message id this node does not hold.
    pub const UNKNOWN_MESSAGE_ID: i64 = -32004;
    /// `join`: the address did not resolve, or no rossip node answered there in time.
    pub const JOIN_FAILED: i64 = -32005;
    /// `unsubscribe`: no such subscription on this connection.
    pub const UNKNOWN_SUBSCRIPTION: i64 = -32006;
    /// The connection holds the maximum number of subscriptions.
    pub const TOO_MANY_SUBSCRIPTIONS: i64 = -32007;
    /// The node has left the cluster or is shutting down; it accepts no new messages.
    pub const NOT_IN_CLUSTER: i64 = -32008;
    /// `send`: the history window stayed full of recent messages (a sender
    /// faster than the window allows); nothing was accepted. `data.retry_after_ms`
    /// says when to try again.
    pub const BUSY: i64 = -32009;
    /// `keys.*`: this node has no cluster key (gossip is not encrypted; a
    /// running node cannot switch: restart it with `--key-file`).
    pub const NO_CLUSTER_KEY: i64 = -32010;
    /// `keys.*`: this node's keyring refused the change (an unknown key
    /// id, the primary key removed, a full keyring), or the safety check
    /// of `keys.use`/`keys.remove` did (`data.nodes`: `[{id, name,
    /// reason}]`); nothing was sent to other members. (A malformed key or
    /// key id is [`INVALID_PARAMS`].)
    pub const KEYRING_REFUSED: i64 = -32011;
    /// `history`/`subscribe`: `after` is a cursor of another history store
    /// (another node's, or this node's before its state directory was
    /// wiped): it names no position here. Start again without `after`.
    pub const FOREIGN_CURSOR: i64 = -32012;
    /// `nick`: the display name is not valid (empty, over 32 characters,
    /// an `@`, a control character).
    pub const INVALID_NICK: i64 = -32013;
    /// `send`: `to` names no known node (nor `user@node` of one);
    /// `data.candidates` lists the nodes known (`[{name, id}]`).
    pub const UNKNOWN_RECIPIENT: i64 = -32014;
    /// `send`: `to` fits more than one node (a shared name, a short id
    /// prefix); `data.candidates` lists them (`[{name, id}]`): name one by
    /// a longer id prefix.
    pub const AMBIGUOUS_RECIPIENT: i64 = -32015;
    /// `send`: the direct message was refused (`data.reason`: `too_large`,
    /// with `size` and `max_bytes`; `queue_full`, too many waiting for
    /// their recipients).
    pub const DIRECT_REFUSED: i64 = -32016;
    /// `web.link`: the HTTP gateway is off (start rossipd with `--http ADDR`).
    pub const HTTP_DISABLED: i64 = -32017;
    /// HTTP gateway: the request carries no valid login token (HTTP 401);
    /// `rossipctl web` prints a login link.
    pub const UNAUTHORIZED: i64 = -32018;
    /// HTTP gateway: the request's `Host` or `Origin` is not the gateway's
    /// own (HTTP 403): another web site, or a DNS-rebinding attempt.
    pub const FORBIDDEN_ORIGIN: i64 = -32019;
}

/// A request (or, without `id`, a notification) as received. Deserialized
/// leniently: the server validates `jsonrpc`, `method` and `id` itself so it
/// can answer each malformation with the right error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Must be `"2.0"`.
    pub jsonrpc: String,
    /// The method name.
    pub method: String,
    /// Object (or absent). Arrays are refused with [`code::INVALID_PARAMS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Absent for a notification (no response is sent). A string, number or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

impl Request {
    /// A request with params serialized from `params`.
    pub fn new(id: u64, method: &str, params: impl Serialize) -> Result<Self, serde_json::Error> {
        Ok(Request {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            method: method.to_owned(),
            params: Some(serde_json::to_value(params)?),
            id: Some(Value::from(id)),
        })
    }
}

/// The error member of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct ErrorObject {
    /// One of [`code`].
    pub code: i64,
    /// One sentence for humans.
    pub message: String,
    /// Optional details (e.g. `{"max_bytes": 1200}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// An error with data.
    pub fn with_data(code: i64, message: impl Into<String>, data: Value) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: Some(data),
        }
    }
}

/// A response: exactly one of `result` and `error` is present.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Present on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Present on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
    /// The request's id; null when it could not be read.
    pub id: Value,
}

impl Response {
    /// A success.
    pub fn ok(id: Value, result: Value) -> Self {
        Response {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            result: Some(result),
            error: None,
            id,
        }
    }

    /// A failure.
    pub fn err(id: Value, error: ErrorObject) -> Self {
        Response {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            result: None,
            error: Some(error),
            id,
        }
    }
}

/// A server-to-client notification (`method: "event"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Always [`method::EVENT`].
    pub method: String,
    /// What happened.
    pub params: EventParams,
}

impl Notification {
    /// Wraps an event for a subscription.
    pub fn event(subscription: u64, event: EventBody) -> Self {
        Notification {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            method: method::EVENT.to_owned(),
            params: EventParams {
                subscription,
                event,
            },
        }
    }
}

/// `params` of an `event` notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventParams {
    /// The id `subscribe` returned.
    pub subscription: u64,
    /// The event itself, flattened: `{"subscription":1,"kind":"message","message":{…}}`.
    #[serde(flatten)]
    pub event: EventBody,
}

/// One event delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A message was delivered on this node (or is replayed from history
    /// because the subscription asked for `n`/`since`).
    Message {
        /// The message.
        message: MessageView,
    },
    /// A member changed state.
    Peer {
        /// The member after the change.
        peer: PeerView,
        /// Its state before, absent when it is new to this node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<PeerStateName>,
    },
    /// The subscriber fell so far behind that `dropped` events left this
    /// node before it read them (messages: out of the history window); the
    /// stream goes on after `cursor`.
    Lagged {
        /// How many events were not delivered.
        dropped: u64,
        /// Where the stream goes on: the delivery cursor after which the
        /// next message event follows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// A user came into a chat, left it (`offline`), or changed state,
    /// status or display name.
    Presence {
        /// The user after the change.
        presence: PresenceView,
        /// Their state before (`null`: they were not in a chat).
        previous: Option<PresenceStateName>,
    },
    /// What became of a direct message this node sent: its recipient
    /// acknowledged it, or it was given up. Shown to its sender's user and
    /// root.
    DirectStatus {
        /// The message's id (as in its message event).
        id: String,
        /// What became of it.
        status: DirectStatusName,
        /// Why, for an expired message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// What became of a direct message, as `direct_status` events and `send`
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectStatusName {
    /// The recipient acknowledged it.
    Delivered,
    /// Not acknowledged in time (`--direct-expiry`): given up.
    Expired,
}

/// Which events a subscription wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Chat messages.
    Message,
    /// Membership changes.
    Peer,
    /// Users coming into a chat, leaving, going away and back.
    Presence,
    /// What became of direct messages this node sent (delivered,
    /// expired).
    DirectStatus,
}

/// A message as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// `"<origin hex>-<seq>"`.
    pub id: String,
    /// Origin node id (hex).
    pub origin: String,
    /// Origin node name at send time.
    pub origin_name: String,
    /// Per-origin sequence number.
    pub seq: u64,
    /// Milliseconds since the Unix epoch at the origin (HLC physical part).
    pub ts: u64,
    /// HLC logical counter; (`ts`, `ts_logical`, `origin`, `seq`) orders history.
    pub ts_logical: u32,
    /// Channel name.
    pub channel: String,
    /// The text. Untrusted: sanitize before printing to a terminal.
    pub text: String,
    /// The local user at the origin who sent it, as the origin's kernel
    /// vouched (socket peer credentials) and its signature covers; empty
    /// when the origin could not tell.
    #[serde(default)]
    pub user: String,
    /// Who sent it, as people read it: `user@origin_name`, or just
    /// `origin_name` without a user.
    #[serde(default)]
    pub from: String,
    /// The display name the sender chose, if any: shown beside `from`,
    /// never instead of it (anyone can choose any display name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// The recipient, for a direct message (absent for a channel message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<RecipientView>,
    /// Fingerprint of the origin's public key (`3fa2:91c0:…`).
    #[serde(default)]
    pub key: String,
    /// The origin's signature verified (the daemon delivers no other
    /// message: `false` only from an older daemon that did not check).
    #[serde(default)]
    pub verified: bool,
    /// Whether `origin_name` is the name this daemon first saw with this
    /// key (trust on first use).
    #[serde(default)]
    pub name_trust: NameTrust,
    /// This node's delivery cursor of the message (local arrival order):
    /// pass it as `after` to `history` or `subscribe` to get exactly what
    /// this node delivered since. Empty only from an older daemon.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cursor: String,
}

/// The addressee of a direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientView {
    /// The recipient node's id (hex).
    pub node: String,
    /// The user there it is for; absent: whoever reads that node's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `user@node` as people read it (`node` alone without a user).
pub fn user_at_node(user: &str, node: &str) -> String {
    if user.is_empty() {
        node.to_owned()
    } else {
        format!("{user}@{node}")
    }
}

/// Whether a sender's name goes with its key: rossip pins each name to the
/// first key seen using it, and warns when another key uses the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameTrust {
    /// The name is pinned to this key (first seen with it, or since).
    Pinned,
    /// The name was first seen with another key: a different node (or a
    /// reinstalled one) uses it. Shown loudly.
    Changed,
    /// Not checked (too many names to pin, or an older daemon).
    #[default]
    Unchecked,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.id.to_string(),
            origin: m.id.origin.to_string(),
            origin_name: m.origin_name.clone(),
            seq: m.id.seq,
            ts: m.ts.ms,
            ts_logical: m.ts.logical,
            channel: m.channel.clone(),
            text: m.text.clone(),
            user: m.author.user.clone(),
            from: user_at_node(&m.author.user, &m.origin_name),
            nick: m.author.nick.clone(),
            to: m.to.as_ref().map(|to| RecipientView {
                node: to.node.to_string(),
                user: to.user.clone(),
            }),
            key: m.auth.key.fingerprint(),
            // Every message this node holds was verified as it arrived
            // (a `Message` does not decode otherwise).
            verified: true,
            name_trust: NameTrust::Unchecked,
            cursor: String::new(),
        }
    }
}

/// Member states as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerStateName {
    /// Answering probes.
    Alive,
    /// Missed probes; will be `failed` unless it refutes.
    Suspect,
    /// Declared dead by the failure detector.
    Failed,
    /// Left gracefully.
    Left,
}

impl PeerStateName {
    /// The lower-case name used in JSON and human output.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStateName::Alive => "alive",
            PeerStateName::Suspect => "suspect",
            PeerStateName::Failed => "failed",
            PeerStateName::Left => "left",
        }
    }
}

/// A member as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// Node id (hex).
    pub id: String,
    /// Node name (not unique).
    pub name: String,
    /// Gossip address, `IP:PORT`.
    pub addr: String,
    /// Current state.
    pub state: PeerStateName,
    /// When it entered that state, milliseconds since the Unix epoch.
    pub since: u64,
    /// When this node last heard from it directly, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
    /// Last measured round-trip time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Which run of the node this is: higher after each restart (and after
    /// it renewed itself when wrongly declared failed).
    #[serde(default)]
    pub generation: u64,
    /// SWIM incarnation within that run: the node raises it each time it
    /// refutes a suspicion.
    #[serde(default)]
    pub incarnation: u16,
    /// Fingerprint of its public key (its id derives from the key).
    #[serde(default)]
    pub key: String,
    /// Whether `name` is the name this daemon first saw with this key.
    #[serde(default)]
    pub name_trust: NameTrust,
}

/// `send` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    /// The text, non-empty UTF-8.
    pub text: String,
    /// Defaults to `general`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Makes it a direct message to one node (or one user there): a node
    /// name, `user@node`, or a node id (hex, or a unique prefix of at
    /// least 4 digits), among the members and this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `send` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResult {
    /// The new message's id.
    pub id: String,
    /// Its timestamp, ms since the Unix epoch.
    pub ts: u64,
    /// For a direct message: where it went, and whether it arrived yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectSendView>,
}

/// What `send` says of a direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectSendView {
    /// `delivered` (acknowledged by the recipient), `queued` (kept and
    /// retried until it is, or until it expires), or `expired`.
    pub status: String,
    /// The recipient as resolved: `user@node` or `node`.
    pub to: String,
    /// The recipient node's id (hex).
    pub node: String,
}

/// Where a history read starts: after a message id, or at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Since {
    /// Messages ordered after this id (which this node must hold).
    Id(String),
    /// Messages with `ts` at or after this many ms since the Unix epoch.
    Time(u64),
}

/// `history` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// At most this many (the newest), after the other filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Only messages after this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
    /// Only messages this node delivered after this cursor, in delivery
    /// order (with `n`: the first `n` of them, a page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// `history` result: oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryResult {
    /// Messages in history order (with `after`: in delivery order).
    pub messages: Vec<MessageView>,
    /// The cursor to pass as `after` to continue: the last delivery this
    /// answer covers (`STORE-0` while nothing was delivered here). Absent
    /// only from an older daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// With `after`: deliveries this answer passed over because they had
    /// left the history window (they cannot be read any more).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `subscribe` params. With `n` or `since`, matching history is replayed as
/// `message` events before live ones, with no gap and no duplicate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Defaults to `["message"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventKind>>,
    /// Replay the last `n` messages first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Replay messages after this point first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
    /// Replay every message this node delivered after this cursor first,
    /// in delivery order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only this channel's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// `subscribe` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribeResult {
    /// Names the subscription in notifications and `unsubscribe`.
    pub subscription: u64,
    /// Where the replay (by `after`, `n` or `since`) ends and live events
    /// begin: the newest delivery when the subscription started. A follower
    /// resumes after the last message it got (or the `after` it gave), not
    /// here. Absent only from an older daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `unsubscribe` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    /// As returned by `subscribe`.
    pub subscription: u64,
}

/// `unsubscribe` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnsubscribeResult {
    /// Always true (an unknown subscription is an error).
    pub unsubscribed: bool,
}

/// `peers` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersParams {
    /// Include `failed` and `left` members (default: only alive and suspect).
    #[serde(default)]
    pub all: bool,
}

/// `peers` result: other members, sorted by name then id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeersResult {
    /// The members.
    pub peers: Vec<PeerView>,
}

/// This node's side of failure detection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipCounts {
    /// This node's current generation (its run; it grows when the node
    /// restarts or renews itself after being wrongly declared failed).
    pub generation: u64,
    /// Suspicions of this node that others told it of, and it refuted.
    pub suspicions_refuted: u64,
    /// Times this node postponed failing a suspect it still heard from.
    pub failures_postponed: u64,
    /// Times this node was declared failed while running and renewed
    /// itself (absent from daemons before it existed).
    #[serde(default)]
    pub renewals: u64,
    /// Times this node found its id in use by a copy of it elsewhere and
    /// took a new identity (absent from daemons before it existed).
    #[serde(default)]
    pub identity_conflicts: u64,
    /// How far behind its inputs this node ran lately (longest wait of a
    /// datagram in the receive queue, or of a late timer), milliseconds;
    /// 0 when it keeps up (absent from daemons before it existed).
    #[serde(default)]
    pub lag_ms: u64,
    /// Waits of the failure detector this node stretched because it ran
    /// behind, instead of suspecting peers whose answers it had not read
    /// yet (absent from daemons before it existed).
    #[serde(default)]
    pub detector_waits_stretched: u64,
}

/// Member counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounts {
    /// Alive members.
    pub alive: u64,
    /// Suspect members.
    pub suspect: u64,
    /// Failed members still remembered.
    pub failed: u64,
    /// Members that left, still remembered.
    pub left: u64,
}

/// Message counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// Accepted by `send` on this node.
    pub sent: u64,
    /// Delivered here from other nodes (first copy of each).
    pub received: u64,
    /// Copies that arrived again and were dropped as duplicates.
    pub duplicates: u64,
    /// Messages currently held in history.
    pub in_history: u64,
    /// Payload bytes (text, channel, name) held in history.
    #[serde(default)]
    pub history_bytes: u64,
    /// Messages sent to other nodes as repairs (anti-entropy).
    #[serde(default)]
    pub repairs_sent: u64,
    /// Gap pulls sent (a missing message noticed and asked for at once).
    #[serde(default)]
    pub gap_pulls: u64,
    /// Datagrams of direct pushes sent again because a member did not
    /// acknowledge them in time (each copy counts).
    #[serde(default)]
    pub retransmissions: u64,
    /// Acknowledgements of direct pushes sent.
    #[serde(default)]
    pub acks_sent: u64,
    /// (message, member) pairs waiting for an acknowledgement now.
    #[serde(default)]
    pub unacknowledged: u64,
    /// (message, member) pairs left to anti-entropy unacknowledged: after
    /// the last retry, when the member went away, or past the memory bound.
    #[serde(default)]
    pub retransmit_given_up: u64,
    /// Messages given up because no member held them any more: they left
    /// every history window before reaching this node. Each is also logged.
    #[serde(default)]
    pub lost: u64,
    /// `send`s held for room in the history window (back-pressure).
    #[serde(default)]
    pub sends_held: u64,
    /// `send`s refused with the `BUSY` code after waiting.
    #[serde(default)]
    pub sends_refused: u64,
    /// `send`s waiting now.
    #[serde(default)]
    pub sends_waiting: u64,
    /// Large messages being reassembled now.
    #[serde(default)]
    pub partial: u64,
    /// Incomplete large messages dropped for a bound or timeout (they come
    /// again through anti-entropy).
    #[serde(default)]
    pub partial_evicted: u64,
    /// Direct messages this node sent and its recipients have not
    /// acknowledged yet (kept and retried).
    #[serde(default)]
    pub direct_pending: u64,
    /// Copies of direct messages sent (first copies and retries).
    #[serde(default)]
    pub direct_sent: u64,
    /// Direct messages received here (first copies).
    #[serde(default)]
    pub direct_received: u64,
    /// Direct messages given up unacknowledged (`--direct-expiry`).
    #[serde(default)]
    pub direct_expired: u64,
    /// Acks of received direct messages not sent because the store had not
    /// saved the messages (the senders send again).
    #[serde(default)]
    pub direct_acks_withheld: u64,
    /// Direct messages found pending at start without their text in the
    /// store (reported as expired and forgotten).
    #[serde(default)]
    pub direct_orphaned: u64,
}

/// Datagram counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatagramCounts {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Datagrams dropped, by reason (e.g. `malformed`, `wrong_cluster`).
    pub dropped: std::collections::BTreeMap<String, u64>,
}

/// `status` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResult {
    /// Node id (hex).
    pub id: String,
    /// Node name.
    pub name: String,
    /// rossipd version.
    pub version: String,
    /// Cluster label.
    pub cluster: String,
    /// Gossip address other nodes use, `IP:PORT`.
    pub addr: String,
    /// Addresses the gossip socket is bound to.
    pub bind: String,
    /// Local socket path.
    pub socket: String,
    /// State directory.
    pub state_dir: String,
    /// Whether mDNS discovery runs.
    pub mdns: bool,
    /// `running`, or `left` after `leave`.
    pub state: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Members by state (not counting this node).
    pub peers: PeerCounts,
    /// Failure detection counters.
    #[serde(default)]
    pub membership: MembershipCounts,
    /// Message counters.
    pub messages: MessageCounts,
    /// Datagram counters.
    pub datagrams: DatagramCounts,
    /// Events dropped for subscribers that did not keep up.
    pub subscriber_drops: u64,
    /// The durable history store (absent from daemons before it existed).
    #[serde(default)]
    pub store: StoreStatus,
    /// Ids (8 hex digits) of the cluster keys this node holds, the one it
    /// seals with first; empty: gossip is not encrypted.
    #[serde(default)]
    pub keys: Vec<String>,
    /// This node's signing identity and the names it pinned.
    #[serde(default)]
    pub identity: IdentityStatus,
    /// Connections to the local socket (absent from daemons before it existed).
    #[serde(default)]
    pub rpc: RpcStatus,
    /// Configuration problems seen lately (another cluster label or key,
    /// a seed that does not answer), each also logged as a warning; empty
    /// when there are none.
    #[serde(default)]
    pub problems: Vec<ProblemView>,
    /// mDNS discovery and the hellos its hints led to (absent from daemons
    /// before it existed: all zero then).
    #[serde(default)]
    pub discovery: DiscoveryStatus,
    /// The web chat and HTTP API; absent when the gateway is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpView>,
}

/// The HTTP gateway in `status`: where it listens (with the port it was
/// given when `--http` asked for port 0) and whether it needs a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpView {
    /// The bound address, `IP:PORT`.
    pub addr: String,
    /// Whether requests need a login token (off loopback, or
    /// `--http-login token`).
    pub login: bool,
    /// HTTP connections open now (WebSockets included).
    #[serde(default)]
    pub connections: u64,
    /// Connections refused because the most were open.
    #[serde(default)]
    pub refused: u64,
    /// Requests refused for a foreign `Host` or `Origin` (403).
    #[serde(default)]
    pub forbidden: u64,
    /// Requests refused for a missing or wrong login token (401).
    #[serde(default)]
    pub unauthorized: u64,
}

/// The `web.link` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebLinkResult {
    /// What to open: the page (`http://127.0.0.1:PORT/`), or a login link
    /// carrying the caller's token (`http://HOST:PORT/login?token=…`).
    pub url: String,
    /// Whether `url` is a login link (it is a secret then: whoever opens it
    /// speaks as the caller).
    pub login: bool,
}

/// mDNS discovery in `status`. A record is only a hint: anyone on the LAN
/// can forge one, so what it leads to is bounded (a capped set of addresses
/// no node answered at yet, a backoff per address, a rate of hellos), and
/// what was dropped on the way is counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryStatus {
    /// mDNS records of this cluster's service type resolved since start.
    pub records: u64,
    /// Addresses from those records handed to the protocol as hints.
    pub hints: u64,
    /// Hinted addresses held now that no node has answered at yet.
    pub unverified: u64,
    /// Hellos sent to hinted addresses.
    pub hellos_sent: u64,
    /// Times a hello that was due waited because of the hello rate.
    pub hellos_deferred: u64,
    /// Times the mDNS browser was restarted to empty its record cache,
    /// because it held more records than the limit.
    pub cache_resets: u64,
    /// Records and hints dropped, by reason (`other_cluster`, `other_key`,
    /// `link_local`, `queue_full`, `evicted`, `set_full`; see the README).
    pub hints_dropped: std::collections::BTreeMap<String, u64>,
}

/// A configuration problem in `status`: something that keeps this node
/// apart from another, which would otherwise only show as `no peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemView {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The address involved: the sender's `IP:PORT`, or a seed as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// What it is and what to check, one sentence.
    pub detail: String,
    /// When it began, ms since the Unix epoch.
    pub since: u64,
    /// When it was last seen, ms since the Unix epoch.
    pub last_seen: u64,
    /// Datagrams refused (for `seed_silent`: contacts unanswered).
    pub count: u64,
}

/// Kinds of [`ProblemView`]. The kinds of refused datagrams are named as
/// their `datagrams.dropped` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A seed (`--join`, `rossipctl join`) that has not answered for 30 s.
    SeedSilent,
    /// Datagrams from a node with another `--cluster` label.
    WrongCluster,
    /// Datagrams sealed under a key this node does not hold.
    UnknownKey,
    /// Plaintext datagrams at this node, which has a key.
    UnsealedRefused,
    /// Sealed datagrams at this node, which has no key.
    SealedWithoutKey,
    /// Sealed datagrams of a sender whose clock is more than 5 minutes
    /// from this node's (or an old capture replayed).
    Stale,
    /// Refused datagrams from more addresses than are tracked one by one.
    ManySenders,
    /// A kind this build does not know, from a newer daemon: parsed rather
    /// than failing the whole `status`, so an older `rossipctl` still shows
    /// the problem's `detail`. The daemon never sends it.
    #[serde(other)]
    Unknown,
}

impl ProblemKind {
    /// The snake_case name used in JSON and human output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::SeedSilent => "seed_silent",
            ProblemKind::WrongCluster => "wrong_cluster",
            ProblemKind::UnknownKey => "unknown_key",
            ProblemKind::UnsealedRefused => "unsealed_refused",
            ProblemKind::SealedWithoutKey => "sealed_without_key",
            ProblemKind::Stale => "stale",
            ProblemKind::ManySenders => "many_senders",
            ProblemKind::Unknown => "unknown",
        }
    }
}

/// Connections to the local JSON-RPC socket, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcStatus {
    /// Connections open now, the one asking included.
    pub connections: u64,
    /// The most served at once; past it a new connection gets a
    /// [`code::BUSY`] error line and is closed.
    pub max_connections: u64,
    /// Connections refused since start because `max_connections` were open.
    pub refused: u64,
}

/// This node's signing key and trust-on-first-use pins, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityStatus {
    /// Fingerprint of this node's public key (its id derives from it).
    pub key: String,
    /// Node names pinned to a key (`<state dir>/known_names`).
    pub pinned_names: u64,
    /// Names seen this run under a key other than the pinned one (each
    /// name and key once): each was logged as a warning.
    pub name_conflicts: u64,
}

/// The daemon's durable history store, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The database file (`<state dir>/history.db`).
    pub path: String,
    /// Bytes on disk: the database plus its write-ahead log.
    pub size_bytes: u64,
    /// Messages stored.
    pub messages: u64,
    /// Commits and prunes that failed since start (each logged as an
    /// error); sends whose commit failed were answered with an error.
    pub errors: u64,
    /// Delivered messages a failed commit left out of the store, written
    /// with the next commit that succeeds.
    #[serde(default)]
    pub pending: u64,
    /// Delivered messages no longer held for the store since start: it
    /// failed for too long (over 100,000 messages or 64 MiB waited).
    #[serde(default)]
    pub dropped: u64,
}

/// A keyring: key ids (8 hex digits), the sealing key first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringView {
    /// The id of the key datagrams are sealed with.
    pub primary: String,
    /// Every key id held, `primary` first.
    pub keys: Vec<String>,
}

/// One member's keyring in [`KeysListResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeyring {
    /// Node id (hex).
    pub id: String,
    /// Node name.
    pub name: String,
    /// Whether it answered in time; without an answer `primary` is empty
    /// and `keys` too.
    pub answered: bool,
    /// The id of the key it seals with.
    #[serde(default)]
    pub primary: String,
    /// Every key id it holds, `primary` first.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// `keys.list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysListResult {
    /// This node's keyring.
    pub local: KeyringView,
    /// The other members (all but those that left: a failed member may be
    /// up again), sorted by name then id.
    pub nodes: Vec<NodeKeyring>,
    /// Whether every member asked answered.
    pub complete: bool,
}

/// `keys.install` params.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysInstallParams {
    /// The key: 64 hex digits, as `rossipctl keygen` prints. Secret.
    pub key: String,
}

impl std::fmt::Debug for KeysInstallParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: Debug output ends up in logs.
        f.debug_struct("KeysInstallParams").finish_non_exhaustive()
    }
}

/// `keys.use` and `keys.remove` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysIdParams {
    /// The key's id: 8 hex digits, as `keys.list` and `status` show it.
    pub id: String,
    /// Skip the safety check. Without it, `keys.use` is refused while a
    /// member does not hold the key, and `keys.remove` while a member
    /// still seals with it (either would cut that member off), or while a
    /// member does not answer (it may be one of those).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// One member's answer to a keyring change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAck {
    /// Node id (hex).
    pub id: String,
    /// Node name.
    pub name: String,
    /// Whether it answered in time.
    pub answered: bool,
    /// Whether the change holds there (false without an answer).
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `keys.install`, `keys.use` and `keys.remove` result: the change was
/// made on this node, then sent to every member that has not left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysChangeResult {
    /// The id of the key concerned.
    pub key: String,
    /// This node's keyring after the change.
    pub local: KeyringView,
    /// Each other member's answer, sorted by name then id.
    pub nodes: Vec<NodeAck>,
    /// Whether every member answered, and every answer was ok.
    pub complete: bool,
}

/// `join` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinParams {
    /// `HOST:PORT` of any node of the cluster.
    pub addr: String,
}

/// `join` result: the node that answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResult {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The address that answered.
    pub addr: String,
}

/// `leave` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveResult {
    /// Members told about the departure.
    pub notified: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problem_kinds_print_as_they_serialize() {
        for kind in [
            ProblemKind::SeedSilent,
            ProblemKind::WrongCluster,
            ProblemKind::UnknownKey,
            ProblemKind::UnsealedRefused,
            ProblemKind::SealedWithoutKey,
            ProblemKind::Stale,
            ProblemKind::ManySenders,
        ] {
            assert_eq!(serde_json::to_value(kind).ok(), Some(json!(kind.as_str())));
        }
        let problem = ProblemView {
            kind: ProblemKind::WrongCluster,
            addr: None,
            detail: "d".into(),
            since: 1,
            last_seen: 2,
            count: 3,
        };
        assert_eq!(
            serde_json::to_value(&problem).ok(),
            Some(json!({"kind":"wrong_cluster","detail":"d","since":1,"last_seen":2,"count":3}))
        );
    }

    #[test]
    fn a_problem_kind_of_a_newer_daemon_parses() {
        let problem: ProblemView = serde_json::from_value(json!({
            "kind": "some_kind_added_later",
            "addr": "10.0.0.5:7465",
            "detail": "d",
            "since": 1,
            "last_seen": 2,
            "count": 3,
        }))
        .expect("an unknown kind parses");
        assert_eq!(problem.kind, ProblemKind::Unknown);
        assert_eq!(problem.addr.as_deref(), Some("10.0.0.5:7465"));
        assert_eq!(problem.detail, "d");
    }

    #[test]
    fn event_notification_is_flat() {
        let lagged = EventBody::Lagged {
            dropped: 5,
            cursor: Some("00000000000000a1-9".to_owned()),
        };
        let n = Notification::event(3, lagged.clone());
        let v = serde_json::to_value(&n).expect("serialize");
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","method":"event","params":{"subscription":3,"kind":"lagged","dropped":5,"cursor":"00000000000000a1-9"}})
        );
        let back: Notification = serde_json::from_value(v).expect("parse");
        assert_eq!(back.params.event, lagged);
    }

    #[test]
    fn since_accepts_id_or_time() {
        let p: HistoryParams =
            serde_json::from_value(json!({"since": 1700000000000u64})).expect("time");
        assert_eq!(p.since, Some(Since::Time(1_700_000_000_000)));
        let p: HistoryParams = serde_json::from_value(json!({"since": "abc-1"})).expect("id");
        assert_eq!(p.since, Some(Since::Id("abc-1".into())));
    }

    #[test]
    fn unknown_param_fields_are_refused() {
        assert!(serde_json::from_value::<SendParams>(json!({"text":"x","chanel":"typo"})).is_err());
    }

    #[test]
    fn response_has_either_result_or_error() {
        let ok = serde_json::to_value(Response::ok(json!(1), json!({"a":1}))).expect("ok");
        assert_eq!(ok, json!({"jsonrpc":"2.0","result":{"a":1},"id":1}));
        let err = serde_json::to_value(Response::err(
            Value::Null,
            ErrorObject::new(code::PARSE_ERROR, "bad"),
        ))
        .expect("err");
        assert_eq!(
            err,
            json!({"jsonrpc":"2.0","error":{"code":-32700,"message":"bad"},"id":null})
        );
    }
}
