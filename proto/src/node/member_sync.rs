//! Membership anti-entropy: a periodic pull that makes every node reach the
//! full member view, which SWIM gossip alone does not guarantee (in a cold
//! start of a thousand nodes, a few pairs never hear of each other for a
//! minute or more).
//!
//! Every [`super::ProtocolConfig::member_sync_interval`] — every [`super::ProtocolConfig::member_sync_growing_interval`]
//! while the view is still growing — a node asks one random alive or
//! suspect member, in one of two ways:
//!
//! - **Summary** (the steady state, ~50 bytes): a [`Body::MemberSummary`],
//!   the count and hash sum of the runs of the alive and suspect nodes it
//!   knows (itself included). The member answers whether its own summary is
//!   the same. If not, the asker pulls one full cycle of digests.
//! - **Digest** (while a cycle runs, one every
//!   [`super::ProtocolConfig::member_sync_growing_interval`]): a [`Body::MemberDigest`], a 4-byte
//!   fingerprint of (id, generation) of every run it knows whose id lies in
//!   a slice `(after, through]` of the id space, as many as fit in one
//!   datagram. The member answers with a [`Body::MemberSync`] carrying the
//!   identities of its alive and suspect members in that slice whose
//!   fingerprint the digest lacks, as many as fit in one datagram
//!   (`complete` says whether all did). The asker feeds them to foca as
//!   alive, like gossip (foca keeps whichever run and state wins), and moves
//!   on to the next slice once an answer was complete; after the last slice
//!   it returns to summaries.
//!
//! A node starts with a digest cycle. A thousand members take four digests
//! to cover; a summary round costs ~0.1 KB/s per node.
//!
//! Bounds: one datagram each way per exchange; digests are only answered
//! for members, and to their advertised address (so a forged source cannot
//! aim answers elsewhere); an answer is only taken from the member asked,
//! echoing the request's stamp (so a member cannot push identities
//! unasked). A fingerprint collision (2^-32 per pair) only hides one member
//! from this mechanism; SWIM gossip still carries it.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::Node;
use super::timers::TimerKind;
use crate::id::NodeId;
use crate::message::MAX_NAME_BYTES;
use crate::wire::{self, Body, Identity};

/// Bytes of a fingerprint.
pub const FINGERPRINT_BYTES: usize = 4;

/// Bytes of a body available to a digest's fingerprints: the body less the
/// variant tag, the stamp, two optional ids and the list length, at their
/// largest.
const DIGEST_FINGERPRINTS_BUDGET: usize = wire::MAX_BODY_BYTES - 64;

/// Most fingerprints in one digest.
pub const MAX_FINGERPRINTS_PER_DIGEST: usize = DIGEST_FINGERPRINTS_BUDGET / FINGERPRINT_BYTES;

/// Bytes of a body available to an answer's identities: the body less the
/// variant tag, the echoed stamp, the flag and the list length.
const ANSWER_IDENTITIES_BUDGET: usize = wire::MAX_BODY_BYTES - 32;

/// The hash of one run of a node that member summaries add up: FNV-1a 64
/// of the id and the big-endian generation. Part of the wire format.
pub fn member_hash(id: &NodeId, generation: u64) -> u64 {
    let mut bytes = [0u8; 24];
    bytes[..16].copy_from_slice(&id.0);
    bytes[16..].copy_from_slice(&generation.to_be_bytes());
    wire::fnv1a_64(&bytes)
}

/// A short, stable digest of one run of a node: [`member_hash`] folded to
/// 32 bits. Part of the wire format.
pub fn member_fingerprint(id: &NodeId, generation: u64) -> [u8; FINGERPRINT_BYTES] {
    let [a, b, c, d, e, f, g, h] = member_hash(id, generation).to_be_bytes();
    [a ^ e, b ^ f, c ^ g, d ^ h]
}

/// Whether `id` lies in the slice `(after, through]`.
fn in_slice(id: &NodeId, after: Option<NodeId>, through: Option<NodeId>) -> bool {
    after.is_none_or(|after| *id > after) && through.is_none_or(|through| *id <= through)
}

/// Encoded size of `identity` in an answer.
fn encoded_size(identity: &Identity) -> usize {
    postcard::to_stdvec(identity).map_or(usize::MAX, |bytes| bytes.len())
}

/// What a request asked.
#[derive(Debug)]
enum Asked {
    /// Whether the summaries match.
    Summary,
    /// The members of a slice ending at `through` (inclusive; `None`: the
    /// end of the id space).
    Slice { through: Option<NodeId> },
}

/// The request awaiting its answer.
#[derive(Debug)]
struct Pending {
    to: NodeId,
    stamp_us: u64,
    asked: Asked,
}

/// A node's side of membership anti-entropy.
#[derive(Debug)]
pub(super) struct MemberSyncState {
    /// Target choices (its own stream, so that it does not shift the
    /// node's other random choices).
    rng: StdRng,
    /// Whether a digest cycle runs (else rounds send summaries).
    cycling: bool,
    /// Where the next digest's slice starts (exclusive).
    cursor: Option<NodeId>,
    pending: Option<Pending>,
    /// Whether a round timer is queued.
    scheduled: bool,
    /// A member came up since the last round.
    growing: bool,
}

