//! rossip on the benchmark's LAN: an [`NsCluster`] (one mDNS-only
//! `rossipd` per host, a [`PeerRecorder`](crate::events::PeerRecorder) on
//! each) plus a [`MessageRecorder`] per daemon, which stamps each message
//! notification with the instant it read it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use rossip_proto::rpc::{PeerStateName, PeerView};

use crate::daemon::READY_TIMEOUT;
use crate::delivery::MessageRecorder;
use crate::delivery_bench::{Deliveries, RossipNodes};
use crate::delivery_send::{Sent, pad_to};
use crate::netns::{Lan, Skip};
use crate::nscluster::NsCluster;
use crate::{bins, sys, wait};

/// Unanswered `send` requests a throughput sender keeps (as
/// `delivery-bench`'s default).
const SEND_WINDOW: usize = 256;

/// The daemons' log level: what a user runs.
const LOG_LEVEL: &str = "info";

/// A rossip cluster with message recorders.
#[derive(Debug)]
pub struct RossipSwarm {
    /// `messages[i]` records `cluster.daemons[i]`'s messages; dropped first.
    messages: Vec<MessageRecorder>,
    cluster: NsCluster,
}

impl RossipSwarm {
    /// A LAN of `hosts + idle` hosts with a daemon on each of the first
    /// `hosts`, all spawned at once (see [`NsCluster::start_with_idle`]).
    pub fn start(test: &str, hosts: usize, idle: usize) -> Result<RossipSwarm, Skip> {
        let cluster =
            NsCluster::start_with_idle(test, hosts, idle, |_| {}, |_, d| d.log_level(LOG_LEVEL))?;
        let mut swarm = RossipSwarm {
            messages: Vec::new(),
            cluster,
        };
        for i in 0..hosts {
            swarm.messages.push(swarm.message_recorder(i));
        }
        Ok(swarm)
    }

    fn message_recorder(&self, i: usize) -> MessageRecorder {
        let daemon = &self.cluster.daemons[i];
        let recorder = MessageRecorder::start(daemon.name(), daemon.socket())
            .unwrap_or_else(|e| panic!("start a message recorder: {e}"));
        wait::wait_until(READY_TIMEOUT, "a message subscription", || {
            recorder.subscribed().unwrap_or_else(|e| panic!("{e}"))
        });
        recorder
    }

    /// The network.
    pub fn lan(&self) -> &Lan {
        &self.cluster.lan
    }

    /// Just before the first daemon was spawned.
    pub fn spawned(&self) -> Instant {
        self.cluster.spawned
    }

    /// Daemon `i`'s pid.
    pub fn pid(&self, i: usize) -> u32 {
        self.cluster.daemons[i].pid()
    }

    /// See [`NsCluster::alive_at`]: `observer`'s view of `members`.
    pub fn alive_at(
        &self,
        observer: usize,
        members: &[usize],
        after: Instant,
    ) -> Result<Instant, String> {
        self.cluster
            .alive_at(&self.cluster.recorders[observer], members, after)
    }

    /// When `observer` first recorded `member` entering `state` after `after`.
    pub fn entered(
        &self,
        observer: usize,
        member: usize,
        state: PeerStateName,
        after: Instant,
    ) -> Option<Instant> {
        self.cluster.recorders[observer].first_entered(self.cluster.name(member), state, after)
    }

    /// Transitions into `state` `observer` recorded after `after`.
    pub fn count_entered(&self, observer: usize, state: PeerStateName, after: Instant) -> usize {
        self.cluster.recorders[observer].count_entered(state, after)
    }

    /// What `observer` has `member` as now.
    pub fn state_of(&self, observer: usize, member: usize) -> Option<PeerStateName> {
        self.cluster.recorders[observer].state_of(self.cluster.name(member))
    }

    /// Starts a daemon on the next idle host; returns its index.
    pub fn start_next(&mut self) -> usize {
        let index = self.cluster.start_next(|_, d| d.log_level(LOG_LEVEL));
        let recorder = self.message_recorder(index);
        self.messages.push(recorder);
        index
    }

    /// SIGKILL of daemon `i`.
    pub fn kill(&mut self, i: usize) {
        self.cluster.daemons[i].kill9();
    }

    /// SIGTERM of daemon `i` (a graceful leave); `Err` if it does not exit.
    pub fn leave(&mut self, i: usize, timeout: Duration) -> Result<(), String> {
        self.cluster.daemons[i].sigterm();
        match self.cluster.daemons[i].wait_exit(timeout) {
            Some(_) => Ok(()),
            None => Err(format!(
                "{} did not exit after SIGTERM",
                self.cluster.name(i)
            )),
        }
    }

    /// Restarts daemon `i` (same state dir) with fresh recorders.
    pub fn restart(&mut self, i: usize) {
        self.cluster.restart(i);
        self.messages[i] = self.message_recorder(i);
    }

    /// The command line of `rossipctl --socket S ARGS…` for daemon `i`,
    /// entering its namespace with `nsenter` (see [`sys::nsenter_net`]).
    pub fn cli(&self, i: usize, args: Vec<OsString>) -> (OsString, Vec<OsString>) {
        let daemon = &self.cluster.daemons[i];
        let mut full: Vec<OsString> = vec!["--socket".into(), daemon.socket().into()];
        full.extend(args);
        let ns = daemon.netns().expect("the daemons run in namespaces");
        sys::nsenter_net(ns, bins::rossipctl(), full)
    }

    /// `send` of a `bytes`-byte text whose key is `key`, from daemon `i`.
    pub fn send_command(&self, i: usize, key: &str, bytes: usize) -> (OsString, Vec<OsString>) {
        self.cli(i, vec!["send".into(), pad_to(key, bytes).into()])
    }

    /// The names `rossipctl peers` of daemon `i` lists as alive.
    pub fn cli_alive(&self, i: usize) -> Result<Vec<String>, String> {
        let (program, args) = self.cli(i, vec!["--json".into(), "peers".into()]);
        let out = sys::run(&program, &args)?;
        let mut alive = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.trim().is_empty() {
                continue;
            }
            let peer: PeerView =
                serde_json::from_str(line).map_err(|e| format!("rossipctl peers: {e}: {line}"))?;
            if peer.state == PeerStateName::Alive {
                alive.push(peer.name);
            }
        }
        Ok(alive)
    }

    /// When message `key` first reached daemon `node`.
    pub fn arrival(&self, node: usize, key: &str) -> Option<Instant> {
        self.messages[node].arrival(key)
    }

    /// Every recorder's history, for failure reports.
    pub fn describe(&self) -> String {
        self.cluster.describe()
    }

    fn deliveries(&self) -> RossipNodes<'_> {
        RossipNodes {
            cluster: &self.cluster,
            recorders: &self.messages,
            window: SEND_WINDOW,
        }
    }
}

impl Deliveries for RossipSwarm {
    fn nodes(&self) -> usize {
        self.messages.len()
    }

    fn send_paced(&self, from: usize, tag: &str, rate: f64, duration: Duration) -> Sent {
        self.deliveries().send_paced(from, tag, rate, duration)
    }

    fn count(&self, node: usize, tag: &str) -> usize {
        self.messages[node].count(tag)
    }

    fn take(&self, node: usize, tag: &str) -> HashMap<String, Instant> {
        self.messages[node].take(tag)
    }

    fn lagged(&self) -> u64 {
        self.deliveries().lagged()
    }

    fn duplicates(&self) -> u64 {
        self.deliveries().duplicates()
    }
}
