//! Acknowledgement and retransmission of direct pushes.
//!
//! In a cluster of at most [`super::ProtocolConfig::direct_push_limit`]
//! members an origin pushes each new message once to every member, and no
//! one relays it: a lost copy would wait for a gap pull (which needs a
//! later message of the origin) or for anti-entropy (hundreds of
//! milliseconds). So a member that receives a direct push (`relay: false`)
//! answers the origin with a [`wire::Ack`] — the highest ranges of the
//! origin's sequence numbers it has seen, and the pieces of incomplete large
//! messages — and the origin sends again, to that member alone, what is
//! not acknowledged within a timeout derived from the member's round trip
//! (see [`PushAckConfig`]). After a few fast retries the wait doubles;
//! after [`PushAckConfig::max_retries`] the item is left to gap pulls and
//! anti-entropy, which remain the safety net.
//!
//! Datagram budget: an acknowledgement per message per member would double
//! the datagrams of sparse traffic, so acknowledgements are coalesced: the
//! items of every datagram a node handles before its output is drained
//! share one acknowledgement per origin, and an origin gets at most one
//! per [`PushAckConfig::ack_interval`] (what arrives sooner waits for the
//! interval's end). A single message costs one acknowledgement per member;
//! a stream far less than one per message.
//!
//! Memory: the origin holds each unacknowledged item once, with the members
//! still waiting for it, within [`PushAckConfig::max_pending`] pairs and
//! [`PushAckConfig::max_pending_bytes`]; past either, the oldest item is
//! given up and counted ([`super::Stats::retransmit_dropped`]). What a
//! member owes is one entry per origin with at most
//! [`MAX_ACK_PIECES`] pieces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Node;
use super::config::PushAckConfig;
use super::outbox::{item_len, pack};
use super::timers::TimerKind;
use crate::id::NodeId;
use crate::wire::{Ack, Body, Payload, PieceAck, Push, SeqRange};

/// Most seen ranges an acknowledgement lists (the highest): a member with
/// many old gaps still fits one datagram; an older range left out only
/// costs a retransmission.
pub(super) const MAX_ACK_RANGES: usize = 16;

/// Most pieces an acknowledgement lists, and a member remembers owing to
/// one origin: with [`MAX_ACK_RANGES`] ranges of the largest varints, the
/// body still fits a datagram (see the test). Pieces past it are not
/// acknowledged this time; their retransmission is acknowledged later.
pub(super) const MAX_ACK_PIECES: usize = 64;

/// An item of this node's own, as it is acknowledged: the message's
/// sequence number, and the fragment's index for a piece (`None` for a
/// whole message, which sorts before its own pieces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ItemKey {
    seq: u64,
    piece: Option<u16>,
}

impl ItemKey {
    fn of(item: &Payload) -> ItemKey {
        match item {
            Payload::Whole(message) => ItemKey {
                seq: message.id.seq,
                piece: None,
            },
            Payload::Piece(fragment) => ItemKey {
                seq: fragment.id.seq,
                piece: Some(fragment.index),
            },
        }
    }
}

/// An item pushed directly and not yet acknowledged by every member.
#[derive(Debug)]
struct Pending {
    item: Payload,
    /// Its encoded size, counted against the byte bound.
    len: usize,
    /// The members still waiting for it.
    waiting: BTreeMap<NodeId, Attempt>,
}

/// Where one member stands with one item.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// Retransmissions so far.
    retries: u32,
    /// When the next one is due.
    due: Instant,
    /// The wait the first timeout used (the backoff multiplies it).
    base: Duration,
    /// When the first copy went: a first-try acknowledgement measures the
    /// round trip from it.
    sent: Instant,
}

/// What this node owes one origin: an acknowledgement, due at `due`.
#[derive(Debug)]
struct Owed {
    /// When the first item of this acknowledgement arrived.
    since: Instant,
    /// When it may be sent: `since` if at once, else the end of the
    /// origin's [`PushAckConfig::ack_interval`].
    due: Instant,
    /// Pieces of incomplete messages received (the complete ones are in
    /// the seen ranges sent).
    pieces: Vec<PieceAck>,
}

