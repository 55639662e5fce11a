//! The driver's side of direct messages: sending one (`send` with `to`),
//! keeping the direct messages this node sent or received readable
//! beside the gossip history (they never enter it: see
//! [`rossip_proto::node::DIRECT_SEQ_BIT`]), persisting the outbox, and
//! telling a waiting `send` what became of its message.
//!
//! Direct messages are stored in the history store like channel messages
//! (with `to_node` set), numbered by the journal like them (so followers
//! get them with cursors), and held here, in history order, for reads in
//! history order; the store gives them back at start
//! ([`crate::store::Store::load_direct`]). A copy that arrives again after
//! a restart (its acknowledgement was lost) is found here and not
//! delivered twice.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::Instant;

use rossip_proto::message::{Draft, OrderKey};
use rossip_proto::node::{DirectOutcome, DirectStatus};
use rossip_proto::{Event, Message, MessageId};
use tokio::sync::oneshot;

use super::{CoreError, Driver, SendReply};
use crate::views;

/// Direct messages held for reads, at most (the oldest are forgotten
/// here first; the store keeps them within its own window).
pub const MAX_DIRECT_HELD: usize = 10_000;

/// What became of a direct message this node sent, for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectStatusUpdate {
    /// The message.
    pub id: MessageId,
    /// The local user who sent it: only they (and root) are told.
    pub sender: String,
    /// What became of it.
    pub outcome: DirectOutcome,
}

/// The direct messages this node sent or received, in history order.
#[derive(Debug, Default)]
pub struct DirectMessages {
    by_key: BTreeMap<OrderKey, Message>,
    key_of: HashMap<MessageId, OrderKey>,
}

impl DirectMessages {
    /// Holds `message` (the oldest goes past [`MAX_DIRECT_HELD`]); false
    /// if it was held already, or is older than all held when they are
    /// [`MAX_DIRECT_HELD`] (it would go at once: an old copy, not news).
    pub fn insert(&mut self, message: Message) -> bool {
        if self.key_of.contains_key(&message.id) {
            return false;
        }
        let key = message.order_key();
        if self.by_key.len() >= MAX_DIRECT_HELD
            && self
                .by_key
                .keys()
                .next()
                .is_some_and(|oldest| key < *oldest)
        {
            return false;
        }
        self.key_of.insert(message.id, key);
        self.by_key.insert(key, message);
        while self.by_key.len() > MAX_DIRECT_HELD {
            if let Some((_, oldest)) = self.by_key.pop_first() {
                self.key_of.remove(&oldest.id);
            }
        }
        true
    }

    /// The message `id`, if held.
    pub fn get(&self, id: &MessageId) -> Option<&Message> {
        self.key_of.get(id).and_then(|key| self.by_key.get(key))
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Those within `range`, oldest first.
    pub fn range(
        &self,
        range: (Bound<OrderKey>, Bound<OrderKey>),
    ) -> impl DoubleEndedIterator<Item = &Message> {
        self.by_key.range(range).map(|(_, message)| message)
    }

    /// The newest one's key.
    pub fn newest(&self) -> Option<OrderKey> {
        self.by_key.keys().next_back().copied()
    }
}

/// Two iterators of messages in history order (ascending, or descending
/// if `descending`), merged into one in the same order.
pub fn merged<'a>(
    a: impl Iterator<Item = &'a Message>,
    b: impl Iterator<Item = &'a Message>,
    descending: bool,
) -> impl Iterator<Item = &'a Message> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => (x.order_key() <= y.order_key()) != descending,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        if take_a { a.next() } else { b.next() }
    })
}

impl Driver {
    /// Takes back the direct messages of the store's window, with their
    /// delivery numbers (a failure to read them is logged: they are then
    /// missing from reads, not lost).
    pub(super) fn restore_direct_messages(&mut self) {
        match self
            .store
            .load_direct(views::unix_ms_now(), MAX_DIRECT_HELD)
        {
            Ok(messages) => {
                let numbered: Vec<(u64, MessageId)> = messages
                    .iter()
                    .map(|(number, message)| (*number, message.id))
                    .collect();
                self.journal.restore(numbered);
                for (_, message) in messages {
                    self.direct.insert(message);
                }
            }
            Err(e) => tracing::error!(
                path = %self.store.path().display(),
                "cannot read the direct messages of the history store: {e}"
            ),
        }
    }

