//! Direct messages: one sender, one recipient node, sealed end to end (see
//! [`crate::direct`]), never gossiped.
//!
//! The sender keeps each direct message in an outbox until the recipient
//! acknowledges it: it sends at once if the recipient is alive (or
//! suspect), then again after [`ProtocolConfig::direct_retry_initial`],
//! doubling up to [`ProtocolConfig::direct_retry_max`]. While the recipient
//! is failed, left or unknown, the message waits, and goes the moment the
//! recipient is alive again (checked after every input, so a membership
//! change is acted on in the same turn). A message not acknowledged within
//! [`ProtocolConfig::direct_expiry`] of its sending is given up
//! ([`DirectOutcome::Expired`]). The outbox is bounded in count and bytes;
//! [`Node::send_direct`] refuses past either bound.
//!
//! The recipient acknowledges every copy it can open (acks get lost too),
//! but only once the message is saved: acks come out apart from other
//! datagrams ([`Node::poll_direct_ack`]), and a driver with a store sends
//! them only after the message is committed (a recipient that dies first
//! sends no ack, so the sender tries again). It delivers a message once: it remembers the ids it delivered lately
//! ([`ProtocolConfig::direct_dedup_memory`] of them; a driver with a store
//! also checks the store, which outlives a restart). A copy older than
//! [`ProtocolConfig::direct_expiry`] and [`ProtocolConfig::direct_clock_slack`]
//! is acknowledged and never delivered: no sender still keeps it, so it is
//! a replay or a copy of one delivered and forgotten since.
//!
//! Ids: a direct message's sequence number has its top bit set and 63
//! random low bits from the node's RNG. It never takes a number of the
//! origin's gossip sequence, so no node ever sees a gap there to pull, and
//! the recipient learns nothing about how many channel messages the origin
//! sent. Two direct messages of one origin share an id with probability
//! about n²/2⁶⁴.
//!
//! A direct message travels in one datagram: the whole signed message,
//! sealed, must fit [`crate::wire::MAX_BODY_BYTES`]; a larger one is
//! refused ([`DirectError::TooLarge`], which names the largest text that
//! would fit).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::timers::TimerKind;
use super::{Event, Node};
use crate::direct::{self, DirectPlain, NONCE_BYTES, SealedDirect};
use crate::id::{MessageId, NodeId};
use crate::message::{Draft, MAX_NICK_BYTES, MAX_USER_BYTES, Message, validate_channel};
use crate::wire::{self, Body, Header};

/// The bit every direct message's sequence number has set (and no gossip
/// sequence number ever reaches).
pub const DIRECT_SEQ_BIT: u64 = 1 << 63;

/// Whether `id` names a direct message (see the module docs).
pub fn is_direct_id(id: &MessageId) -> bool {
    id.seq & DIRECT_SEQ_BIT != 0
}

/// What became of a direct message this node sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectStatus {
    /// The message.
    pub id: MessageId,
    /// Its recipient node.
    pub recipient: NodeId,
    /// What became of it.
    pub outcome: DirectOutcome,
}

/// See [`DirectStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectOutcome {
    /// The recipient acknowledged it.
    Delivered,
    /// Not acknowledged within [`ProtocolConfig::direct_expiry`]: given up.
    Expired,
}

impl DirectOutcome {
    /// Lower-case name, as in the RPC API.
    pub fn as_str(&self) -> &'static str {
        match self {
            DirectOutcome::Delivered => "delivered",
            DirectOutcome::Expired => "expired",
        }
    }
}

/// The acknowledgement of a direct message received here, held apart
/// from other datagrams ([`Node::poll_direct_ack`]): a driver sends it
/// only once the message is durably saved, and drops it otherwise (the
/// sender sends the message again; its copy is deduplicated here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectAck {
    /// The message acknowledged.
    pub id: MessageId,
    /// The datagram carrying the ack.
    pub transmit: super::Transmit,
}

/// A direct message an earlier run sent and had no acknowledgement for:
/// what a driver persists and gives back to [`Node::restore_direct`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDirect {
    /// The message, as signed then.
    pub message: Message,
    /// When it expires, in wall-clock ms since the Unix epoch.
    pub expires_ms: u64,
}