impl MemberSyncState {
    /// Idle until the node has a member; `rng_seed` is the node's.
    pub(super) fn new(rng_seed: u64) -> Self {
        MemberSyncState {
            rng: StdRng::seed_from_u64(rng_seed ^ 0x6d65_6d62_6572_7379),
            cycling: true,
            cursor: None,
            pending: None,
            scheduled: false,
            growing: false,
        }
    }
}

impl Node {
    /// Members came up: the view grows, so rounds go faster (and start, if
    /// this node had no member yet).
    pub(super) fn member_sync_on_growth(&mut self, now: Instant) {
        self.member_sync.growing = true;
        if !self.member_sync.scheduled && !self.left {
            self.member_sync.scheduled = true;
            self.timers.schedule(
                now + self.config.protocol.member_sync_growing_interval,
                TimerKind::MemberSync,
            );
        }
    }

    /// The periodic round: a summary, or during a cycle a digest of the next
    /// slice, to one random alive or suspect member. Stops while there is
    /// none (the next member to come up restarts it).
    pub(super) fn member_sync_round(&mut self, now: Instant) {
        let targets = self.members.active_targets(&[]);
        let Some(&(to, addr)) = targets.choose(&mut self.member_sync.rng) else {
            self.member_sync.scheduled = false;
            self.member_sync.pending = None;
            return;
        };
        let growing = std::mem::take(&mut self.member_sync.growing);
        let interval = if growing || self.member_sync.cycling {
            self.config.protocol.member_sync_growing_interval
        } else {
            self.config.protocol.member_sync_interval
        };
        self.timers.schedule(now + interval, TimerKind::MemberSync);
        let stamp_us = self.stamp_us(now);
        let (asked, request) = if self.member_sync.cycling {
            let after = self.member_sync.cursor;
            let (fingerprints, through) = self.member_fingerprints(after);
            let digest = Body::MemberDigest {
                stamp_us,
                after,
                through,
                fingerprints,
            };
            (Asked::Slice { through }, digest)
        } else {
            let (count, sum) = self.member_summary();
            let summary = Body::MemberSummary {
                stamp_us,
                count,
                sum,
            };
            (Asked::Summary, summary)
        };
        self.member_sync.pending = Some(Pending {
            to,
            stamp_us,
            asked,
        });
        self.send(addr, &request);
    }

    /// How many alive or suspect nodes this node knows (itself included),
    /// and the wrapping sum of the [`member_hash`]es of their runs.
    ///
    /// Failed and left members are left out: a node that joined after a
    /// member failed never learns of it (nothing gossips the dead to
    /// newcomers, and answers carry only the living), and counting it would
    /// make the two disagree for the hour the failed member is remembered.
    fn member_summary(&self) -> (u64, u64) {
        let me = self.swim.identity();
        let (count, sum) = self.members.active_summary();
        (
            count + 1,
            sum.wrapping_add(member_hash(&me.id, me.generation)),
        )
    }

    /// A member summary arrived from `sender`: answer whether ours is the
    /// same.
    pub(super) fn on_member_summary(
        &mut self,
        sender: NodeId,
        stamp_us: u64,
        count: u64,
        sum: u64,
    ) {
        let Some(to) = self.members.active_addr(sender) else {
            self.count_drop("member_digest_from_non_member");
            return;
        };
        let answer = Body::MemberSync {
            reply_to: stamp_us,
            complete: self.member_summary() == (count, sum),
            identities: Vec::new(),
        };
        self.send(to, &answer);
    }

    /// Fingerprints of every node known (this one included) with an id
    /// after `after`, in id order, as many as fit in a digest; and the last
    /// id covered (`None`: all to the end of the id space).
    fn member_fingerprints(
        &self,
        after: Option<NodeId>,
    ) -> (Vec<[u8; FINGERPRINT_BYTES]>, Option<NodeId>) {
        let me = self.swim.identity();
        let mut own = in_slice(&me.id, after, None).then_some((me.id, me.generation));
        let mut fingerprints = Vec::new();
        let mut last = None;
        let mut known = self.members.known_after(after).peekable();
        loop {
            let next = match (own, known.peek()) {
                (Some(mine), Some(&(id, _))) if mine.0 < id => own.take(),
                (Some(_), None) => own.take(),
                _ => known.next(),
            };
            let Some((id, generation)) = next else {
                return (fingerprints, None);
            };
            if fingerprints.len() == MAX_FINGERPRINTS_PER_DIGEST {
                return (fingerprints, last);
            }
            fingerprints.push(member_fingerprint(&id, generation));
            last = Some(id);
        }
    }

