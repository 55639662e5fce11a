//! A chaos run on five namespaced hosts: traffic from every host, a raw
//! JSON-RPC subscriber on every node and `rossipctl tail -f --json` on one,
//! seeded faults (loss, partitions, kill -9, SIGSTOP, SIGTERM, a late
//! joiner), then a heal and the verdict: every node's history holds every
//! acknowledged send, and each of its streams shows exactly its history,
//! each message once, in its delivery order (the cursor order of
//! `history {after}`).
//!
//! Every stream is attached while its node's store is still empty (the
//! first nodes before any traffic, the late joiner while it is cut off at
//! the switch), so a stream must show the node's whole history.
//!
//! Set [`SEED_ENV`] to replay a run's faults and [`SECS_ENV`] for a longer
//! run; the seed is printed at the start and in every failure.

pub mod faults;
pub mod followers;
pub mod report;
pub mod traffic;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faults::{Fault, FaultKind, FaultPlan};
use followers::{Subscriber, Tail};
use report::NodeRecords;
use traffic::{SendLog, Sender};

use crate::cluster;
use crate::daemon::{Daemon, READY_TIMEOUT};
use crate::netns::{Lan, Skip};
use crate::stream::Delivered;
use crate::{sys, wait};

/// Environment variable with the seed of the fault plan (decimal or `0x`
/// hex); without it the seed is drawn from the clock and printed.
pub const SEED_ENV: &str = "ROSSIP_CHAOS_SEED";

/// Environment variable with the planned duration of the faults, seconds.
pub const SECS_ENV: &str = "ROSSIP_CHAOS_SECS";

/// Planned seconds of faults by default: with set-up, convergence and the
/// checks, the test takes about two minutes on a loaded 2-core machine.
pub const DEFAULT_SECS: u64 = 90;

/// Hosts on the LAN.
const HOSTS: usize = 5;

/// The host whose daemon starts midway (h5).
const LATE_JOINER: usize = 4;

/// The host where `rossipctl tail -f --json` runs (h1).
const TAIL_HOST: usize = 0;

/// Each node's sender sends one message per interval: 25 a second each,
/// over 100 a second together.
const SEND_INTERVAL: Duration = Duration::from_millis(40);

/// mDNS discovery of the first four nodes.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream's first message after it attached.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a daemon stopped with SIGTERM may take to leave and exit.
const TERM_TIMEOUT: Duration = Duration::from_secs(30);

/// Every node holding every acknowledged send, after the heal. Runs of the
/// issue converged in under 3 s; this is for a machine under load.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(180);

/// Every stream showing its node's whole history, after convergence.
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// After the streams caught up: several anti-entropy rounds in which a late
/// duplicate would still show.
const DUPLICATE_WATCH: Duration = Duration::from_secs(5);

/// What a run does: the seed of its faults and their planned duration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Seed of the [`FaultPlan`].
    pub seed: u64,
    /// Planned duration of the faults.
    pub duration: Duration,
}

