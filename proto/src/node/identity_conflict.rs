//! Two running nodes with one node key (a state directory copied to another
//! machine, a cloned VM): noticing it, deciding which copy keeps the id, and
//! switching the other to a new one.
//!
//! Left alone, the two copies never settle: each one's foca declares the
//! other's identity down (an identity with its own id that is not its own),
//! the other renews itself with the next generation, and so on, a round trip
//! at a time, for as long as both run. So every signed identity that carries
//! this node's id but another address is looked at, and kept from foca
//! (hellos and member-sync answers here, SWIM updates in the codec, see
//! `swim`): neither copy's foca ever declares the other down, so neither
//! renews, whatever the difference of their generations.
//!
//! The rule, which every node applies alike: of two identities with one id,
//! the one with the higher `(generation, address)` keeps the id — the order
//! foca itself uses to choose between runs of a member, so the copy that
//! keeps the id is the one the other members already follow. The copy that
//! sees a *higher* identity of its own id at another address yields: it warns
//! once, naming both addresses, and reports [`IdentityInUse`]; the driver
//! gives it a new key and calls [`Node::take_new_identity`]. Only the lower
//! copy can be sure: an identity of its id with a *lower* generation may be
//! its own earlier run (restarted on another port or address), so the higher
//! copy only notes it (once per address).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Event, Node, swim::Swim};
use crate::id::NodeId;
use crate::sign::NodeKey;
use crate::wire::{self, Identity};
use std::sync::Arc;

/// Addresses told at once at most (the oldest is forgotten first).
const MAX_TOLD: usize = 64;

/// Other addresses noted at most (each logged once), so a flood of forged
/// or replayed identities cannot grow memory or the log.
const MAX_NOTED: usize = 16;

/// This node's id is in use by another running node, which keeps it; this
/// node should take a new identity ([`Node::take_new_identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityInUse {
    /// The shared id.
    pub id: NodeId,
    /// This node's address.
    pub ours: SocketAddr,
    /// This node's generation when it noticed.
    pub our_generation: u64,
    /// The other node's address.
    pub theirs: SocketAddr,
    /// The other node's generation.
    pub their_generation: u64,
    /// The sequence numbers this run sent under the shared id (inclusive),
    /// if any. The other copy may have used the same numbers: every node
    /// keeps the first message of each id it gets, so some of these may
    /// not have reached every node.
    pub sent: Option<(u64, u64)>,
}

/// What this node knows of other nodes using its id.
#[derive(Debug, Default)]
pub(super) struct ConflictWatch {
    /// Whether [`IdentityInUse`] was reported for the current id (once).
    reported: bool,
    /// Addresses of older identities of our id already logged.
    noted: BTreeSet<SocketAddr>,
    /// When a renewal was last logged at info level.
    renewal_logged: Option<Instant>,
    /// When we last told each address which run of its sender's id we
    /// hold.
    told: BTreeMap<SocketAddr, Instant>,
    /// Whether a copy's use of our sequence numbers was logged (once; the
    /// later skips go to debug).
    seq_skip_logged: bool,
}

impl ConflictWatch {
    /// Whether this node reported that another node keeps its id (and has
    /// not taken a new one since).
    pub(super) fn is_reported(&self) -> bool {
        self.reported
    }

    /// Whether a renewal at `now` may be logged at info level (and records
    /// it): at most once per `interval`
    /// ([`super::ProtocolConfig::renewal_log_interval`]).
    pub(super) fn may_log_renewal(&mut self, now: Instant, interval: Duration) -> bool {
        if self
            .renewal_logged
            .is_some_and(|at| now.saturating_duration_since(at) < interval)
        {
            return false;
        }
        self.renewal_logged = Some(now);
        true
    }
}

impl Node {
    /// Looks at a signed identity of another node (already verified): if it
    /// carries our id at another address, applies the rule (see the module
    /// documentation). The callers keep such identities from foca.
    pub(super) fn check_own_identity(&mut self, identity: &Identity) {
        if identity.id != self.config.id {
            return;
        }
        let ours = self.swim.identity();
        if identity.addr == ours.addr {
            // Our own run (this one or an earlier one at this address): foca
            // settles which is current.
            return;
        }
        let (our_generation, our_addr) = (ours.generation, ours.addr);
        if (identity.generation, identity.addr) > (our_generation, our_addr) {
            if !self.identity_conflict.reported {
                self.identity_conflict.reported = true;
                self.stats.identity_conflicts += 1;
                let sent = (self.next_seq > self.config.first_seq)
                    .then(|| (self.config.first_seq, self.next_seq - 1));
                tracing::warn!(
                    id = %self.config.id,
                    ours = %our_addr,
                    our_generation,
                    theirs = %identity.addr,
                    their_generation = identity.generation,
                    "this node's id is also used by the node at {theirs}, a copy of this node (a copied \
                     state directory or cloned machine); that one keeps the id (its run is the later \
                     one, or as old at a higher address), and this node ({ours}) takes a new identity",
                    theirs = identity.addr,
                    ours = our_addr,
                );
                self.events.push_back(Event::IdentityInUse(IdentityInUse {
                    id: self.config.id,
                    ours: our_addr,
                    our_generation,
                    theirs: identity.addr,
                    their_generation: identity.generation,
                    sent,
                }));
            }
        } else if self.identity_conflict.noted.len() < MAX_NOTED
            && self.identity_conflict.noted.insert(identity.addr)
        {
            tracing::info!(
                ours = %our_addr,
                theirs = %identity.addr,
                their_generation = identity.generation,
                "an older run of this node's id is known at {theirs}: this node's earlier run, or a copy \
                 of its state directory on another machine (which then takes a new identity)",
                theirs = identity.addr,
            );
        }
    }

