//! Anti-entropy: periodic digest exchange so that a node that missed a push,
//! a late joiner, or one side of a healed partition converges.
//!
//! Every [`super::ProtocolConfig::anti_entropy_interval`] a node sends one member a [`Digest`]
//! (members that just came up first; a node that just joined its first
//! member does so at once): for a slice of the origin-id space, which
//! sequence numbers of each origin it has seen, and which pieces it holds
//! of messages it is reassembling. The receiver answers with repairs (up to
//! [`super::ProtocolConfig::max_repair_bytes_per_digest`], batched, oldest first per origin; only
//! the missing pieces of a partly received large message), with a `Gone`
//! list of what the asker lacks that the receiver saw but no longer holds,
//! and — unless the digest was itself an answer — with its own digest of
//! the same slice, so the exchange is push-pull. The answer echoes the
//! request's stamp, which measures the round trip. A gap pull
//! (`dissemination`) is the same exchange for one origin.
//!
//! Catch-up is bounded by the history window (count, bytes, age): only
//! messages inside it are held and served. A node told that messages it
//! lacks are gone gives them up: silently if they predate everything it has
//! of that origin (a late joiner does not want history from before the
//! window), else as [`super::Lost`], counted and reported.
//!
//! History is ordered by [`crate::message::OrderKey`] regardless of arrival
//! order, so a repaired old message lands in the past of history, not at
//! its end (event consumers see it when it arrives). Digests are not
//! authenticated (neither is anything else yet).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use rand::seq::IndexedRandom;

use super::dissemination::items_of;
use super::fragments::has_piece;
use super::outbox::pack;
use super::timers::TimerKind;
use super::{Event, Lost, Node};
use crate::id::NodeId;
use crate::wire::{self, Body, Digest, GoneRange, OriginDigest, Payload, SeqRange};

// The packing bounds below are not tunables: they size a digest so it
// fits one datagram (the `const` budgets are checked by the tests against
// `wire::MAX_BODY_BYTES`). The exchange's timings and budgets are in
// `ProtocolConfig`.

/// Most heads in one digest.
const MAX_HEADS: usize = 16;

/// Most seen-ranges listed per origin in a digest; seqs beyond them count as
/// missing, which costs duplicates, never losses.
const MAX_DIGEST_RANGES_PER_ORIGIN: usize = 32;

/// Most partly received messages listed in a digest.
const MAX_DIGEST_PARTIALS: usize = 8;

/// Most ranges in one `Gone` answer.
const MAX_GONE_RANGES: usize = 32;

/// Bytes of a datagram available to a digest's origin and partial lists:
/// the body less the fixed fields (stamp, reply, two optional ids, list
/// lengths) at their largest.
const DIGEST_ORIGINS_BUDGET: usize = wire::MAX_BODY_BYTES - 96;

/// Upper bound of a partial entry's encoded size: id, bitmap length and a
/// bitmap of the most fragments a message can have.
#[cfg(test)]
const PARTIAL_ENTRY_BOUND: usize = 16 + 10 + 2 + wire::MAX_FRAGMENTS.div_ceil(8);

/// Upper bound of a head's encoded size: id and a varint.
const HEAD_SIZE_BOUND: usize = 16 + 10;

/// Bytes of a digest the partial list may use: what is left once the heads
/// and one origin entry with every range have their room, so the first
/// origin of a slice always fits (a digest that covers no origin could not
/// say so).
const PARTIAL_BUDGET: usize = DIGEST_ORIGINS_BUDGET
    - MAX_HEADS * HEAD_SIZE_BOUND
    - entry_size_bound(MAX_DIGEST_RANGES_PER_ORIGIN);

/// Upper bound of a partial entry with a bitmap of `len` bytes.
fn partial_size_bound(len: usize) -> usize {
    16 + 10 + 2 + len
}

/// Upper bound of an origin entry's encoded size: id, list length, and two
/// varints of at most 10 bytes per range.
const fn entry_size_bound(ranges: usize) -> usize {
    16 + 3 + ranges * 20
}

/// Whether `origin` lies in the slice `(after, through]`.
fn in_slice(origin: &NodeId, after: Option<NodeId>, through: Option<NodeId>) -> bool {
    after.is_none_or(|after| *origin > after) && through.is_none_or(|through| *origin <= through)
}

/// A peer's ranges (untrusted: maybe unsorted, overlapping or inverted) as
/// sorted, valid ranges.
fn normalize(ranges: &[SeqRange]) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges
        .iter()
        .filter(|r| r.first <= r.last)
        .map(|r| (r.first, r.last))
        .collect();
    sorted.sort_unstable();
    sorted
}

