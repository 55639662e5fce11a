//! The sans-IO gossip node: membership (SWIM via `foca`) and dissemination
//! (eager push, de-duplication, bounded history, anti-entropy).
//!
//! A [`Node`] owns no socket, clock or OS randomness. The driver feeds it
//! inputs carrying `now` — [`Node::handle_datagram`], [`Node::handle_timeout`],
//! [`Node::handle_contact`], [`Node::handle_hint`], [`Node::publish`],
//! [`Node::leave`] — and after
//! each input drains every output: [`Node::poll_transmit`] until `None`,
//! [`Node::poll_event`] until `None`, then sleeps until
//! [`Node::poll_timeout`] (or the next input). The same seed and the same
//! inputs give the same run.
//!
//! Submodules, one job each:
//! - `swim`: the `foca` glue (identity, configuration, runtime draining);
//! - `timers`: the deterministic timer queue;
//! - `membership`: the member table and its transitions;
//! - `contact`: the hello handshake and graceful leave;
//! - `hints`: the bounded set of unverified discovery hints and the hello rate;
//! - `history`: bounded history and bounded-memory de-duplication;
//! - `dissemination`: publish, eager push and forwarding;
//! - `anti_entropy`: digest exchange and repair;
//! - `presence`: which users of each node are in a chat.
//! - `direct`: direct messages to one node, sealed end to end, acknowledged
//!   and retried ([`Node::send_direct`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::id::{MessageId, NodeId};
use crate::message::{Draft, Hlc, MAX_NAME_BYTES, Message};
use crate::wire::{self, ClusterId, Header};

mod acks;
mod anti_entropy;
mod config;
mod contact;
mod direct;
mod dissemination;
mod fragments;
mod health;
mod hints;
mod history;
mod identity_conflict;
mod identity_pull;
mod keyring_ops;
mod member_sync;
mod membership;
mod outbox;
mod presence;
mod suspicion;
mod swim;
mod timers;

pub use config::{ProtocolConfig, PushAckConfig};
pub use direct::{
    DIRECT_SEQ_BIT, DirectAck, DirectError, DirectOutcome, DirectStatus, PendingDirect,
    is_direct_id,
};
pub use hints::{HintConfig, HintDrop, HintStats};
pub use identity_conflict::IdentityInUse;
pub use keyring_ops::{KeyChange, KeyOpError, KeyringEvent, KeyringRequest, MAX_ACK_ERROR_BYTES};
pub use member_sync::{
    FINGERPRINT_BYTES, MAX_FINGERPRINTS_PER_DIGEST, member_fingerprint, member_hash,
};
pub use presence::{LeftOut, PresenceChange, PresenceStated};

use fragments::Reassembly;
use history::History;
use membership::Membership;
use outbox::Outbox;
use suspicion::Suspicions;
use swim::{GossipPacing, SharedVerifier, Swim, lock_verifier};
use timers::{TimerKind, TimerQueue};

// The defaults of the `NodeConfig` fields an operator sets (the daemon's
// settings). The protocol's own timings and tunables are in
// `ProtocolConfig`.

/// Default number of messages kept in history: at the default 3 s
/// [`ProtocolConfig::min_retention`] a window this size admits a sustained
/// 33,000 messages/s before back-pressure starts.
pub const DEFAULT_HISTORY_LIMIT: usize = 100_000;

/// Default bound of the history's payload bytes (text, channel and name of
/// every message held).
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Default age bound of the history window: messages older than this are
/// neither kept nor served to nodes catching up.
pub const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest `text` any node accepts; [`NodeConfig::max_text_bytes`] is
/// clamped to it. Messages that do not fit one datagram travel as
/// fragments.
pub const MAX_TEXT_BYTES: usize = wire::MAX_TEXT_BYTES;

/// Default largest `text` [`Node::publish`] accepts: 64 KiB.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 64 * 1024;

/// Longest [`NodeConfig::reap_after`]: ten years (a deadline that far out
/// still fits any clock).
pub const MAX_REAP_AFTER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Default of [`NodeConfig::reap_after`]: how long a failed or left member
/// is remembered (and listed by `peers --all`) before it is forgotten.
pub const DEFAULT_REAP_AFTER: Duration = Duration::from_secs(60 * 60);

/// Static configuration of a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's key pair: it signs the node's messages and identity.
    pub key: crate::sign::NodeKey,
    /// This node's id: derived from `key` (set by [`NodeConfig::new`], and
    /// again by [`Node::new`], so the two cannot disagree).
    pub id: NodeId,
    /// This node's name (≤ 64 bytes; longer is truncated at a char boundary).
    pub name: String,
    /// Cluster label; datagrams of other clusters are dropped and counted.
    pub cluster: String,
    /// The gossip address other nodes should use to reach this one. It is
    /// part of the identity gossiped to every member, so it must be an
    /// address peers can reach (not `0.0.0.0`).
    pub advertise_addr: SocketAddr,
    /// Distinguishes this run from earlier runs of the same node id, so that a
    /// restarted node wins over its own old (failed/left) identity. The daemon
    /// passes e.g. the Unix time in seconds at start. (A node wrongly declared
    /// failed renews itself with `generation + 1`.)
    pub generation: u64,
    /// First sequence number this run may use (the daemon persists reservations).
    pub first_seq: u64,
    /// Messages kept in the in-memory history (at least 1): the count
    /// bound of the history window, and so of what a node catching up gets.
    pub history_limit: usize,
    /// Payload bytes kept in history (the newest message is kept whatever
    /// its size).
    pub history_max_bytes: usize,
    /// The age bound of the history window (`None`: none).
    pub history_max_age: Option<Duration>,
    /// The wall clock (milliseconds since the Unix epoch) at the `now`
    /// passed to [`Node::new`]: with the monotonic clock, the node's estimate
    /// of wall time for the age bound.
    pub wall_ms_at_start: u64,
    /// The lowest HLC reading this run may stamp a message with: the
    /// highest of an earlier run's own messages, so that a restart with the
    /// wall clock set back cannot order new messages before old ones.
    pub clock_floor: Hlc,
    /// Largest `text` accepted by [`Node::publish`], in bytes; clamped to
    /// [`MAX_TEXT_BYTES`].
    pub max_text_bytes: usize,
    /// Seed of the node's RNG (probe order, fanout choice). The daemon passes
    /// a random value; tests pass a fixed one to replay a run.
    pub rng_seed: u64,
    /// How long a failed or left member stays listed before it is forgotten
    /// (clamped to one second ..= [`MAX_REAP_AFTER`]).
    pub reap_after: Duration,
    /// The cluster keys (`None`: no encryption). With a keyring every
    /// datagram is sealed, and only datagrams sealed under one of its keys
    /// are accepted.
    pub keyring: Option<crate::seal::Keyring>,
    /// The protocol's timings and tunables (intervals, timeouts, fan-outs,
    /// budgets, the bounds on discovery hints): [`ProtocolConfig::default`]
    /// everywhere but in tests that explore other values.
    pub protocol: ProtocolConfig,
}

