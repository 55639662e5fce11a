//! Replay protection for sealed datagrams.
//!
//! A sealed datagram's nonce is `run (8) ‖ sent_ms (8) ‖ counter (8)`: a
//! random number per run of the sender, the sender's wall clock when it
//! sealed, and a counter that never repeats within the run. The AEAD
//! authenticates the nonce, so none of it can be altered.
//!
//! A receiver keeps, per run it hears from, the highest counter and a
//! bitmap of the [`WINDOW`] counters below it (the anti-replay window of
//! IPsec, RFC 4303 §3.4.3, and WireGuard): a counter seen before, or older
//! than the window, is a replay. A run it has no record of is accepted only
//! if `sent_ms` is within the freshness span
//! ([`crate::node::ProtocolConfig::replay_freshness`]) of its own clock, so a datagram
//! captured long ago is refused even by a node that restarted since, or
//! never heard of that run. A run's record is dropped once this node's
//! clock is that span past the run's newest reading (all its datagrams
//! are stale by then), and at most [`MAX_RUNS`] are kept.
//!
//! The window is only updated for datagrams that authenticated: a forger
//! without the key cannot move it.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counters below the highest seen that are still accepted once: room for
/// datagrams reordered on the way.
pub const WINDOW: u64 = 1024;

/// Most runs (senders' processes) remembered at once.
pub const MAX_RUNS: usize = 4096;

const WORDS: usize = (WINDOW / 64) as usize;

/// Why a datagram is a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// This exact counter of this run was accepted before, or is older than
    /// the window.
    Replayed,
    /// A run this node has no record of, stamped too far from its clock.
    Stale,
}

/// The nonce fields replay protection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) run: u64,
    pub(crate) sent_ms: u64,
    pub(crate) counter: u64,
}

#[derive(Debug, Clone)]
struct Window {
    highest: u64,
    /// Bit `i` set: counter `highest - i` was accepted.
    seen: [u64; WORDS],
    /// The newest sender clock reading of the run: once this node's clock
    /// is the freshness span past it, every datagram of the run is stale, so the
    /// record can go.
    newest_sent_ms: u64,
}

impl Window {
    fn has(&self, counter: u64) -> Option<bool> {
        let age = self.highest.checked_sub(counter)?;
        if age >= WINDOW {
            return Some(true);
        }
        let (word, bit) = (usize::try_from(age / 64).ok()?, age % 64);
        Some(self.seen.get(word).is_some_and(|w| w & (1 << bit) != 0))
    }

    fn set(&mut self, counter: u64) {
        if counter > self.highest {
            let shift = counter - self.highest;
            shift_up(&mut self.seen, shift);
            self.highest = counter;
        }
        let age = self.highest - counter;
        if age < WINDOW {
            let (word, bit) = ((age / 64) as usize, age % 64);
            if let Some(w) = self.seen.get_mut(word) {
                *w |= 1 << bit;
            }
        }
    }
}

/// Moves every bit `shift` places towards older counters.
fn shift_up(seen: &mut [u64; WORDS], shift: u64) {
    if shift >= WINDOW {
        *seen = [0; WORDS];
        return;
    }
    let words = (shift / 64) as usize;
    let bits = shift % 64;
    for i in (0..WORDS).rev() {
        let from = i.checked_sub(words);
        let low = from.and_then(|f| seen.get(f)).copied().unwrap_or(0);
        let carry = from
            .and_then(|f| f.checked_sub(1))
            .and_then(|f| seen.get(f))
            .copied()
            .unwrap_or(0);
        seen[i] = if bits == 0 {
            low
        } else {
            (low << bits) | (carry >> (64 - bits))
        };
    }
}

/// What this node remembers of the runs it heard from.
#[derive(Debug, Clone)]
pub(crate) struct ReplayGuard {
    runs: BTreeMap<u64, Window>,
    /// How far a datagram of a run this node has no record of may be from
    /// this node's clock, in milliseconds
    /// ([`crate::node::ProtocolConfig::replay_freshness`]).
    freshness_ms: u64,
}

