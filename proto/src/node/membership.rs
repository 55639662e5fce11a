//! The member table users see: one [`Member`] per node id, with the state
//! transitions that produce [`PeerChange`] events.
//!
//! foca decides liveness; this table translates it: `MemberUp` → alive,
//! foca's suspect state → suspect, `MemberDown` → failed — unless the member
//! said it was leaving, which makes it `left` and keeps it `left` when foca's
//! own "down" for it arrives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::{Duration, Instant};

use super::member_sync::member_hash;
use super::{Member, PeerChange, PeerState, truncate_at_char_boundary};
use crate::id::NodeId;
use crate::message::MAX_NAME_BYTES;
use crate::wire::Identity;

/// One member and the identity (run) the table currently follows.
#[derive(Debug)]
struct Record {
    member: Member,
    identity: Identity,
}

/// Every node this one knows of, by id (deterministic order).
#[derive(Debug, Default)]
pub(super) struct Membership {
    records: BTreeMap<NodeId, Record>,
    /// How many records are alive or suspect, and the wrapping sum of
    /// [`member_hash`] over their runs: kept up to date (see
    /// [`Membership::tracked`]) so that a member-sync summary costs nothing
    /// per round.
    active_count: u64,
    active_hash_sum: u64,
}

/// [`member_hash`] of the run `record` follows, if it is alive or suspect.
fn active_hash(record: &Record) -> Option<u64> {
    record
        .member
        .state
        .is_active()
        .then(|| member_hash(&record.member.id, record.identity.generation))
}

fn display_name(identity: &Identity) -> String {
    let mut name = identity.name.clone();
    truncate_at_char_boundary(&mut name, MAX_NAME_BYTES);
    name
}

/// Sets `record`'s state, returning the change if it is one.
fn transition(record: &mut Record, state: PeerState, now: Instant) -> Option<PeerChange> {
    let previous = record.member.state;
    if previous == state {
        return None;
    }
    record.member.state = state;
    record.member.since = now;
    Some(PeerChange {
        member: record.member.clone(),
        previous: Some(previous),
    })
}

/// A new run of a member whose state did not change: reported with
/// `previous` equal to the state, `since` the start of the new run.
fn same_state_change(record: &mut Record, now: Instant) -> PeerChange {
    record.member.since = now;
    PeerChange {
        member: record.member.clone(),
        previous: Some(record.member.state),
    }
}

/// Makes `record` follow `identity` (a newer run of the member).
fn adopt(record: &mut Record, identity: &Identity) {
    if record.identity.generation != identity.generation {
        record.member.incarnation = 0;
    }
    record.member.generation = identity.generation;
    record.identity = identity.clone();
    record.member.addr = identity.addr;
    record.member.name = display_name(identity);
}

impl Membership {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Member> {
        self.records.values().map(|r| &r.member)
    }

    /// The member `id`, in any state.
    pub(super) fn get(&self, id: &NodeId) -> Option<&Member> {
        self.records.get(id).map(|r| &r.member)
    }

    /// The member at `addr`, preferring an alive or suspect one (a failed
    /// run may have left the address to another node). A linear scan: for
    /// logs on error paths, not for every datagram.
    pub(super) fn at_addr(&self, addr: SocketAddr) -> Option<&Member> {
        let mut at = self
            .records
            .values()
            .map(|r| &r.member)
            .filter(|m| m.addr == addr);
        let first = at.next()?;
        if first.state.is_active() {
            return Some(first);
        }
        Some(at.find(|m| m.state.is_active()).unwrap_or(first))
    }

    /// The public key of a node known in any state (its identity was
    /// verified when it arrived).
    pub(super) fn key_of(&self, id: NodeId) -> Option<crate::sign::PublicKey> {
        self.records.get(&id).map(|record| record.identity.key)
    }