/// The state of both sides: items this node waits to have acknowledged,
/// and acknowledgements it owes.
#[derive(Debug, Default)]
pub(super) struct PushAcks {
    pending: BTreeMap<ItemKey, Pending>,
    /// (item, member) pairs in `pending`.
    pairs: usize,
    /// Sum of `Pending::len`.
    bytes: usize,
    /// The deadline of the earliest retransmission timer scheduled, if any
    /// is still ahead (later timers that find nothing due are no-ops).
    armed: Option<Instant>,
    /// Smoothed round trip of each member, from acknowledgements of first
    /// copies (a retransmitted item's acknowledgement could answer either
    /// copy, so it measures nothing): fresher than the member's handshake
    /// and digest samples, which a busy moment can inflate for seconds.
    srtt: BTreeMap<NodeId, Duration>,
    /// When an item was last pushed to each member: an item that follows
    /// another within the member's acknowledgement interval is
    /// acknowledged with it, so its timeout is longer by that interval.
    last_push: BTreeMap<NodeId, Instant>,
    owed: BTreeMap<NodeId, Owed>,
    /// When this node last acknowledged each origin.
    last_ack: BTreeMap<NodeId, Instant>,
    /// Whether an owed acknowledgement is due at once (sent when the
    /// output is drained).
    immediate: bool,
}

impl PushAcks {
    /// Whether acknowledgements wait to go out with the next drain.
    pub(super) fn has_immediate(&self) -> bool {
        self.immediate
    }

    /// (item, member) pairs and bytes held for retransmission.
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.pairs, self.bytes)
    }
}

/// The pieces among `items` of `origin`'s own messages: what a direct push
/// from it asks to acknowledge besides whole messages.
pub(super) fn own_pieces(origin: NodeId, items: &[Payload]) -> Vec<PieceAck> {
    items
        .iter()
        .filter_map(|item| match item {
            Payload::Piece(fragment) if fragment.id.origin == origin => Some(PieceAck {
                seq: fragment.id.seq,
                index: fragment.index,
            }),
            _ => None,
        })
        .take(MAX_ACK_PIECES)
        .collect()
}

/// The wait before retransmission number `retry` (1-based) of an item
/// whose first timeout was `base`.
fn wait_before(config: &PushAckConfig, base: Duration, retry: u32) -> Duration {
    let doublings = retry.saturating_sub(config.fast_retries).min(20);
    base.saturating_mul(1 << doublings).min(config.max_timeout)
}

impl Node {
    /// Items of this node's own were pushed directly to `targets` at `at`:
    /// wait for their acknowledgements.
    pub(super) fn track_direct_push(
        &mut self,
        targets: &[(NodeId, SocketAddr)],
        items: &[Payload],
        at: Instant,
    ) {
        let config = self.config.protocol.push_acks;
        if !config.enabled || targets.is_empty() {
            return;
        }
        let mut bases = Vec::with_capacity(targets.len());
        for &(id, _) in targets {
            let streaming = self
                .push_acks
                .last_push
                .get(&id)
                .is_some_and(|last| at.saturating_duration_since(*last) < config.ack_interval);
            let rtt = self
                .push_acks
                .srtt
                .get(&id)
                .copied()
                .or_else(|| self.members.get(&id).and_then(|m| m.rtt))
                .unwrap_or_default();
            let mut base = rtt
                .saturating_mul(config.rtt_factor)
                .clamp(config.min_timeout, config.max_timeout);
            if streaming {
                base += config.ack_interval;
            }
            bases.push((id, base));
        }
        let acks = &mut self.push_acks;
        acks.last_push
            .retain(|_, last| at.saturating_duration_since(*last) < config.ack_interval);
        for &(id, _) in &bases {
            acks.last_push.insert(id, at);
        }
        for item in items {
            let len = item_len(item);
            let waiting: BTreeMap<NodeId, Attempt> = bases
                .iter()
                .map(|&(id, base)| {
                    let attempt = Attempt {
                        retries: 0,
                        due: at + base,
                        base,
                        sent: at,
                    };
                    (id, attempt)
                })
                .collect();
            acks.pairs += waiting.len();
            acks.bytes += len;
            let replaced = acks.pending.insert(
                ItemKey::of(item),
                Pending {
                    item: item.clone(),
                    len,
                    waiting,
                },
            );
            if let Some(old) = replaced {
                acks.pairs -= old.waiting.len();
                acks.bytes -= old.len;
            }
        }
        while acks.pairs > config.max_pending || acks.bytes > config.max_pending_bytes {
            let Some((_, oldest)) = acks.pending.pop_first() else {
                break;
            };
            acks.pairs -= oldest.waiting.len();
            acks.bytes -= oldest.len;
            self.stats.retransmit_dropped += oldest.waiting.len() as u64;
        }
        let earliest = bases.iter().map(|&(_, base)| at + base).min();
        if let Some(due) = earliest {
            self.arm_retransmit(due);
        }
    }

    /// Schedules the retransmission timer at `due` unless one at or before
    /// it is already ahead.
    fn arm_retransmit(&mut self, due: Instant) {
        if self.push_acks.armed.is_some_and(|armed| armed <= due) {
            return;
        }
        self.push_acks.armed = Some(due);
        self.timers.schedule(due, TimerKind::Retransmit);
    }

