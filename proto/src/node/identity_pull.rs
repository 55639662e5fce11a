//! Pulling the signed identities SWIM packets named by reference.
//!
//! SWIM packets name members by (id, generation) where the receiver is
//! expected to hold the signed identity (see [`crate::wire::SwimIdentity`]).
//! A node that does not (a member it has not heard of yet, or a new run of
//! one) asks the sender of the packet for it with a
//! [`Body::IdentityRequest`]; the sender answers with the identities it
//! holds ([`Body::Identities`]), and the update the packet carried about
//! each is applied then, as if it had just arrived. So each identity
//! crosses the network about once per member that lacks it, instead of in
//! every packet that mentions it.
//!
//! Bounds: requests are answered only to members, at their signed address
//! (a forged source cannot aim answers elsewhere), with at most
//! [`MAX_RUNS_PER_REQUEST`] identities; answers are taken only for runs
//! this node asked for (at most [`super::ProtocolConfig::identity_pulls_max`]
//! at once), and every identity in them is verified by the wire decoder.
//! A member is only believed once its verified identity is here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::Node;
use super::swim::Unresolved;
use crate::id::NodeId;
use crate::message::MAX_NAME_BYTES;
use crate::wire::{self, Body, Identity, RunRef};

/// Most runs one request names (and one answer serves): what fits one
/// datagram with every generation at its longest (26 bytes a run).
pub const MAX_RUNS_PER_REQUEST: usize = 48;

/// Bytes of a body available to an answer's identities: the body less the
/// variant tag and the list length.
const ANSWER_BUDGET: usize = wire::MAX_BODY_BYTES - 16;

/// One run asked for.
#[derive(Debug)]
struct Pull {
    generation: u64,
    /// The update the packet that named it carried (the latest one).
    update: Option<(foca::Incarnation, foca::State)>,
    asked: Instant,
}

/// The runs this node asked for and awaits.
#[derive(Debug, Default)]
pub(super) struct IdentityPulls {
    pending: BTreeMap<NodeId, Pull>,
}

impl Node {
    /// A SWIM packet from `sender` at `from` named `unresolved` runs this
    /// node does not hold: asks the sender for those not asked for within
    /// [`super::ProtocolConfig::identity_pull_retry`].
    pub(super) fn pull_identities(
        &mut self,
        sender: NodeId,
        from: SocketAddr,
        unresolved: Vec<Unresolved>,
        now: Instant,
    ) {
        if unresolved.is_empty() {
            return;
        }
        let retry = self.config.protocol.identity_pull_retry;
        let max = self.config.protocol.identity_pulls_max;
        let pending = &mut self.identity_pulls.pending;
        let mut ask = Vec::new();
        for Unresolved { run, update } in unresolved {
            match pending.get_mut(&run.id) {
                Some(pull) if pull.generation > run.generation => continue,
                Some(pull) if pull.generation == run.generation => {
                    if update.is_some() {
                        pull.update = update;
                    }
                    if now.saturating_duration_since(pull.asked) < retry {
                        continue;
                    }
                    pull.asked = now;
                }
                _ => {
                    if pending.len() >= max && !pending.contains_key(&run.id) {
                        // Forget the ones long unanswered first.
                        pending.retain(|_, pull| now.saturating_duration_since(pull.asked) < retry);
                        if pending.len() >= max {
                            *self.stats.dropped.entry("identity_pulls_full").or_insert(0) += 1;
                            continue;
                        }
                    }
                    pending.insert(
                        run.id,
                        Pull {
                            generation: run.generation,
                            update,
                            asked: now,
                        },
                    );
                }
            }
            if ask.len() < MAX_RUNS_PER_REQUEST && !ask.contains(&run) {
                ask.push(run);
            }
        }
        if ask.is_empty() {
            return;
        }
        // The sender's signed address if it is a member; else where the
        // packet came from (a request is small, and only members answer).
        let to = self.members.active_addr(sender).unwrap_or(from);
        self.send(to, &Body::IdentityRequest(ask));
    }

    /// `sender` asks for identities SWIM packets of ours named: answered
    /// with those this node holds, if the sender is a member.
    pub(super) fn on_identity_request(&mut self, sender: NodeId, runs: Vec<RunRef>) {
        let Some(to) = self.members.active_addr(sender) else {
            self.count_drop("identity_request_from_non_member");
            return;
        };
        let mut identities = Vec::new();
        let mut used = 0;
        for run in runs.iter().take(MAX_RUNS_PER_REQUEST) {
            let Some(identity) = self.swim.identity_of(&run.id) else {
                continue;
            };
            let size = postcard::experimental::serialized_size(&identity).unwrap_or(usize::MAX);
            if used + size > ANSWER_BUDGET && !identities.is_empty() {
                self.send(to, &Body::Identities(std::mem::take(&mut identities)));
                used = 0;
            }
            used += size;
            identities.push(identity);
        }
        if !identities.is_empty() {
            self.send(to, &Body::Identities(identities));
        }
    }

