//! Publishing and eager push.
//!
//! A new message goes at once to every member when the cluster is small
//! (at most [`super::ProtocolConfig::direct_push_limit`] active members: one hop,
//! one copy each, `relay: false`), else to
//! [`super::ProtocolConfig::push_fanout`] random members,
//! each of which forwards what it did not have the same way (an epidemic).
//! Items queued during one input are batched (`outbox`); a message too
//! large for a datagram travels as fragments (`fragments`), each pushed and
//! forwarded like a message.
//!
//! Whatever a push misses is pulled: a message whose sequence number jumps
//! past the next expected one of its origin reveals a gap, and after
//! [`super::ProtocolConfig::gap_pull_delay`] (time for a reordered copy to arrive) the node sends
//! the member it heard from a digest of that one origin, which repairs the
//! gap at once. The periodic anti-entropy (`anti_entropy`) catches the rest
//! (a lost last message, a partition, a late joiner).

use std::time::{Duration, Instant};

use super::fragments::{self, Added};
use super::outbox::{Route, WHOLE_LIMIT};
use super::timers::TimerKind;
use super::{Event, Node, PublishError};
use crate::id::{MessageId, NodeId};
use crate::message::{Draft, Hlc, MAX_NAME_BYTES, Message, validate_channel};
use crate::wire::{self, Fragment, Payload};

/// Whether a message from the network is one rossip could have produced.
fn is_valid(message: &Message) -> bool {
    message.id.seq >= 1
        && !message.text.is_empty()
        && message.text.len() <= wire::MAX_TEXT_BYTES
        && message.origin_name.len() <= MAX_NAME_BYTES
        && validate_channel(&message.channel).is_ok()
        && message.author_is_valid()
        // Direct messages travel sealed, point to point; one offered in
        // gossip is refused, so none is ever relayed or stored by a node it
        // was not for.
        && message.to.is_none()
}

/// The items that carry `message`: itself, or all its fragments.
pub(super) fn items_of(message: &Message) -> Vec<Payload> {
    match fragments::encode_if_large(message, WHOLE_LIMIT) {
        None => vec![Payload::Whole(message.clone())],
        Some(bytes) => (0..Fragment::count_for(bytes.len()))
            .filter_map(|index| fragments::piece(message.id, &bytes, index))
            .map(Payload::Piece)
            .collect(),
    }
}

impl Node {
    /// See [`Node::publish`].
    pub(super) fn publish_message(
        &mut self,
        draft: &Draft,
        wall_ms: u64,
        now: Instant,
    ) -> Result<MessageId, PublishError> {
        if self.left {
            return Err(PublishError::Left);
        }
        if draft.to.is_some() {
            return Err(PublishError::Direct);
        }
        if draft.text.is_empty() {
            return Err(PublishError::Empty);
        }
        validate_channel(&draft.channel)?;
        if draft.text.len() > self.config.max_text_bytes {
            return Err(PublishError::TooLarge {
                size: draft.text.len(),
                max: self.config.max_text_bytes,
            });
        }
        let author = &draft.author;
        if !author.is_valid() {
            return Err(PublishError::Author);
        }
        let payload_len = draft.text.len()
            + draft.channel.len()
            + self.config.name.len()
            + author.user.len()
            + author.nick.as_ref().map_or(0, String::len);
        if let Some(retry_after) = self.history_full_until(payload_len, wall_ms) {
            self.stats.publishes_refused += 1;
            return Err(PublishError::Busy { retry_after });
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let message = Message::unsigned(
            &self.config.key,
            seq,
            self.config.name.clone(),
            self.clock.tick(wall_ms),
            draft.clone(),
        );
        let id = message.id;
        self.unsigned.push((message, wall_ms, now));
        self.heads.insert(self.config.id, now);
        self.last_message_at = Some(now);
        self.stats.messages_sent += 1;
        if self.unsigned.len() >= self.config.protocol.max_signing_batch {
            self.sign_published();
        }
        Ok(id)
    }

    /// Signs what was published since the last drain as one batch, then
    /// stores it, delivers it locally and queues its pushes. Called before
    /// anything leaves the node (every drain, a leave) and when the batch
    /// is full: no unsigned message is ever sent, stored or delivered.
    pub(super) fn sign_published(&mut self) {
        if self.unsigned.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.unsigned);
        let mut messages: Vec<Message> = Vec::with_capacity(pending.len());
        let mut times: Vec<(u64, Instant)> = Vec::with_capacity(pending.len());
        for (message, wall_ms, at) in pending {
            messages.push(message);
            times.push((wall_ms, at));
        }
        crate::message::sign_batch(&self.config.key, &mut messages);
        let own = self.config.id;
        for (message, (wall_ms, at)) in messages.into_iter().zip(times) {
            self.history.insert(message.clone(), wall_ms);
            for item in items_of(&message) {
                // `at` is when it was published: retransmission timing
                // (`node::acks`) counts from then.
                self.outbox.add(Route::Origin, [own, own], item, at);
            }
            self.events.push_back(Event::Message(message));
        }
    }