impl NodeConfig {
    /// A configuration with the defaults for everything but who the node is:
    /// generation 0, first sequence 1, [`DEFAULT_HISTORY_LIMIT`],
    /// [`DEFAULT_HISTORY_MAX_BYTES`], [`DEFAULT_HISTORY_MAX_AGE`], wall clock
    /// 0 at start (tests; the daemon passes the real one), no clock floor,
    /// [`DEFAULT_MAX_TEXT_BYTES`], RNG seed 0, members reaped after
    /// [`DEFAULT_REAP_AFTER`], no keyring, and the default
    /// [`ProtocolConfig`].
    pub fn new(
        key: crate::sign::NodeKey,
        name: impl Into<String>,
        cluster: impl Into<String>,
        advertise_addr: SocketAddr,
    ) -> Self {
        NodeConfig {
            id: key.node_id(),
            key,
            name: name.into(),
            cluster: cluster.into(),
            advertise_addr,
            generation: 0,
            first_seq: 1,
            history_limit: DEFAULT_HISTORY_LIMIT,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            history_max_age: Some(DEFAULT_HISTORY_MAX_AGE),
            wall_ms_at_start: 0,
            clock_floor: Hlc::default(),
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            rng_seed: 0,
            reap_after: DEFAULT_REAP_AFTER,
            keyring: None,
            protocol: ProtocolConfig::default(),
        }
    }
}

/// A member's state, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerState {
    /// Answering probes.
    Alive,
    /// Missed probes; declared failed unless it refutes in time.
    Suspect,
    /// Declared dead by the failure detector.
    Failed,
    /// Left gracefully (`leave`, SIGTERM).
    Left,
}

impl PeerState {
    /// Whether the member is believed to be running (alive or suspect):
    /// those are the members messages are pushed to.
    pub fn is_active(self) -> bool {
        matches!(self, PeerState::Alive | PeerState::Suspect)
    }

    /// Lower-case name, as in the RPC API (`alive`, `suspect`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Failed => "failed",
            PeerState::Left => "left",
        }
    }
}

/// What this node knows of another member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Id.
    pub id: NodeId,
    /// Name (as the member announced it, at most 64 bytes).
    pub name: String,
    /// Gossip address (as the member advertises it).
    pub addr: SocketAddr,
    /// State.
    pub state: PeerState,
    /// When it entered `state`.
    pub since: Instant,
    /// Last datagram received directly from it.
    pub last_seen: Option<Instant>,
    /// Last measured round trip (hello handshake or digest exchange).
    pub rtt: Option<Duration>,
    /// Which run of the member this is (higher after a restart, or after
    /// it renewed itself when wrongly declared failed).
    pub generation: u64,
    /// SWIM incarnation within that run: raised by the member each time it
    /// refutes a suspicion.
    pub incarnation: u16,
    /// Its public key (its id derives from it; its identity is signed with
    /// it).
    pub key: crate::sign::PublicKey,
}

/// A member changed.
///
/// Emitted for every state transition, in order. Also emitted with
/// `previous == Some(member.state)` when a member restarted (a new
/// generation) without a visible state change.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerChange {
    /// The member after the change.
    pub member: Member,
    /// Previous state, `None` if new.
    pub previous: Option<PeerState>,
}

/// Outputs for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message delivered for the first time on this node (including our own).
    Message(Message),
    /// A membership change.
    Peer(PeerChange),
    /// Messages given up for good (see [`Lost`]).
    Lost(Lost),
    /// A node answered our hello at `from` (used by `join`). `from` is the
    /// source address of the answer, normally the address contacted.
    Contacted {
        /// Address that answered.
        from: SocketAddr,
        /// Its id.
        id: NodeId,
        /// Its name.
        name: String,
    },
    /// Keyring answers and changes (see [`KeyringEvent`]).
    Keyring(KeyringEvent),
    /// Another running node uses this node's id and keeps it: give this
    /// node a new key with [`Node::take_new_identity`] (see
    /// [`IdentityInUse`]). Reported once per identity.
    IdentityInUse(IdentityInUse),
    /// A user of this node or of a member came into a chat, left it, or
    /// changed availability, status or display name (see `presence`).
    Presence(PresenceChange),
    /// What became of a direct message this node sent (see
    /// [`Node::send_direct`]). Direct messages themselves, sent or
    /// received, come as [`Event::Message`] with `to` set; they are never
    /// in history.
    DirectStatus(DirectStatus),
}