    /// Identities this node asked for arrived (verified by the wire
    /// decoder): each is applied with the update that named it (or as
    /// alive, for a later run or a packet's header).
    pub(super) fn on_identities(&mut self, identities: Vec<Identity>, now: Instant) {
        let mut members = Vec::new();
        for identity in identities {
            // Another run of our own id goes to the conflict check, never to
            // foca (see `identity_conflict`).
            self.check_own_identity(&identity);
            if identity.id == self.config.id || identity.name.len() > MAX_NAME_BYTES {
                self.identity_pulls.pending.remove(&identity.id);
                continue;
            }
            let Some(pull) = self
                .identity_pulls
                .pending
                .remove_entry(&identity.id)
                .map(|(_, pull)| pull)
            else {
                self.count_drop("identity_unasked");
                continue;
            };
            if identity.generation < pull.generation {
                // An earlier run than the one asked for: still wanted.
                self.identity_pulls.pending.insert(identity.id, pull);
                self.count_drop("identity_unasked");
                continue;
            }
            let member = match pull.update {
                Some((incarnation, state)) if identity.generation == pull.generation => {
                    foca::Member::new(identity, incarnation, state)
                }
                _ => foca::Member::alive(identity),
            };
            members.push(member);
        }
        if members.is_empty() {
            return;
        }
        if let Err(err) = self.swim.apply_members(members) {
            tracing::debug!(%err, "foca refused pulled identities");
            self.count_drop("swim_rejected");
        }
        self.after_swim(now);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real Instant per test as the origin of virtual time
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::node::PeerState;
    use crate::testing::{SIM_CLUSTER, Sim};
    use crate::wire::{ClusterId, Header};

    fn header_from(sender: NodeId) -> Header {
        Header {
            flags: 0,
            cluster: ClusterId::from_label(SIM_CLUSTER),
            sender,
        }
    }

    #[test]
    fn a_full_request_fits_one_datagram() {
        let runs = vec![
            RunRef {
                id: NodeId([0xff; 16]),
                generation: u64::MAX,
            };
            MAX_RUNS_PER_REQUEST
        ];
        wire::encode(&header_from(NodeId([0; 16])), &Body::IdentityRequest(runs))
            .expect("a full request fits");
    }

    /// Node 2 can talk to node 0 only: node 1 hears of it in node 0's
    /// gossip, by reference, and must pull its identity from node 0 to
    /// believe it.
    #[test]
    fn a_member_named_by_reference_is_pulled_and_believed() {
        let mut sim = Sim::new(Instant::now(), 17);
        for name in ["a", "b", "c"] {
            sim.add_node(name);
        }
        sim.block(1, 2);
        sim.block(2, 1);
        sim.contact(1, 0);
        sim.run_for(Duration::from_secs(1));
        let before = sim.traffic();
        sim.contact(2, 0);
        let seen = sim.run_until(Duration::from_secs(5), |sim| {
            sim.state(1, 2) == Some(PeerState::Alive)
        });
        assert!(seen, "node 1 never saw node 2 alive (seed {})", sim.seed());
        let phase = sim.traffic().since(&before);
        assert!(
            phase.by_kind.contains_key("identity-request")
                && phase.by_kind.contains_key("identities"),
            "node 1 learned node 2 without a pull: {:?}",
            phase.by_kind.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn identities_nobody_asked_for_are_not_believed() {
        let mut sim = Sim::new(Instant::now(), 5);
        sim.add_node("a");
        sim.add_node("b");
        sim.contact(1, 0);
        assert!(sim.run_until(Duration::from_secs(5), |sim| {
            sim.state(0, 1) == Some(PeerState::Alive)
        }));
        // Validly signed, and sent by a member: still not asked for.
        let stranger = Identity::signed(&Sim::key(9), Sim::addr(9), "x".into(), 1);
        let bytes = wire::encode(&header_from(Sim::id(1)), &Body::Identities(vec![stranger]))
            .expect("encodes");
        sim.inject(0, Sim::addr(1), &bytes);
        sim.run_for(Duration::from_secs(1));
        assert!(sim.node(0).members().all(|m| m.id != Sim::id(9)));
        assert_eq!(
            sim.node(0).stats().dropped.get("identity_unasked"),
            Some(&1)
        );
    }

    #[test]
    fn requests_from_strangers_are_not_answered() {
        let mut sim = Sim::new(Instant::now(), 5);
        sim.add_node("a");
        let runs = vec![RunRef {
            id: Sim::id(0),
            generation: 0,
        }];
        let bytes =
            wire::encode(&header_from(Sim::id(7)), &Body::IdentityRequest(runs)).expect("encodes");
        let before = sim.traffic();
        sim.inject(0, Sim::addr(7), &bytes);
        let phase = sim.traffic().since(&before);
        assert!(!phase.by_kind.contains_key("identities"));
        assert_eq!(
            sim.node(0)
                .stats()
                .dropped
                .get("identity_request_from_non_member"),
            Some(&1)
        );
    }
}
