//! Cutting a host off the LAN at the switch, as a pulled cable would: the
//! bridge drops every frame from or to the host's ports, so nothing it sends
//! arrives anywhere and nothing reaches it, while the host itself notices
//! nothing (its link stays up, its sends succeed, no ICMP, no reset).
//!
//! One nftables table of family `bridge` in the switch namespace, whose
//! `forward` chain is rewritten from the set of isolated hosts on each
//! change.

use std::sync::PoisonError;

use super::{Lan, SWITCH_TABLE};

impl Lan {
    /// Cuts host `index` off: the switch drops every frame from or to each
    /// of its interfaces (those that exist now). Undone by
    /// [`Lan::reconnect`] or [`Lan::heal`].
    pub fn isolate(&self, index: usize) {
        self.set_isolated(index, true);
    }

    /// Plugs host `index` back in after [`Lan::isolate`].
    pub fn reconnect(&self, index: usize) {
        self.set_isolated(index, false);
    }

    /// Reconnects every isolated host (a no-op when none ever was).
    pub(super) fn reconnect_all(&self) {
        let any = self
            .isolated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&true);
        if any {
            for index in 0..self.hosts.len() {
                self.set_isolated(index, false);
            }
        }
    }

    /// Frames the switch has dropped for isolated hosts so far (the rules'
    /// counters, reset on every change): shows the cut was in force.
    pub fn isolation_drops(&self) -> u64 {
        // No table yet: no host was ever isolated, so nothing was dropped.
        self.nft_packets(&self.switch, "bridge", SWITCH_TABLE)
            .unwrap_or(0)
    }

    fn set_isolated(&self, index: usize, isolated: bool) {
        let mut state = self.isolated.lock().unwrap_or_else(PoisonError::into_inner);
        state[index] = isolated;
        // `add table` and `add chain` are no-ops when they exist, so the
        // script is the same the first time and every time after.
        let mut script = format!(
            "add table bridge {SWITCH_TABLE}\n\
             add chain bridge {SWITCH_TABLE} forward {{ type filter hook forward priority 0; policy accept; }}\n\
             flush chain bridge {SWITCH_TABLE} forward\n"
        );
        for (host, _) in state.iter().enumerate().filter(|(_, cut)| **cut) {
            for iface in &self.ifaces[host] {
                script.push_str(&format!(
                    "add rule bridge {SWITCH_TABLE} forward iifname \"{port}\" counter drop\n\
                     add rule bridge {SWITCH_TABLE} forward oifname \"{port}\" counter drop\n",
                    port = iface.port
                ));
            }
        }
        self.nft_script(&self.switch, &script);
    }
}
