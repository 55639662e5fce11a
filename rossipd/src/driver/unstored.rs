//! What a failed history commit (a full disk, say) leaves to be stored:
//! the delivered messages, and the origins whose seen ranges went
//! unwritten. The node already counts those messages as seen, and the seen
//! ranges a later commit writes say so; so they go into the next commit
//! too. Without this, a restart after the disk was freed would find them
//! marked seen and missing: never fetched again, lost on this node.
//!
//! A full disk stays full for a while, and every attempt rebuilds a
//! transaction of everything held: attempts back off (1 s, doubling to
//! 30 s), and what arrives meanwhile is held without touching the store.
//!
//! Held messages are bounded; past the bound the oldest are given up. The
//! node still counts them as seen, so every seen range written afterwards
//! leaves them out ([`Unstored::unclaim`]): after a restart the node asks
//! its peers for them again instead of believing it has them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rossip_proto::{Event, Message, NodeId};

/// At most this many payload bytes (text, channel, name) are held ...
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// ... and at most this many messages.
const MAX_MESSAGES: usize = 100_000;

/// The first pause after a failure; each further failure doubles it ...
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// ... up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Failures after the first are logged at most this often (with a count).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Messages and origins waiting for the store; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Unstored {
    /// With their delivery numbers.
    pub(super) messages: VecDeque<(u64, Message)>,
    /// Origins whose seen ranges a failed commit did not write (messages
    /// and given-up ranges alike).
    pub(super) origins: BTreeSet<NodeId>,
    bytes: usize,
    /// Messages given up on since start (a bound was reached).
    dropped: u64,
    /// The delivery numbers of messages given up since the driver last
    /// took them: never shown to followers, so to be skipped.
    given_up_numbers: Vec<u64>,
    /// Their sequence numbers by origin (inclusive ranges, merged), left
    /// out of every seen range written in this run.
    given_up: BTreeMap<NodeId, Vec<(u64, u64)>>,
    /// The last failed attempt, its error, and the pause before the next.
    failed_at: Option<Instant>,
    last_error: String,
    retry_after: Duration,
    /// When a failure was last logged, and the failures since.
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl Unstored {
    /// Messages waiting for the store.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Messages given up on since start.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether anything waits for the store.
    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.origins.is_empty()
    }

    /// The error of the last attempt, while the next one has to wait
    /// (`None`: try the store now).
    pub(super) fn deferred(&self, now: Instant) -> Option<&str> {
        let at = self.failed_at?;
        (!self.is_empty() && now.duration_since(at) < self.retry_after)
            .then_some(self.last_error.as_str())
    }

    /// Holds what a flush delivered (`numbered`, the messages among
    /// `events`); returns how many of the oldest held messages were given
    /// up to stay within the bounds.
    pub(super) fn hold(&mut self, numbered: &[(u64, &Message)], events: &[Event]) -> u64 {
        let mut dropped = 0;
        for &(number, message) in numbered {
            self.origins.insert(message.id.origin);
            dropped += self.push(number, message);
        }
        for event in events {
            match event {
                Event::Message(_) => {}
                Event::Lost(lost) => {
                    self.origins.insert(lost.origin);
                }
                Event::Peer(_)
                | Event::Contacted { .. }
                | Event::Keyring(_)
                | Event::IdentityInUse(_)
                | Event::Presence(_) => {}
                Event::DirectStatus(_) => {}
            }
        }
        dropped
    }

    fn push(&mut self, number: u64, message: &Message) -> u64 {
        self.bytes += message.payload_len();
        self.messages.push_back((number, message.clone()));
        let mut dropped = 0;
        while self.bytes > MAX_BYTES || self.messages.len() > MAX_MESSAGES {
            let Some((number, oldest)) = self.messages.pop_front() else {
                break;
            };
            self.given_up_numbers.push(number);
            self.bytes -= oldest.payload_len();
            add_seq(
                self.given_up.entry(oldest.id.origin).or_default(),
                oldest.id.seq,
            );
            dropped += 1;
        }
        self.dropped += dropped;
        dropped
    }

    /// Records a failed attempt; whether to log it now (else it is counted
    /// for the next line, returned then as the failures in between).
    pub(super) fn failed(&mut self, error: String, now: Instant) -> Option<u64> {
        self.failed_at = Some(now);
        self.last_error = error;
        self.retry_after = if self.retry_after.is_zero() {
            FIRST_RETRY
        } else {
            (self.retry_after * 2).min(MAX_RETRY)
        };
        let due = self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL);
        if due {
            self.logged_at = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            None
        }
    }

    /// The next flush tries the store whatever the back-off (shutdown).
    pub(super) fn retry_now(&mut self) {
        self.failed_at = None;
    }

    /// Everything held was stored (what was given up stays given up).
    /// Everything held was committed: hands the held messages back, in
    /// delivery order, to be shown to followers now.
    pub(super) fn stored(&mut self) -> Vec<(u64, Message)> {
        let dropped = self.dropped;
        let given_up = std::mem::take(&mut self.given_up);
        let given_up_numbers = std::mem::take(&mut self.given_up_numbers);
        let messages = std::mem::take(&mut self.messages);
        *self = Unstored {
            dropped,
            given_up,
            given_up_numbers,
            ..Unstored::default()
        };
        messages.into()
    }

    /// The numbers of messages given up since the last call.
    pub(super) fn take_given_up_numbers(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.given_up_numbers)
    }

    /// `origin`'s seen ranges without the messages given up: what the store
    /// may claim was delivered.
    pub(super) fn unclaim(&self, origin: &NodeId, seen: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
        match self.given_up.get(origin) {
            Some(holes) => subtract(&seen, holes),
            None => seen,
        }
    }
}