    /// The address of a node known in any state (from its signed identity).
    pub(super) fn addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        self.records.get(&id).map(|record| record.identity.addr)
    }

    /// A datagram from `id` arrived.
    pub(super) fn saw(&mut self, id: NodeId, now: Instant) {
        if let Some(record) = self.records.get_mut(&id) {
            record.member.last_seen = Some(now);
        }
    }

    /// When a datagram from `id` last arrived.
    pub(super) fn last_seen(&self, id: NodeId) -> Option<Instant> {
        self.records.get(&id).and_then(|r| r.member.last_seen)
    }

    /// The identity (run) of `id` if it is an alive or suspect member.
    pub(super) fn active_identity(&self, id: NodeId) -> Option<&Identity> {
        self.records
            .get(&id)
            .filter(|r| r.member.state.is_active())
            .map(|r| &r.identity)
    }

    pub(super) fn set_rtt(&mut self, id: NodeId, rtt: Duration) {
        if let Some(record) = self.records.get_mut(&id) {
            record.member.rtt = Some(rtt);
        }
    }

    /// Alive and suspect members, except `excluded`, by id.
    pub(super) fn active_targets(&self, excluded: &[NodeId]) -> Vec<(NodeId, SocketAddr)> {
        self.records
            .values()
            .filter(|r| r.member.state.is_active() && !excluded.contains(&r.member.id))
            .map(|r| (r.member.id, r.member.addr))
            .collect()
    }

    /// Whether any member is alive or suspect.
    pub(super) fn has_active(&self) -> bool {
        self.records.values().any(|r| r.member.state.is_active())
    }

    /// The address of `id` if it is an alive or suspect member.
    pub(super) fn active_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.records
            .get(&id)
            .filter(|r| r.member.state.is_active())
            .map(|r| r.member.addr)
    }

    /// Whether `addr` is the address of an alive or suspect member.
    pub(super) fn is_active_addr(&self, addr: SocketAddr) -> bool {
        self.records
            .values()
            .any(|r| r.member.state.is_active() && r.member.addr == addr)
    }

    /// How many members are alive or suspect, and the wrapping sum of
    /// [`member_hash`] over the runs the table follows of those.
    pub(super) fn active_summary(&self) -> (u64, u64) {
        (self.active_count, self.active_hash_sum)
    }

    /// Every member after `after` (all if `None`), in any state, by id: its
    /// id and the generation the table follows.
    pub(super) fn known_after(
        &self,
        after: Option<NodeId>,
    ) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.records_after(after)
            .map(|r| (r.member.id, r.identity.generation))
    }

    /// The identities of alive and suspect members after `after` (all if
    /// `None`), by id.
    pub(super) fn active_identities_after(
        &self,
        after: Option<NodeId>,
    ) -> impl Iterator<Item = &Identity> + '_ {
        self.records_after(after)
            .filter(|r| r.member.state.is_active())
            .map(|r| &r.identity)
    }

    /// Records with an id after `after` (all if `None`), by id.
    fn records_after(&self, after: Option<NodeId>) -> impl Iterator<Item = &Record> + '_ {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.records
            .range((start, Bound::Unbounded))
            .map(|(_, r)| r)
    }

    /// foca: `identity` is up (new, back, or a newer run).
    pub(super) fn up(&mut self, identity: &Identity, now: Instant) -> Option<PeerChange> {
        match self.records.contains_key(&identity.id) {
            true => self
                .tracked(identity.id, |record| {
                    if record.identity.generation > identity.generation {
                        return None;
                    }
                    let restarted = record.identity.generation != identity.generation;
                    adopt(record, identity);
                    transition(record, PeerState::Alive, now)
                        .or_else(|| restarted.then(|| same_state_change(record, now)))
                })
                .flatten(),
            false => {
                let member = Member {
                    id: identity.id,
                    name: display_name(identity),
                    addr: identity.addr,
                    state: PeerState::Alive,
                    since: now,
                    last_seen: None,
                    rtt: None,
                    generation: identity.generation,
                    incarnation: 0,
                    key: identity.key,
                };
                let record = Record {
                    member: member.clone(),
                    identity: identity.clone(),
                };
                self.account(None, active_hash(&record));
                self.records.insert(identity.id, record);
                Some(PeerChange {
                    member,
                    previous: None,
                })
            }
        }
    }

    /// foca: `identity` is down. Failed, unless it left.
    pub(super) fn down(&mut self, identity: &Identity, now: Instant) -> Option<PeerChange> {
        self.tracked(identity.id, |record| {
            if record.identity.generation > identity.generation
                || record.member.state == PeerState::Left
            {
                return None;
            }
            transition(record, PeerState::Failed, now)
        })
        .flatten()
    }

    /// foca: `new` replaced `old` (a restart). If the liveness changed, an
    /// up/down notification follows; otherwise (a member restarted faster
    /// than it could be declared failed) the new run is reported with the
    /// state unchanged, so subscribers see every restart.
    pub(super) fn rename(&mut self, new: &Identity, now: Instant) -> Option<PeerChange> {
        self.tracked(new.id, |record| {
            if record.identity.generation > new.generation {
                return None;
            }
            let changed = record.identity != *new;
            adopt(record, new);
            (changed && record.member.state.is_active()).then(|| same_state_change(record, now))
        })
        .flatten()
    }

    /// The member `id` says its run `generation` leaves. Returns the change
    /// and the identity foca should mark down, unless the notice is about an
    /// older run than the one known (or about an unknown node).
    pub(super) fn left(
        &mut self,
        id: NodeId,
        generation: u64,
        now: Instant,
    ) -> (Option<PeerChange>, Option<Identity>) {
        self.tracked(id, |record| {
            if record.identity.generation > generation {
                return (None, None);
            }
            let change = transition(record, PeerState::Left, now);
            (change, Some(record.identity.clone()))
        })
        .unwrap_or((None, None))
    }

    /// Runs `change` on the record of `id` (if any), keeping the summary of
    /// active runs up to date. Every change of a record's state or run goes
    /// through here (or is an insertion or removal, accounted for there).
    fn tracked<R>(&mut self, id: NodeId, change: impl FnOnce(&mut Record) -> R) -> Option<R> {
        let record = self.records.get_mut(&id)?;
        let before = active_hash(record);
        let result = change(record);
        let after = active_hash(record);
        self.account(before, after);
        Some(result)
    }

    /// Replaces a record's contribution `before` to the active summary with
    /// `after`.
    fn account(&mut self, before: Option<u64>, after: Option<u64>) {
        if let Some(hash) = before {
            self.active_count -= 1;
            self.active_hash_sum = self.active_hash_sum.wrapping_sub(hash);
        }
        if let Some(hash) = after {
            self.active_count += 1;
            self.active_hash_sum = self.active_hash_sum.wrapping_add(hash);
        }
    }

    /// foca's view says `identity` is at `incarnation`.
    pub(super) fn set_incarnation(&mut self, identity: &Identity, incarnation: u16) {
        if let Some(record) = self.records.get_mut(&identity.id)
            && record.identity == *identity
        {
            record.member.incarnation = incarnation;
        }
    }

    /// foca's view says `identity` is (not) suspect.
    pub(super) fn set_suspect(
        &mut self,
        identity: &Identity,
        suspect: bool,
        now: Instant,
    ) -> Option<PeerChange> {
        let record = self.records.get_mut(&identity.id)?;
        if record.identity != *identity {
            return None;
        }
        match (record.member.state, suspect) {
            (PeerState::Alive, true) => transition(record, PeerState::Suspect, now),
            (PeerState::Suspect, false) => transition(record, PeerState::Alive, now),
            _ => None,
        }
    }

    /// foca forgot `identity` (down for [`super::NodeConfig::reap_after`]).
    pub(super) fn forget(&mut self, identity: &Identity) {
        let forgettable = self
            .records
            .get(&identity.id)
            .is_some_and(|record| record.identity == *identity && !record.member.state.is_active());
        if forgettable {
            // Not active, so not part of the summary.
            self.records.remove(&identity.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(generation: u64) -> Identity {
        Identity::for_tests(generation)
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn left_survives_a_later_down_and_a_new_run_comes_back() {
        let now = Instant::now();
        let mut table = Membership::default();
        let up = table.up(&identity(1), now).expect("new member");
        assert_eq!(up.previous, None);
        assert_eq!(up.member.state, PeerState::Alive);

        let (change, to_down) = table.left(identity(1).id, 1, now);
        assert_eq!(change.map(|c| c.member.state), Some(PeerState::Left));
        assert_eq!(to_down, Some(identity(1)));
        assert_eq!(table.down(&identity(1), now), None, "left stays left");

        // A stale leave notice of an older run is ignored.
        table.up(&identity(2), now).expect("restart is a change");
        assert_eq!(table.left(identity(1).id, 1, now), (None, None));
        let down = table.down(&identity(2), now).expect("a crash is a change");
        assert_eq!(down.previous, Some(PeerState::Alive));
        assert_eq!(down.member.state, PeerState::Failed);

        table.forget(&identity(2));
        assert_eq!(table.len(), 0);
    }

    /// The active summary recomputed from scratch.
    fn recomputed(table: &Membership) -> (u64, u64) {
        table
            .active_identities_after(None)
            .fold((0, 0), |(count, sum), identity| {
                let hash = member_hash(&identity.id, identity.generation);
                (count + 1, sum.wrapping_add(hash))
            })
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn the_active_summary_follows_every_change() {
        let now = Instant::now();
        let mut table = Membership::default();
        assert_eq!(table.active_summary(), (0, 0));
        table.up(&identity(1), now);
        let other = Identity {
            id: NodeId([2; 16]),
            ..identity(7)
        };
        table.up(&other, now);
        assert_eq!(table.active_summary().0, 2);
        assert_eq!(table.active_summary(), recomputed(&table));
        table.rename(&identity(2), now);
        assert_eq!(table.active_summary(), recomputed(&table));
        table.set_suspect(&identity(2), true, now);
        assert_eq!(table.active_summary(), recomputed(&table));
        table.down(&identity(2), now);
        assert_eq!(table.active_summary().0, 1, "failed is not active");
        assert_eq!(table.active_summary(), recomputed(&table));
        table.up(&identity(3), now);
        assert_eq!(table.active_summary(), recomputed(&table));
        table.left(identity(1).id, 3, now);
        assert_eq!(table.active_summary().0, 1, "left is not active");
        assert_eq!(table.active_summary(), recomputed(&table));
        table.forget(&identity(3));
        assert_eq!(table.len(), 1);
        assert_eq!(table.active_summary(), recomputed(&table));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn suspicion_follows_foca() {
        let now = Instant::now();
        let mut table = Membership::default();
        table.up(&identity(1), now);
        let s = table.set_suspect(&identity(1), true, now).expect("suspect");
        assert_eq!(s.previous, Some(PeerState::Alive));
        assert_eq!(table.set_suspect(&identity(1), true, now), None);
        let a = table
            .set_suspect(&identity(1), false, now)
            .expect("refuted");
        assert_eq!(a.member.state, PeerState::Alive);
        assert_eq!(table.set_suspect(&identity(2), true, now), None);
    }
}