/// Why [`Node::send_direct`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectError {
    /// The draft names no recipient.
    #[error("a direct message needs a recipient")]
    NoRecipient,
    /// The recipient is no node this node has heard of (its key is
    /// needed to seal the message).
    #[error("the recipient node {0} is not known here")]
    UnknownRecipient(NodeId),
    /// Empty text.
    #[error("message text is empty")]
    Empty,
    /// The sealed message would not fit one datagram (or the text is over
    /// the node's [`super::NodeConfig::max_text_bytes`]).
    #[error(
        "a direct message travels in one datagram: this text is {size} bytes, at most {max} fit"
    )]
    TooLarge {
        /// The text's size.
        size: usize,
        /// The largest text that would fit with the same other fields.
        max: usize,
    },
    /// Bad channel.
    #[error(transparent)]
    Channel(#[from] crate::message::ChannelError),
    /// A user or display name over its limit.
    #[error("the sender's user or display name is too long")]
    Author,
    /// The outbox holds [`ProtocolConfig::direct_max_pending`] messages
    /// or [`ProtocolConfig::direct_max_pending_bytes`] bytes not yet
    /// acknowledged.
    #[error(
        "{count} direct messages ({bytes} bytes) are waiting for their recipients; the limits are {max_count} and {max_bytes} bytes"
    )]
    QueueFull {
        /// Messages waiting.
        count: usize,
        /// Their bytes.
        bytes: usize,
        /// The count bound.
        max_count: usize,
        /// The bytes bound.
        max_bytes: usize,
    },
    /// The node has left.
    #[error("this node has left the cluster")]
    Left,
}

/// One message waiting for its acknowledgement.
#[derive(Debug)]
struct Outgoing {
    message: Message,
    /// Sealed at its first sending (the recipient's key may be unknown
    /// before), then resent as it is.
    sealed: Option<SealedDirect>,
    expires_ms: u64,
    /// When to send next; `None`: when the recipient is alive again.
    next_try: Option<Instant>,
    backoff: Duration,
}

/// The outbox and the memory of delivered ids; owned by the [`Node`].
#[derive(Debug, Default)]
pub(super) struct DirectState {
    outgoing: BTreeMap<MessageId, Outgoing>,
    bytes: usize,
    /// The recipients some message waits for (to be alive again).
    waiting: BTreeSet<NodeId>,
    /// Ids delivered here lately, oldest first, and as a set.
    delivered_order: VecDeque<MessageId>,
    delivered: BTreeSet<MessageId>,
    /// The earliest direct timer in the queue.
    timer_at: Option<Instant>,
    /// Acks of received messages, for the driver to send once saved.
    acks: VecDeque<DirectAck>,
    /// Keys of nodes that are no members now (reaped, or not seen yet in
    /// this run) that the driver knows: what a message to them is sealed
    /// to until they are back. Bounded by [`MAX_KNOWN_KEYS`].
    known_keys: BTreeMap<NodeId, crate::sign::PublicKey>,
}

/// Keys of non-members held for direct messages, at most (past it one is
/// forgotten, by id order: any will do, as the driver teaches the key
/// again at every send).
pub const MAX_KNOWN_KEYS: usize = 1024;

impl DirectState {
    fn remember_delivered(&mut self, id: MessageId, memory: usize) -> bool {
        if !self.delivered.insert(id) {
            return false;
        }
        self.delivered_order.push_back(id);
        while self.delivered_order.len() > memory.max(1) {
            if let Some(old) = self.delivered_order.pop_front() {
                self.delivered.remove(&old);
            }
        }
        true
    }

    fn remove(&mut self, id: &MessageId) -> Option<Outgoing> {
        let entry = self.outgoing.remove(id)?;
        self.bytes = self.bytes.saturating_sub(entry.message.payload_len());
        Some(entry)
    }
}

