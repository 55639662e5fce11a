//! Anti-entropy: periodic digest exchange so that a node that missed a push,
//! a late joiner, or one side of a healed partition converges.
//!
//! Every [`ANTI_ENTROPY_INTERVAL`] a node sends one member a [`Digest`]
//! (members that just came up first; a node that just joined its first
//! member does so at once): for a slice of the origin-id space, which
//! sequence numbers of each origin it has seen. The receiver answers with
//! up to [`MAX_REPAIRS_PER_DIGEST`] `Repair` datagrams (one message each,
//! oldest first) of messages in its history the sender has not seen, and —
//! unless the digest was itself an answer — with its own digest of the same
//! slice, so the exchange is push-pull. The answer echoes the request's
//! stamp, which measures the round trip.
//!
//! What this does not guarantee yet:
//! - a message already evicted from every history it reached is gone;
//! - catching up on a large backlog takes `backlog / 64` exchanges (one per
//!   [`ANTI_ENTROPY_CATCH_UP_INTERVAL`] while repairs keep coming), not one;
//! - history is ordered by [`crate::message::OrderKey`] regardless of arrival
//!   order, so a repaired old message lands in the past of history, not at
//!   its end (event consumers see it when it arrives);
//! - digests are not authenticated (neither is anything else yet).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;

use super::Node;
use super::timers::TimerKind;
use crate::id::NodeId;
use crate::wire::{self, Body, Digest, OriginDigest, SeqRange};

/// How often a node starts a digest exchange with one random member.
pub const ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(1);

/// Most messages sent in answer to one digest.
pub const MAX_REPAIRS_PER_DIGEST: usize = 64;

/// The round interval while catching up: when the last round brought at
/// least half a batch of repairs, there is likely more, so the next round
/// comes sooner (a backlog of thousands then takes seconds, not minutes).
pub const ANTI_ENTROPY_CATCH_UP_INTERVAL: Duration = Duration::from_millis(100);

/// Most seen-ranges listed per origin in a digest; seqs beyond them count as
/// missing, which costs duplicates, never losses.
const MAX_DIGEST_RANGES_PER_ORIGIN: usize = 32;

/// Bytes of a datagram available to a digest's origin list: the body less
/// the fixed fields (stamp, reply, two optional ids, list length) at their
/// largest.
const DIGEST_ORIGINS_BUDGET: usize = wire::MAX_BODY_BYTES - 96;

/// Upper bound of an origin entry's encoded size: id, list length, and two
/// varints of at most 10 bytes per range.
fn entry_size_bound(ranges: usize) -> usize {
    16 + 3 + ranges * 20
}

/// Whether `origin` lies in the slice `(after, through]`.
fn in_slice(origin: &NodeId, after: Option<NodeId>, through: Option<NodeId>) -> bool {
    after.is_none_or(|after| *origin > after) && through.is_none_or(|through| *origin <= through)
}

/// Whether `ranges` (as sent by a peer: untrusted, maybe unsorted) contains
/// `seq`.
fn ranges_contain(ranges: &[SeqRange], seq: u64) -> bool {
    ranges.iter().any(|r| r.first <= seq && seq <= r.last)
}

impl Node {
    /// The periodic round: a digest to the member that came up longest ago
    /// without an exchange yet, else to one random alive or suspect member.
    pub(super) fn anti_entropy_round(&mut self, now: Instant) {
        let catching_up = self.repaired_since_round >= MAX_REPAIRS_PER_DIGEST / 2;
        self.repaired_since_round = 0;
        let interval = if catching_up {
            ANTI_ENTROPY_CATCH_UP_INTERVAL
        } else {
            ANTI_ENTROPY_INTERVAL
        };
        self.timers.schedule(now + interval, TimerKind::AntiEntropy);
        let targets = self.members.active_targets(&[]);
        while let Some(id) = self.fresh_members.pop_front() {
            if let Some(&(_, addr)) = targets.iter().find(|(target, _)| *target == id) {
                self.send_digest(addr, now);
                return;
            }
        }
        if let Some(&(_, addr)) = targets.choose(&mut self.rng) {
            self.send_digest(addr, now);
        }
    }

    /// Makes `id` the target of an upcoming round (each new member gets one
    /// exchange soon, whatever the random choice would be).
    pub(super) fn sync_soon(&mut self, id: NodeId) {
        if !self.fresh_members.contains(&id) {
            self.fresh_members.push_back(id);
        }
    }

    /// Sends a digest of the next slice of origins to `addr`.
    pub(super) fn send_digest(&mut self, addr: SocketAddr, now: Instant) {
        let digest = self.build_digest(self.digest_cursor, None, self.stamp_us(now), None);
        self.digest_cursor = digest.through;
        self.send(addr, &Body::Digest(digest));
    }