/// A range of one origin's messages this node will never deliver: no
/// member it asked still held them (they left every history window, e.g.
/// while this node was cut off longer than the window lasts). Reported so
/// the loss is visible, and so a driver that persists seen sets records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// The origin.
    pub origin: NodeId,
    /// First sequence number given up.
    pub first: u64,
    /// Last sequence number given up.
    pub last: u64,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// Encoded datagram (≤ wire::MAX_DATAGRAM_BYTES).
    pub payload: Vec<u8>,
}

/// Why publish refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Empty text.
    #[error("message text is empty")]
    Empty,
    /// Too large.
    #[error("message text is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Bad channel.
    #[error(transparent)]
    Channel(#[from] crate::message::ChannelError),
    /// The node has left.
    #[error("this node has left the cluster")]
    Left,
    /// A user or display name over its limit
    /// ([`crate::message::MAX_USER_BYTES`], [`crate::message::MAX_NICK_BYTES`]).
    #[error("the sender's user or display name is too long")]
    Author,
    /// A draft with a recipient: direct messages are never gossiped.
    #[error("a direct message cannot be published to a channel")]
    Direct,
    /// History is full of messages younger than
    /// [`ProtocolConfig::min_retention`]: taking
    /// another would evict one that members may still be pulling. Retry
    /// after `retry_after` (back-pressure on a sender faster than the
    /// history window allows).
    #[error(
        "the history window is full of messages too young to evict (members may still pull them); retry in {retry_after:?}"
    )]
    Busy {
        /// When the oldest message will be old enough to evict.
        retry_after: Duration,
    },
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handled (every call of [`Node::handle_datagram`]).
    pub datagrams_received: u64,
    /// Datagrams produced.
    pub datagrams_sent: u64,
    /// Bytes in.
    pub bytes_received: u64,
    /// Bytes out.
    pub bytes_sent: u64,
    /// Drops by reason: the [`wire::DecodeError::reason`] names, plus
    /// `from_self`, `after_leave`, `invalid_message`, `invalid_hello`,
    /// `digest_from_non_member`, `gone_from_non_member`, `gone_unsolicited`,
    /// `swim_rejected` (foca refused a packet), `identity_in_use` (SWIM
    /// ignored after [`Event::IdentityInUse`], until a new identity), fragments
    /// (`invalid_fragment`, `fragment_mismatch`, `corrupt_reassembly`),
    /// member sync (`member_digest_from_non_member`,
    /// `member_sync_from_non_member`, `member_sync_unsolicited`,
    /// `invalid_member_sync_identity`), keyring bodies (`keyring_without_key`,
    /// `keyring_unsolicited`, `keyring_answer_from_elsewhere`), direct messages
    /// ([`crate::direct::DirectOpenError::reason`]: `direct_wrong_key`,
    /// `direct_invalid_key`, `direct_bad_box`, `direct_malformed`; and
    /// `invalid_direct`, `invalid_direct_ack`, `stale_direct`: a copy
    /// older than the direct expiry and its slack, acknowledged and not
    /// delivered), encode failures
    /// (`encode_too_large`, `encode_failed`), and presence
    /// (`presence_from_non_member`: a non-member's statement pushed out of
    /// the few held for when it comes up, `presence_stale`: of an earlier
    /// run or another key than the member's, `presence_out_of_bounds`,
    /// `presence_unsorted`, and `presence_user_left_out`: a user this node
    /// could not state, see [`Node::set_presence`]).
    pub dropped: BTreeMap<&'static str, u64>,
    /// Published here.
    pub messages_sent: u64,
    /// First copies received from others.
    pub messages_received: u64,
    /// Duplicate copies.
    pub duplicates: u64,
    /// Messages sent as repairs in answer to digests.
    pub repairs_sent: u64,
    /// Gap pulls sent (a digest of one origin after a sequence gap).
    pub gap_pulls: u64,
    /// Messages given up because no member held them any more (see
    /// [`Lost`]); each also logged.
    pub messages_lost: u64,
    /// Publishes refused with [`PublishError::Busy`].
    pub publishes_refused: u64,
    /// Incomplete large messages dropped for a reassembly bound or timeout
    /// (anti-entropy brings them again).
    pub reassembly_evicted: u64,
    /// Times a suspect's failure was postponed because it was still heard
    /// from (each one a false alarm avoided, or a one-way link).
    pub failures_postponed: u64,
    /// Suspicions of this node it was told of directly, and refuted.
    pub suspicions_refuted: u64,
    /// Times this node renewed its identity (a new generation) after being
    /// declared failed while running.
    pub renewals: u64,
    /// Waits of the failure detector (probe answers, probe periods,
    /// suspicions) this node stretched because it ran behind its inputs
    /// (see [`Node::local_lag`]).
    pub detector_waits_stretched: u64,
    /// Times this node found its id in use by another running node that
    /// keeps it ([`Event::IdentityInUse`]).
    pub identity_conflicts: u64,
    /// Times a message of this node's id that it did not send (a copy of
    /// it elsewhere sent it) made it skip sequence numbers.
    pub own_seq_skips: u64,
    /// Copies of direct messages sent (first copies and retries).
    pub direct_sent: u64,
    /// Direct messages received and delivered here (first copies).
    pub direct_received: u64,
    /// Direct messages given up unacknowledged.
    pub direct_expired: u64,
    /// Datagrams sent again because a member did not acknowledge a direct
    /// push in time (each copy counts; see [`PushAckConfig`]).
    pub retransmissions: u64,
    /// (item, member) pairs given up after
    /// [`PushAckConfig::max_retries`] or because the member went away: left
    /// to gap pulls and anti-entropy.
    pub retransmit_given_up: u64,
    /// (item, member) pairs dropped unacknowledged to stay within
    /// [`PushAckConfig::max_pending`] or
    /// [`PushAckConfig::max_pending_bytes`]: left to anti-entropy.
    pub retransmit_dropped: u64,
    /// Acknowledgements of direct pushes sent.
    pub acks_sent: u64,
}