/// Adds `seq` to sorted, merged inclusive `ranges`.
fn add_seq(ranges: &mut Vec<(u64, u64)>, seq: u64) {
    let at = ranges.partition_point(|&(_, last)| last.saturating_add(1) < seq);
    match ranges.get_mut(at) {
        Some(range) if range.0 <= seq.saturating_add(1) => {
            range.0 = range.0.min(seq);
            range.1 = range.1.max(seq);
            // Joining the next range?
            if let Some(&(next_first, next_last)) = ranges.get(at + 1)
                && next_first <= ranges[at].1.saturating_add(1)
            {
                ranges[at].1 = ranges[at].1.max(next_last);
                ranges.remove(at + 1);
            }
        }
        _ => ranges.insert(at, (seq, seq)),
    }
}

/// `ranges` minus `holes` (both sorted, merged, inclusive).
fn subtract(ranges: &[(u64, u64)], holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(ranges.len());
    let mut holes = holes.iter().peekable();
    for &(first, last) in ranges {
        // What is left of this range from here on (`None`: nothing).
        let mut rest = Some(first);
        while let (Some(start), Some(&&(hole_first, hole_last))) = (rest, holes.peek()) {
            if hole_last < start {
                holes.next();
                continue;
            }
            if hole_first > last {
                break;
            }
            if hole_first > start {
                out.push((start, hole_first - 1));
            }
            if hole_last >= last {
                // The hole may reach into the next range: keep it.
                rest = None;
                break;
            }
            rest = Some(hole_last + 1);
            holes.next();
        }
        if let Some(start) = rest {
            out.push((start, last));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::message::Hlc;
    use rossip_proto::sign::NodeKey;

    fn message(seq: u64, text_bytes: usize) -> Event {
        Event::Message(Message::signed(
            &NodeKey::for_testing(1),
            seq,
            "a".into(),
            Hlc {
                ms: seq,
                logical: 0,
            },
            rossip_proto::message::Draft::channel("general", "x".repeat(text_bytes)),
        ))
    }

    /// Holds one delivered message, numbered as its sequence number.
    fn hold(unstored: &mut Unstored, event: Event) -> u64 {
        let Event::Message(message) = &event else {
            return 0;
        };
        unstored.hold(&[(message.id.seq, message)], std::slice::from_ref(&event))
    }

    #[test]
    fn held_messages_are_bounded_oldest_first_and_counted() {
        let mut unstored = Unstored::default();
        let size = 4 * 1024 * 1024;
        let fits = MAX_BYTES / (size + "general".len() + 1);
        for seq in 1..=fits as u64 {
            assert_eq!(hold(&mut unstored, message(seq, size)), 0, "seq {seq} fits");
        }
        assert_eq!(hold(&mut unstored, message(fits as u64 + 1, size)), 1);
        assert_eq!(unstored.len(), fits);
        assert_eq!(unstored.dropped(), 1);
        assert_eq!(
            unstored.messages.front().map(|(_, m)| m.id.seq),
            Some(2),
            "the oldest is given up first"
        );
        unstored.stored();
        assert!(unstored.is_empty());
        assert_eq!(unstored.bytes, 0);
        assert_eq!(
            unstored.dropped(),
            1,
            "the count of given-up messages stays"
        );
    }

    #[test]
    fn given_up_messages_are_left_out_of_every_seen_range() {
        let mut unstored = Unstored::default();
        let size = 4 * 1024 * 1024;
        let fits = MAX_BYTES / (size + "general".len() + 1);
        for seq in 1..=fits as u64 + 2 {
            hold(&mut unstored, message(seq, size));
        }
        assert_eq!(unstored.dropped(), 2, "seqs 1 and 2 given up");
        let origin = NodeKey::for_testing(1).node_id();
        unstored.stored();
        let seen = vec![(1, 40)];
        assert_eq!(unstored.unclaim(&origin, seen.clone()), vec![(3, 40)]);
        let other = NodeKey::for_testing(2).node_id();
        assert_eq!(
            unstored.unclaim(&other, seen),
            vec![(1, 40)],
            "other origins as they are"
        );
    }

    #[test]
    fn ranges_merge_and_subtract() {
        let mut ranges = Vec::new();
        for seq in [5, 7, 6, 1, 9, 2, 8] {
            add_seq(&mut ranges, seq);
        }
        assert_eq!(ranges, vec![(1, 2), (5, 9)]);
        add_seq(&mut ranges, 3);
        add_seq(&mut ranges, 4);
        assert_eq!(ranges, vec![(1, 9)]);

        let holes = vec![(3, 4), (8, 12)];
        assert_eq!(subtract(&[(1, 10)], &holes), vec![(1, 2), (5, 7)]);
        assert_eq!(
            subtract(&[(1, 2), (5, 20)], &holes),
            vec![(1, 2), (5, 7), (13, 20)]
        );
        assert_eq!(subtract(&[(3, 4)], &holes), Vec::<(u64, u64)>::new());
        assert_eq!(subtract(&[(1, 10)], &[]), vec![(1, 10)]);
        assert_eq!(subtract(&[(0, u64::MAX)], &[(0, 0)]), vec![(1, u64::MAX)]);
        assert_eq!(subtract(&[(0, u64::MAX)], &[(5, u64::MAX)]), vec![(0, 4)]);
    }

    #[test]
    fn attempts_back_off_and_failures_are_logged_at_most_every_interval() {
        let mut unstored = Unstored::default();
        let start = Instant::now();
        assert_eq!(unstored.deferred(start), None, "nothing held: no wait");
        hold(&mut unstored, message(1, 10));
        assert_eq!(unstored.failed("disk full".into(), start), Some(0));
        assert_eq!(
            unstored.deferred(start + Duration::from_millis(999)),
            Some("disk full")
        );
        assert_eq!(unstored.deferred(start + FIRST_RETRY), None);

        let second = start + FIRST_RETRY;
        assert_eq!(
            unstored.failed("disk full".into(), second),
            None,
            "not logged again yet"
        );
        assert!(
            unstored
                .deferred(second + Duration::from_millis(1999))
                .is_some()
        );
        assert_eq!(
            unstored.deferred(second + 2 * FIRST_RETRY),
            None,
            "the pause doubled"
        );
        // Logged at `start`; failures before `start + LOG_INTERVAL` are counted.
        let at = start + LOG_INTERVAL - Duration::from_millis(1);
        assert_eq!(unstored.failed("disk full".into(), at), None);
        assert_eq!(
            unstored.failed("disk full".into(), start + LOG_INTERVAL),
            Some(2),
            "the next line counts the failures it did not log"
        );
        for _ in 0..10 {
            unstored.failed("disk full".into(), at);
        }
        assert_eq!(unstored.retry_after, MAX_RETRY, "the pause is capped");
        unstored.stored();
        assert_eq!(unstored.deferred(at + LOG_INTERVAL), None);
    }
}