    /// A member digest arrived from `sender`: answer with the identities of
    /// alive and suspect members in its slice that it lacks.
    pub(super) fn on_member_digest(
        &mut self,
        sender: NodeId,
        stamp_us: u64,
        after: Option<NodeId>,
        through: Option<NodeId>,
        mut fingerprints: Vec<[u8; FINGERPRINT_BYTES]>,
    ) {
        let Some(to) = self.members.active_addr(sender) else {
            self.count_drop("member_digest_from_non_member");
            return;
        };
        fingerprints.sort_unstable();
        let mut identities = Vec::new();
        let mut used = 0;
        let mut complete = true;
        for identity in self.members.active_identities_after(after) {
            if !in_slice(&identity.id, after, through) {
                break;
            }
            if identity.id == sender
                || fingerprints
                    .binary_search(&member_fingerprint(&identity.id, identity.generation))
                    .is_ok()
            {
                continue;
            }
            let size = encoded_size(identity);
            if used + size > ANSWER_IDENTITIES_BUDGET {
                complete = false;
                break;
            }
            used += size;
            identities.push(identity.clone());
        }
        let answer = Body::MemberSync {
            reply_to: stamp_us,
            complete,
            identities,
        };
        self.send(to, &answer);
    }

    /// An answer to our summary or digest arrived from `sender`. A summary
    /// that differs starts a digest cycle. A digest's identities go to foca
    /// as alive (it keeps whichever run and state wins), and the next round
    /// moves on to the next slice if the answer was complete.
    pub(super) fn on_member_sync(
        &mut self,
        sender: NodeId,
        reply_to: u64,
        complete: bool,
        identities: Vec<Identity>,
        now: Instant,
    ) {
        // Before the checks below: a member that holds another run of our
        // id tells us unasked (see `identity_conflict`), and an identity is
        // signed, so who relayed it does not matter.
        for identity in &identities {
            self.check_own_identity(identity);
        }
        if self.members.active_identity(sender).is_none() {
            self.count_drop("member_sync_from_non_member");
            return;
        }
        let Some(pending) = self
            .member_sync
            .pending
            .take_if(|p| p.to == sender && p.stamp_us == reply_to)
        else {
            self.count_drop("member_sync_unsolicited");
            return;
        };
        if let Some(rtt) = self.rtt_since(reply_to, now) {
            self.members.set_rtt(sender, rtt);
        }
        match (pending.asked, complete) {
            (Asked::Summary, true) => {}
            (Asked::Summary, false) => {
                self.member_sync.cycling = true;
                self.member_sync.cursor = None;
            }
            (Asked::Slice { through }, true) => {
                self.member_sync.cursor = through;
                self.member_sync.cycling = through.is_some();
            }
            (Asked::Slice { .. }, false) => {}
        }
        let me = self.config.id;
        let count = identities.len();
        let valid: Vec<Identity> = identities
            .into_iter()
            .filter(|identity| identity.id != me && identity.name.len() <= MAX_NAME_BYTES)
            .collect();
        for _ in valid.len()..count {
            self.count_drop("invalid_member_sync_identity");
        }
        if valid.is_empty() {
            return;
        }
        if let Err(err) = self.swim.apply_alive_many(valid) {
            tracing::debug!(
                peer = self.members.get(&sender).map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                peer_id = %sender.short(),
                %err,
                "foca refused identities of a member sync"
            );
            self.count_drop("swim_rejected");
        }
        self.after_swim(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_id_and_generation_and_are_stable() {
        let a = NodeId([1; 16]);
        let b = NodeId([2; 16]);
        assert_ne!(member_fingerprint(&a, 1), member_fingerprint(&a, 2));
        assert_ne!(member_fingerprint(&a, 1), member_fingerprint(&b, 1));
        // Part of the wire format: a change here breaks mixed clusters.
        assert_eq!(member_fingerprint(&a, 1), member_fingerprint(&a, 1));
    }

    #[test]
    fn slices_are_half_open() {
        let a = NodeId([1; 16]);
        let b = NodeId([2; 16]);
        assert!(in_slice(&a, None, None));
        assert!(!in_slice(&a, Some(a), None));
        assert!(in_slice(&b, Some(a), Some(b)));
        assert!(!in_slice(&b, None, Some(a)));
    }

    #[test]
    fn worst_case_bodies_fit_one_datagram() {
        let header = wire::Header {
            flags: 0,
            cluster: wire::ClusterId(0),
            sender: NodeId([0; 16]),
        };
        let digest = Body::MemberDigest {
            stamp_us: u64::MAX,
            after: Some(NodeId([0xff; 16])),
            through: Some(NodeId([0xff; 16])),
            fingerprints: vec![[0xff; FINGERPRINT_BYTES]; MAX_FINGERPRINTS_PER_DIGEST],
        };
        wire::encode(&header, &digest).expect("a full digest fits");

        let identity = Identity {
            id: NodeId([0xff; 16]),
            addr: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                .parse()
                .expect("addr"),
            name: "é".repeat(MAX_NAME_BYTES / 2),
            generation: u64::MAX,
            key: crate::sign::PublicKey([0xff; 32]),
            sig: crate::sign::Signature::from_bytes(&[0xff; 64]),
            own_key: crate::sign::OwnKey::default(),
        };
        let size = encoded_size(&identity);
        let identities = vec![identity; ANSWER_IDENTITIES_BUDGET / size];
        let answer = Body::MemberSync {
            reply_to: u64::MAX,
            complete: false,
            identities,
        };
        wire::encode(&header, &answer).expect("a full answer fits");
    }
}
