//! Fast, careful suspicion: what lets rossip declare a dead member failed
//! within about two seconds without crying wolf on a lossy network.
//!
//! foca's SWIM suspects a member whose direct and indirect probes all failed
//! and, on the member that probed, declares it down when
//! [`super::ProtocolConfig::suspect_to_down_after`] passes without a refutation. A live
//! member refutes only once the suspicion reaches it by gossip, which with
//! a short timeout and lost packets is a gamble. Two additions make it safe
//! (in the spirit of Lifeguard's suspicion confirmation, measured by the
//! scenario tests at 10% loss):
//!
//! - **Nudges.** The member that suspects sends the suspect a
//!   [`Body::Suspected`] at once and every [`super::ProtocolConfig::nudge_interval`] while the
//!   suspicion lasts. A live suspect refutes (foca raises its incarnation)
//!   and answers the nudger directly with a foca announce, whose header
//!   carries the new incarnation and clears the suspicion there.
//! - **Evidence.** When the timeout comes, a suspect that sent this node any
//!   datagram since the suspicion began is demonstrably running: the "down"
//!   is postponed by [`super::ProtocolConfig::postpone_step`] (at most
//!   [`super::ProtocolConfig::max_postpones`] times)
//!   and the nudges go on. A member that crashed or vanished sends nothing,
//!   so it is failed on time.

use std::collections::BTreeMap;
use std::time::Instant;

use super::Node;
use super::timers::TimerKind;
use crate::id::NodeId;
use crate::wire::{Body, Identity};

/// Past this many remembered nudgers, old entries are pruned.
const NUDGE_ANSWER_MEMORY: usize = 256;

/// A suspicion this node raised and is following.
#[derive(Debug)]
struct Watch {
    identity: Identity,
    incarnation: foca::Incarnation,
    since: Instant,
    postponed: u32,
    /// Tags this watch's nudge timers: a timer of an earlier watch of the
    /// same member (an earlier incarnation) ends its chain when it fires.
    chain: u64,
}

/// The suspicions this node raised, and whom it answered lately.
#[derive(Debug, Default)]
pub(super) struct Suspicions {
    watches: BTreeMap<NodeId, Watch>,
    next_chain: u64,
    answered: BTreeMap<NodeId, Instant>,
    /// The last suspicion of this node it refuted, (generation, incarnation):
    /// the nudges that repeat it are not counted again.
    last_refuted: Option<(u64, foca::Incarnation)>,
}

impl Node {
    /// foca suspects `identity` at `incarnation` after our probe: tell it,
    /// and keep telling it every [`super::ProtocolConfig::nudge_interval`].
    pub(super) fn watch_suspect(
        &mut self,
        identity: Identity,
        incarnation: foca::Incarnation,
        now: Instant,
    ) {
        let id = identity.id;
        if self
            .suspicions
            .watches
            .get(&id)
            .is_some_and(|w| w.identity == identity && w.incarnation == incarnation)
        {
            // Probed again while still suspect: the watch (and its clock)
            // stands; foca's second timer is settled when it fires.
            return;
        }
        let chain = self.suspicions.next_chain;
        self.suspicions.next_chain = chain.wrapping_add(1);
        self.suspicions.watches.insert(
            id,
            Watch {
                identity,
                incarnation,
                since: now,
                postponed: 0,
                chain,
            },
        );
        self.nudge(id, chain, now);
    }

    /// A nudge timer of `id`'s watch `chain` fired.
    pub(super) fn on_nudge_timer(&mut self, id: NodeId, chain: u64, now: Instant) {
        self.nudge(id, chain, now);
    }

    /// Sends `id` a nudge and schedules the next, if the suspicion of watch
    /// `chain` stands.
    fn nudge(&mut self, id: NodeId, chain: u64, now: Instant) {
        let Some(watch) = self.suspicions.watches.get(&id) else {
            return;
        };
        if watch.chain != chain {
            // A newer watch of this member runs its own chain.
            return;
        }
        if !self.swim.is_suspect_at(&watch.identity, watch.incarnation) {
            // Refuted, or already down: nothing more to say.
            self.suspicions.watches.remove(&id);
            return;
        }
        let body = Body::Suspected {
            generation: watch.identity.generation,
            incarnation: watch.incarnation,
        };
        let addr = watch.identity.addr;
        self.send(addr, &body);
        self.timers.schedule(
            now + self.config.protocol.nudge_interval,
            TimerKind::Nudge(id, chain),
        );
    }

    /// foca's timer to declare a suspect down is due. Returns it to hand to
    /// foca, or `None` when it was postponed because the suspect was heard
    /// from since the suspicion began.
    pub(super) fn confirm_down(
        &mut self,
        timer: foca::Timer<Identity>,
        now: Instant,
    ) -> Option<foca::Timer<Identity>> {
        let foca::Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &timer
        else {
            return Some(timer);
        };
        if !self.swim.is_suspect_at(member_id, *incarnation) {
            // Refuted, replaced by a newer run, or already down. foca would
            // ignore the timer, but with `notify_down_members` it still sends
            // the member a "you are down" notice, which makes a member that
            // just refuted renew its identity for nothing.
            return None;
        }
        let id = member_id.id;
        let Some(watch) = self.suspicions.watches.get_mut(&id) else {
            return Some(timer);
        };
        if watch.identity != *member_id || watch.incarnation != *incarnation {
            return Some(timer);
        }
        let heard_since = self
            .members
            .last_seen(id)
            .is_some_and(|seen| seen > watch.since);
        if heard_since && watch.postponed < self.config.protocol.max_postpones {
            watch.postponed += 1;
            tracing::debug!(
                peer = self.members.get(&id).map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                peer_id = %id.short(),
                postponed = watch.postponed,
                "suspect is still sending; postponing its failure"
            );
            self.stats.failures_postponed += 1;
            self.timers.schedule(
                now + self.config.protocol.postpone_step,
                TimerKind::Swim(timer),
            );
            return None;
        }
        self.suspicions.watches.remove(&id);
        Some(timer)
    }

    /// `sender` suspects our run `generation` at `incarnation`: refute, and
    /// answer it directly so its suspicion clears without waiting for gossip.
    pub(super) fn on_suspected(
        &mut self,
        sender: NodeId,
        generation: u64,
        incarnation: foca::Incarnation,
        now: Instant,
    ) {
        if generation != self.swim.identity().generation {
            // About an earlier run of ours; foca settles those by itself.
            return;
        }
        let Some(nudger) = self.members.active_identity(sender).cloned() else {
            self.count_drop("suspected_by_non_member");
            return;
        };
        let current = (generation, incarnation);
        if self
            .suspicions
            .last_refuted
            .is_none_or(|last| last < current)
        {
            self.suspicions.last_refuted = Some(current);
            self.stats.suspicions_refuted += 1;
        }
        if let Err(err) = self.swim.refute(incarnation) {
            tracing::debug!(%err, "foca could not refute a suspicion");
        }
        let min_interval = self.config.protocol.nudge_answer_min_interval;
        let answered_lately = self
            .suspicions
            .answered
            .get(&sender)
            .is_some_and(|at| now.saturating_duration_since(*at) < min_interval);
        if !answered_lately {
            if self.suspicions.answered.len() >= NUDGE_ANSWER_MEMORY {
                self.suspicions
                    .answered
                    .retain(|_, at| now.saturating_duration_since(*at) < min_interval);
            }
            self.suspicions.answered.insert(sender, now);
            if let Err(err) = self.swim.announce(nudger) {
                tracing::debug!(%err, "foca could not answer a suspicion");
            }
        }
        self.after_swim(now);
    }
}