impl Node {
    /// Sends a direct message to `draft.to`: validates, signs and keeps it
    /// (see the module docs), delivers it locally ([`Event::Message`], with
    /// `to` set) and sends it if the recipient is alive. Outcomes come as
    /// [`Event::DirectStatus`]. A message to this node itself (another
    /// user here) is delivered at once.
    pub fn send_direct(
        &mut self,
        draft: &Draft,
        wall_ms: u64,
        now: Instant,
    ) -> Result<Message, DirectError> {
        if self.left {
            return Err(DirectError::Left);
        }
        self.last_wall_ms = self.wall_ms(now);
        let recipient = draft.to.as_ref().ok_or(DirectError::NoRecipient)?.node;
        if draft.text.is_empty() {
            return Err(DirectError::Empty);
        }
        if draft.text.len() > self.config.max_text_bytes {
            return Err(DirectError::TooLarge {
                size: draft.text.len(),
                max: self.config.max_text_bytes,
            });
        }
        validate_channel(&draft.channel)?;
        let author = &draft.author;
        if author.user.len() > MAX_USER_BYTES
            || author
                .nick
                .as_ref()
                .is_some_and(|n| n.len() > MAX_NICK_BYTES)
        {
            return Err(DirectError::Author);
        }
        let own = self.config.id;
        let recipient_key = if recipient == own {
            self.config.key.public()
        } else {
            self.members
                .get(&recipient)
                .map(|m| m.key)
                .or_else(|| self.direct.known_keys.get(&recipient).copied())
                .ok_or(DirectError::UnknownRecipient(recipient))?
        };
        let protocol = &self.config.protocol;
        let (count, bytes) = (self.direct.outgoing.len(), self.direct.bytes);
        let size = draft.text.len() + draft.channel.len() + self.config.name.len();
        if recipient != own
            && (count >= protocol.direct_max_pending
                || bytes.saturating_add(size) > protocol.direct_max_pending_bytes)
        {
            return Err(DirectError::QueueFull {
                count,
                bytes,
                max_count: protocol.direct_max_pending,
                max_bytes: protocol.direct_max_pending_bytes,
            });
        }
        let seq = DIRECT_SEQ_BIT | (rand::Rng::next_u64(&mut self.direct_rng) >> 1);
        let message = Message::signed(
            &self.config.key,
            seq,
            self.config.name.clone(),
            self.clock.tick(wall_ms),
            draft.clone(),
        );
        // Checked by sealing it (the nonce does not change the size).
        let sealed = direct::seal(
            &self.config.key,
            &recipient_key,
            [0; NONCE_BYTES],
            &DirectPlain::Message(Box::new(message.clone())),
        )
        .ok_or(DirectError::UnknownRecipient(recipient))?;
        let body_len = encoded_body_len(&sealed);
        if body_len > wire::MAX_BODY_BYTES {
            let excess = body_len - wire::MAX_BODY_BYTES;
            return Err(DirectError::TooLarge {
                size: draft.text.len(),
                // Less one or two bytes: the length prefix may shrink too.
                max: draft.text.len().saturating_sub(excess + 2),
            });
        }
        self.events.push_back(Event::Message(message.clone()));
        if recipient == own {
            self.direct
                .remember_delivered(message.id, self.config.protocol.direct_dedup_memory);
            self.events.push_back(Event::DirectStatus(DirectStatus {
                id: message.id,
                recipient,
                outcome: DirectOutcome::Delivered,
            }));
            return Ok(message);
        }
        let expiry =
            u64::try_from(self.config.protocol.direct_expiry.as_millis()).unwrap_or(u64::MAX);
        self.add_outgoing(message.clone(), wall_ms.saturating_add(expiry), now);
        self.send_due_direct(now);
        Ok(message)
    }

    /// Teaches the key of a node that may be no member now (reaped after a
    /// long absence, or not seen yet since a restart), so that a direct
    /// message can be queued for it: it goes when the node is back. A key
    /// is taken only for the id it derives.
    pub fn learn_direct_key(&mut self, key: crate::sign::PublicKey) {
        let id = key.node_id();
        if id == self.config.id {
            return;
        }
        if self.direct.known_keys.len() >= MAX_KNOWN_KEYS
            && !self.direct.known_keys.contains_key(&id)
            && let Some(first) = self.direct.known_keys.keys().next().copied()
        {
            self.direct.known_keys.remove(&first);
        }
        self.direct.known_keys.insert(id, key);
    }

    /// Puts back direct messages an earlier run sent and had no
    /// acknowledgement for (see [`Node::pending_direct`]): they go when
    /// their recipients are alive, until they expire. Call before the
    /// first input.
    pub fn restore_direct(
        &mut self,
        pending: impl IntoIterator<Item = PendingDirect>,
        now: Instant,
    ) {
        for entry in pending {
            if entry.message.id.origin != self.config.id || entry.message.to.is_none() {
                continue;
            }
            self.clock.observe(entry.message.ts);
            self.add_outgoing(entry.message, entry.expires_ms, now);
        }
    }

