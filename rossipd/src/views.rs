//! Converting protocol values into the API's JSON views, including the
//! protocol's monotonic `Instant`s into wall-clock milliseconds.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rossip_proto::rpc::{NameTrust, PeerStateName, PeerView};
use rossip_proto::{Member, PeerState};

/// Maps monotonic instants to Unix milliseconds through one reference pair
/// taken at start, so that all times a daemon reports are consistent with
/// each other even if the wall clock is stepped later.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    start: Instant,
    start_ms: u64,
}

impl WallClock {
    /// Takes the reference pair now.
    pub fn new() -> Self {
        WallClock {
            start: Instant::now(),
            start_ms: unix_ms_now(),
        }
    }

    /// When the daemon started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// `at` in Unix milliseconds.
    pub fn unix_ms(self, at: Instant) -> u64 {
        if at >= self.start {
            self.start_ms.saturating_add(duration_ms(at - self.start))
        } else {
            self.start_ms.saturating_sub(duration_ms(self.start - at))
        }
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The wall clock now, in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or(0)
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The API name of a protocol state.
pub fn state_name(state: PeerState) -> PeerStateName {
    match state {
        PeerState::Alive => PeerStateName::Alive,
        PeerState::Suspect => PeerStateName::Suspect,
        PeerState::Failed => PeerStateName::Failed,
        PeerState::Left => PeerStateName::Left,
    }
}

/// A member as the API shows it.
pub fn peer_view(member: &Member, clock: &WallClock) -> PeerView {
    PeerView {
        id: member.id.to_string(),
        name: member.name.clone(),
        addr: member.addr.to_string(),
        state: state_name(member.state),
        since: clock.unix_ms(member.since),
        last_seen: member.last_seen.map(|t| clock.unix_ms(t)),
        // Microsecond precision is all a LAN RTT needs; it keeps the JSON tidy.
        rtt_ms: member.rtt.map(|d| (d.as_micros() as f64) / 1000.0),
        generation: member.generation,
        incarnation: member.incarnation,
        key: member.key.fingerprint(),
        // The driver checks names against its pins (`pins.rs`).
        name_trust: NameTrust::Unchecked,
    }
}

/// A delivered message as the API shows it.
pub fn message_view(delivered: &crate::delivery::Delivered) -> rossip_proto::rpc::MessageView {
    let mut view = rossip_proto::rpc::MessageView::from(&delivered.message);
    view.name_trust = delivered.name_trust;
    view.cursor = delivered.cursor.to_string();
    view
}

/// A member as the API shows it, with its name's trust.
pub fn peer_snapshot_view(peer: &crate::driver::PeerSnapshot, clock: &WallClock) -> PeerView {
    let mut view = peer_view(&peer.member, clock);
    view.name_trust = peer.name_trust;
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn instants_map_to_consistent_wall_time() {
        let clock = WallClock::new();
        let later = clock.started() + Duration::from_millis(1500);
        assert_eq!(clock.unix_ms(later) - clock.unix_ms(clock.started()), 1500);
        if let Some(earlier) = clock.started().checked_sub(Duration::from_millis(250)) {
            assert_eq!(clock.unix_ms(clock.started()) - clock.unix_ms(earlier), 250);
        }
    }
}