    /// Summarises origins in `(after, bound]` (`bound` `None`: to the end),
    /// as many as fit in one datagram; `through` says where it stopped.
    fn build_digest(
        &self,
        after: Option<NodeId>,
        bound: Option<NodeId>,
        stamp_us: u64,
        reply_to: Option<u64>,
    ) -> Digest {
        let mut origins = Vec::new();
        let mut used = 0;
        let mut through = bound;
        for (origin, seen) in self.history.origins_after(after) {
            if bound.is_some_and(|bound| *origin > bound) {
                break;
            }
            let ranges = seen.range_count().min(MAX_DIGEST_RANGES_PER_ORIGIN);
            let size = entry_size_bound(ranges);
            if used + size > DIGEST_ORIGINS_BUDGET {
                through = origins.last().map(|o: &OriginDigest| o.origin);
                break;
            }
            used += size;
            origins.push(OriginDigest {
                origin: *origin,
                seen: seen
                    .ranges()
                    .take(ranges)
                    .map(|(first, last)| SeqRange { first, last })
                    .collect(),
            });
        }
        Digest {
            stamp_us,
            reply_to,
            after,
            through,
            origins,
        }
    }

    /// A digest arrived from `sender`: repair what it lacks, answer with our
    /// own digest of the same slice unless it is an answer.
    ///
    /// Only members' digests are answered, and answers go to the member's
    /// advertised address, not the datagram's source: a small digest can
    /// cause 64 repairs, and this way a forged source address cannot aim
    /// them at someone else.
    pub(super) fn on_digest(&mut self, sender: NodeId, digest: Digest, now: Instant) {
        let Some(to) = self.members.active_addr(sender) else {
            self.count_drop("digest_from_non_member");
            return;
        };
        let Digest {
            stamp_us,
            reply_to,
            after,
            through,
            origins,
        } = digest;
        let seen: BTreeMap<NodeId, Vec<SeqRange>> = origins
            .into_iter()
            .map(|entry| (entry.origin, entry.seen))
            .collect();
        let lacking: Vec<Body> = self
            .history
            .iter()
            .filter(|message| {
                let id = &message.id;
                in_slice(&id.origin, after, through)
                    && !seen
                        .get(&id.origin)
                        .is_some_and(|ranges| ranges_contain(ranges, id.seq))
            })
            .take(MAX_REPAIRS_PER_DIGEST)
            .map(|message| Body::Repair(message.clone()))
            .collect();
        self.stats.repairs_sent += lacking.len() as u64;
        for body in &lacking {
            self.send(to, body);
        }
        match reply_to {
            None => {
                let answer = self.build_digest(after, through, self.stamp_us(now), Some(stamp_us));
                self.send(to, &Body::Digest(answer));
            }
            Some(echo) => {
                if let Some(rtt) = self.rtt_since(echo, now) {
                    self.members.set_rtt(sender, rtt);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_and_ranges_are_checked_without_trusting_order() {
        let a = NodeId([1; 16]);
        let b = NodeId([2; 16]);
        assert!(in_slice(&a, None, None));
        assert!(!in_slice(&a, Some(a), None));
        assert!(in_slice(&b, Some(a), Some(b)));
        assert!(!in_slice(&b, None, Some(a)));
        let ranges = [
            SeqRange { first: 9, last: 12 },
            SeqRange { first: 5, last: 1 },
            SeqRange { first: 1, last: 3 },
        ];
        assert!(ranges_contain(&ranges, 2));
        assert!(ranges_contain(&ranges, 10));
        assert!(!ranges_contain(&ranges, 5));
    }

    #[test]
    fn a_full_digest_fits_one_datagram() {
        let origins = (0..DIGEST_ORIGINS_BUDGET / entry_size_bound(MAX_DIGEST_RANGES_PER_ORIGIN))
            .map(|i| OriginDigest {
                origin: NodeId([i as u8; 16]),
                seen: vec![
                    SeqRange {
                        first: u64::MAX,
                        last: u64::MAX
                    };
                    MAX_DIGEST_RANGES_PER_ORIGIN
                ],
            })
            .collect();
        let digest = Digest {
            stamp_us: u64::MAX,
            reply_to: Some(u64::MAX),
            after: Some(NodeId([0xff; 16])),
            through: Some(NodeId([0xff; 16])),
            origins,
        };
        let header = wire::Header {
            flags: 0,
            cluster: wire::ClusterId(0),
            sender: NodeId([0; 16]),
        };
        wire::encode(&header, &Body::Digest(digest)).expect("worst-case digest fits");
    }
}