    /// Direct messages sent and not acknowledged yet, with their expiry
    /// (wall-clock ms): what a driver persists.
    pub fn pending_direct(&self) -> impl Iterator<Item = PendingDirect> + '_ {
        self.direct.outgoing.values().map(|entry| PendingDirect {
            message: entry.message.clone(),
            expires_ms: entry.expires_ms,
        })
    }

    fn add_outgoing(&mut self, message: Message, expires_ms: u64, now: Instant) {
        let bytes = message.payload_len();
        let id = message.id;
        let entry = Outgoing {
            message,
            sealed: None,
            expires_ms,
            next_try: Some(now),
            backoff: self.config.protocol.direct_retry_initial,
        };
        if let Some(old) = self.direct.outgoing.insert(id, entry) {
            self.direct.bytes = self.direct.bytes.saturating_sub(old.message.payload_len());
        }
        self.direct.bytes += bytes;
        // Expiry has a timer of its own, whatever the recipient does.
        let remaining = expires_ms.saturating_sub(self.wall_ms(now));
        self.schedule_direct_timer(now + Duration::from_millis(remaining));
        self.schedule_direct_timer(now);
    }

    fn schedule_direct_timer(&mut self, at: Instant) {
        if self.direct.timer_at.is_none_or(|current| at < current) {
            self.direct.timer_at = Some(at);
            self.timers.schedule(at, TimerKind::Direct);
        }
    }

    /// The direct timer fired (a stale one does what is due, if anything).
    pub(super) fn on_direct_timer(&mut self, now: Instant) {
        if self.direct.timer_at.is_some_and(|at| at <= now) {
            self.direct.timer_at = None;
        }
        self.send_due_direct(now);
    }

    /// After every input: messages waiting for a recipient that is alive
    /// now go at once.
    pub(super) fn wake_waiting_direct(&mut self, now: Instant) {
        // Usually empty; a few recipients at most: cheap after every input.
        let members = &self.members;
        let back: BTreeSet<NodeId> = self
            .direct
            .waiting
            .iter()
            .filter(|id| members.get(id).is_some_and(|m| m.state.is_active()))
            .copied()
            .collect();
        if back.is_empty() {
            return;
        }
        for entry in self.direct.outgoing.values_mut() {
            if entry.next_try.is_none()
                && let Some(to) = &entry.message.to
                && back.contains(&to.node)
            {
                entry.next_try = Some(now);
                entry.backoff = self.config.protocol.direct_retry_initial;
            }
        }
        self.send_due_direct(now);
    }

    /// Expires what is due, sends what is due to recipients alive, parks
    /// the rest, and sets the next timer.
    fn send_due_direct(&mut self, now: Instant) {
        let wall = self.wall_ms(now);
        let expired: Vec<MessageId> = self
            .direct
            .outgoing
            .iter()
            .filter(|(_, entry)| entry.expires_ms <= wall)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(entry) = self.direct.remove(&id) {
                let recipient = entry
                    .message
                    .to
                    .as_ref()
                    .map_or(self.config.id, |to| to.node);
                tracing::info!(%id, recipient = %recipient.short(), "direct message expired unacknowledged");
                self.stats.direct_expired += 1;
                self.events.push_back(Event::DirectStatus(DirectStatus {
                    id,
                    recipient,
                    outcome: DirectOutcome::Expired,
                }));
            }
        }
        let retry_max = self.config.protocol.direct_retry_max;
        let mut sends: Vec<(std::net::SocketAddr, SealedDirect)> = Vec::new();
        let mut waiting = BTreeSet::new();
        let mut next: Option<Instant> = None;
        let ids: Vec<MessageId> = self.direct.outgoing.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.direct.outgoing.get(&id) else {
                continue;
            };
            let Some(recipient) = entry.message.to.as_ref().map(|to| to.node) else {
                continue;
            };
            let member = self
                .members
                .get(&recipient)
                .filter(|m| m.state.is_active())
                .map(|m| (m.addr, m.key));
            let due = entry.next_try.is_some_and(|at| at <= now);
            let Some((addr, key)) = member else {
                if let Some(entry) = self.direct.outgoing.get_mut(&id) {
                    entry.next_try = None;
                }
                waiting.insert(recipient);
                continue;
            };
            if due {
                let cached = entry.sealed.clone();
                let message = entry.message.clone();
                let sealed = match cached {
                    Some(sealed) => Some(sealed),
                    None => {
                        let nonce = self.direct_nonce();
                        direct::seal(
                            &self.config.key,
                            &key,
                            nonce,
                            &DirectPlain::Message(Box::new(message)),
                        )
                    }
                };
                let Some(entry) = self.direct.outgoing.get_mut(&id) else {
                    continue;
                };
                if let Some(sealed) = sealed {
                    entry.sealed = Some(sealed.clone());
                    sends.push((addr, sealed));
                }
                entry.next_try = Some(now + entry.backoff);
                entry.backoff = (entry.backoff * 2).min(retry_max);
            }
            if let Some(at) = self.direct.outgoing.get(&id).and_then(|e| e.next_try) {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        self.direct.waiting = waiting;
        for (addr, sealed) in sends {
            self.stats.direct_sent += 1;
            self.send(addr, &Body::Direct(sealed));
        }
        if let Some(at) = next {
            self.schedule_direct_timer(at);
        }
        if let Some(earliest) = self.direct.outgoing.values().map(|e| e.expires_ms).min() {
            let remaining = earliest.saturating_sub(wall);
            self.schedule_direct_timer(now + Duration::from_millis(remaining));
        }
    }

    /// A sealed direct datagram from `sender` at `from`.
    pub(super) fn on_direct(
        &mut self,
        sender: NodeId,
        from: std::net::SocketAddr,
        sealed: &SealedDirect,
    ) {
        let plain = match direct::open(&self.config.key, sender, sealed) {
            Ok(plain) => plain,
            Err(err) => {
                tracing::debug!(addr = %from, sender = %sender.short(), %err, "dropping direct message");
                self.count_drop(err.reason());
                return;
            }
        };
        match plain {
            DirectPlain::Message(message) => self.on_direct_message(sender, from, sealed, *message),
            DirectPlain::Ack(id) => self.on_direct_ack(sender, id),
        }
    }

    fn on_direct_message(
        &mut self,
        sender: NodeId,
        from: std::net::SocketAddr,
        sealed: &SealedDirect,
        message: Message,
    ) {
        let own = self.config.id;
        let valid = message.id.origin == sender
            && is_direct_id(&message.id)
            && message.to.as_ref().is_some_and(|to| {
                to.node == own && to.user.as_deref().is_none_or(crate::message::is_user_name)
            })
            && message.author_is_valid()
            && message
                .verify(&mut super::lock_verifier(&self.verifier))
                .is_ok();
        if !valid {
            self.count_drop("invalid_direct");
            return;
        }
        // Every copy is acknowledged: the ack of an earlier one may be lost.
        // The ack is held apart, for the driver to send once it is saved.
        let nonce = self.direct_nonce();
        if let Some(ack) = direct::seal(
            &self.config.key,
            &sealed.sender_key,
            nonce,
            &DirectPlain::Ack(message.id),
        ) {
            let queued = self.transmits.len();
            self.send(from, &Body::Direct(ack));
            if self.transmits.len() > queued
                && let Some(transmit) = self.transmits.pop_back()
            {
                self.direct.acks.push_back(DirectAck {
                    id: message.id,
                    transmit,
                });
            }
        }
        // Older than any sender keeps a message: a replay, or a copy of one
        // delivered and forgotten since. Acknowledged (above), not delivered.
        let protocol = &self.config.protocol;
        let oldest_ms = self.last_wall_ms.saturating_sub(
            u64::try_from((protocol.direct_expiry + protocol.direct_clock_slack).as_millis())
                .unwrap_or(u64::MAX),
        );
        if message.ts.ms < oldest_ms {
            tracing::debug!(msg = %message.id, "dropping a direct message older than its expiry");
            self.count_drop("stale_direct");
            return;
        }
        if self
            .direct
            .remember_delivered(message.id, self.config.protocol.direct_dedup_memory)
        {
            self.clock.observe(message.ts);
            self.stats.direct_received += 1;
            self.events.push_back(Event::Message(message));
        } else {
            self.stats.duplicates += 1;
        }
    }

    /// The next ack of a received direct message: send it only once that
    /// message is durably saved (see [`DirectAck`]).
    pub fn poll_direct_ack(&mut self) -> Option<DirectAck> {
        self.direct.acks.pop_front()
    }

    fn on_direct_ack(&mut self, sender: NodeId, id: MessageId) {
        if id.origin != self.config.id {
            self.count_drop("invalid_direct_ack");
            return;
        }
        let for_sender = self
            .direct
            .outgoing
            .get(&id)
            .and_then(|entry| entry.message.to.as_ref())
            .is_some_and(|to| to.node == sender);
        if !for_sender {
            // A late copy's ack, after the first removed it.
            return;
        }
        self.direct.remove(&id);
        self.events.push_back(Event::DirectStatus(DirectStatus {
            id,
            recipient: sender,
            outcome: DirectOutcome::Delivered,
        }));
    }

    fn direct_nonce(&mut self) -> [u8; NONCE_BYTES] {
        let mut nonce = [0u8; NONCE_BYTES];
        for chunk in nonce.chunks_mut(8) {
            let word = rand::Rng::next_u64(&mut self.direct_rng).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        nonce
    }
}