impl ReplayGuard {
    /// Remembers no run yet; takes datagrams of unknown runs stamped within
    /// `freshness` of this node's clock.
    pub(crate) fn new(freshness: Duration) -> Self {
        ReplayGuard {
            runs: BTreeMap::new(),
            freshness_ms: u64::try_from(freshness.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Whether a datagram with `stamp` may be opened at `now_ms`. Changes
    /// nothing: [`ReplayGuard::record`] does, once it authenticated.
    pub(crate) fn check(&self, stamp: Stamp, now_ms: u64) -> Result<(), Refusal> {
        match self.runs.get(&stamp.run) {
            Some(window) => match window.has(stamp.counter) {
                Some(true) => Err(Refusal::Replayed),
                _ => Ok(()),
            },
            None if stamp.sent_ms.abs_diff(now_ms) > self.freshness_ms => Err(Refusal::Stale),
            None => Ok(()),
        }
    }

    /// Records an authenticated datagram.
    pub(crate) fn record(&mut self, stamp: Stamp, now_ms: u64) {
        if !self.runs.contains_key(&stamp.run) {
            self.make_room(now_ms);
        }
        let window = self.runs.entry(stamp.run).or_insert(Window {
            highest: stamp.counter,
            seen: [0; WORDS],
            newest_sent_ms: stamp.sent_ms,
        });
        window.set(stamp.counter);
        window.newest_sent_ms = window.newest_sent_ms.max(stamp.sent_ms);
    }

    /// Runs remembered.
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    /// Drops the runs whose every datagram is stale by now (by the
    /// sender's own clock readings, so a sender whose clock runs behind or
    /// ahead is forgotten exactly when its datagrams stop passing the
    /// freshness check) and, if still full, the one with the oldest reading:
    /// a replay of that run's last datagrams would then open once more.
    fn make_room(&mut self, now_ms: u64) {
        if self.runs.len() < MAX_RUNS {
            return;
        }
        let freshness_ms = self.freshness_ms;
        self.runs
            .retain(|_, w| now_ms <= w.newest_sent_ms.saturating_add(freshness_ms));
        while self.runs.len() >= MAX_RUNS {
            let oldest = self
                .runs
                .iter()
                .min_by_key(|(_, w)| w.newest_sent_ms)
                .map(|(run, _)| *run);
            match oldest {
                Some(run) => self.runs.remove(&run),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freshness_ms() -> u64 {
        let freshness = crate::node::ProtocolConfig::default().replay_freshness;
        u64::try_from(freshness.as_millis()).expect("minutes")
    }

    fn guard_with_defaults() -> ReplayGuard {
        ReplayGuard::new(crate::node::ProtocolConfig::default().replay_freshness)
    }

    fn stamp(run: u64, counter: u64) -> Stamp {
        Stamp {
            run,
            sent_ms: 1_000_000,
            counter,
        }
    }

    #[test]
    fn each_counter_is_accepted_once_within_the_window() {
        let mut guard = guard_with_defaults();
        let now = 1_000_000;
        for counter in [5, 3, 4, 100, 7] {
            assert_eq!(guard.check(stamp(1, counter), now), Ok(()), "{counter}");
            guard.record(stamp(1, counter), now);
        }
        for counter in [5, 3, 4, 100, 7] {
            assert_eq!(guard.check(stamp(1, counter), now), Err(Refusal::Replayed));
        }
        // Unseen counters below the highest are still fine (reordering).
        assert_eq!(guard.check(stamp(1, 6), now), Ok(()));
        // Far past the window: refused even though never seen.
        guard.record(stamp(1, 5000), now);
        assert_eq!(guard.check(stamp(1, 6), now), Err(Refusal::Replayed));
        assert_eq!(
            guard.check(stamp(1, 5000 - WINDOW), now),
            Err(Refusal::Replayed)
        );
        assert_eq!(guard.check(stamp(1, 5000 - WINDOW + 1), now), Ok(()));
        assert_eq!(guard.check(stamp(1, 5000), now), Err(Refusal::Replayed));
    }

    #[test]
    fn the_window_shifts_bit_exactly() {
        let mut guard = guard_with_defaults();
        let now = 1_000_000;
        // Every counter 0..3000 in a scrambled but windowed order.
        let mut order: Vec<u64> = (0..3000).collect();
        for chunk in order.chunks_mut(37) {
            chunk.reverse();
        }
        for &c in &order {
            assert_eq!(guard.check(stamp(9, c), now), Ok(()), "{c}");
            guard.record(stamp(9, c), now);
            assert_eq!(guard.check(stamp(9, c), now), Err(Refusal::Replayed), "{c}");
        }
        for c in 0..3000 {
            assert_eq!(guard.check(stamp(9, c), now), Err(Refusal::Replayed), "{c}");
        }
        assert_eq!(guard.check(stamp(9, 3000), now), Ok(()));
    }

    #[test]
    fn unknown_runs_must_be_fresh() {
        let guard = guard_with_defaults();
        let now = 10 * freshness_ms();
        let at = |sent_ms| Stamp {
            run: 1,
            sent_ms,
            counter: 0,
        };
        assert_eq!(guard.check(at(now - freshness_ms()), now), Ok(()));
        assert_eq!(guard.check(at(now + freshness_ms()), now), Ok(()));
        assert_eq!(
            guard.check(at(now - freshness_ms() - 1), now),
            Err(Refusal::Stale)
        );
        assert_eq!(
            guard.check(at(now + freshness_ms() + 1), now),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut guard = guard_with_defaults();
        let now = 1_000_000;
        for run in 0..(MAX_RUNS as u64 + 100) {
            let stamp = Stamp {
                run,
                sent_ms: now + run,
                counter: 0,
            };
            guard.record(stamp, now);
        }
        assert!(guard.len() <= MAX_RUNS);
        // The runs with the oldest readings went first.
        assert_eq!(guard.check(stamp(0, 0), now), Ok(()));
        let last = Stamp {
            run: MAX_RUNS as u64 + 99,
            sent_ms: now,
            counter: 0,
        };
        assert_eq!(guard.check(last, now), Err(Refusal::Replayed));
    }

    #[test]
    fn a_run_is_forgotten_only_once_its_datagrams_are_stale() {
        let mut guard = guard_with_defaults();
        let now = 10 * freshness_ms();
        // A sender whose clock runs 4 minutes behind, last heard now.
        let behind = Stamp {
            run: 1,
            sent_ms: now - 4 * 60 * 1000,
            counter: 5,
        };
        guard.record(behind, now);
        // Fill the table a minute and a half later: the run's newest
        // reading is 5.5 minutes old by this clock, so it may go...
        let later = now + 90 * 1000;
        for run in 2..=(MAX_RUNS as u64 + 1) {
            let stamp = Stamp {
                run,
                sent_ms: later,
                counter: 0,
            };
            guard.record(stamp, later);
        }
        assert!(guard.len() <= MAX_RUNS);
        // ...and was (not just the oldest fresh one): its datagrams are
        // refused as stale, not as replayed, and every fresh run is kept.
        assert_eq!(guard.len(), MAX_RUNS);
        assert_eq!(guard.check(behind, later), Err(Refusal::Stale));
    }
}