    /// If storing `payload_len` more bytes would evict a message younger
    /// than [`super::ProtocolConfig::min_retention`], how long until the oldest is
    /// old enough.
    fn history_full_until(&self, payload_len: usize, wall_ms: u64) -> Option<Duration> {
        let window = self.history.window();
        // Messages waiting for their batch's signature are as good as held.
        let unsigned_bytes: usize = self.unsigned.iter().map(|(m, _, _)| m.payload_len()).sum();
        let full = self.history.len() + self.unsigned.len() >= window.limit
            || self.history.bytes() + unsigned_bytes + payload_len > window.max_bytes;
        if !full {
            return None;
        }
        // How long the oldest message has been here, not its timestamp's
        // age: a peer's clock running ahead must not make old messages
        // look young (and throttle this node), nor one running behind make
        // a just-arrived message look old.
        // The oldest held is in the history, or, while the whole window
        // waits for its batch's signature, the first unsigned message.
        let oldest = self
            .history
            .oldest_arrival()
            .or_else(|| self.unsigned.first().map(|(_, arrived, _)| *arrived))?;
        let age = wall_ms.saturating_sub(oldest);
        let min = u64::try_from(self.config.protocol.min_retention.as_millis()).unwrap_or(u64::MAX);
        (age < min).then(|| Duration::from_millis(min - age))
    }

    /// Items arrived in a push (`relay`: pass new ones on) or a repair.
    pub(super) fn on_items(
        &mut self,
        sender: NodeId,
        items: Vec<Payload>,
        relay: bool,
        repair: bool,
        now: Instant,
    ) {
        for item in items {
            match item {
                Payload::Whole(message) => {
                    let id = message.id;
                    if self.accept(sender, message, repair, now) && relay {
                        // Forward a clone only once it proved new.
                        if let Some(held) = self.history.get(&id) {
                            let item = Payload::Whole(held.clone());
                            self.outbox
                                .add(Route::Relay, [sender, id.origin], item, now);
                        }
                    }
                }
                Payload::Piece(fragment) => self.on_piece(sender, fragment, relay, repair, now),
            }
        }
    }

    fn on_piece(
        &mut self,
        sender: NodeId,
        fragment: Fragment,
        relay: bool,
        repair: bool,
        now: Instant,
    ) {
        let id = fragment.id;
        if id.seq == 0 || self.history.is_seen(&id) {
            self.stats.duplicates += 1;
            return;
        }
        let forward = relay.then(|| fragment.clone());
        let added = self
            .reassembly
            .add(fragment, now, &mut super::lock_verifier(&self.verifier));
        match added {
            Ok(added) => {
                if let Some(piece) = forward {
                    self.outbox.add(
                        Route::Relay,
                        [sender, id.origin],
                        Payload::Piece(piece),
                        now,
                    );
                }
                if let Added::Complete(message) = added {
                    self.accept(sender, *message, repair, now);
                }
            }
            Err(fragments::Reject::Duplicate) => self.stats.duplicates += 1,
            Err(reject) => self.count_drop(reject.reason()),
        }
        self.stats.reassembly_evicted = self.reassembly.evicted;
    }

    /// Delivers a message not seen before: stores it, notes a gap it
    /// reveals, emits it. Returns whether it was new.
    fn accept(&mut self, sender: NodeId, message: Message, repair: bool, now: Instant) -> bool {
        if !is_valid(&message) {
            self.count_drop("invalid_message");
            return false;
        }
        if self.history.is_seen(&message.id) {
            self.stats.duplicates += 1;
            return false;
        }
        self.reassembly.remove(&message.id);
        let origin = message.id.origin;
        if origin == self.config.id {
            self.skip_own_seq_through(message.id.seq);
        }
        let highest = self.history.seen(&origin).and_then(|seen| seen.highest());
        if highest.is_some_and(|highest| message.id.seq > highest.saturating_add(1)) {
            self.pull_soon(origin, sender, 0, now);
        }
        self.heads.insert(origin, now);
        self.last_message_at = Some(now);
        self.observe_clock(message.ts, now);
        self.history.insert(message.clone(), self.wall_ms(now));
        self.stats.messages_received += 1;
        if repair {
            self.repaired_since_round += 1;
        }
        self.events.push_back(Event::Message(message));
        self.drain_history_losses();
        true
    }

    /// Merges a remote timestamp into the clock unless it is implausibly far
    /// ahead of this node's wall clock.
    fn observe_clock(&mut self, ts: Hlc, now: Instant) {
        let ahead =
            u64::try_from(self.config.protocol.max_clock_ahead.as_millis()).unwrap_or(u64::MAX);
        if ts.ms <= self.wall_ms(now).saturating_add(ahead) {
            self.clock.observe(ts);
        }
    }

    /// Schedules a pull of `origin` from `from` (unless one is due): of its
    /// gaps, and of everything up to `through` (a head a peer showed us).
    pub(super) fn pull_soon(&mut self, origin: NodeId, from: NodeId, through: u64, now: Instant) {
        if let Some(pending) = self.gap_pulls.get_mut(&origin) {
            pending.1 = pending.1.max(through);
            return;
        }
        self.gap_pulls.insert(origin, (from, through));
        self.timers.schedule(
            now + self.config.protocol.gap_pull_delay,
            TimerKind::GapPull(origin),
        );
    }

    /// A pull is due: if `origin` still has gaps or is behind the head we
    /// were shown, ask the member we heard it from (or the origin) with a
    /// digest of that origin alone.
    pub(super) fn on_gap_pull(&mut self, origin: NodeId, now: Instant) {
        let Some((from, through)) = self.gap_pulls.remove(&origin) else {
            return;
        };
        let seen = self.history.seen(&origin);
        let has_gaps = seen.is_some_and(|seen| seen.gaps().next().is_some());
        let behind = seen
            .and_then(|seen| seen.highest())
            .is_none_or(|highest| highest < through);
        if !has_gaps && !behind {
            return;
        }
        let addr = self
            .members
            .active_addr(from)
            .or_else(|| self.members.active_addr(origin));
        if let Some(addr) = addr {
            self.stats.gap_pulls += 1;
            self.send_origin_digest(addr, origin, now);
        }
    }
}
