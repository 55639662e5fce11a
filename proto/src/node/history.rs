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

use super::Lost;
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
    /// Gaps declared seen to stay within [`MAX_RANGES_PER_ORIGIN`], not yet
    /// reported.
    filled: Vec<(u64, u64)>,
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

    /// Adds `first..=last` (nothing if `first > last`); returns how many
    /// numbers were new.
    pub(super) fn insert_range(&mut self, first: u64, last: u64) -> u64 {
        if first > last {
            return 0;
        }
        // Count what is already inside, then replace every overlapping or
        // adjacent range by one.
        let mut covered = 0u64;
        let mut start = first;
        let mut end = last;
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(..=last.saturating_add(1))
            .rev()
            .take_while(|(_, l)| l.saturating_add(1) >= first)
            .map(|(&f, &l)| (f, l))
            .collect();
        for (f, l) in overlapping {
            let lo = f.max(first);
            let hi = l.min(last);
            if lo <= hi {
                covered += hi - lo + 1;
            }
            start = start.min(f);
            end = end.max(l);
            self.ranges.remove(&f);
        }
        self.ranges.insert(start, end);
        while self.ranges.len() > MAX_RANGES_PER_ORIGIN {
            self.fill_oldest_gap();
        }
        (last - first).saturating_add(1).saturating_sub(covered)
    }

    /// The highest number in the set.
    pub(super) fn highest(&self) -> Option<u64> {
        self.ranges.last_key_value().map(|(_, &last)| last)
    }

    /// The numbers missing between the lowest and the highest, as ranges,
    /// lowest first.
    pub(super) fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges
            .iter()
            .zip(self.ranges.iter().skip(1))
            .map(|((_, &last), (&next_first, _))| (last + 1, next_first - 1))
    }

    /// Merges the two lowest ranges.
    fn fill_oldest_gap(&mut self) {
        let mut lowest = self.ranges.iter();
        if let (Some((&first, &first_last)), Some((&second, &last))) =
            (lowest.next(), lowest.next())
        {
            self.filled.push((first_last + 1, second - 1));
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

/// The bounds of the history window. A message leaves history when any is
/// exceeded, oldest (by [`OrderKey`]) first; it stays seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    /// Most messages held (at least 1).
    pub(super) limit: usize,
    /// Most payload bytes held ([`Message::payload_len`] summed); the newest
    /// message is always kept, whatever its size.
    pub(super) max_bytes: usize,
    /// Messages whose timestamp is older than this (against the node's wall
    /// clock estimate) are evicted; `None`: no age bound.
    pub(super) max_age_ms: Option<u64>,
}

/// A message in history, and when it arrived here (wall clock ms): the
/// back-pressure rule is about how long a message has been around, which
/// its origin's timestamp cannot tell when clocks disagree.
#[derive(Debug)]
struct Held {
    message: Message,
    arrived_ms: u64,
}

/// Bounded history plus per-origin seen sets.
#[derive(Debug)]
pub(super) struct History {
    window: Window,
    /// Payload bytes of the messages held.
    bytes: usize,
    /// This node: its own origin log is never forgotten.
    own: NodeId,
    by_order: BTreeMap<OrderKey, Held>,
    by_id: BTreeMap<MessageId, OrderKey>,
    origins: BTreeMap<NodeId, OriginLog>,
    /// Gaps given up to keep seen sets bounded, not yet reported.
    lost: Vec<Lost>,
}

impl History {
    /// This node took a new id: from now on that origin's log is the one
    /// kept.
    pub(super) fn set_own(&mut self, own: NodeId) {
        self.own = own;
    }

    pub(super) fn new(window: Window, own: NodeId) -> Self {
        History {
            window: Window {
                limit: window.limit.max(1),
                ..window
            },
            bytes: 0,
            own,
            by_order: BTreeMap::new(),
            by_id: BTreeMap::new(),
            origins: BTreeMap::new(),
            lost: Vec::new(),
        }
    }

    /// The window's bounds.
    pub(super) fn window(&self) -> Window {
        self.window
    }

    /// Gaps given up since the last call.
    pub(super) fn take_lost(&mut self) -> Vec<Lost> {
        std::mem::take(&mut self.lost)
    }

    /// Moves the gaps `origin`'s seen set filled into `lost`.
    fn collect_filled(&mut self, origin: NodeId) {
        if let Some(log) = self.origins.get_mut(&origin) {
            for (first, last) in log.seen.filled.drain(..) {
                self.lost.push(Lost {
                    origin,
                    first,
                    last,
                });
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.by_order.len()
    }

    /// Payload bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Oldest first.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = &Message> {
        self.by_order.values().map(|held| &held.message)
    }

    /// Messages ordered within `range`, oldest first.
    pub(super) fn range(
        &self,
        range: (std::ops::Bound<OrderKey>, std::ops::Bound<OrderKey>),
    ) -> impl DoubleEndedIterator<Item = &Message> {
        self.by_order.range(range).map(|(_, held)| &held.message)
    }

    /// When the oldest message held (by order) arrived here.
    pub(super) fn oldest_arrival(&self) -> Option<u64> {
        self.by_order
            .first_key_value()
            .map(|(_, held)| held.arrived_ms)
    }

    pub(super) fn get(&self, id: &MessageId) -> Option<&Message> {
        self.by_id
            .get(id)
            .and_then(|key| self.by_order.get(key))
            .map(|held| &held.message)
    }

    /// Messages of `origin` held with a sequence number in `first..=last`,
    /// lowest first.
    pub(super) fn of_origin(
        &self,
        origin: NodeId,
        first: u64,
        last: u64,
    ) -> impl Iterator<Item = &Message> {
        let low = MessageId { origin, seq: first };
        let high = MessageId { origin, seq: last };
        let range = if first <= last {
            Some(self.by_id.range(low..=high))
        } else {
            None
        };
        range
            .into_iter()
            .flatten()
            .filter_map(|(_, key)| self.by_order.get(key))
            .map(|held| &held.message)
    }

    /// The lowest sequence number of `origin` still held, if any.
    pub(super) fn oldest_held(&self, origin: NodeId) -> Option<u64> {
        let low = MessageId { origin, seq: 0 };
        self.by_id
            .range(low..)
            .next()
            .filter(|(id, _)| id.origin == origin)
            .map(|(id, _)| id.seq)
    }

    /// Whether `id` was ever seen (held now or evicted).
    pub(super) fn is_seen(&self, id: &MessageId) -> bool {
        self.origins
            .get(&id.origin)
            .is_some_and(|log| log.seen.contains(id.seq))
    }

    /// The seen set of `origin` (empty if unknown).
    pub(super) fn seen(&self, origin: &NodeId) -> Option<&SeqSet> {
        self.origins.get(origin).map(|log| &log.seen)
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

    /// Stores a message not seen before and marks it seen; evicts past the
    /// window's count and byte bounds (evicted messages stay seen). Returns
    /// `false`, changing nothing, if it was seen before.
    pub(super) fn insert(&mut self, message: Message, arrived_ms: u64) -> bool {
        let id = message.id;
        let log = self.origins.entry(id.origin).or_default();
        if !log.seen.insert(id.seq) {
            return false;
        }
        self.collect_filled(id.origin);
        self.hold(message, arrived_ms);
        self.evict_over_bounds();
        self.cap_origins(id.origin);
        true
    }

    /// Marks `first..=last` of `origin` seen without holding anything (the
    /// messages are known to be gone, or were delivered by an earlier run).
    /// Returns how many of them were not seen before.
    pub(super) fn mark_seen(&mut self, origin: NodeId, first: u64, last: u64) -> u64 {
        let log = self.origins.entry(origin).or_default();
        let newly = log.seen.insert_range(first, last);
        self.collect_filled(origin);
        self.cap_origins(origin);
        newly
    }

    /// Puts a message back without the seen check (restoring an earlier
    /// run's history, whose seen sets are restored separately).
    pub(super) fn restore(&mut self, message: Message, arrived_ms: u64) {
        if self.by_id.contains_key(&message.id) {
            return;
        }
        self.origins
            .entry(message.id.origin)
            .or_default()
            .seen
            .insert(message.id.seq);
        let origin = message.id.origin;
        self.collect_filled(origin);
        self.hold(message, arrived_ms);
        self.evict_over_bounds();
    }

    fn hold(&mut self, message: Message, arrived_ms: u64) {
        if let Some(log) = self.origins.get_mut(&message.id.origin) {
            log.held += 1;
        }
        let key = message.order_key();
        self.bytes += message.payload_len();
        self.by_id.insert(message.id, key);
        self.by_order.insert(
            key,
            Held {
                message,
                arrived_ms,
            },
        );
    }

    fn evict_first(&mut self) -> bool {
        let Some((
            _,
            Held {
                message: evicted, ..
            },
        )) = self.by_order.pop_first()
        else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(evicted.payload_len());
        self.by_id.remove(&evicted.id);
        if let Some(log) = self.origins.get_mut(&evicted.id.origin) {
            log.held = log.held.saturating_sub(1);
        }
        true
    }

    fn evict_over_bounds(&mut self) {
        while self.by_order.len() > self.window.limit
            || (self.bytes > self.window.max_bytes && self.by_order.len() > 1)
        {
            if !self.evict_first() {
                break;
            }
        }
    }

    /// Evicts messages older than the window's age bound, `wall_ms` being
    /// the current wall clock. Returns how many went.
    pub(super) fn evict_expired(&mut self, wall_ms: u64) -> usize {
        let Some(max_age) = self.window.max_age_ms else {
            return 0;
        };
        let cutoff = wall_ms.saturating_sub(max_age);
        let mut evicted = 0;
        while self
            .by_order
            .first_key_value()
            .is_some_and(|(key, _)| key.ts.ms < cutoff)
        {
            self.evict_first();
            evicted += 1;
        }
        evicted
    }

    /// Whether a message stamped `ts_ms` is inside the age bound at
    /// `wall_ms` (repairs and catch-up serve only those).
    pub(super) fn within_age(&self, ts_ms: u64, wall_ms: u64) -> bool {
        self.window
            .max_age_ms
            .is_none_or(|max_age| ts_ms >= wall_ms.saturating_sub(max_age))
    }

    /// Keeps the number of origins bounded: past the cap, forgets an origin
    /// with nothing in history (there always is one, as the cap exceeds the
    /// history limit). Forgetting costs only this: a message of that origin
    /// that some peer still holds could be delivered again.
    fn cap_origins(&mut self, keep: NodeId) {
        let cap = MIN_TRACKED_ORIGINS.max(self.window.limit.saturating_add(1));
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
            author: Default::default(),
            to: None,
            auth: crate::message::Auth::for_tests(),
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
        let mut history = History::new(
            Window {
                limit: 3,
                max_bytes: usize::MAX,
                max_age_ms: None,
            },
            NodeId([0; 16]),
        );
        // Arrival order differs from order-key order.
        for (seq, ms) in [(2, 20), (1, 10), (4, 40), (3, 30)] {
            assert!(history.insert(message(1, seq, ms), 0));
        }
        assert_eq!(history.len(), 3);
        let seqs: Vec<u64> = history.iter().map(|m| m.id.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert!(history.get(&message(1, 1, 10).id).is_none());
        assert!(history.is_seen(&message(1, 1, 10).id));
        assert!(
            !history.insert(message(1, 1, 10), 0),
            "evicted is still a duplicate"
        );
        // A message older than everything held is seen, then evicted at once.
        assert!(history.insert(message(2, 1, 1), 0));
        assert_eq!(history.len(), 3);
        assert!(history.is_seen(&message(2, 1, 1).id));
    }
}