/// Bytes of the body of a datagram carrying `sealed`.
fn encoded_body_len(sealed: &SealedDirect) -> usize {
    let header = Header {
        flags: 0,
        cluster: wire::ClusterId(0),
        sender: NodeId([0; 16]),
    };
    // Encoding refuses a datagram over the limit: count it by hand then.
    match wire::encode(&header, &Body::Direct(sealed.clone())) {
        Ok(bytes) => bytes.len() - wire::HEADER_LEN,
        Err(_) => {
            postcard::to_allocvec(&Body::Direct(sealed.clone())).map_or(usize::MAX, |b| b.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Recipient;
    use crate::node::PeerState;
    use crate::testing::Sim;

    fn draft_to(recipient: usize, text: &str) -> Draft {
        let mut draft = Draft::channel("general", text);
        draft.to = Some(Recipient {
            node: Sim::id(recipient),
            user: None,
        });
        draft
    }

    fn send(sim: &mut Sim, from: usize, to: usize, text: &str) -> Result<Message, DirectError> {
        let wall = sim.wall_ms();
        let draft = draft_to(to, text);
        sim.with_node(from, |node, now| node.send_direct(&draft, wall, now))
    }

    fn direct_deliveries(sim: &Sim, index: usize, id: MessageId) -> usize {
        sim.delivered_messages(index)
            .iter()
            .filter(|m| m.id == id)
            .count()
    }

    fn outcomes(sim: &Sim, index: usize, id: MessageId) -> Vec<DirectOutcome> {
        sim.host(index)
            .events
            .iter()
            .filter_map(|(_, event)| match event {
                Event::DirectStatus(status) if status.id == id => Some(status.outcome.clone()),
                _ => None,
            })
            .collect()
    }

    /// Three nodes, all alive to each other.
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn three(seed: u64) -> Sim {
        let mut sim = Sim::new(Instant::now(), seed);
        for name in ["a", "b", "c"] {
            sim.add_node(name);
        }
        sim.contact(1, 0);
        sim.contact(2, 0);
        let all = |sim: &Sim| {
            (0..3).all(|i| (0..3).all(|j| i == j || sim.state(i, j) == Some(PeerState::Alive)))
        };
        assert!(sim.run_until(Duration::from_secs(20), all), "seed {seed}");
        sim
    }

    #[test]
    fn a_direct_message_reaches_only_its_recipient_once_and_is_acknowledged() {
        for seed in [1, 2, 3] {
            let mut sim = three(seed);
            let sent = send(&mut sim, 0, 1, "for b only").expect("sent");
            assert!(is_direct_id(&sent.id));
            assert!(
                sim.run_until(Duration::from_secs(10), |sim| {
                    outcomes(sim, 0, sent.id) == [DirectOutcome::Delivered]
                }),
                "seed {seed}"
            );
            sim.run_for(Duration::from_secs(30));
            assert_eq!(direct_deliveries(&sim, 1, sent.id), 1, "seed {seed}");
            assert_eq!(
                direct_deliveries(&sim, 0, sent.id),
                1,
                "the sender's own copy"
            );
            assert_eq!(direct_deliveries(&sim, 2, sent.id), 0, "c never gets it");
            assert!(sim.node(2).message(&sent.id).is_none());
            assert!(sim.node(1).message(&sent.id).is_none(), "never in history");
            assert_eq!(sim.node(0).pending_direct().count(), 0);
            assert_eq!(sim.node(1).stats().gap_pulls, 0, "no gap to pull");
            assert_eq!(sim.node(2).stats().gap_pulls, 0, "no gap to pull");
            // The gossip sequence is untouched.
            assert_eq!(sim.node(0).next_seq(), 1);
        }
    }

    #[test]
    fn the_ack_of_a_received_message_is_held_apart_until_the_driver_saves_it() {
        let mut sim = three(13);
        let draft = draft_to(1, "save me first");
        let wall = sim.wall_ms();
        // The first copy, taken off the network by hand.
        let (sent, datagrams) = sim.with_node(0, |node, now| {
            let sent = node.send_direct(&draft, wall, now).expect("sent");
            let datagrams: Vec<_> = std::iter::from_fn(|| node.poll_transmit()).collect();
            (sent, datagrams)
        });
        let from = sim.host(0).addr;
        let (plain, acks) = sim.with_node(1, |node, now| {
            for datagram in &datagrams {
                node.handle_datagram(from, &datagram.payload, now);
            }
            let plain: Vec<_> = std::iter::from_fn(|| node.poll_transmit()).collect();
            let acks: Vec<_> = std::iter::from_fn(|| node.poll_direct_ack()).collect();
            (plain, acks)
        });
        assert_eq!(acks.len(), 1, "one ack, held apart");
        assert_eq!(acks[0].id, sent.id);
        assert!(
            plain.iter().all(|t| t.payload != acks[0].transmit.payload),
            "the ack is not among the other datagrams"
        );
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 1);
        // That ack was never sent (the recipient died before saving): the
        // sender tries again, and the next copy's ack gets through.
        sim.run_for(Duration::from_millis(100));
        assert!(
            outcomes(&sim, 0, sent.id).is_empty(),
            "not acknowledged yet"
        );
        assert!(sim.run_until(Duration::from_secs(30), |sim| {
            outcomes(sim, 0, sent.id) == [DirectOutcome::Delivered]
        }));
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 1, "delivered once");
    }

    #[test]
    fn a_copy_older_than_the_expiry_is_acknowledged_not_delivered() {
        #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
        let mut sim = Sim::new(Instant::now(), 21);
        for name in ["a", "b"] {
            let mut config = sim.config(sim.len(), name);
            config.protocol.direct_expiry = Duration::from_secs(60);
            config.protocol.direct_clock_slack = Duration::from_secs(10);
            sim.add_node_with(config);
        }
        sim.contact(1, 0);
        assert!(sim.run_until(Duration::from_secs(10), |sim| {
            sim.state(0, 1) == Some(PeerState::Alive)
        }));
        // A copy captured on the way, replayed long after.
        sim.block(0, 1);
        let draft = draft_to(1, "old news");
        let wall = sim.wall_ms();
        let (sent, datagrams) = sim.with_node(0, |node, now| {
            let sent = node.send_direct(&draft, wall, now).expect("sent");
            let datagrams: Vec<_> = std::iter::from_fn(|| node.poll_transmit()).collect();
            (sent, datagrams)
        });
        sim.run_for(Duration::from_secs(75));
        assert_eq!(outcomes(&sim, 0, sent.id), [DirectOutcome::Expired]);
        let from = sim.host(0).addr;
        let acks = sim.with_node(1, |node, now| {
            for datagram in &datagrams {
                node.handle_datagram(from, &datagram.payload, now);
            }
            std::iter::from_fn(|| node.poll_direct_ack()).count()
        });
        assert_eq!(acks, 1, "acknowledged");
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 0, "not delivered");
        assert_eq!(sim.node(1).stats().dropped.get("stale_direct"), Some(&1));
    }

    #[test]
    fn loss_is_retried_and_copies_are_delivered_once() {
        let mut sim = three(7);
        sim.set_loss(0.2);
        let sent: Vec<Message> = (0..10)
            .map(|i| send(&mut sim, 0, 1, &format!("dm {i}")).expect("sent"))
            .collect();
        assert!(
            sim.run_until(Duration::from_secs(120), |sim| {
                sent.iter()
                    .all(|m| outcomes(sim, 0, m.id) == [DirectOutcome::Delivered])
            }),
            "seed 7: all acknowledged despite 20% loss"
        );
        sim.set_loss(0.0);
        sim.run_for(Duration::from_secs(30));
        for m in &sent {
            assert_eq!(direct_deliveries(&sim, 1, m.id), 1, "{}", m.text);
        }
    }

    #[test]
    fn heavy_loss_delays_but_does_not_lose_or_duplicate() {
        for seed in [7, 8] {
            let mut sim = three(seed);
            sim.set_loss(0.4);
            let sent: Vec<Message> = (0..10)
                .map(|i| send(&mut sim, 0, 1, &format!("dm {i}")).expect("sent"))
                .collect();
            // Each copy and its ack get through with p = 0.36; the backoff
            // reaches 30 s, so a few unlucky messages take minutes.
            assert!(
                sim.run_until(Duration::from_secs(900), |sim| {
                    sent.iter()
                        .all(|m| outcomes(sim, 0, m.id) == [DirectOutcome::Delivered])
                }),
                "seed {seed}: all acknowledged despite 40% loss"
            );
            for m in &sent {
                assert_eq!(
                    direct_deliveries(&sim, 1, m.id),
                    1,
                    "seed {seed}: {}",
                    m.text
                );
            }
        }
    }

    #[test]
    fn lost_acks_bring_copies_that_are_acknowledged_not_redelivered() {
        let mut sim = three(11);
        sim.block(1, 0);
        let sent = send(&mut sim, 0, 1, "ack me").expect("sent");
        sim.run_for(Duration::from_secs(5));
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 1);
        assert!(outcomes(&sim, 0, sent.id).is_empty());
        sim.heal_blocks();
        assert!(sim.run_until(Duration::from_secs(60), |sim| {
            outcomes(sim, 0, sent.id) == [DirectOutcome::Delivered]
        }));
        assert_eq!(
            direct_deliveries(&sim, 1, sent.id),
            1,
            "copies deduplicated"
        );
        assert!(sim.node(1).stats().duplicates > 0);
    }

    #[test]
    fn a_message_to_an_offline_node_waits_and_goes_when_it_is_back() {
        let mut sim = three(5);
        sim.crash(1);
        assert!(sim.run_until(Duration::from_secs(30), |sim| {
            sim.state(0, 1).is_some_and(|s| !s.is_active())
        }));
        let sent = send(&mut sim, 0, 1, "while you were out").expect("queued");
        sim.run_for(Duration::from_secs(60));
        assert_eq!(sim.node(0).pending_direct().count(), 1);
        let sent_while_down = sim.node(0).stats().direct_sent;
        assert_eq!(sent_while_down, 0, "nothing sent to a failed node");
        sim.resume(1);
        assert!(sim.run_until(Duration::from_secs(60), |sim| {
            outcomes(sim, 0, sent.id) == [DirectOutcome::Delivered]
        }));
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 1);
    }

    #[test]
    fn an_unacknowledged_message_expires() {
        #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
        let mut sim = Sim::new(Instant::now(), 3);
        for name in ["a", "b"] {
            let mut config = sim.config(sim.len(), name);
            config.protocol.direct_expiry = Duration::from_secs(60);
            sim.add_node_with(config);
        }
        sim.contact(1, 0);
        assert!(sim.run_until(Duration::from_secs(10), |sim| {
            sim.state(0, 1) == Some(PeerState::Alive)
        }));
        sim.crash(1);
        let sent = send(&mut sim, 0, 1, "too late").expect("queued");
        sim.run_for(Duration::from_secs(59));
        assert!(outcomes(&sim, 0, sent.id).is_empty());
        sim.run_for(Duration::from_secs(2));
        assert_eq!(outcomes(&sim, 0, sent.id), [DirectOutcome::Expired]);
        assert_eq!(sim.node(0).pending_direct().count(), 0);
    }

    #[test]
    fn a_restored_outbox_delivers_after_a_restart() {
        let mut sim = three(9);
        sim.crash(1);
        let sent = send(&mut sim, 0, 1, "survives").expect("queued");
        let pending: Vec<PendingDirect> = sim.node(0).pending_direct().collect();
        assert_eq!(pending.len(), 1);
        let mut config = sim.config(0, "a");
        config.generation = 1;
        config.rng_seed = 99;
        sim.restart(0, config);
        sim.with_node(0, |node, now| node.restore_direct(pending, now));
        sim.contact(0, 2);
        sim.resume(1);
        assert!(sim.run_until(Duration::from_secs(90), |sim| {
            outcomes(sim, 0, sent.id) == [DirectOutcome::Delivered]
        }));
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 1);
    }

    #[test]
    fn a_node_known_only_by_its_key_gets_a_message_when_it_is_back() {
        let mut sim = three(17);
        let b_key = sim.node(1).public_key();
        sim.crash(1);
        // A restart of a: b is no member now (as after a reap).
        let mut config = sim.config(0, "a");
        config.generation = 1;
        config.rng_seed = 77;
        sim.restart(0, config);
        sim.contact(0, 2);
        assert!(sim.node(0).member(&Sim::id(1)).is_none());
        assert_eq!(
            send(&mut sim, 0, 1, "too soon").map(|m| m.text),
            Err(DirectError::UnknownRecipient(Sim::id(1))),
            "without its key, b is unknown"
        );
        sim.with_node(0, |node, _| node.learn_direct_key(b_key));
        let sent = send(&mut sim, 0, 1, "known by key").expect("queued");
        sim.run_for(Duration::from_secs(10));
        assert!(outcomes(&sim, 0, sent.id).is_empty());
        sim.resume(1);
        assert!(sim.run_until(Duration::from_secs(90), |sim| {
            outcomes(sim, 0, sent.id) == [DirectOutcome::Delivered]
        }));
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 1);
    }

    #[test]
    fn too_large_unknown_and_full_are_refused() {
        let mut sim = three(2);
        let big = "x".repeat(2000);
        let Err(DirectError::TooLarge { size, max }) = send(&mut sim, 0, 1, &big) else {
            panic!("refused as too large")
        };
        assert_eq!(size, 2000);
        assert!(max > 500 && max < 1400, "{max}");
        send(&mut sim, 0, 1, &"y".repeat(max)).expect("the largest that fits is taken");
        let mut draft = draft_to(1, "hi");
        draft.to = Some(Recipient {
            node: NodeId([9; 16]),
            user: None,
        });
        let wall = sim.wall_ms();
        let unknown = sim.with_node(0, |node, now| node.send_direct(&draft, wall, now));
        assert_eq!(unknown, Err(DirectError::UnknownRecipient(NodeId([9; 16]))));
        sim.crash(1);
        let max_pending = sim.node(0).protocol().direct_max_pending;
        let mut refused = None;
        for i in 0..=max_pending {
            if let Err(e) = send(&mut sim, 0, 1, &format!("q{i}")) {
                refused = Some(e);
                break;
            }
        }
        assert!(
            matches!(refused, Some(DirectError::QueueFull { .. })),
            "{refused:?}"
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn the_largest_message_goes_in_a_cluster_sealed_under_a_key() {
        use crate::seal::{ClusterKey, KEY_BYTES, Keyring};
        let mut sim = Sim::new(Instant::now(), 12);
        for name in ["a", "b"] {
            let mut config = sim.config(sim.len(), name);
            config.keyring = Some(Keyring::new(ClusterKey::new(&[5; KEY_BYTES]), Vec::new()));
            sim.add_node_with(config);
        }
        sim.contact(1, 0);
        assert!(sim.run_until(Duration::from_secs(10), |sim| {
            sim.state(0, 1) == Some(PeerState::Alive)
        }));
        let Err(DirectError::TooLarge { max, .. }) = send(&mut sim, 0, 1, &"z".repeat(1500)) else {
            panic!("refused as too large")
        };
        let sent = send(&mut sim, 0, 1, &"z".repeat(max)).expect("the largest that fits");
        assert!(sim.run_until(Duration::from_secs(10), |sim| {
            outcomes(sim, 0, sent.id) == [DirectOutcome::Delivered]
        }));
        assert_eq!(direct_deliveries(&sim, 1, sent.id), 1);
        assert_eq!(sim.node(0).stats().dropped.get("encode_too_large"), None);
    }

    #[test]
    fn a_message_to_this_node_is_delivered_at_once() {
        let mut sim = three(4);
        let sent = send(&mut sim, 0, 0, "note to another user here").expect("sent");
        assert_eq!(direct_deliveries(&sim, 0, sent.id), 1);
        assert_eq!(outcomes(&sim, 0, sent.id), [DirectOutcome::Delivered]);
        assert_eq!(sim.node(0).stats().direct_sent, 0);
    }
}