    /// A `send` with a recipient: answered (like a channel send) once the
    /// sender's own copy is committed; `outcome` learns when the recipient
    /// acknowledged it (or it expired).
    pub(super) fn on_send_direct(
        &mut self,
        draft: Draft,
        reply: SendReply,
        outcome: oneshot::Sender<DirectOutcome>,
        now: Instant,
    ) {
        // A direct message carries its author's display name, as a channel
        // message does.
        let draft = self.with_nick(draft);
        // A node that is no member now (gone longer than the reap time, or
        // not back since this daemon started) is reached by its pinned
        // key: the message waits for it.
        if let Some(to) = &draft.to
            && self.node.member(&to.node).is_none()
            && let Some(key) = self.pins.key_of(&to.node)
        {
            self.node.learn_direct_key(key);
        }
        let wall_ms = views::unix_ms_now();
        match self.node.send_direct(&draft, wall_ms, now) {
            Ok(message) => {
                let recipient = message.to.as_ref().map(|to| to.node);
                if recipient != Some(self.node.id()) {
                    let expiry = self.node.protocol().direct_expiry;
                    let expires_ms = wall_ms
                        .saturating_add(u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX));
                    if let Err(e) = self.store.add_direct_pending(&message.id, expires_ms) {
                        self.store_errors += 1;
                        tracing::error!(
                            path = %self.store.path().display(),
                            msg = %message.id,
                            "cannot record the direct message as pending (a restart before it \
                             is acknowledged would not retry it): {e}"
                        );
                    }
                }
                self.direct_waiters.insert(message.id, outcome);
                self.pending_sends.push((reply, message.id));
            }
            Err(e) => {
                let _ = reply.send(Err(CoreError::Direct(e)));
            }
        }
    }

    /// Keeps the direct messages among a flush's events readable, and
    /// drops the copies delivered before (a copy that came again after a
    /// restart: the node's own memory of delivered ids starts empty).
    pub(super) fn take_direct_messages(&mut self, events: &mut Vec<Event>) {
        events.retain(|event| match event {
            Event::Message(message) if message.to.is_some() => {
                let new = self.direct.insert(message.clone());
                if !new {
                    tracing::debug!(msg = %message.id, "direct message delivered before; dropped");
                }
                new
            }
            _ => true,
        });
    }

    /// Sends the acks of the direct messages received by this flush (and
    /// of copies of earlier ones) if the commit stored everything
    /// delivered so far (`all_stored`): an ack tells the sender to forget
    /// its copy, so it must never go before the message is on disk. If the
    /// commit failed they are dropped: the sender sends again, and the copy
    /// is acknowledged once the store works.
    pub(super) async fn send_direct_acks(
        &mut self,
        acks: Vec<rossip_proto::node::DirectAck>,
        all_stored: bool,
    ) {
        if acks.is_empty() {
            return;
        }
        if !all_stored {
            self.direct_acks_withheld += acks.len() as u64;
            tracing::debug!(
                count = acks.len(),
                "not acknowledging direct messages that are not stored yet"
            );
            return;
        }
        for ack in acks {
            self.transmit(&ack.transmit).await;
        }
    }

    /// What became of a direct message this node sent.
    pub(super) fn on_direct_status(&mut self, status: DirectStatus) {
        tracing::info!(
            msg = %status.id,
            recipient = %status.recipient.short(),
            outcome = status.outcome.as_str(),
            "direct message"
        );
        if status.recipient != self.node.id()
            && let Err(e) = self.store.remove_direct_pending(&status.id)
        {
            self.store_errors += 1;
            tracing::error!(
                path = %self.store.path().display(),
                msg = %status.id,
                "cannot record the direct message as done: {e}"
            );
        }
        if let Some(message) = self.direct.get(&status.id) {
            let _ = self
                .direct_statuses
                .send(std::sync::Arc::new(DirectStatusUpdate {
                    id: status.id,
                    sender: message.author.user.clone(),
                    outcome: status.outcome.clone(),
                }));
        }
        if let Some(waiter) = self.direct_waiters.remove(&status.id) {
            let _ = waiter.send(status.outcome);
        }
        self.direct_waiters.retain(|_, waiter| !waiter.is_closed());
    }

    /// The message `id`, in the gossip history or among direct messages.
    pub(super) fn any_message(&self, id: &MessageId) -> Option<&Message> {
        self.node.message(id).or_else(|| self.direct.get(id))
    }

    /// History and direct messages within `range`, in history order
    /// (descending if `descending`).
    pub(super) fn all_messages_in(
        &self,
        range: (Bound<OrderKey>, Bound<OrderKey>),
        descending: bool,
    ) -> Box<dyn Iterator<Item = &Message> + '_> {
        let history = self.node.history_range(range);
        let direct = self.direct.range(range);
        if descending {
            Box::new(merged(history.rev(), direct.rev(), true))
        } else {
            Box::new(merged(history, direct, false))
        }
    }

    /// The newest key of history and direct messages.
    pub(super) fn newest_key(&self) -> Option<OrderKey> {
        let history = self.node.history().next_back().map(Message::order_key);
        history.max(self.direct.newest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::message::{Draft, Hlc};
    use rossip_proto::sign::NodeKey;

    fn at(ms: u64) -> Message {
        Message::signed(
            &NodeKey::for_testing(1),
            ms,
            "a".into(),
            Hlc { ms, logical: 0 },
            Draft::channel("general", format!("m{ms}")),
        )
    }

    #[test]
    fn merging_keeps_history_order_both_ways() {
        let a = [at(1), at(4), at(5)];
        let b = [at(2), at(3), at(6)];
        let up: Vec<u64> = merged(a.iter(), b.iter(), false).map(|m| m.ts.ms).collect();
        assert_eq!(up, [1, 2, 3, 4, 5, 6]);
        let down: Vec<u64> = merged(a.iter().rev(), b.iter().rev(), true)
            .map(|m| m.ts.ms)
            .collect();
        assert_eq!(down, [6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn a_message_older_than_all_held_when_full_is_not_new() {
        let mut held = DirectMessages::default();
        for ms in 1..=MAX_DIRECT_HELD as u64 {
            assert!(held.insert(at(1000 + ms)));
        }
        assert!(!held.insert(at(5)), "it would be evicted at once");
        assert!(held.get(&at(5).id).is_none());
        assert!(held.insert(at(100_000)), "a newer one is held");
        assert_eq!(held.len(), MAX_DIRECT_HELD);
        assert!(held.get(&at(1001).id).is_none(), "the oldest made room");
    }

    #[test]
    fn a_message_is_held_once() {
        let mut held = DirectMessages::default();
        assert!(held.insert(at(1)));
        assert!(!held.insert(at(1)));
        assert_eq!(held.len(), 1);
        assert_eq!(held.newest(), Some(at(1).order_key()));
    }
}