/// A refused datagram whose sender is most likely configured differently
/// from this node, rather than hostile or broken: returned by
/// [`Node::handle_datagram`] besides the drop counter, because each of
/// these otherwise looks like a silent network ("no peers") on both sides.
/// Anyone can forge one, so whoever reports them must bound how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mismatch {
    /// The header carries another cluster label's hash (`--cluster`);
    /// counted as `wrong_cluster`.
    OtherCluster,
    /// Sealed under a key this node does not hold; counted as
    /// `unknown_key`.
    UnknownKey(crate::seal::KeyId),
    /// Plaintext, and this node has a key; counted as `unsealed_refused`.
    Unsealed,
    /// Sealed, and this node has no key; counted as `sealed_without_key`.
    SealedWithoutKey,
    /// Sealed under a key this node holds, by a sender run it has no
    /// record of, and stamped further from this node's clock than
    /// [`ProtocolConfig::replay_freshness`]: one of the two clocks is off (or
    /// an old capture was replayed); counted as `stale`.
    ClockSkew,
}

impl Mismatch {
    /// The drop counter ([`Stats::dropped`]) this mismatch is counted in.
    pub fn reason(self) -> &'static str {
        match self {
            Mismatch::OtherCluster => wire::DecodeError::WrongCluster.reason(),
            Mismatch::UnknownKey(id) => crate::seal::OpenError::UnknownKey(id).reason(),
            Mismatch::Unsealed => crate::seal::OpenError::Unsealed.reason(),
            Mismatch::SealedWithoutKey => wire::DecodeError::Sealed.reason(),
            Mismatch::ClockSkew => crate::seal::OpenError::Stale.reason(),
        }
    }

    fn of_open_error(err: crate::seal::OpenError) -> Option<Mismatch> {
        match err {
            crate::seal::OpenError::Unsealed => Some(Mismatch::Unsealed),
            crate::seal::OpenError::UnknownKey(id) => Some(Mismatch::UnknownKey(id)),
            crate::seal::OpenError::Stale => Some(Mismatch::ClockSkew),
            // Tampering and replays: not a setting of either node.
            crate::seal::OpenError::BadSeal
            | crate::seal::OpenError::NotSealed
            | crate::seal::OpenError::Replayed => None,
        }
    }

    fn of_decode_error(err: wire::DecodeError) -> Option<Mismatch> {
        match err {
            wire::DecodeError::WrongCluster => Some(Mismatch::OtherCluster),
            wire::DecodeError::Sealed => Some(Mismatch::SealedWithoutKey),
            // Not rossip, or not this version of it, or broken: bad packets.
            wire::DecodeError::TooShort(_)
            | wire::DecodeError::BadMagic
            | wire::DecodeError::UnsupportedVersion(_)
            | wire::DecodeError::UnsupportedFlags(_)
            | wire::DecodeError::Oversized(_)
            | wire::DecodeError::Malformed
            | wire::DecodeError::BadSignature => None,
        }
    }
}

