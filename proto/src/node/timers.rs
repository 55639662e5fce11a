//! The node's timer queue: deterministic, and handed back to the driver as a
//! single deadline ([`super::Node::poll_timeout`]).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::wire::Identity;

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TimerKind {
    /// A timer foca asked for; handed back to it. foca ignores stale ones
    /// (it tags them with a token), so none is ever cancelled here.
    Swim(foca::Timer<Identity>),
    /// The periodic anti-entropy round (reschedules itself).
    AntiEntropy,
    /// Tell a member we suspect that we do (see `suspicion`).
    Nudge(crate::id::NodeId, u64),
    /// Gossip a change that came too soon after the last immediate gossip.
    DeferredGossip,
    /// Pull the gaps of one origin's messages (see `dissemination`).
    GapPull(crate::id::NodeId),
    /// The periodic membership anti-entropy round (see `member_sync`;
    /// reschedules itself).
    MemberSync,
    /// Hellos to discovery hints that wait for their backoff or the hello
    /// rate (see `hints`); the deadline tells a stale one.
    Hints(Instant),
    /// Send this node's presence statement to every member again (see
    /// `presence`; reschedules itself).
    PresenceRefresh,
    Direct,
    /// Send again what members have not acknowledged in time (see `acks`;
    /// a timer that finds nothing due is a no-op).
    Retransmit,
    /// Send the acknowledgements deferred to the end of their interval
    /// (see `acks`).
    AckDue,
}

/// Timers keyed by (deadline, insertion number): timers due at the same
/// instant fire in the order they were scheduled, so a replay replays.
#[derive(Debug, Default)]
pub(super) struct TimerQueue {
    queue: BTreeMap<(Instant, u64), TimerKind>,
    next_number: u64,
}

impl TimerQueue {
    /// Schedules `timer` at `deadline`.
    pub(super) fn schedule(&mut self, deadline: Instant, timer: TimerKind) {
        self.queue.insert((deadline, self.next_number), timer);
        self.next_number = self.next_number.wrapping_add(1);
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns every timer due at or before `now`, in order.
    /// Timers scheduled while these fire wait for the next call, even if
    /// already due, so one call always terminates.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<TimerKind> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }

    /// Drops the timers that belong to foca and to suspicions (when the
    /// node takes a new identity, both start over).
    pub(super) fn retain_non_swim(&mut self) {
        self.queue
            .retain(|_, timer| !matches!(timer, TimerKind::Swim(_) | TimerKind::Nudge(..)));
    }

    /// Drops every timer (after leaving).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn fires_due_timers_in_deadline_then_insertion_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.schedule(t0 + Duration::from_secs(2), TimerKind::AntiEntropy);
        q.schedule(
            t0 + Duration::from_secs(1),
            TimerKind::Swim(foca::Timer::ProbeRandomMember(1)),
        );
        q.schedule(
            t0 + Duration::from_secs(1),
            TimerKind::Swim(foca::Timer::PeriodicGossip(2)),
        );
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(q.take_due(t0).is_empty());
        assert_eq!(
            q.take_due(t0 + Duration::from_secs(1)),
            vec![
                TimerKind::Swim(foca::Timer::ProbeRandomMember(1)),
                TimerKind::Swim(foca::Timer::PeriodicGossip(2)),
            ]
        );
        assert_eq!(
            q.take_due(t0 + Duration::from_secs(5)),
            vec![TimerKind::AntiEntropy]
        );
        assert_eq!(q.next_deadline(), None);
    }
}