/// The parts of `first..=last` not covered by `covered` (sorted), in order.
fn subtract(first: u64, last: u64, covered: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut cursor = first;
    for &(a, b) in covered {
        if b < cursor {
            continue;
        }
        if a > last {
            break;
        }
        if a > cursor {
            out.push((cursor, a - 1));
        }
        match b.checked_add(1) {
            Some(next) => cursor = cursor.max(next),
            None => return out,
        }
        if cursor > last {
            return out;
        }
    }
    if cursor <= last {
        out.push((cursor, last));
    }
    out
}

/// The id just below `id` (the exclusive lower bound of a one-origin
/// slice), `None` for the lowest id.
fn predecessor(id: NodeId) -> Option<NodeId> {
    u128::from_be_bytes(id.0)
        .checked_sub(1)
        .map(|below| NodeId(below.to_be_bytes()))
}

impl Node {
    /// The periodic round: a digest to the member that came up longest ago
    /// without an exchange yet, else to one random alive or suspect member.
    /// Also applies the history's age bound and expires stale partials.
    pub(super) fn anti_entropy_round(&mut self, now: Instant) {
        let protocol = self.config.protocol;
        let catching_up = self.repaired_since_round >= protocol.catch_up_threshold;
        self.repaired_since_round = 0;
        let targets = self.members.active_targets(&[]);
        // In a cluster small enough for direct pushes, every member
        // acknowledges each push and the origin retransmits what is lost
        // (see `acks`): the faster rounds that bound an epidemic's tail
        // would only add traffic, so rounds keep the idle pace there.
        let acknowledged =
            protocol.push_acks.enabled && targets.len() <= protocol.direct_push_limit;
        let active = !acknowledged
            && self.last_message_at.is_some_and(|at| {
                now.saturating_duration_since(at) < protocol.anti_entropy_interval
            });
        let interval = if catching_up {
            protocol.anti_entropy_catch_up_interval
        } else if active {
            protocol.anti_entropy_active_interval
        } else {
            protocol.anti_entropy_interval
        };
        self.timers.schedule(now + interval, TimerKind::AntiEntropy);
        let wall = self.wall_ms(now);
        self.history.evict_expired(wall);
        self.reassembly.expire(now);
        self.heads
            .retain(|_, at| now.saturating_duration_since(*at) < protocol.recent_heads_window);
        self.asked
            .retain(|_, at| now.saturating_duration_since(*at) < protocol.gone_answer_window);
        self.stats.reassembly_evicted = self.reassembly.evicted;
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
        self.asked.insert(addr, now);
        self.send(addr, &Body::Digest(digest));
    }

    /// Sends a digest of `origin` alone to `addr` (a gap pull).
    pub(super) fn send_origin_digest(&mut self, addr: SocketAddr, origin: NodeId, now: Instant) {
        let digest = self.build_digest(predecessor(origin), Some(origin), self.stamp_us(now), None);
        self.asked.insert(addr, now);
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
        // Partly received messages first (rare, and small unless huge): the
        // origins get the rest of the datagram. Those outside the slice the
        // digest ends up covering are dropped below.
        let mut partial = self
            .reassembly
            .digests(MAX_DIGEST_PARTIALS, |id| in_slice(&id.origin, after, bound));
        let mut partial_used = 0;
        partial.retain(|p| {
            partial_used += partial_size_bound(p.have.len());
            partial_used <= PARTIAL_BUDGET
        });
        let heads = self.recent_heads();
        let mut used: usize = partial
            .iter()
            .map(|p| partial_size_bound(p.have.len()))
            .sum::<usize>()
            + heads.len() * HEAD_SIZE_BOUND;
        let mut origins = Vec::new();
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
        partial.retain(|p| in_slice(&p.id.origin, after, through));
        Digest {
            stamp_us,
            reply_to,
            after,
            through,
            origins,
            partial,
            heads,
        }
    }

    /// The [`MAX_HEADS`] origins heard from most recently, with the highest
    /// sequence number seen of each.
    fn recent_heads(&self) -> Vec<wire::Head> {
        let mut recent: Vec<(&NodeId, &Instant)> = self.heads.iter().collect();
        recent.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        recent
            .into_iter()
            .take(MAX_HEADS)
            .filter_map(|(origin, _)| {
                let seq = self.history.seen(origin)?.highest()?;
                Some(wire::Head {
                    origin: *origin,
                    seq,
                })
            })
            .collect()
    }

