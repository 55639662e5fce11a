//! The bounded message history, and de-duplication that stays correct after
//! messages are evicted, in bounded memory.
//!
//! History holds at most `limit` messages ordered by [`OrderKey`] (the same
//! order on every node, whatever the arrival order); the oldest is evicted
//! first. De-duplication does not rely on history: for every origin a
//! [`SeqSet`] remembers which sequence numbers were ever seen, as ranges, so
//! an evicted message arriving again is still a duplicate. Its memory grows
//! with the number of gaps, not of messages, and is capped (see
//! [`MAX_RANGES_PER_ORIGIN`] and the origin cap in [`History::insert`]).

use std::collections::BTreeMap;

use crate::id::{MessageId, NodeId};
use crate::message::{Message, OrderKey};

/// Most gaps remembered per origin. Past it, the oldest gap is declared seen:
/// its messages (long missing) would no longer be delivered.
pub(super) const MAX_RANGES_PER_ORIGIN: usize = 256;

/// Origins remembered at least (more if the history limit is larger).
const MIN_TRACKED_ORIGINS: usize = 1024;

/// A set of sequence numbers as disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SeqSet {
    /// first → last.
    ranges: BTreeMap<u64, u64>,
}

impl SeqSet {
    pub(super) fn contains(&self, seq: u64) -> bool {
        self.ranges
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &last)| last >= seq)
    }

    /// Adds `seq`; returns whether it was new.
    pub(super) fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        let joins_previous = self
            .ranges
            .range(..seq)
            .next_back()
            .filter(|(_, last)| last.checked_add(1) == Some(seq))
            .map(|(&first, _)| first);
        let joins_next = seq
            .checked_add(1)
            .and_then(|next| self.ranges.get(&next).map(|&last| (next, last)));
        let first = joins_previous.unwrap_or(seq);
        let last = match joins_next {
            Some((next_first, next_last)) => {
                self.ranges.remove(&next_first);
                next_last
            }
            None => seq,
        };
        self.ranges.insert(first, last);
        if self.ranges.len() > MAX_RANGES_PER_ORIGIN {
            self.fill_oldest_gap();
        }
        true
    }

    /// Merges the two lowest ranges.
    fn fill_oldest_gap(&mut self) {
        let mut lowest = self.ranges.iter();
        if let (Some((&first, _)), Some((&second, &last))) = (lowest.next(), lowest.next()) {
            self.ranges.remove(&second);
            self.ranges.insert(first, last);
        }
    }

    /// The ranges, lowest first, as (first, last).
    pub(super) fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&first, &last)| (first, last))
    }

    pub(super) fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

/// What is known of one origin.
#[derive(Debug, Default)]
struct OriginLog {
    seen: SeqSet,
    /// Messages of this origin currently in history.
    held: usize,
}

/// Bounded history plus per-origin seen sets.
#[derive(Debug)]
pub(super) struct History {
    limit: usize,
    /// This node: its own origin log is never forgotten.
    own: NodeId,
    by_order: BTreeMap<OrderKey, Message>,
    by_id: BTreeMap<MessageId, OrderKey>,
    origins: BTreeMap<NodeId, OriginLog>,
}

impl History {
    pub(super) fn new(limit: usize, own: NodeId) -> Self {
        History {
            limit: limit.max(1),
            own,
            by_order: BTreeMap::new(),
            by_id: BTreeMap::new(),
            origins: BTreeMap::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.by_order.len()
    }

    /// Oldest first.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = &Message> {
        self.by_order.values()
    }

    pub(super) fn get(&self, id: &MessageId) -> Option<&Message> {
        self.by_id.get(id).and_then(|key| self.by_order.get(key))
    }

    /// Whether `id` was ever seen (held now or evicted).
    pub(super) fn is_seen(&self, id: &MessageId) -> bool {
        self.origins
            .get(&id.origin)
            .is_some_and(|log| log.seen.contains(id.seq))
    }

