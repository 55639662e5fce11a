//! A namespaced LAN with one mDNS-only `rossipd` per host and a
//! [`PeerRecorder`] on each, as the membership tests and the benchmark use
//! it: every daemon is spawned before any is waited for, so start-up and
//! discovery overlap as on a real LAN, and each recorder subscribes as soon
//! as its daemon's socket answers.

use std::time::{Duration, Instant};

use rossip_proto::rpc::PeerStateName;

use crate::daemon::{Daemon, DaemonBuilder, READY_TIMEOUT};
use crate::events::{self, PeerRecorder, try_wait_every};
use crate::netns::{Lan, Skip};

/// A LAN of namespaces, a daemon per host, a recorder per daemon.
///
/// Field order is drop order: recorders stop first, then the daemons are
/// killed (printing their logs if the test is failing), then the `Lan`
/// removes the namespaces.
#[derive(Debug)]
pub struct NsCluster {
    /// `recorders[i]` records `daemons[i]`'s peer events.
    pub recorders: Vec<PeerRecorder>,
    /// `daemons[i]` runs on `lan.host(i)`, named like the host (`h1`, …).
    pub daemons: Vec<Daemon>,
    /// The network.
    pub lan: Lan,
    /// Just before the first daemon was spawned.
    pub spawned: Instant,
}

impl NsCluster {
    /// Builds a LAN of `hosts` hosts ([`Lan::new`]: `Err(Skip)` without
    /// root, a panic under `CI=true`) and lets `prepare` change it (e.g.
    /// add interfaces) before any daemon starts. Then starts `rossipd
    /// --name hN` on every host, as `customize(index, builder)` makes it
    /// (e.g. more arguments, a log level), and a recorder on each, and waits until every daemon answers `status`
    /// and every recorder has subscribed. Does not wait for discovery.
    pub fn start(
        test: &str,
        hosts: usize,
        prepare: impl FnOnce(&mut Lan),
        customize: impl Fn(usize, DaemonBuilder) -> DaemonBuilder,
    ) -> Result<NsCluster, Skip> {
        NsCluster::start_with_idle(test, hosts, 0, prepare, customize)
    }

    /// [`NsCluster::start`] on a LAN with `idle` more hosts that run
    /// nothing yet: [`NsCluster::start_next`] starts a daemon on the next
    /// one (a node that joins late).
    pub fn start_with_idle(
        test: &str,
        hosts: usize,
        idle: usize,
        prepare: impl FnOnce(&mut Lan),
        customize: impl Fn(usize, DaemonBuilder) -> DaemonBuilder,
    ) -> Result<NsCluster, Skip> {
        let mut lan = Lan::new(test, hosts + idle)?;
        prepare(&mut lan);
        let spawned = Instant::now();
        let mut daemons: Vec<Daemon> = lan.hosts()[..hosts]
            .iter()
            .enumerate()
            .map(|(index, host)| {
                customize(index, Daemon::builder(&host.name).netns(&host.ns)).spawn_unready()
            })
            .collect();
        let recorders: Vec<PeerRecorder> = daemons.iter().map(PeerRecorder::start).collect();
        for daemon in &mut daemons {
            daemon.wait_ready(READY_TIMEOUT);
        }
        for recorder in &recorders {
            recorder.wait_subscribed(READY_TIMEOUT);
        }
        Ok(NsCluster {
            recorders,
            daemons,
            lan,
            spawned,
        })
    }

    /// Starts a daemon (as `customize` makes it) and its recorder on the
    /// first host that runs none, and waits until it answers and its
    /// recorder subscribed; returns its index. Panics when every host of
    /// the LAN already runs a daemon.
    pub fn start_next(
        &mut self,
        customize: impl FnOnce(usize, DaemonBuilder) -> DaemonBuilder,
    ) -> usize {
        let index = self.daemons.len();
        let host = self.lan.host(index);
        let mut daemon =
            customize(index, Daemon::builder(&host.name).netns(&host.ns)).spawn_unready();
        let recorder = PeerRecorder::start(&daemon);
        daemon.wait_ready(READY_TIMEOUT);
        recorder.wait_subscribed(READY_TIMEOUT);
        self.daemons.push(daemon);
        self.recorders.push(recorder);
        index
    }

    /// The daemons' names, `h1`, `h2`, … in host order.
    pub fn names(&self) -> Vec<&str> {
        self.daemons.iter().map(Daemon::name).collect()
    }

    /// Daemon `index`'s name.
    pub fn name(&self, index: usize) -> &str {
        self.daemons[index].name()
    }

    /// The recorders of the daemons in `indices`.
    pub fn recorders_of(&self, indices: &[usize]) -> Vec<&PeerRecorder> {
        indices.iter().map(|&i| &self.recorders[i]).collect()
    }

    /// Every host index but `index`.
    pub fn all_but(&self, index: usize) -> Vec<usize> {
        (0..self.daemons.len()).filter(|&i| i != index).collect()
    }