/// The protocol state machine of one rossip node.
pub struct Node {
    /// Configuration after clamping (name, limits).
    config: NodeConfig,
    cluster: ClusterId,
    /// Origin of the microsecond stamps used for round trips.
    epoch: Instant,
    swim: Swim,
    /// This node's memo of verified signatures: every decoder of network
    /// input the node calls checks signatures with it (see
    /// [`crate::sign::Verifier`]). Shared only with the SWIM codec, which
    /// foca owns; no other node sees it.
    verifier: SharedVerifier,
    timers: TimerQueue,
    members: Membership,
    history: History,
    clock: Hlc,
    next_seq: u64,
    /// Fanout and gossip-target choices (foca has its own RNG).
    rng: StdRng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    left: bool,
    /// When a hello last went to an address, to avoid re-sending it when the
    /// driver reports the same address repeatedly (seeds, join).
    hello_sent: BTreeMap<SocketAddr, Instant>,
    /// Unverified discovery hints and their hello rate; see `hints`.
    hints: hints::Hints,
    /// Where the next digest's slice of origins starts (exclusive).
    digest_cursor: Option<NodeId>,
    /// Members that came up and get the next anti-entropy rounds.
    fresh_members: VecDeque<NodeId>,
    /// Messages first received as repairs since the last anti-entropy round
    /// (many means: catch up faster).
    repaired_since_round: usize,
    /// Suspicions this node raised and follows; see `suspicion`.
    suspicions: Suspicions,
    /// Pacing of the immediate gossip of changes; see `swim`.
    gossip_pacing: GossipPacing,
    /// This node's messages published since the last drain, with the wall
    /// clock they were published at: signed together, as one batch, before
    /// anything leaves the node (see `dissemination`).
    unsigned: Vec<(Message, u64, Instant)>,
    /// How far behind its inputs this node runs lately; see `health`.
    health: health::LocalHealth,
    /// Pushes waiting to be packed into datagrams; see `outbox`.
    outbox: Outbox,
    /// Direct pushes waiting for acknowledgement, and acknowledgements owed.
    push_acks: acks::PushAcks,
    /// Large messages being reassembled; see `fragments`.
    reassembly: Reassembly,
    /// Origins with a pull scheduled: whom to ask, and the highest sequence
    /// number a peer showed us (0: only gaps).
    gap_pulls: BTreeMap<NodeId, (NodeId, u64)>,
    /// Origins heard from lately (including this node), and when: listed as
    /// heads in digests.
    heads: BTreeMap<NodeId, Instant>,
    /// When the last new message arrived or was published.
    last_message_at: Option<Instant>,
    /// Addresses this node sent a digest to lately: only their `Gone`
    /// answers are taken.
    asked: BTreeMap<SocketAddr, Instant>,
    /// Seals and opens every datagram when the cluster has a key.
    sealer: Option<crate::seal::Sealer>,
    /// The wall clock (ms since the Unix epoch) at the latest input: the
    /// time stamped into sealed datagrams (coarse is fine: receivers allow
    /// minutes).
    last_wall_ms: u64,
    /// Membership anti-entropy; see `member_sync`.
    member_sync: member_sync::MemberSyncState,
    /// Identities SWIM packets named that this node asked for; see
    /// `identity_pull`.
    identity_pulls: identity_pull::IdentityPulls,
    /// Keyring queries and commands awaiting answers; see `keyring_ops`.
    keyring_requests: keyring_ops::KeyringRequests,
    /// Other nodes seen with this node's id; see `identity_conflict`.
    identity_conflict: identity_conflict::ConflictWatch,
    /// This node's and the members' users in a chat; see `presence`.
    presence: presence::PresenceTable,
    /// Direct messages: the outbox and the ids delivered; see `direct`.
    direct: direct::DirectState,
    /// Direct message ids and nonces (a stream of its own, so direct
    /// messages do not shift gossip's choices).
    direct_rng: StdRng,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.config.id)
            .field("name", &self.config.name)
            .field("generation", &self.swim.identity().generation)
            .field("members", &self.members.len())
            .field("history", &self.history.len())
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Creates a node. It knows no one until [`Node::handle_contact`] or a
    /// datagram from another node.
    pub fn new(mut config: NodeConfig, now: Instant) -> Self {
        truncate_at_char_boundary(&mut config.name, MAX_NAME_BYTES);
        config.id = config.key.node_id();
        config.first_seq = config.first_seq.max(1);
        config.history_limit = config.history_limit.max(1);
        config.max_text_bytes = config.max_text_bytes.clamp(1, MAX_TEXT_BYTES);
        config.reap_after = config
            .reap_after
            .clamp(Duration::from_secs(1), MAX_REAP_AFTER);
        let identity = wire::Identity::own(
            &config.key,
            config.advertise_addr,
            config.name.clone(),
            config.generation,
        );
        let verifier = SharedVerifier::default();
        let swim = Swim::new(
            identity,
            StdRng::seed_from_u64(config.rng_seed),
            &config.protocol,
            config.reap_after,
            Arc::clone(&verifier),
        );
        // A different stream than foca's, so that our choices do not shift
        // foca's probe order (and vice versa).
        let rng = StdRng::seed_from_u64(config.rng_seed ^ 0x9e37_79b9_7f4a_7c15);
        // The nonce's run number comes from this run's RNG seed (random per
        // run in the daemon), so nonces never repeat across runs under one key.
        let sealer = config.keyring.clone().map(|keyring| {
            let mut run_rng = StdRng::seed_from_u64(config.rng_seed ^ 0x5ea1_5ea1_5ea1_5ea1);
            crate::seal::Sealer::new(keyring, rand::Rng::next_u64(&mut run_rng))
                .with_replay_freshness(config.protocol.replay_freshness)
        });
        let mut timers = TimerQueue::default();
        timers.schedule(
            now + config.protocol.anti_entropy_interval,
            TimerKind::AntiEntropy,
        );
        Node {
            cluster: ClusterId::from_label(&config.cluster),
            epoch: now,
            next_seq: config.first_seq,
            history: History::new(
                history::Window {
                    limit: config.history_limit,
                    max_bytes: config.history_max_bytes,
                    max_age_ms: config
                        .history_max_age
                        .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                },
                config.id,
            ),
            swim,
            verifier,
            timers,
            members: Membership::default(),
            clock: config.clock_floor,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            left: false,
            hello_sent: BTreeMap::new(),
            hints: hints::Hints::new(config.protocol.hints),
            digest_cursor: None,
            fresh_members: VecDeque::new(),
            repaired_since_round: 0,
            suspicions: Suspicions::default(),
            gossip_pacing: GossipPacing::default(),
            unsigned: Vec::new(),
            health: health::LocalHealth::default(),
            outbox: Outbox::default(),
            push_acks: acks::PushAcks::default(),
            reassembly: Reassembly::new(&config.protocol),
            gap_pulls: BTreeMap::new(),
            heads: BTreeMap::new(),
            last_message_at: None,
            asked: BTreeMap::new(),
            sealer,
            last_wall_ms: config.wall_ms_at_start,
            member_sync: member_sync::MemberSyncState::new(config.rng_seed),
            identity_pulls: identity_pull::IdentityPulls::default(),
            keyring_requests: keyring_ops::KeyringRequests::new(&config.protocol),
            identity_conflict: identity_conflict::ConflictWatch::default(),
            presence: presence::PresenceTable::default(),
            direct: direct::DirectState::default(),
            direct_rng: StdRng::seed_from_u64(config.rng_seed ^ 0xd14e_c7d1_4ec7),
            config,
        }
    }

    /// This node's public key (its id derives from it).
    pub fn public_key(&self) -> crate::sign::PublicKey {
        self.config.key.public()
    }

    /// The timings and tunables this node runs with.
    pub fn protocol(&self) -> &ProtocolConfig {
        &self.config.protocol
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// A datagram arrived from `from`.
    ///
    /// Anything that fails a check is dropped and counted in
    /// [`Stats::dropped`] by reason; nothing an input contains can panic.
    /// A drop that says the sender is configured differently from this
    /// node is also returned (see [`Mismatch`]), so that the driver, which
    /// owns a clock, can tell the operator.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Option<Mismatch> {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if self.left {
            self.count_drop("after_leave");
            return None;
        }
        let opened;
        self.last_wall_ms = self.wall_ms(now);
        let bytes = match &mut self.sealer {
            None => bytes,
            Some(sealer) => match sealer.open(bytes, self.cluster, self.last_wall_ms) {
                Ok(plain) => {
                    opened = plain;
                    &opened[..]
                }
                // Not a sealed rossip datagram of ours: the wire decoder
                // names what it is (bad magic, another cluster, …).
                Err(crate::seal::OpenError::NotSealed) => bytes,
                // Sealed: the sender is inside what failed to open, so the
                // address is all there is to name.
                Err(err) => {
                    tracing::debug!(addr = %from, %err, "dropping datagram");
                    self.count_drop(err.reason());
                    return Mismatch::of_open_error(err);
                }
            },
        };
        // The verifier's guard ends with this statement, before the node
        // is changed.
        let decoded = wire::decode(bytes, self.cluster, &mut lock_verifier(&self.verifier));
        let (header, body) = match decoded {
            Ok(decoded) => decoded,
            // Not decoded, so no sender to name: only the address.
            Err(err) => {
                tracing::debug!(addr = %from, %err, "dropping datagram");
                self.count_drop(err.reason());
                return Mismatch::of_decode_error(err);
            }
        };
        if header.sender == self.config.id {
            // A copy of this node elsewhere greets us (mDNS finds it under
            // another name): its signed identity says where it runs.
            if let wire::Body::Hello(hello) = &body {
                self.check_own_identity(&hello.identity);
            }
            self.count_drop("from_self");
            return None;
        }
        match body {
            wire::Body::Hello(hello) => self.on_hello(from, header.sender, hello, now),
            wire::Body::Swim(payload) => self.on_swim(header.sender, from, &payload, now),
            wire::Body::Push(push) => {
                // A direct push is its origin's own: acknowledged (after
                // handling, so the seen ranges sent include it).
                let direct = !push.relay;
                let pieces = if direct {
                    acks::own_pieces(header.sender, &push.items)
                } else {
                    Vec::new()
                };
                self.on_items(header.sender, push.items, push.relay, false, now);
                if direct {
                    self.owe_ack(header.sender, pieces, now);
                }
            }
            wire::Body::Ack(ack) => self.on_push_ack(header.sender, &ack, now),
            wire::Body::Repair(items) => self.on_items(header.sender, items, false, true, now),
            wire::Body::Gone(ranges) => self.on_gone(header.sender, ranges, now),
            wire::Body::Leave { generation, sig } => {
                self.on_leave(header.sender, generation, sig, now);
            }
            wire::Body::Digest(digest) => self.on_digest(header.sender, digest, now),
            wire::Body::Suspected {
                generation,
                incarnation,
            } => self.on_suspected(header.sender, generation, incarnation, now),
            wire::Body::Left {
                id,
                generation,
                sig,
            } => {
                self.on_left_notice(header.sender, id, generation, sig, now);
            }
            wire::Body::MemberDigest {
                stamp_us,
                after,
                through,
                fingerprints,
            } => self.on_member_digest(header.sender, stamp_us, after, through, fingerprints),
            wire::Body::MemberSync {
                reply_to,
                complete,
                identities,
            } => self.on_member_sync(header.sender, reply_to, complete, identities, now),
            wire::Body::MemberSummary {
                stamp_us,
                count,
                sum,
            } => self.on_member_summary(header.sender, stamp_us, count, sum),
            body @ (wire::Body::KeyringQuery { .. }
            | wire::Body::KeyringReport { .. }
            | wire::Body::KeyringCommand { .. }
            | wire::Body::KeyringAck { .. }) => {
                self.on_keyring_body(header.sender, from, body, now);
            }
            wire::Body::Presence(record) => self.on_presence(record),
            wire::Body::Direct(sealed) => self.on_direct(header.sender, from, &sealed),
            wire::Body::IdentityRequest(runs) => self.on_identity_request(header.sender, runs),
            wire::Body::Identities(identities) => self.on_identities(identities, now),
        }
        // After handling, so that the first datagram of a new member counts.
        self.members.saw(header.sender, now);
        self.wake_waiting_direct(now);
        None
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.last_wall_ms = self.wall_ms(now);
        if let Some(due) = self.timers.next_deadline() {
            // A timer fired late: this node runs behind (see `health`).
            self.health.observe(
                now.saturating_duration_since(due),
                now,
                &self.config.protocol,
            );
        }
        for timer in self.timers.take_due(now) {
            match timer {
                TimerKind::Swim(timer) => self.on_swim_timer(timer, now),
                TimerKind::AntiEntropy => self.anti_entropy_round(now),
                TimerKind::Nudge(id, chain) => self.on_nudge_timer(id, chain, now),
                TimerKind::DeferredGossip => self.on_deferred_gossip(now),
                TimerKind::GapPull(origin) => self.on_gap_pull(origin, now),
                TimerKind::MemberSync => self.member_sync_round(now),
                TimerKind::Hints(deadline) => self.on_hints_timer(deadline, now),
                TimerKind::PresenceRefresh => self.on_presence_refresh(now),
                TimerKind::Direct => self.on_direct_timer(now),
                TimerKind::Retransmit => self.on_retransmit_timer(now),
                TimerKind::AckDue => self.send_due_acks(Some(now)),
            }
        }
        self.wake_waiting_direct(now);
    }

    /// The datagram handled next (or the ones just handled) waited `lag`
    /// between reaching the host and reaching this node: how far the
    /// driver runs behind its socket (e.g. measured with kernel receive
    /// timestamps). A node that runs behind gives its peers more time
    /// before it suspects them; see `health`. Call it as often as is
    /// convenient (per datagram or per batch).
    pub fn handle_receive_lag(&mut self, lag: Duration, now: Instant) {
        self.health.observe(lag, now, &self.config.protocol);
    }

    /// How far behind its inputs this node ran lately (see
    /// [`Node::handle_receive_lag`]); zero when it keeps up.
    pub fn local_lag(&self, now: Instant) -> Duration {
        self.health.lag(now, &self.config.protocol)
    }

    /// An address to contact that a user or the configuration named (seed,
    /// join, a peer cached by an earlier run): sends it a hello; it becomes
    /// a member when it answers. Skipped for our own address, for addresses
    /// of alive or suspect members, and for an address contacted less than
    /// [`ProtocolConfig::hello_min_interval`] ago, so the driver may call this repeatedly.
    pub fn handle_contact(&mut self, addr: SocketAddr, now: Instant) {
        self.contact(addr, now);
    }

    /// An address a discovery record (mDNS) names: unverified, as anyone
    /// can forge one. It gets hellos within the bounds of
    /// [`ProtocolConfig::hints`] (a capped set, a backoff per address, a rate
    /// for all), until a node answers there. Skipped for our own address
    /// and for addresses of alive or suspect members; the driver may call
    /// this as often as records come.
    pub fn handle_hint(&mut self, addr: SocketAddr, now: Instant) {
        self.hint(addr, now);
    }

    /// Publishes a message from this node: validates it, stamps it and
    /// returns its id. At the next drain ([`Node::poll_event`],
    /// [`Node::poll_transmit`]) it is signed, together with everything else
    /// published since the last one (one signature for the batch, see
    /// [`crate::message::sign_batch`]), stored, delivered locally
    /// ([`Event::Message`]) and pushed to the members.
    pub fn publish(
        &mut self,
        draft: &Draft,
        wall_ms: u64,
        now: Instant,
    ) -> Result<MessageId, PublishError> {
        // The message's time is the HLC reading derived from `wall_ms`;
        // `now` dates the activity that speeds up anti-entropy.
        self.last_wall_ms = self.wall_ms(now);
        self.publish_message(draft, wall_ms, now)
    }

    /// Leaves the cluster gracefully: tells every alive or suspect member
    /// (twice, for a little loss tolerance), lets foca declare us down, and
    /// stops: afterwards datagrams are dropped, timers stop and
    /// [`Node::publish`] fails with [`PublishError::Left`]. Returns how many
    /// members were notified. Calling it again does nothing and returns 0.
    pub fn leave(&mut self, now: Instant) -> usize {
        self.leave_cluster(now)
    }

    /// The sequence number the next [`Node::publish`] will use (the daemon
    /// persists reservations ahead of it).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every member known (not this node), ordered by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    /// The member `id`, in any state (`None` before this node heard of it):
    /// for names in logs and views.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// The member whose gossip address is `addr` (an alive or suspect one
    /// first), if any. A linear scan: meant for error paths such as a
    /// failed send, not for every datagram.
    pub fn member_at(&self, addr: SocketAddr) -> Option<&Member> {
        self.members.at_addr(addr)
    }

    /// History, oldest first (by [`crate::message::OrderKey`]).
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Message> {
        self.history.iter()
    }

    /// Messages in history now.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// History within `range` of [`crate::message::OrderKey`]s, oldest
    /// first: for reading a long history in pages.
    pub fn history_range(
        &self,
        range: (
            std::ops::Bound<crate::message::OrderKey>,
            std::ops::Bound<crate::message::OrderKey>,
        ),
    ) -> impl DoubleEndedIterator<Item = &Message> {
        self.history.range(range)
    }

    /// Look up a message in history.
    pub fn message(&self, id: &MessageId) -> Option<&Message> {
        self.history.get(id)
    }

    /// Puts back messages an earlier run of this node held (from the
    /// daemon's store), without events and without pushing them: they were
    /// delivered then. Call before the first input; restore the seen sets
    /// with [`Node::restore_seen`] too, for what was evicted.
    pub fn restore_history(&mut self, messages: impl IntoIterator<Item = Message>) {
        let now_ms = self.config.wall_ms_at_start;
        for message in messages {
            self.clock.observe(message.ts);
            // They arrived in an earlier run: at the latest when stamped
            // (a restart with a full window must not hold sends for 3 s).
            let arrived = message.ts.ms.min(now_ms);
            self.history.restore(message, arrived);
        }
        self.drain_history_losses();
    }

    /// Marks `ranges` (inclusive `(first, last)`) of `origin` as already
    /// delivered, as an earlier run recorded with [`Node::seen_ranges`]:
    /// they are never delivered again.
    pub fn restore_seen(&mut self, origin: NodeId, ranges: &[(u64, u64)]) {
        for &(first, last) in ranges {
            self.history.mark_seen(origin, first, last);
        }
    }

    /// Which sequence numbers of `origin` were delivered (or given up), as
    /// inclusive ranges, lowest first: what a driver persists so that a
    /// restarted node delivers nothing twice.
    pub fn seen_ranges(&self, origin: &NodeId) -> Vec<(u64, u64)> {
        self.history
            .seen(origin)
            .map(|seen| seen.ranges().collect())
            .unwrap_or_default()
    }

    /// The ids of the cluster keys this node holds (the sealing one
    /// first); empty without encryption.
    pub fn key_ids(&self) -> Vec<crate::seal::KeyId> {
        self.sealer
            .as_ref()
            .map(|sealer| sealer.keyring().ids())
            .unwrap_or_default()
    }

    /// Payload bytes held in history.
    pub fn history_bytes(&self) -> usize {
        self.history.bytes()
    }

    /// Direct pushes waiting for acknowledgement: (item, member) pairs, and
    /// the bytes of the items held (each once).
    pub fn retransmit_usage(&self) -> (usize, usize) {
        self.push_acks.usage()
    }

    /// Large messages being reassembled: how many, and the bytes of their
    /// pieces held.
    pub fn reassembly_usage(&self) -> (usize, usize) {
        (self.reassembly.len(), self.reassembly.bytes())
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counters of discovery hints ([`Node::handle_hint`]).
    pub fn hint_stats(&self) -> &HintStats {
        self.hints.stats()
    }

    /// Hinted addresses held now that no node has answered at yet.
    pub fn unverified_hints(&self) -> usize {
        self.hints.len()
    }

    /// Whether leave() was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// This node's name (after truncation to 64 bytes).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// This node's current generation (the configured one, plus one for
    /// every time it had to renew itself after being declared failed).
    pub fn generation(&self) -> u64 {
        self.swim.identity().generation
    }

    /// Next datagram to send. Pushes queued by the inputs since the last
    /// drain are packed into datagrams on the first call, so draining after
    /// a burst of inputs batches their messages.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.sign_published();
        if !self.outbox.is_empty() {
            self.flush_outbox();
        }
        if self.push_acks.has_immediate() {
            self.send_due_acks(None);
        }
        self.transmits.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.sign_published();
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called; `None` after
    /// leaving.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        self.timers.next_deadline()
    }

    /// Encodes `body` to `dst` and queues it; an encoding failure (a bug, as
    /// every body is built to fit) is counted, not sent.
    fn send(&mut self, dst: SocketAddr, body: &wire::Body) {
        self.send_many(&[dst], body);
    }

    /// Encodes `body` once and queues it to every address in `dsts`.
    fn send_many(&mut self, dsts: &[SocketAddr], body: &wire::Body) {
        let header = Header {
            flags: 0,
            cluster: self.cluster,
            sender: self.config.id,
        };
        let encoded = wire::encode(&header, body).and_then(|plain| match &mut self.sealer {
            None => Ok(plain),
            Some(sealer) => sealer
                .seal(&plain, self.last_wall_ms)
                .ok_or(wire::EncodeError::Seal),
        });
        match encoded {
            Ok(payload) => {
                let len = payload.len() as u64;
                self.stats.datagrams_sent += dsts.len() as u64;
                self.stats.bytes_sent += len * dsts.len() as u64;
                // A copy for every destination but the last, which takes it.
                if let Some((last, others)) = dsts.split_last() {
                    for dst in others {
                        self.transmits.push_back(Transmit {
                            dst: *dst,
                            payload: payload.clone(),
                        });
                    }
                    self.transmits.push_back(Transmit {
                        dst: *last,
                        payload,
                    });
                }
            }
            Err(err) => {
                // A bug, so rare: name the peer when there is just one.
                let member = match dsts {
                    [dst] => self.members.at_addr(*dst),
                    _ => None,
                };
                tracing::warn!(
                    peer = member.map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                    peer_id = member.map(|m| tracing::field::display(m.id.short())),
                    ?dsts,
                    %err,
                    "could not encode datagram"
                );
                self.count_drop(err.reason());
            }
        }
    }

    /// This node's estimate of the wall clock (ms since the Unix epoch) at
    /// `now`: the configured reading at start plus monotonic time since.
    fn wall_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_millis();
        self.config
            .wall_ms_at_start
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// Reports gaps the history gave up to stay bounded (too many gaps in
    /// one origin's seen set) as [`Event::Lost`].
    fn drain_history_losses(&mut self) {
        for lost in self.history.take_lost() {
            let count = lost.last.saturating_sub(lost.first).saturating_add(1);
            self.stats.messages_lost = self.stats.messages_lost.saturating_add(count);
            tracing::warn!(
                origin_name = self
                    .members
                    .get(&lost.origin)
                    .map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                origin = %lost.origin.short(),
                first = lost.first,
                last = lost.last,
                "gave up on messages: too many gaps from one origin"
            );
            self.events.push_back(Event::Lost(lost));
        }
    }

    fn count_drop(&mut self, reason: &'static str) {
        *self.stats.dropped.entry(reason).or_insert(0) += 1;
    }

    /// Microseconds since this node was created: the stamps round trips are
    /// measured with.
    fn stamp_us(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// The round trip since `stamp_us` (a stamp of ours a peer echoed), if
    /// plausible: a peer could echo anything, and a stamp from the future or
    /// over [`ProtocolConfig::max_plausible_rtt`] ago is not a measurement.
    fn rtt_since(&self, stamp_us: u64, now: Instant) -> Option<Duration> {
        let now_us = self.stamp_us(now);
        now_us
            .checked_sub(stamp_us)
            .map(Duration::from_micros)
            .filter(|rtt| *rtt <= self.config.protocol.max_plausible_rtt)
    }
}