    /// Pulls every origin a peer's heads show us behind on.
    fn pull_behind_heads(&mut self, sender: NodeId, heads: &[wire::Head], now: Instant) {
        for head in heads.iter().take(MAX_HEADS) {
            if head.origin == self.config.id {
                continue;
            }
            let highest = self
                .history
                .seen(&head.origin)
                .and_then(|seen| seen.highest());
            if highest.is_none_or(|highest| highest < head.seq) {
                self.pull_soon(head.origin, sender, head.seq, now);
            }
        }
    }

    /// A digest arrived from `sender`: repair what it lacks, tell it what is
    /// gone, answer with our own digest of the same slice unless it is an
    /// answer.
    ///
    /// Only members' digests are answered, and answers go to the member's
    /// advertised address, not the datagram's source: a small digest can
    /// cause many repairs, and this way a forged source address cannot aim
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
            partial,
            heads,
        } = digest;
        self.pull_behind_heads(sender, &heads, now);
        let seen: BTreeMap<NodeId, Vec<(u64, u64)>> = origins
            .into_iter()
            .filter(|entry| in_slice(&entry.origin, after, through))
            .map(|entry| (entry.origin, normalize(&entry.seen)))
            .collect();
        let partial: BTreeMap<_, _> = partial.into_iter().map(|p| (p.id, p.have)).collect();
        let (items, messages) = self.repairs_for(after, through, &seen, &partial, now);
        self.stats.repairs_sent += messages;
        for batch in pack(items) {
            self.send(to, &Body::Repair(batch));
        }
        let gone = self.gone_for(after, through, &seen);
        if !gone.is_empty() {
            self.send(to, &Body::Gone(gone));
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

    /// What a peer that has seen `seen` (per origin of the slice) lacks of
    /// our history: items within
    /// [`super::ProtocolConfig::max_repair_bytes_per_digest`] and the
    /// number of messages they carry.
    fn repairs_for(
        &self,
        after: Option<NodeId>,
        through: Option<NodeId>,
        seen: &BTreeMap<NodeId, Vec<(u64, u64)>>,
        partial: &BTreeMap<crate::id::MessageId, Vec<u8>>,
        now: Instant,
    ) -> (Vec<Payload>, u64) {
        let wall = self.wall_ms(now);
        let budget = self.config.protocol.max_repair_bytes_per_digest;
        let mut items = Vec::new();
        let mut used = 0;
        let mut messages = 0;
        let none = Vec::new();
        'origins: for (origin, _) in self.history.origins_after(after) {
            if !in_slice(origin, after, through) {
                break;
            }
            let Some(lowest) = self.history.oldest_held(*origin) else {
                continue;
            };
            let covered = seen.get(origin).unwrap_or(&none);
            for (first, last) in subtract(lowest, u64::MAX, covered) {
                for message in self.history.of_origin(*origin, first, last) {
                    if !self.history.within_age(message.ts.ms, wall) {
                        continue;
                    }
                    let have = partial.get(&message.id);
                    let pieces: Vec<Payload> = items_of(message)
                        .into_iter()
                        .filter(|item| match (item, have) {
                            (Payload::Piece(piece), Some(have)) => {
                                !has_piece(have, usize::from(piece.index))
                            }
                            _ => true,
                        })
                        .collect();
                    let len: usize = pieces.iter().map(super::outbox::item_len).sum();
                    if used + len > budget && !items.is_empty() {
                        break 'origins;
                    }
                    used += len;
                    messages += 1;
                    items.extend(pieces);
                }
            }
        }
        (items, messages)
    }

    /// What a peer that has seen `seen` lacks that we saw but no longer hold.
    fn gone_for(
        &self,
        after: Option<NodeId>,
        through: Option<NodeId>,
        seen: &BTreeMap<NodeId, Vec<(u64, u64)>>,
    ) -> Vec<GoneRange> {
        let none = Vec::new();
        let mut gone = Vec::new();
        for (origin, ours) in self.history.origins_after(after) {
            if !in_slice(origin, after, through) {
                break;
            }
            let below = self.history.oldest_held(*origin);
            let covered = seen.get(origin).unwrap_or(&none);
            for (first, last) in ours.ranges() {
                let last = match below {
                    Some(held) => last.min(held.saturating_sub(1)),
                    None => last,
                };
                if first > last {
                    break;
                }
                for (a, b) in subtract(first, last, covered) {
                    if gone.len() == MAX_GONE_RANGES {
                        return gone;
                    }
                    gone.push(GoneRange {
                        origin: *origin,
                        first: a,
                        last: b,
                    });
                }
            }
        }
        gone
    }

    /// A member says messages we lack are gone: give them up, silently if
    /// they predate everything we have of that origin, else as [`Lost`].
    ///
    /// Only an answer is taken: from a member this node asked (sent a
    /// digest to) lately. Nothing authenticates it yet, so a member could
    /// still lie; the encryption and signatures issue closes that.
    pub(super) fn on_gone(&mut self, sender: NodeId, ranges: Vec<GoneRange>, now: Instant) {
        let Some(addr) = self.members.active_addr(sender) else {
            self.count_drop("gone_from_non_member");
            return;
        };
        let window = self.config.protocol.gone_answer_window;
        let asked = self
            .asked
            .get(&addr)
            .is_some_and(|at| now.saturating_duration_since(*at) < window);
        if !asked {
            self.count_drop("gone_unsolicited");
            return;
        }
        for range in ranges.into_iter().take(MAX_GONE_RANGES) {
            // Nobody knows better than this node what it sent.
            if range.first > range.last || range.first == 0 || range.origin == self.config.id {
                continue;
            }
            let lowest = self
                .history
                .seen(&range.origin)
                .and_then(|seen| seen.ranges().next().map(|(first, _)| first));
            // Before our time: not a loss.
            let before_end = match lowest {
                Some(lowest) => range.last.min(lowest.saturating_sub(1)),
                None => range.last,
            };
            if range.first <= before_end {
                self.history
                    .mark_seen(range.origin, range.first, before_end);
            }
            let first = range.first.max(before_end.saturating_add(1));
            if lowest.is_some() && first <= range.last {
                let newly = self.history.mark_seen(range.origin, first, range.last);
                if newly > 0 {
                    self.stats.messages_lost = self.stats.messages_lost.saturating_add(newly);
                    tracing::warn!(
                        origin_name = self
                            .members
                            .get(&range.origin)
                            .map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                        origin = %range.origin.short(),
                        first,
                        last = range.last,
                        count = newly,
                        "messages left every history window before they reached this node"
                    );
                    self.events.push_back(Event::Lost(Lost {
                        origin: range.origin,
                        first,
                        last: range.last,
                    }));
                }
            }
        }
        self.drain_history_losses();
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
        let ranges = normalize(&[
            SeqRange { first: 9, last: 12 },
            SeqRange { first: 5, last: 1 },
            SeqRange { first: 1, last: 3 },
        ]);
        assert_eq!(ranges, vec![(1, 3), (9, 12)]);
        assert_eq!(subtract(1, 20, &ranges), vec![(4, 8), (13, 20)]);
        assert_eq!(subtract(2, 3, &ranges), vec![]);
        assert_eq!(subtract(5, u64::MAX, &[(1, u64::MAX)]), vec![]);
        assert_eq!(
            subtract(0, u64::MAX, &[(3, 3)]),
            vec![(0, 2), (4, u64::MAX)]
        );
        // Overlapping ranges from a peer do not confuse the walk.
        assert_eq!(subtract(1, 10, &[(1, 5), (2, 3), (4, 6)]), vec![(7, 10)]);
    }

    #[test]
    fn a_one_origin_slice_holds_exactly_that_origin() {
        let id = NodeId([7; 16]);
        let below = predecessor(id);
        assert!(in_slice(&id, below, Some(id)));
        assert!(!in_slice(&NodeId([6; 16]), below, Some(id)));
        assert_eq!(predecessor(NodeId([0; 16])), None);
    }

    #[test]
    fn a_full_digest_fits_one_datagram() {
        const {
            assert!(
                PARTIAL_ENTRY_BOUND <= PARTIAL_BUDGET,
                "one huge partial fits"
            )
        };
        let origins = (0..(DIGEST_ORIGINS_BUDGET - PARTIAL_BUDGET - MAX_HEADS * HEAD_SIZE_BOUND)
            / entry_size_bound(MAX_DIGEST_RANGES_PER_ORIGIN))
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
            heads: vec![
                wire::Head {
                    origin: NodeId([0xff; 16]),
                    seq: u64::MAX,
                };
                MAX_HEADS
            ],
            origins,
            partial: (0..PARTIAL_BUDGET / PARTIAL_ENTRY_BOUND)
                .map(|i| wire::PartialDigest {
                    id: crate::id::MessageId {
                        origin: NodeId([i as u8; 16]),
                        seq: u64::MAX,
                    },
                    have: vec![0xff; wire::MAX_FRAGMENTS.div_ceil(8)],
                })
                .collect(),
        };
        let header = wire::Header {
            flags: 0,
            cluster: wire::ClusterId(0),
            sender: NodeId([0; 16]),
        };
        wire::encode(&header, &Body::Digest(digest)).expect("worst-case digest fits");
    }
}
