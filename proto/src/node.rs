//! The sans-IO gossip node. SKELETON: signatures are the contract; bodies are being written.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::{MessageId, NodeId};
use crate::message::Message;

/// Static configuration of a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// This node's name (≤ 64 bytes; longer is truncated at a char boundary).
    pub name: String,
    /// Cluster label; datagrams of other clusters are dropped and counted.
    pub cluster: String,
    /// The gossip address other nodes should use to reach this one.
    pub advertise_addr: SocketAddr,
    /// Distinguishes this run from earlier runs of the same node id, so that a
    /// restarted node wins over its own old (failed/left) identity. The daemon
    /// passes e.g. the Unix time in seconds at start.
    pub generation: u64,
    /// First sequence number this run may use (the daemon persists reservations).
    pub first_seq: u64,
    /// Messages kept in the in-memory history.
    pub history_limit: usize,
    /// Largest `text` accepted by [`Node::publish`], in bytes.
    pub max_text_bytes: usize,
    /// How many members an eager push goes to.
    pub push_fanout: usize,
    /// Seed of the node's RNG (probe order, fanout choice).
    pub rng_seed: u64,
}

/// A member's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerState {
    /// Answering probes.
    Alive,
    /// Missed probes.
    Suspect,
    /// Declared dead.
    Failed,
    /// Left gracefully.
    Left,
}

/// What this node knows of another member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Id.
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Gossip address.
    pub addr: SocketAddr,
    /// State.
    pub state: PeerState,
    /// When it entered `state`.
    pub since: Instant,
    /// Last datagram received directly from it.
    pub last_seen: Option<Instant>,
    /// Last measured round trip.
    pub rtt: Option<Duration>,
}

/// A member changed.
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
    /// A node answered our hello at `from` (used by `join`).
    Contacted {
        /// Address that answered.
        from: SocketAddr,
        /// Its id.
        id: NodeId,
        /// Its name.
        name: String,
    },
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
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handled.
    pub datagrams_received: u64,
    /// Datagrams produced.
    pub datagrams_sent: u64,
    /// Bytes in.
    pub bytes_received: u64,
    /// Bytes out.
    pub bytes_sent: u64,
    /// Drops by reason.
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Published here.
    pub messages_sent: u64,
    /// First copies received from others.
    pub messages_received: u64,
    /// Duplicate copies.
    pub duplicates: u64,
}

/// The node.
#[derive(Debug)]
pub struct Node {}

impl Node {
    /// Creates a node.
    pub fn new(config: NodeConfig, now: Instant) -> Self {
        let _ = (config, now);
        todo!()
    }
    /// This node's id.
    pub fn id(&self) -> NodeId {
        todo!()
    }
    /// A datagram arrived.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let _ = (from, bytes, now);
        todo!()
    }
    /// Timers due at or before now.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    /// An address to contact (mDNS, seed, join).
    pub fn handle_contact(&mut self, addr: SocketAddr, now: Instant) {
        let _ = (addr, now);
        todo!()
    }
    /// Publish.
    pub fn publish(
        &mut self,
        channel: &str,
        text: &str,
        wall_ms: u64,
        now: Instant,
    ) -> Result<Message, PublishError> {
        let _ = (channel, text, wall_ms, now);
        todo!()
    }
    /// Leave.
    pub fn leave(&mut self, now: Instant) -> usize {
        let _ = now;
        todo!()
    }
    /// Next seq.
    pub fn next_seq(&self) -> u64 {
        todo!()
    }
    /// Members.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        std::iter::empty()
    }
    /// History, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Message> {
        std::iter::empty()
    }
    /// Look up a message in history.
    pub fn message(&self, id: &MessageId) -> Option<&Message> {
        let _ = id;
        todo!()
    }
    /// Counters.
    pub fn stats(&self) -> &Stats {
        todo!()
    }
    /// Whether leave() was called.
    pub fn has_left(&self) -> bool {
        todo!()
    }
    /// Next datagram.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }
    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }
    /// Next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
}
