//! Local health: a node that is itself behind gives its peers more time
//! before it accuses them, in the spirit of Lifeguard's local health
//! awareness (the SWIM refinement Serf and memberlist run).
//!
//! When a host is saturated (a flood of messages on every node of a small
//! machine), a node falls behind its own inputs: an answer that arrived on
//! time waits in the host's receive queue behind bulk data, and timers fire
//! late. SWIM reads that as the peer's silence, suspects healthy members,
//! and fails them when their refutations wait in the same queue; yet the
//! slow one is this node. So the node measures how far behind it runs — how
//! late its timers fire, and how long datagrams waited before it handled
//! them (the driver tells it, [`super::Node::handle_receive_lag`]) — and
//! stretches the waits of its own failure detector by that lag (see
//! [`stretch`]): the wait for a direct answer, the probe period (the wait
//! for indirect ones), and a suspect's time to refute. An idle node
//! measures no lag (or less than [`ProtocolConfig::health_min_lag`]) and
//! detects failures exactly as before.

use std::time::{Duration, Instant};

use super::ProtocolConfig;
use crate::wire::Identity;

/// The largest lag seen lately: kept per window of
/// [`ProtocolConfig::health_window`], and the current and the previous
/// window count, so that a lag is remembered for one to two windows and a
/// node that caught up returns to the normal timings by itself.
#[derive(Debug, Default)]
pub(super) struct LocalHealth {
    current: Duration,
    previous: Duration,
    window_start: Option<Instant>,
}

impl LocalHealth {
    /// Records that this node handled an input `lag` after it was due (a
    /// timer) or arrived (a datagram).
    pub(super) fn observe(&mut self, lag: Duration, now: Instant, config: &ProtocolConfig) {
        let window = config.health_window;
        match self.window_start {
            None => self.window_start = Some(now),
            Some(start) => {
                let age = now.saturating_duration_since(start);
                if age >= window {
                    self.previous = if age < window.saturating_mul(2) {
                        self.current
                    } else {
                        Duration::ZERO
                    };
                    self.current = Duration::ZERO;
                    self.window_start = Some(now);
                }
            }
        }
        if lag >= config.health_min_lag {
            self.current = self.current.max(lag);
        }
    }

    /// How far behind this node ran lately (zero when healthy).
    pub(super) fn lag(&self, now: Instant, config: &ProtocolConfig) -> Duration {
        let Some(start) = self.window_start else {
            return Duration::ZERO;
        };
        let window = config.health_window;
        let age = now.saturating_duration_since(start);
        if age < window {
            self.current.max(self.previous)
        } else if age < window.saturating_mul(2) {
            self.current
        } else {
            Duration::ZERO
        }
    }
}

/// How much longer than configured this node waits for `timer`, given that
/// it runs `lag` behind. A question and its answer each cross a loaded
/// host's queue, and the peer at the other end is usually loaded alike (a
/// flood saturates every host), so a direct probe's answer gets twice the
/// lag more; the probe period, which also covers the indirect probes (two
/// hops more), and a suspect's time to refute (a nudge, then the answer)
/// get four times the lag. Each at most
/// [`ProtocolConfig::max_health_stretch`], which bounds how much later a
/// slow node notices a real failure. Other timers are not stretched.
pub(super) fn stretch(
    timer: &foca::Timer<Identity>,
    lag: Duration,
    config: &ProtocolConfig,
) -> Duration {
    if lag.is_zero() {
        return Duration::ZERO;
    }
    let factor = match timer {
        foca::Timer::SendIndirectProbe { .. } => 2,
        foca::Timer::ProbeRandomMember(_) | foca::Timer::ChangeSuspectToDown { .. } => 4,
        foca::Timer::PeriodicAnnounce(_)
        | foca::Timer::PeriodicAnnounceDown(_)
        | foca::Timer::PeriodicGossip(_)
        | foca::Timer::RemoveDown(_) => return Duration::ZERO,
    };
    lag.saturating_mul(factor).min(config.max_health_stretch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn a_lag_is_remembered_for_one_to_two_windows_then_forgotten() {
        let config = ProtocolConfig::default();
        let window = config.health_window;
        let t0 = Instant::now();
        let mut health = LocalHealth::default();
        assert_eq!(health.lag(t0, &config), Duration::ZERO);
        health.observe(Duration::ZERO, t0, &config);
        let lag = config.health_min_lag * 10;
        health.observe(lag, t0 + window / 2, &config);
        assert_eq!(health.lag(t0 + window / 2, &config), lag);
        // The next window still remembers it...
        health.observe(Duration::ZERO, t0 + window, &config);
        assert_eq!(health.lag(t0 + window + window / 2, &config), lag);
        // ...the one after does not.
        assert_eq!(health.lag(t0 + window * 2, &config), Duration::ZERO);
        health.observe(Duration::ZERO, t0 + window * 2, &config);
        assert_eq!(health.lag(t0 + window * 2, &config), Duration::ZERO);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    fn scheduling_noise_is_not_a_lag() {
        let config = ProtocolConfig::default();
        let t0 = Instant::now();
        let mut health = LocalHealth::default();
        health.observe(config.health_min_lag / 2, t0, &config);
        assert_eq!(health.lag(t0, &config), Duration::ZERO);
    }

    #[test]
    fn only_the_failure_detectors_waits_stretch_and_only_so_far() {
        let config = ProtocolConfig::default();
        let lag = Duration::from_millis(100);
        let probe = foca::Timer::<Identity>::ProbeRandomMember(1);
        let gossip = foca::Timer::<Identity>::PeriodicGossip(1);
        assert_eq!(stretch(&probe, Duration::ZERO, &config), Duration::ZERO);
        assert_eq!(stretch(&probe, lag, &config), lag * 4);
        assert_eq!(stretch(&gossip, lag, &config), Duration::ZERO);
        assert_eq!(
            stretch(&probe, config.max_health_stretch, &config),
            config.max_health_stretch
        );
    }
}