    /// The retransmission timer fired: sends again, to each member alone,
    /// what it has not acknowledged in time.
    pub(super) fn on_retransmit_timer(&mut self, now: Instant) {
        if self.push_acks.armed.is_some_and(|armed| armed <= now) {
            self.push_acks.armed = None;
        }
        let config = self.config.protocol.push_acks;
        let mut resend: BTreeMap<NodeId, Vec<Payload>> = BTreeMap::new();
        let mut given_up = 0u64;
        let acks = &mut self.push_acks;
        for pending in acks.pending.values_mut() {
            let before = pending.waiting.len();
            pending.waiting.retain(|&id, attempt| {
                if attempt.due > now {
                    return true;
                }
                if attempt.retries >= config.max_retries {
                    given_up += 1;
                    return false;
                }
                attempt.retries += 1;
                attempt.due = now + wait_before(&config, attempt.base, attempt.retries + 1);
                resend.entry(id).or_default().push(pending.item.clone());
                true
            });
            acks.pairs -= before - pending.waiting.len();
        }
        self.drop_acknowledged();
        for (id, items) in resend {
            let Some(addr) = self.members.active_addr(id) else {
                // Not a member any more: nothing to wait for.
                let dropped = self.forget_waiting(id);
                given_up += dropped;
                continue;
            };
            for batch in pack(items) {
                let body = Body::Push(Push {
                    relay: false,
                    items: batch,
                });
                let copies = config.copies.max(1) as usize;
                self.send_many(&vec![addr; copies], &body);
                self.stats.retransmissions += copies as u64;
            }
        }
        self.stats.retransmit_given_up += given_up;
        let next = self
            .push_acks
            .pending
            .values()
            .flat_map(|pending| pending.waiting.values().map(|attempt| attempt.due))
            .min();
        if let Some(next) = next {
            self.arm_retransmit(next);
        }
    }

    /// Stops waiting for `id` on every item; returns how many pairs that was.
    fn forget_waiting(&mut self, id: NodeId) -> u64 {
        let mut forgotten = 0;
        for pending in self.push_acks.pending.values_mut() {
            if pending.waiting.remove(&id).is_some() {
                forgotten += 1;
            }
        }
        self.push_acks.pairs -= forgotten;
        self.drop_acknowledged();
        forgotten as u64
    }

    /// Removes items no member waits for any more.
    fn drop_acknowledged(&mut self) {
        let acks = &mut self.push_acks;
        let mut freed = 0;
        acks.pending.retain(|_, pending| {
            let keep = !pending.waiting.is_empty();
            if !keep {
                freed += pending.len;
            }
            keep
        });
        acks.bytes -= freed;
    }

    /// An acknowledgement from `sender`: it holds what `ack` lists of this
    /// node's messages.
    pub(super) fn on_push_ack(&mut self, sender: NodeId, ack: &Ack, now: Instant) {
        let acks = &mut self.push_acks;
        let mut cleared = 0;
        // The newest first-copy send this acknowledgement answers.
        let mut sample: Option<Instant> = None;
        let mut note = |attempt: Attempt| {
            if attempt.retries == 0 {
                sample = Some(sample.map_or(attempt.sent, |s| s.max(attempt.sent)));
            }
        };
        for range in &ack.seen {
            if range.first > range.last {
                continue;
            }
            let from = ItemKey {
                seq: range.first,
                piece: None,
            };
            let through = ItemKey {
                seq: range.last,
                piece: Some(u16::MAX),
            };
            for (_, pending) in acks.pending.range_mut(from..=through) {
                if let Some(attempt) = pending.waiting.remove(&sender) {
                    note(attempt);
                    cleared += 1;
                }
            }
        }
        for piece in &ack.pieces {
            let key = ItemKey {
                seq: piece.seq,
                piece: Some(piece.index),
            };
            if let Some(pending) = acks.pending.get_mut(&key)
                && let Some(attempt) = pending.waiting.remove(&sender)
            {
                note(attempt);
                cleared += 1;
            }
        }
        if let Some(sent) = sample {
            let rtt = now.saturating_duration_since(sent);
            // As TCP's smoothed round trip: 7/8 of the old, 1/8 of the new.
            let smoothed = acks
                .srtt
                .get(&sender)
                .map_or(rtt, |old| (*old * 7 + rtt) / 8);
            if acks.srtt.len() < 4 * self.config.protocol.direct_push_limit
                || acks.srtt.contains_key(&sender)
            {
                acks.srtt.insert(sender, smoothed);
            }
        }
        acks.pairs -= cleared;
        if cleared > 0 {
            self.drop_acknowledged();
        }
    }