    /// Origins seen, in id order, starting after `after`.
    pub(super) fn origins_after(
        &self,
        after: Option<NodeId>,
    ) -> impl Iterator<Item = (&NodeId, &SeqSet)> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.origins
            .range((lower, Bound::Unbounded))
            .map(|(id, log)| (id, &log.seen))
    }

    /// Stores a message not seen before and marks it seen; evicts the oldest
    /// message past the limit (which stays seen). Returns `false`, changing
    /// nothing, if it was seen before.
    pub(super) fn insert(&mut self, message: Message) -> bool {
        let id = message.id;
        let log = self.origins.entry(id.origin).or_default();
        if !log.seen.insert(id.seq) {
            return false;
        }
        log.held += 1;
        let key = message.order_key();
        self.by_id.insert(id, key);
        self.by_order.insert(key, message);
        while self.by_order.len() > self.limit {
            let Some((_, evicted)) = self.by_order.pop_first() else {
                break;
            };
            self.by_id.remove(&evicted.id);
            if let Some(log) = self.origins.get_mut(&evicted.id.origin) {
                log.held = log.held.saturating_sub(1);
            }
        }
        self.cap_origins(id.origin);
        true
    }

    /// Keeps the number of origins bounded: past the cap, forgets an origin
    /// with nothing in history (there always is one, as the cap exceeds the
    /// history limit). Forgetting costs only this: a message of that origin
    /// that some peer still holds could be delivered again.
    fn cap_origins(&mut self, keep: NodeId) {
        let cap = MIN_TRACKED_ORIGINS.max(self.limit.saturating_add(1));
        if self.origins.len() <= cap {
            return;
        }
        let victim = self
            .origins
            .iter()
            .find(|(id, log)| log.held == 0 && **id != keep && **id != self.own)
            .map(|(id, _)| *id);
        if let Some(victim) = victim {
            self.origins.remove(&victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Hlc;

    fn message(origin: u8, seq: u64, ms: u64) -> Message {
        Message {
            id: MessageId {
                origin: NodeId([origin; 16]),
                seq,
            },
            origin_name: "n".into(),
            ts: Hlc { ms, logical: 0 },
            channel: "general".into(),
            text: format!("m{seq}"),
        }
    }

    #[test]
    fn seq_set_merges_ranges() {
        let mut set = SeqSet::default();
        for seq in [1, 2, 5, 4, 10] {
            assert!(set.insert(seq));
        }
        assert!(!set.insert(4));
        assert_eq!(
            set.ranges().collect::<Vec<_>>(),
            vec![(1, 2), (4, 5), (10, 10)]
        );
        assert!(set.insert(3));
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![(1, 5), (10, 10)]);
        assert!(set.contains(5) && !set.contains(6) && !set.contains(0));
        assert!(set.insert(u64::MAX) && set.insert(0));
    }

    #[test]
    fn seq_set_memory_is_bounded() {
        let mut set = SeqSet::default();
        for seq in (0..10_000u64).map(|i| i * 2) {
            set.insert(seq);
        }
        assert!(set.range_count() <= MAX_RANGES_PER_ORIGIN);
        assert!(set.contains(1), "oldest gaps are declared seen");
        assert!(!set.contains(19_997));
    }

    #[test]
    fn history_is_ordered_bounded_and_dedups_after_eviction() {
        let mut history = History::new(3, NodeId([0; 16]));
        // Arrival order differs from order-key order.
        for (seq, ms) in [(2, 20), (1, 10), (4, 40), (3, 30)] {
            assert!(history.insert(message(1, seq, ms)));
        }
        assert_eq!(history.len(), 3);
        let seqs: Vec<u64> = history.iter().map(|m| m.id.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert!(history.get(&message(1, 1, 10).id).is_none());
        assert!(history.is_seen(&message(1, 1, 10).id));
        assert!(
            !history.insert(message(1, 1, 10)),
            "evicted is still a duplicate"
        );
        // A message older than everything held is seen, then evicted at once.
        assert!(history.insert(message(2, 1, 1)));
        assert_eq!(history.len(), 3);
        assert!(history.is_seen(&message(2, 1, 1).id));
    }
}