/// Shortens `s` to at most `max` bytes without splitting a character.
pub(crate) fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Sim;

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn each_node_verifies_with_a_memo_of_its_own() {
        let mut sim = Sim::new(Instant::now(), 0x5eed);
        for name in ["a", "b", "c"] {
            sim.add_node(name);
        }
        sim.contact(1, 0);
        let all_alive = |sim: &Sim| {
            [(0, 1), (1, 0)]
                .iter()
                .all(|&(a, b)| sim.state(a, b) == Some(PeerState::Alive))
        };
        assert!(sim.run_until(Duration::from_secs(10), all_alive));
        let memo = |sim: &Sim, index: usize| lock_verifier(&sim.node(index).verifier).memo_len();
        assert!(
            memo(&sim, 0) > 0 && memo(&sim, 1) > 0,
            "a and b verified each other"
        );
        assert_eq!(memo(&sim, 2), 0, "c heard nothing, so it remembers nothing");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn a_node_renews_its_own_identity_and_no_other() {
        let mut sim = Sim::new(Instant::now(), 0x5eed);
        sim.add_node("a");
        sim.add_node("b");
        sim.contact(1, 0);
        assert!(sim.run_until(Duration::from_secs(10), |sim| {
            sim.state(0, 1) == Some(PeerState::Alive)
        }));
        // b's identity as a holds it (decoded from the network): no key,
        // so a cannot make b's next run, although both run in this process.
        let b_as_seen_by_a = sim
            .node(0)
            .members
            .active_identity(Sim::id(1))
            .expect("b is a member of a")
            .clone();
        assert!(b_as_seen_by_a.renewed().is_none());
        let own = sim
            .node(1)
            .swim
            .identity()
            .renewed()
            .expect("b renews itself");
        assert_eq!(own.generation, sim.node(1).generation() + 1);
    }
}