    /// A message with our id as its origin, numbered `seq`, arrived from the
    /// network and was new to us. Only a holder of our key can sign one,
    /// and every number this node's earlier runs used is below
    /// `first_seq`, so at or past `next_seq` it is a copy of this node (a
    /// copied state directory) using our numbers. Continue after it, so
    /// that what we send next is not taken for that message by nodes that
    /// have it. Messages this run sent with numbers the copy also used
    /// may have been dropped as duplicates elsewhere: logged.
    pub(super) fn skip_own_seq_through(&mut self, seq: u64) {
        if seq < self.next_seq {
            return;
        }
        let ours = (self.next_seq > self.config.first_seq)
            .then(|| (self.config.first_seq, self.next_seq - 1));
        self.next_seq = seq.saturating_add(1);
        self.stats.own_seq_skips += 1;
        if self.identity_conflict.seq_skip_logged {
            tracing::debug!(
                seq,
                "another node used this node's id: skipping its numbers"
            );
            return;
        }
        self.identity_conflict.seq_skip_logged = true;
        match ours {
            Some((first, last)) => tracing::warn!(
                id = %self.config.id,
                seq,
                first,
                last,
                "another node (a copy of this one) sent messages under this node's id, numbered up to \
                 {seq}: this node continues after it; its own messages {first} to {last} may have \
                 been dropped as duplicates on nodes that got the other's first"
            ),
            None => tracing::warn!(
                id = %self.config.id,
                seq,
                "another node (a copy of this one) sent messages under this node's id, numbered up to \
                 {seq}: this node continues after it"
            ),
        }
    }

    /// A SWIM packet from the member `sender` arrived from `from`, which is
    /// not the address of the run of `sender` we follow: perhaps a copy of
    /// that node with a lower run, which foca answers only with "you are
    /// down" (each answer makes it renew). Tell it which run we hold, so
    /// that it sees another node has its id (see the module
    /// documentation): an unsolicited member-sync answer with that one
    /// identity, at most every [`super::ProtocolConfig::identity_notice_interval`] per address. A
    /// multi-homed member that sends from another address than it
    /// advertises gets its own identity back, which it ignores.
    pub(super) fn tell_if_identity_elsewhere(
        &mut self,
        sender: NodeId,
        from: SocketAddr,
        now: Instant,
    ) {
        let Some(identity) = self.members.active_identity(sender) else {
            return;
        };
        if identity.addr == from {
            return;
        }
        let interval = self.config.protocol.identity_notice_interval;
        let told = &mut self.identity_conflict.told;
        if told
            .get(&from)
            .is_some_and(|at| now.saturating_duration_since(*at) < interval)
        {
            return;
        }
        if told.len() >= MAX_TOLD
            && let Some(oldest) = told.iter().min_by_key(|(_, at)| **at).map(|(a, _)| *a)
        {
            told.remove(&oldest);
        }
        told.insert(from, now);
        let notice = wire::Body::MemberSync {
            reply_to: 0,
            complete: false,
            identities: vec![identity.clone()],
        };
        self.send(from, &notice);
    }

    /// Continues as a new node: `key` (so a new id) and `generation`. The
    /// history, seen sets, clock, keyring and sequence counter are kept
    /// (numbers continue, so the new id's first number is not 1 and no
    /// number is ever used twice by this state directory); the member table
    /// starts empty, and every member that was alive or suspect is greeted
    /// at once, so the node is back in the cluster within a round trip.
    /// Messages sent from now on carry the new id.
    pub fn take_new_identity(&mut self, key: NodeKey, generation: u64, now: Instant) {
        let old = self.config.id;
        let greet: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|m| m.state.is_active())
            .map(|m| m.addr)
            .collect();
        self.config.key = key;
        self.config.id = self.config.key.node_id();
        self.config.generation = generation;
        self.config.first_seq = self.next_seq;
        let identity = Identity::own(
            &self.config.key,
            self.config.advertise_addr,
            self.config.name.clone(),
            generation,
        );
        // A fresh foca: the old one's members, timers and suspicions are
        // about the old identity. Its RNG stream is new too (seeded from the
        // old seed and the generation: deterministic).
        self.swim = Swim::new(
            identity,
            rand::SeedableRng::seed_from_u64(self.config.rng_seed ^ generation),
            &self.config.protocol,
            self.config.reap_after,
            Arc::clone(&self.verifier),
        );
        self.members = super::Membership::default();
        self.timers.retain_non_swim();
        self.suspicions = super::Suspicions::default();
        self.fresh_members.clear();
        self.hello_sent.clear();
        self.history.set_own(self.config.id);
        self.identity_conflict.reported = false;
        self.identity_conflict.noted.clear();
        // The driver says it loudly, with what it did about the key.
        tracing::info!(
            old = %old,
            new = %self.config.id,
            generation,
            "this node now has a new identity"
        );
        for addr in greet {
            self.contact(addr, now);
        }
    }
}