    /// Waits until each daemon in `observers` currently has every daemon in
    /// `members` (but itself) as `alive`. Returns, per observer, the
    /// instant it first saw the last of them alive after `after` (see
    /// [`PeerRecorder::first_seen_in`]: the subscription snapshot counts
    /// when the member was already alive then).
    pub fn try_wait_alive(
        &self,
        observers: &[usize],
        members: &[usize],
        after: Instant,
        timeout: Duration,
    ) -> Result<Vec<Instant>, String> {
        let recorders = self.recorders_of(observers);
        try_wait_every(&recorders, timeout, |r| self.alive_at(r, members, after))
    }

    /// Whether recorder `r`'s daemon currently has every daemon in
    /// `members` (but itself) as `alive`: `Ok` with the instant it first
    /// saw the last of them alive after `after` (see
    /// [`NsCluster::try_wait_alive`]), `Err` with who is missing.
    pub fn alive_at(
        &self,
        r: &PeerRecorder,
        members: &[usize],
        after: Instant,
    ) -> Result<Instant, String> {
        let names: Vec<&str> = members
            .iter()
            .map(|&m| self.name(m))
            .filter(|n| *n != r.observer())
            .collect();
        r.all_alive(&names)?;
        let mut last = after;
        for name in names {
            let seen = match r.first_entered(name, PeerStateName::Alive, after) {
                Some(at) => at,
                // Alive since before `after`, or in the snapshot.
                None => r.first_seen_in(name, PeerStateName::Alive).unwrap_or(after),
            };
            last = last.max(seen);
        }
        Ok(last.max(after))
    }

    /// [`NsCluster::try_wait_alive`] for everyone, panicking with every
    /// recorder's history on timeout. Returns the instant the last observer
    /// had everyone alive.
    pub fn wait_all_alive(&self, after: Instant, timeout: Duration, what: &str) -> Instant {
        let all: Vec<usize> = (0..self.daemons.len()).collect();
        match self.try_wait_alive(&all, &all, after, timeout) {
            Ok(instants) => instants.into_iter().max().unwrap_or(after),
            Err(why) => self.fail(&format!("{what}: {why}")),
        }
    }

    /// Per observer, the first instant it is known to have had every other
    /// daemon alive (the latest of [`PeerRecorder::first_seen_in`] over the
    /// others); `None` for an observer that has not yet. For discovery
    /// figures, after [`NsCluster::wait_all_alive`].
    pub fn discovered_at(&self) -> Vec<Option<Instant>> {
        self.recorders
            .iter()
            .map(|r| {
                self.names()
                    .into_iter()
                    .filter(|n| *n != r.observer())
                    .map(|n| r.first_seen_in(n, PeerStateName::Alive))
                    .try_fold(self.spawned, |last, seen| Some(last.max(seen?)))
            })
            .collect()
    }

    /// Waits until every daemon in `observers` recorded that daemon
    /// `member` entered `state` at or after `after`; returns each first
    /// such instant. On timeout, panics with `what` (the step, for the
    /// message), what each observer has, and every recorder's history.
    pub fn wait_entered(
        &self,
        observers: &[usize],
        member: usize,
        state: PeerStateName,
        after: Instant,
        timeout: Duration,
        what: &str,
    ) -> Vec<Instant> {
        let name = self.name(member).to_owned();
        let recorders = self.recorders_of(observers);
        try_wait_every(&recorders, timeout, |r| {
            r.first_entered(&name, state, after).ok_or_else(|| {
                format!(
                    "{} has {name} as {}",
                    r.observer(),
                    r.state_of(&name).map_or("unknown", PeerStateName::as_str)
                )
            })
        })
        .unwrap_or_else(|why| self.fail(&format!("{what}: {why}")))
    }

    /// Restarts daemon `index` (same state dir, so the same node id) and
    /// gives it a fresh recorder (its old stream ended with the process).
    /// Returns the instant just before the restart.
    pub fn restart(&mut self, index: usize) -> Instant {
        let before = Instant::now();
        self.daemons[index].restart_unready();
        self.recorders[index] = PeerRecorder::start(&self.daemons[index]);
        self.daemons[index].wait_ready(READY_TIMEOUT);
        self.recorders[index].wait_subscribed(READY_TIMEOUT);
        before
    }

    /// Every recorder's history relative to [`NsCluster::spawned`].
    pub fn describe(&self) -> String {
        self.recorders
            .iter()
            .map(|r| r.describe(self.spawned))
            .collect()
    }

    /// Panics with `why` and every recorder's history (the daemons' logs
    /// follow from their `Drop`).
    pub fn fail(&self, why: &str) -> ! {
        panic!("{why}\n{}", self.describe())
    }

    /// `peers {all: true}` of daemon `index` now; panics if it cannot answer.
    pub fn peers_all(&self, index: usize) -> Vec<rossip_proto::rpc::PeerView> {
        events::peers_all(self.daemons[index].socket()).unwrap_or_else(|e| self.fail(&e))
    }
}

/// Seconds from `from` to `to` (0 if `to` is earlier), for printing.
pub fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}