impl Settings {
    /// From [`SEED_ENV`] and [`SECS_ENV`]; panics on a value that does not
    /// parse, naming the variable.
    pub fn from_env() -> Settings {
        let seed = match std::env::var(SEED_ENV) {
            Ok(text) => parse_seed(&text)
                .unwrap_or_else(|| panic!("{SEED_ENV}={text:?}: expected a number (or 0x hex)")),
            Err(_) => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                // Truncation is fine: any bits make a seed.
                (nanos as u64) ^ (u64::from(std::process::id()) << 32)
            }
        };
        let secs = match std::env::var(SECS_ENV) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .unwrap_or_else(|| panic!("{SECS_ENV}={text:?}: expected whole seconds > 0")),
            Err(_) => DEFAULT_SECS,
        };
        Settings {
            seed,
            duration: Duration::from_secs(secs),
        }
    }

    /// The command that replays this run's faults.
    pub fn replay_command(&self) -> String {
        format!(
            "{SEED_ENV}={:#x} {SECS_ENV}={} CI=true cargo test -p rossip-tests --test chaos -- --nocapture",
            self.seed,
            self.duration.as_secs()
        )
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// A chaos run in progress. Field order is drop order: the followers and
/// senders stop, `tail -f` is killed, the daemons are killed (printing their
/// logs when the test fails), and the LAN removes its namespaces.
#[derive(Debug)]
pub struct Chaos {
    settings: Settings,
    /// `subscribers[i]` follows `daemons[i]`, once that runs.
    subscribers: Vec<Option<Subscriber>>,
    tail: Tail,
    senders: Vec<Option<Sender>>,
    daemons: Vec<Option<Daemon>>,
    lan: Lan,
    /// Ids of acknowledged sends made by the harness itself (the marker).
    harness_acked: Vec<String>,
    injected: BTreeMap<FaultKind, u32>,
    /// One line per fault injected, as printed.
    fault_log: Vec<String>,
    /// Packets the loss and partition rules dropped: the network faults
    /// were in force.
    dropped: u64,
    /// When the faults ended with a heal.
    healed: Option<Instant>,
}

impl Chaos {
    /// Builds the LAN, starts the first four daemons, their subscribers and
    /// `tail -f` on h1, waits for discovery and for every stream's first
    /// message, then starts the traffic. `Err(Skip)` without root (a panic
    /// under `CI=true`).
    pub fn start(test: &str, settings: Settings) -> Result<Chaos, Skip> {
        if sys::find_program("nft").is_none() {
            if sys::ci() {
                panic!("{test}: required with CI=true, but `nft` (nftables) is not installed");
            }
            sys::skipped(test, "faults need nftables (`nft` not found)");
            return Err(Skip);
        }
        let lan = Lan::new(test, HOSTS)?;
        say(&format!(
            "seed {:#x}, {} s of faults planned; replay with: {}",
            settings.seed,
            settings.duration.as_secs(),
            settings.replay_command()
        ));
        let spawned = Instant::now();
        let mut daemons: Vec<Option<Daemon>> = (0..HOSTS)
            .map(|i| {
                let host = lan.host(i);
                (i != LATE_JOINER)
                    .then(|| Daemon::builder(&host.name).netns(&host.ns).spawn_unready())
            })
            .collect();
        for daemon in daemons.iter_mut().flatten() {
            daemon.wait_ready(READY_TIMEOUT);
        }
        // Before any traffic: each store is empty, so each stream must show
        // everything its node ever delivers.
        let subscribers: Vec<Option<Subscriber>> = daemons
            .iter()
            .map(|d| d.as_ref().map(|d| Subscriber::start(d.name(), d.socket())))
            .collect();
        for subscriber in subscribers.iter().flatten() {
            wait_attached(subscriber);
        }
        let tail_daemon = daemons[TAIL_HOST]
            .as_ref()
            .expect("the tail host runs from the start");
        let tail = Tail::start(
            tail_daemon.name(),
            &lan.host(TAIL_HOST).ns,
            tail_daemon.socket(),
        );
        let running: Vec<(&str, &std::path::Path)> = daemons
            .iter()
            .flatten()
            .map(|d| (d.name(), d.socket()))
            .collect();
        cluster::wait_all_alive(&running, DISCOVERY_TIMEOUT);
        say(&format!(
            "{} daemons alive {:.1} s after spawning",
            running.len(),
            spawned.elapsed().as_secs_f64()
        ));
        // One message before the traffic: `tail -f` printing it shows that it
        // follows (it replays the store, holding only this, or gets it live).
        let marker = tail_daemon.client().send("chaos marker").id;
        let mut chaos = Chaos {
            settings,
            subscribers,
            tail,
            senders: (0..HOSTS).map(|_| None).collect(),
            daemons,
            lan,
            harness_acked: vec![marker.clone()],
            injected: BTreeMap::new(),
            fault_log: Vec::new(),
            dropped: 0,
            healed: None,
        };
        wait::wait_until(FIRST_MESSAGE_TIMEOUT, "tail -f to print the marker", || {
            let (printed, problems) = chaos.tail.deliveries();
            // A line that is not a message with a cursor stays printed.
            assert!(
                problems.is_empty(),
                "`{}`: {problems:?}",
                chaos.tail.command()
            );
            if printed.iter().any(|d| d.id == marker) {
                Ok(())
            } else {
                Err(format!("{} lines", printed.len()))
            }
        });
        for subscriber in chaos.subscribers.iter().flatten() {
            wait_first_message(subscriber);
        }
        for index in 0..HOSTS {
            chaos.start_sender(index);
        }
        Ok(chaos)
    }

    /// Injects the seeded faults, one step after another, then heals.
    pub fn run_faults(&mut self) {
        let plan = FaultPlan::new(
            self.settings.seed,
            HOSTS,
            LATE_JOINER,
            self.settings.duration,
        );
        say(&format!(
            "late joiner h{} planned at {:.1} s",
            LATE_JOINER + 1,
            plan.join_at().as_secs_f64()
        ));
        let started = Instant::now();
        for step in plan {
            let line = format!(
                "{:6.1} s (planned {:5.1} s): {}",
                started.elapsed().as_secs_f64(),
                step.at.as_secs_f64(),
                step.fault
            );
            say(&line);
            self.fault_log.push(line);
            self.inject(&step.fault);
            *self.injected.entry(step.fault.kind()).or_default() += 1;
        }
        self.heal();
        self.healed = Some(Instant::now());
        say(&format!(
            "{:6.1} s: healed",
            started.elapsed().as_secs_f64()
        ));
    }

    /// Stops the traffic, waits until every node holds every acknowledged
    /// send and every stream caught up, and judges. Prints the counts; on a
    /// failure keeps the evidence (logs, histories, streams) in a directory
    /// and panics with every failure, the seed and that directory.
    pub fn settle_and_judge(mut self) {
        let sends: Vec<(String, SendLog)> = self
            .senders
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| Some((self.lan.host(i).name.clone(), s.take()?.finish())))
            .collect();
        let acked: BTreeSet<String> = sends
            .iter()
            .flat_map(|(_, log)| log.acked.iter().cloned())
            .chain(self.harness_acked.iter().cloned())
            .collect();
        let mut failures: Vec<String> = self
            .daemons
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_none())
            .map(|(i, _)| format!("h{} never started", i + 1))
            .collect();
        let healed = self.healed.unwrap_or_else(Instant::now);
        match self.wait_converged(&acked) {
            Ok(()) => say(&format!(
                "every node holds every acknowledged send {:.1} s after the heal",
                healed.elapsed().as_secs_f64()
            )),
            Err(why) => failures.push(format!(
                "no convergence within {CONVERGENCE_TIMEOUT:?}: {why}"
            )),
        }
        if let Err(why) = self.wait_streams_caught_up() {
            failures.push(format!(
                "streams not caught up within {STREAM_TIMEOUT:?}: {why}"
            ));
        }
        // Not waiting for a condition: a window in which a late duplicate
        // (an anti-entropy re-delivery) would still reach the streams.
        std::thread::sleep(DUPLICATE_WATCH);

        let nodes = self.records();
        // Stopped before any panic, so that its whole output is kept in a
        // file rather than printed.
        let tail = self.tail.finish();
        let mut summary = vec![report::counts(
            &sends,
            acked.len(),
            &self.injected,
            self.dropped,
        )];
        for node in &nodes {
            let tail = (node.node == tail.node).then_some(&tail);
            failures.extend(node.failures(&acked, tail));
            summary.push(node.summary(tail));
        }
        let summary = summary.join("\n  ");
        say(&format!(
            "counts (seed {:#x}):\n  {summary}",
            self.settings.seed
        ));
        if failures.is_empty() {
            return;
        }
        let text = format!(
            "chaos run failed (seed {:#x}; replay: {})\n{} failure(s):\n  {}\n{summary}",
            self.settings.seed,
            self.settings.replay_command(),
            failures.len(),
            failures.join("\n  "),
        );
        let dir = std::env::temp_dir().join(format!(
            "rossip-chaos-{:x}-{}",
            self.settings.seed,
            std::process::id()
        ));
        let trouble = report::keep(&dir, &nodes, &tail, &self.fault_log, &text);
        let logs: Vec<String> = nodes
            .iter()
            .map(|n| {
                format!(
                    "  {}: {}",
                    n.node,
                    dir.join(format!("{}.rossipd.log", n.node)).display()
                )
            })
            .collect();
        panic!(
            "{text}\ntail -f ran as: {}\nkept in {} (histories, delivery orders, streams, faults; \
             `cursor id` per line); daemons' logs:\n{}{}",
            tail.command,
            dir.display(),
            logs.join("\n"),
            if trouble.is_empty() {
                String::new()
            } else {
                format!("\n(could not keep: {})", trouble.join("; "))
            }
        );
    }

    /// Every running node's records; stops the subscribers.
    fn records(&mut self) -> Vec<NodeRecords> {
        let mut nodes = Vec::new();
        for (daemon, subscriber) in self.daemons.iter().zip(&mut self.subscribers) {
            let Some(daemon) = daemon else { continue };
            let subscriber = subscriber
                .take()
                .map(Subscriber::finish)
                .unwrap_or_default();
            let delivery_order = followers::delivery_order(
                daemon.socket(),
                subscriber.start.as_deref(),
                subscriber.deliveries.first(),
            );
            nodes.push(NodeRecords {
                node: daemon.name().to_owned(),
                history: followers::history(daemon.socket()),
                delivery_order,
                subscriber,
                log: daemon.log_path().to_path_buf(),
            });
        }
        nodes
    }

    fn daemon(&mut self, host: usize) -> &mut Daemon {
        self.daemons[host]
            .as_mut()
            .unwrap_or_else(|| panic!("h{} has no daemon yet", host + 1))
    }

    fn start_sender(&mut self, index: usize) {
        if let Some(daemon) = &self.daemons[index] {
            self.senders[index] =
                Some(Sender::start(daemon.name(), daemon.socket(), SEND_INTERVAL));
        }
    }

    /// Removes the network faults, adding up first what they dropped (their
    /// counters start again at zero).
    fn heal(&mut self) {
        self.dropped += (0..HOSTS).map(|i| self.lan.fault_drops(i)).sum::<u64>();
        self.lan.heal();
    }

    /// Applies one fault and holds it for its duration. Holding is the
    /// fault's length, not a wait for a condition.
    fn inject(&mut self, fault: &Fault) {
        match fault {
            Fault::Loss { hosts, hold } => {
                self.heal();
                for &(host, percent) in hosts {
                    self.lan.set_loss(host, percent);
                }
                std::thread::sleep(*hold);
            }
            Fault::Split { left, right, hold }
            | Fault::Bridge {
                left, right, hold, ..
            } => {
                self.heal();
                for &host in left {
                    self.lan.partition(host, right);
                }
                for &host in right {
                    self.lan.partition(host, left);
                }
                std::thread::sleep(*hold);
            }
            Fault::Calm { hold } => {
                self.heal();
                std::thread::sleep(*hold);
            }
            Fault::Kill9 { host, down } => {
                let daemon = self.daemon(*host);
                daemon.kill9();
                std::thread::sleep(*down);
                daemon.restart();
            }
            Fault::Stop { host, held } => {
                let daemon = self.daemon(*host);
                let pid = daemon.pid();
                let name = daemon.name().to_owned();
                sys::signal(pid, "STOP").unwrap_or_else(|e| panic!("SIGSTOP {name}: {e}"));
                std::thread::sleep(*held);
                sys::signal(pid, "CONT").unwrap_or_else(|e| panic!("SIGCONT {name}: {e}"));
            }
            Fault::Term { host, down } => {
                let daemon = self.daemon(*host);
                daemon.stop_with_sigterm(TERM_TIMEOUT);
                std::thread::sleep(*down);
                daemon.restart();
            }
            Fault::LateJoin { host, hold } => {
                self.late_join(*host);
                std::thread::sleep(*hold);
            }
        }
    }

    /// Starts the late joiner cut off at the switch, so that its subscriber
    /// attaches to an empty store; then plugs it in and starts its traffic.
    /// Returns once its subscriber has a first message (so that a fault that
    /// restarts it has a cursor to resume from).
    fn late_join(&mut self, host: usize) {
        let (name, ns) = {
            let h = self.lan.host(host);
            (h.name.clone(), h.ns.clone())
        };
        self.lan.isolate(host);
        let daemon = Daemon::builder(&name).netns(&ns).spawn();
        let subscriber = Subscriber::start(daemon.name(), daemon.socket());
        wait_attached(&subscriber);
        self.daemons[host] = Some(daemon);
        self.subscribers[host] = Some(subscriber);
        self.lan.reconnect(host);
        self.start_sender(host);
        if let Some(subscriber) = &self.subscribers[host] {
            wait_first_message(subscriber);
        }
    }

    /// Polls until every node's history holds every acknowledged send and
    /// all histories hold the same messages.
    fn wait_converged(&self, acked: &BTreeSet<String>) -> Result<(), String> {
        let result = wait::try_wait_until(CONVERGENCE_TIMEOUT, || -> Result<(), String> {
            let mut sets: Vec<(&str, BTreeSet<String>)> = Vec::new();
            for daemon in self.daemons.iter().flatten() {
                let history = followers::history(daemon.socket());
                sets.push((daemon.name(), history.into_iter().map(|d| d.id).collect()));
            }
            let mut behind = Vec::new();
            for (node, held) in &sets {
                let lacking = acked.difference(held).count();
                if lacking > 0 {
                    behind.push(format!("{node} lacks {lacking} acknowledged"));
                }
            }
            let union: BTreeSet<&String> = sets.iter().flat_map(|(_, s)| s).collect();
            for (node, held) in &sets {
                if held.len() < union.len() {
                    behind.push(format!("{node} holds {} of {}", held.len(), union.len()));
                }
            }
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind.join(", "))
            }
        });
        result.map_err(|last| last.unwrap_or_default())
    }

    /// Polls until each stream shows every message of its node's history.
    fn wait_streams_caught_up(&mut self) -> Result<(), String> {
        let result = wait::try_wait_until(STREAM_TIMEOUT, || -> Result<(), String> {
            let mut behind = Vec::new();
            for (index, daemon) in self.daemons.iter().enumerate() {
                let Some(daemon) = daemon else { continue };
                let held = followers::history(daemon.socket());
                // A stream that ended (a refused resumption, `tail -f`
                // gone or printing what is not a message) is not waited
                // for: its problems are in the verdict.
                let mut streams: Vec<(String, Vec<Delivered>)> = Vec::new();
                if let Some(subscriber) = &self.subscribers[index] {
                    let log = subscriber.log();
                    if !log.ended {
                        streams.push((format!("{} subscriber", daemon.name()), log.deliveries));
                    }
                }
                if index == TAIL_HOST {
                    let (printed, problems) = self.tail.deliveries();
                    if problems.is_empty() {
                        streams.push((format!("{} tail -f", daemon.name()), printed));
                    }
                }
                for (label, stream) in streams {
                    let shown: BTreeSet<&str> = stream.iter().map(|d| d.id.as_str()).collect();
                    let unseen = held
                        .iter()
                        .filter(|d| !shown.contains(d.id.as_str()))
                        .count();
                    if unseen > 0 {
                        behind.push(format!("{label} has not shown {unseen}"));
                    }
                }
            }
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind.join(", "))
            }
        });
        result.map_err(|last| last.unwrap_or_default())
    }
}

/// Waits until `subscriber`'s first `subscribe` was answered.
fn wait_attached(subscriber: &Subscriber) {
    let what = format!("{} subscriber to attach", subscriber.node());
    wait::wait_until(READY_TIMEOUT, &what, || match subscriber.attached() {
        Ok(true) => Ok(()),
        Ok(false) => Err("no answer to subscribe yet".to_owned()),
        Err(why) => panic!("{what}: {why}"),
    });
}

/// Waits until `subscriber` recorded a message.
fn wait_first_message(subscriber: &Subscriber) {
    wait::wait_until(
        FIRST_MESSAGE_TIMEOUT,
        &format!("{} subscriber's first message", subscriber.node()),
        || !subscriber.is_empty(),
    );
}

/// One line of the run's progress on stderr (shown by a plain `cargo test`).
fn say(line: &str) {
    sys::say(&format!("chaos: {line}"));
}