    /// A direct push from `origin` arrived at `now` with `pieces` of its
    /// incomplete messages: owe it an acknowledgement, at once unless one
    /// went within [`PushAckConfig::ack_interval`].
    pub(super) fn owe_ack(&mut self, origin: NodeId, pieces: Vec<PieceAck>, now: Instant) {
        let interval = self.config.protocol.push_acks.ack_interval;
        if !self.config.protocol.push_acks.enabled || self.members.active_addr(origin).is_none() {
            return;
        }
        let acks = &mut self.push_acks;
        // Only origins acknowledged within the interval matter: bounded by
        // the origins heard from in one interval.
        acks.last_ack
            .retain(|_, last| now.saturating_duration_since(*last) < interval);
        let fresh = !acks.owed.contains_key(&origin);
        let owed = acks.owed.entry(origin).or_insert_with(|| {
            let due = acks
                .last_ack
                .get(&origin)
                .map_or(now, |last| (*last + interval).max(now));
            Owed {
                since: now,
                due,
                pieces: Vec::new(),
            }
        });
        for piece in pieces {
            if owed.pieces.len() < MAX_ACK_PIECES && !owed.pieces.contains(&piece) {
                owed.pieces.push(piece);
            }
        }
        let due = owed.due;
        if due <= owed.since {
            acks.immediate = true;
        } else if fresh {
            // One timer per deferred acknowledgement.
            self.timers.schedule(due, TimerKind::AckDue);
        }
    }

    /// Sends the acknowledgements due: those owed at once (when the output
    /// is drained, `now` unknown: `None`), or those due by `now` (the
    /// timer).
    pub(super) fn send_due_acks(&mut self, now: Option<Instant>) {
        self.push_acks.immediate = false;
        let acks = &mut self.push_acks;
        let due: Vec<NodeId> = acks
            .owed
            .iter()
            .filter(|(_, owed)| match now {
                None => owed.due <= owed.since,
                Some(now) => owed.due <= now,
            })
            .map(|(&origin, _)| origin)
            .collect();
        for origin in due {
            let Some(owed) = self.push_acks.owed.remove(&origin) else {
                continue;
            };
            let sent_at = now.unwrap_or(owed.since);
            let Some(addr) = self.members.active_addr(origin) else {
                continue;
            };
            let ack = self.ack_for(origin, owed.pieces);
            self.push_acks.last_ack.insert(origin, sent_at);
            self.stats.acks_sent += 1;
            self.send(addr, &Body::Ack(ack));
        }
    }

    /// What this node holds of `origin`'s messages: its highest seen
    /// ranges, and `pieces` of messages still incomplete.
    fn ack_for(&self, origin: NodeId, mut pieces: Vec<PieceAck>) -> Ack {
        let seen: Vec<SeqRange> = self
            .history
            .seen(&origin)
            .map(|seen| {
                let ranges: Vec<SeqRange> = seen
                    .ranges()
                    .map(|(first, last)| SeqRange { first, last })
                    .collect();
                let skip = ranges.len().saturating_sub(MAX_ACK_RANGES);
                ranges[skip..].to_vec()
            })
            .unwrap_or_default();
        pieces.retain(|piece| {
            !seen
                .iter()
                .any(|range| (range.first..=range.last).contains(&piece.seq))
        });
        pieces.sort_unstable();
        Ack { seen, pieces }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, ClusterId, Header};

    #[test]
    fn the_largest_ack_fits_a_datagram() {
        let ack = Ack {
            seen: vec![
                SeqRange {
                    first: u64::MAX,
                    last: u64::MAX,
                };
                MAX_ACK_RANGES
            ],
            pieces: vec![
                PieceAck {
                    seq: u64::MAX,
                    index: u16::MAX,
                };
                MAX_ACK_PIECES
            ],
        };
        let header = Header {
            flags: 0,
            cluster: ClusterId::from_label("t"),
            sender: NodeId([1; 16]),
        };
        let encoded = wire::encode(&header, &Body::Ack(ack)).expect("fits");
        assert!(encoded.len() <= wire::HEADER_LEN + wire::MAX_BODY_BYTES);
    }

    #[test]
    fn the_wait_stays_at_the_first_timeout_then_doubles_to_the_cap() {
        let config = PushAckConfig::default();
        let base = Duration::from_millis(1);
        let waits: Vec<Duration> = (1..=10).map(|r| wait_before(&config, base, r)).collect();
        assert_eq!(waits[0], base);
        assert_eq!(waits[1], base);
        assert_eq!(waits[2], base * 2);
        assert_eq!(waits[3], base * 4);
        assert_eq!(waits[9], config.max_timeout.min(base * 256));
    }
}
