//! The delivery benchmark of issue 4 (the `delivery-bench` binary is its
//! command line): on a namespaced LAN of N hosts ([`NsCluster`]: one
//! mDNS-only `rossipd` per host) with a [`MessageRecorder`] subscribed on
//! every node, it measures
//!
//! - latency: from just before a `send` starts until the message arrived
//!   at every node, via `ip netns exec … rossipctl send`, via a plain
//!   `rossipctl send` process, and via an already-open RPC connection;
//! - throughput: 200-byte messages paced at a target rate for a while, from
//!   one sender and from all N at once, counting what reached every node.
//!
//! Arrival times are the recorders' receive instants, so the benchmark's
//! polling does not enter the figures. Every wait checks
//! [`bench::interrupted`], so Ctrl-C or SIGTERM ends the run through the
//! normal return path and `Drop` removes daemons and namespaces. The table
//! is [`crate::delivery_table`].

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::bench::{self, Abort};
use crate::delivery::MessageRecorder;
pub use crate::delivery_send::MESSAGE_BYTES;
use crate::delivery_send::{Sent, send_paced};
use crate::nscluster::NsCluster;
use crate::rpc::{CALL_TIMEOUT, RpcClient};
use crate::{bins, sys};

const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one latency sample may take to reach everyone before it
/// counts as lost.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a throughput run's sending ends: how long to wait for deliveries
/// at most, and how long without any new arrival ends the wait early.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`DRAIN_TIMEOUT`].
pub const DRAIN_STALL: Duration = Duration::from_secs(3);
/// How long one `rossipctl send` may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Checking for arrivals; figures come from the recorders' instants.
const POLL: Duration = Duration::from_micros(200);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// N.
    pub nodes: usize,
    /// Latency samples per way of sending.
    pub latency_samples: usize,
    /// Target total rates, messages per second.
    pub rates: Vec<u64>,
    /// How long each throughput run sends.
    pub seconds: f64,
    /// Unanswered `send` requests a throughput sender may have (1:
    /// sequential calls); see [`crate::delivery_send`].
    pub window: usize,
    /// `--log-level` of the daemons.
    pub log_level: String,
    /// Inbound loss on every host, percent (nftables drop on eth0), from
    /// after discovery to the end of the run.
    pub loss_percent: u8,
}

/// What every node sent during the latency phase, from the daemons'
/// `status` counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseDatagrams {
    /// Messages sent in the phase (every way of sending).
    pub messages: u64,
    /// Datagrams all nodes sent.
    pub datagrams: u64,
    /// Of them, acknowledgements of direct pushes.
    pub acks: u64,
    /// Of them, retransmitted pushes.
    pub retransmissions: u64,
    /// Length of the phase.
    pub elapsed: Duration,
    /// Datagrams per second all nodes sent while idle, measured just
    /// before.
    pub idle_rate: f64,
}

impl PhaseDatagrams {
    /// All datagrams per message.
    pub fn per_message(&self) -> f64 {
        self.datagrams as f64 / self.messages.max(1) as f64
    }

    /// Datagrams per message above what the idle rate accounts for.
    pub fn above_idle_per_message(&self) -> f64 {
        (self.datagrams as f64 - self.idle_rate * self.elapsed.as_secs_f64())
            / self.messages.max(1) as f64
    }
}

/// How a latency sample is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `ip netns exec hN rossipctl send TEXT`: the CLI as run in the
    /// sender's namespace, including `ip`'s namespace switch.
    NetnsCli,
    /// `rossipctl send TEXT` run directly (the socket is a path, reachable
    /// from any namespace): the CLI's own start-up and call.
    Cli,
    /// `send` on an RPC connection opened beforehand: the daemon path alone.
    Rpc,
}

impl Via {
    /// Every way, in table order.
    pub const ALL: [Via; 3] = [Via::NetnsCli, Via::Cli, Via::Rpc];

    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            Via::NetnsCli => "ip netns exec rossipctl send",
            Via::Cli => "rossipctl send",
            Via::Rpc => "RPC send (open connection)",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Via::NetnsCli => "latns",
            Via::Cli => "latcli",
            Via::Rpc => "latrpc",
        }
    }
}

/// The latency samples of one way of sending.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySeries {
    /// How they were sent.
    pub via: Via,
    /// Send start → arrival at the last node, per delivered sample.
    pub last: Vec<Duration>,
    /// Send start → arrival at the first node (usually the sender's own).
    pub first: Vec<Duration>,
    /// Send start → the CLI exited / the RPC answered.
    pub returned: Vec<Duration>,
    /// Samples not at every node within the sample timeout.
    pub lost: usize,
    /// Sends that failed (exit code or RPC error), with the first reason.
    pub failed: usize,
    /// The first failure's description.
    pub failure: Option<String>,
}

/// One throughput run at one target rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateRun {
    /// Target total rate, messages/s.
    pub offered: u64,
    /// Concurrent senders (the rate is split evenly between them).
    pub senders: usize,
    /// Sends attempted (each one `send` call), all senders.
    pub attempted: u64,
    /// Sends the daemon accepted.
    pub accepted: u64,
    /// Wall time of the sending (the slowest sender's).
    pub elapsed: Duration,
    /// Errors returned to the senders, by JSON-RPC code (or `io`).
    pub errors: BTreeMap<String, u64>,
    /// Accepted messages that arrived at every node.
    pub delivered_all: u64,
    /// The fewest accepted messages that arrived at any one node.
    pub worst_node: u64,
    /// `lagged` events reported to the recorders during the run: the
    /// daemon dropped that many notifications (measurement loss).
    pub lagged: u64,
    /// Messages a recorder received twice during the run.
    pub duplicates: u64,
    /// End of sending → the last arrival anywhere.
    pub drain: Option<Duration>,
}

impl RateRun {
    /// The rate the senders achieved, messages/s.
    pub fn achieved(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.attempted as f64 / secs
        } else {
            0.0
        }
    }

    /// Whether the senders kept to the offered rate (achieved at least 95%
    /// of it).
    pub fn on_pace(&self) -> bool {
        self.achieved() >= 0.95 * self.offered as f64
    }

    /// Every send accepted, every accepted message at every node, and the
    /// recorders saw everything (no lag).
    pub fn zero_loss(&self) -> bool {
        self.attempted > 0
            && self.errors.is_empty()
            && self.accepted == self.attempted
            && self.delivered_all == self.accepted
            && self.lagged == 0
    }
}

/// Everything measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Spawn of the first daemon → everyone saw everyone alive.
    pub discovery: Option<Duration>,
    /// One series per [`Via`], once measured.
    pub latency: Vec<LatencySeries>,
    /// The datagrams of the latency phase.
    pub latency_datagrams: Option<PhaseDatagrams>,
    /// One sender (h1).
    pub single: Vec<RateRun>,
    /// All N sending at once.
    pub all: Vec<RateRun>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// Runs the whole benchmark. A failing step or an interruption ends it
/// early with [`Report::error`] set; what was measured is kept.
pub fn measure(options: &Options) -> Report {
    let mut report = Report::default();
    let level = options.log_level.clone();
    let cluster = match NsCluster::start(
        "dbench",
        options.nodes,
        |_| {},
        |_, daemon| daemon.log_level(&level),
    ) {
        Ok(cluster) => cluster,
        Err(_) => {
            report.error =
                Some("cannot build network namespaces here (root and iproute2 needed)".to_owned());
            return report;
        }
    };
    report.error = match run(&cluster, options, &mut report) {
        Ok(()) => None,
        Err(Abort::Interrupted) => Some("interrupted".to_owned()),
        Err(Abort::Failed(why)) => Some(why),
    };
    report
}

fn run(cluster: &NsCluster, options: &Options, report: &mut Report) -> Result<(), Abort> {
    let recorders = cluster
        .daemons
        .iter()
        .map(|d| MessageRecorder::start(d.name(), d.socket()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Abort::Failed(format!("cannot start a message recorder: {e}")))?;
    until(SUBSCRIBE_TIMEOUT, "message subscriptions", || {
        for r in &recorders {
            if !r.subscribed().map_err(Abort::Failed)? {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    bench::wait_all_alive(cluster, DISCOVERY_TIMEOUT, "discovery")?;
    report.discovery = Some(cluster.spawned.elapsed());
    progress(&format!(
        "N={}: everyone alive after {:.3} s",
        options.nodes,
        cluster.spawned.elapsed().as_secs_f64()
    ));

    if options.loss_percent > 0 {
        cluster.lan.set_loss_all(options.loss_percent);
        progress(&format!(
            "{}% inbound loss on every host",
            options.loss_percent
        ));
    }
    let idle_window = Duration::from_secs(3);
    let idle_start = datagram_counters(cluster);
    // A measurement window, not a wait for a condition.
    std::thread::sleep(idle_window);
    let idle_end = datagram_counters(cluster);
    let idle_rate = idle_end.0.saturating_sub(idle_start.0) as f64 / idle_window.as_secs_f64();
    let phase_start = Instant::now();
    report.latency = latency(cluster, &recorders, options.latency_samples)?;
    let end = datagram_counters(cluster);
    report.latency_datagrams = Some(PhaseDatagrams {
        messages: report.latency.iter().map(|s| s.returned.len() as u64).sum(),
        datagrams: end.0.saturating_sub(idle_end.0),
        acks: end.1.saturating_sub(idle_end.1),
        retransmissions: end.2.saturating_sub(idle_end.2),
        elapsed: phase_start.elapsed(),
        idle_rate,
    });
    for senders in [1, options.nodes] {
        for &rate in &options.rates {
            let nodes = RossipNodes {
                cluster,
                recorders: &recorders,
                window: options.window,
            };
            let tag = format!("r{rate}n{senders}");
            let run = throughput(&nodes, &tag, rate, senders, options.seconds)?;
            progress(&format!(
                "{senders} sender(s) at {rate}/s: sent {:.0}/s, accepted {}/{}, at all {} ({:.2}%), lagged {}",
                run.achieved(),
                run.accepted,
                run.attempted,
                run.delivered_all,
                percent(run.delivered_all, run.attempted),
                run.lagged
            ));
            if senders == 1 {
                report.single.push(run);
            } else {
                report.all.push(run);
            }
        }
    }
    Ok(())
}

/// Datagrams sent, acknowledgements sent and retransmissions, summed over
/// every daemon (`status`).
fn datagram_counters(cluster: &NsCluster) -> (u64, u64, u64) {
    cluster
        .daemons
        .iter()
        .map(|d| d.status())
        .fold((0, 0, 0), |sum, s| {
            (
                sum.0 + s.datagrams.sent,
                sum.1 + s.messages.acks_sent,
                sum.2 + s.messages.retransmissions,
            )
        })
}

/// `100 * part / whole`, 0 for an empty whole.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The latency phase: `samples` rounds, each sending one message each way
/// (interleaved, so the three series see the same conditions) from h1 and
/// waiting until it is at every node.
fn latency(
    cluster: &NsCluster,
    recorders: &[MessageRecorder],
    samples: usize,
) -> Result<Vec<LatencySeries>, Abort> {
    let sender = &cluster.daemons[0];
    let ns = sender.netns().map(str::to_owned);
    let mut client = RpcClient::connect(sender.socket())
        .map_err(|e| Abort::Failed(format!("connect to {}: {e}", sender.name())))?;
    let mut series: Vec<LatencySeries> = Via::ALL
        .iter()
        .map(|&via| LatencySeries {
            via,
            last: Vec::new(),
            first: Vec::new(),
            returned: Vec::new(),
            lost: 0,
            failed: 0,
            failure: None,
        })
        .collect();
    for i in 0..samples {
        for s in &mut series {
            let key = format!("{}/{i}", s.via.tag());
            let start = Instant::now();
            let outcome = match s.via {
                Via::NetnsCli => cli_send(ns.as_deref(), sender.socket(), &key),
                Via::Cli => cli_send(None, sender.socket(), &key),
                Via::Rpc => match client.try_call("send", json!({"text": key}), CALL_TIMEOUT) {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(format!("send: error {}: {}", error.code, error.message)),
                    Err(e) => return Err(Abort::Failed(format!("RPC send: {e}"))),
                },
            };
            let returned = start.elapsed();
            if let Err(why) = outcome {
                s.failed += 1;
                s.failure.get_or_insert(why);
                continue;
            }
            s.returned.push(returned);
            let arrivals = until(SAMPLE_TIMEOUT, "", || {
                recorders
                    .iter()
                    .map(|r| r.arrival(&key))
                    .collect::<Option<Vec<Instant>>>()
                    .map_or(Ok(None), |ats| Ok(Some(ats)))
            });
            match arrivals {
                Ok(ats) => {
                    let since = |at: &Instant| at.saturating_duration_since(start);
                    s.last.extend(ats.iter().map(since).max());
                    s.first.extend(ats.iter().map(since).min());
                }
                Err(Abort::Interrupted) => return Err(Abort::Interrupted),
                Err(Abort::Failed(_)) => s.lost += 1,
            }
        }
        if (i + 1) % 50 == 0 {
            progress(&format!("latency: {} of {samples} samples", i + 1));
        }
    }
    for r in recorders {
        for via in Via::ALL {
            r.take(via.tag());
        }
    }
    Ok(series)
}

/// Runs `rossipctl --socket SOCKET send KEY` (inside `netns` when given) to
/// completion; see [`run_polled`].
fn cli_send(netns: Option<&str>, socket: &Path, key: &str) -> Result<(), String> {
    let args: Vec<OsString> = vec!["--socket".into(), socket.into(), "send".into(), key.into()];
    let (program, args) = sys::in_netns(netns, bins::rossipctl(), args);
    run_polled(&program, &args)
}

/// Runs `program args…` to completion, its stdout discarded. Waits by
/// polling `try_wait` at [`POLL`] rather than through [`crate::ctl`], whose
/// coarser polling would show in a figure timed around this call. `Err`
/// has the command line, its exit status and stderr.
pub fn run_polled(program: &OsStr, args: &[OsString]) -> Result<(), String> {
    let line = sys::command_line(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("ROSSIP_SOCKET")
        .spawn()
        .map_err(|e| format!("`{line}`: {e}"))?;
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline && !bench::interrupted() => {
                std::thread::sleep(POLL);
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{line}` did not finish within {CLI_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("`{line}`: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Err(format!("`{line}` failed ({status}): {}", stderr.trim()))
}

/// What a throughput run needs of a cluster: a paced sender on each node
/// and a record of the messages each node received (keys as
/// [`crate::delivery_send::key`] makes them). rossip's is [`RossipNodes`];
/// `compare-bench` has one for Serf.
pub trait Deliveries: Sync {
    /// Nodes that record arrivals; senders are the first of them.
    fn nodes(&self) -> usize;
    /// Sends [`MESSAGE_BYTES`]-byte messages of run `tag` from node `from`
    /// at `rate` messages/s for `duration` (see [`send_paced`]).
    fn send_paced(&self, from: usize, tag: &str, rate: f64, duration: Duration) -> Sent;
    /// How many distinct keys of `tag` node `node` received.
    fn count(&self, node: usize, tag: &str) -> usize;
    /// Removes and returns node `node`'s arrivals of `tag`.
    fn take(&self, node: usize, tag: &str) -> HashMap<String, Instant>;
    /// Events dropped before they reached the recorders, all nodes, so far.
    fn lagged(&self) -> u64;
    /// Messages recorded twice, all nodes, so far.
    fn duplicates(&self) -> u64;
}

/// A rossip cluster's [`Deliveries`]: its daemons, a [`MessageRecorder`]
/// on each, and pipelined senders with `window` unanswered requests.
#[derive(Debug, Clone, Copy)]
pub struct RossipNodes<'a> {
    /// The daemons.
    pub cluster: &'a NsCluster,
    /// `recorders[i]` records `cluster.daemons[i]`.
    pub recorders: &'a [MessageRecorder],
    /// See [`Options::window`].
    pub window: usize,
}

impl Deliveries for RossipNodes<'_> {
    fn nodes(&self) -> usize {
        self.recorders.len()
    }

    fn send_paced(&self, from: usize, tag: &str, rate: f64, duration: Duration) -> Sent {
        let socket = self.cluster.daemons[from].socket();
        send_paced(socket, tag, from, rate, duration, self.window)
    }

    fn count(&self, node: usize, tag: &str) -> usize {
        self.recorders[node].count(tag)
    }

    fn take(&self, node: usize, tag: &str) -> HashMap<String, Instant> {
        self.recorders[node].take(tag)
    }

    fn lagged(&self) -> u64 {
        self.recorders.iter().map(MessageRecorder::lagged).sum()
    }

    fn duplicates(&self) -> u64 {
        self.recorders.iter().map(MessageRecorder::duplicates).sum()
    }
}

/// One throughput run: `senders` nodes (h1..) send at `rate / senders`
/// each for `seconds`, then the deliveries are awaited (see
/// [`DRAIN_TIMEOUT`]) and counted.
pub fn throughput(
    nodes: &impl Deliveries,
    tag: &str,
    rate: u64,
    senders: usize,
    seconds: f64,
) -> Result<RateRun, Abort> {
    let lagged_before = nodes.lagged();
    let dups_before = nodes.duplicates();
    let each = rate as f64 / senders as f64;
    let duration = Duration::from_secs_f64(seconds);
    let sent: Vec<Sent> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..senders)
            .map(|i| scope.spawn(move || nodes.send_paced(i, tag, each, duration)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let send_end = Instant::now();
    if bench::interrupted() {
        return Err(Abort::Interrupted);
    }
    let mut run = RateRun {
        offered: rate,
        senders,
        ..RateRun::default()
    };
    let mut accepted: Vec<String> = Vec::new();
    for s in sent {
        run.attempted += s.attempted;
        run.elapsed = run.elapsed.max(s.elapsed);
        for (code, n) in s.errors {
            *run.errors.entry(code).or_default() += n;
        }
        accepted.extend(s.accepted);
    }
    run.accepted = accepted.len() as u64;

    drain(
        || (0..nodes.nodes()).map(|i| nodes.count(i, tag)).collect(),
        accepted.len(),
        send_end,
    )?;
    let arrivals: Vec<HashMap<String, Instant>> =
        (0..nodes.nodes()).map(|i| nodes.take(i, tag)).collect();
    run.delivered_all = accepted
        .iter()
        .filter(|key| arrivals.iter().all(|a| a.contains_key(*key)))
        .count() as u64;
    run.worst_node = arrivals
        .iter()
        .map(|a| accepted.iter().filter(|k| a.contains_key(*k)).count() as u64)
        .min()
        .unwrap_or(0);
    run.drain = arrivals
        .iter()
        .flat_map(|a| a.values().copied())
        .max()
        .map(|last| last.saturating_duration_since(send_end));
    run.lagged = nodes.lagged() - lagged_before;
    run.duplicates = nodes.duplicates() - dups_before;
    Ok(run)
}

/// Waits until every node's count (`counts()`) reached `expected`,
/// nothing new arrived anywhere for [`DRAIN_STALL`], or [`DRAIN_TIMEOUT`]
/// passed since `send_end`.
pub fn drain(
    mut counts: impl FnMut() -> Vec<usize>,
    expected: usize,
    send_end: Instant,
) -> Result<(), Abort> {
    let deadline = send_end + DRAIN_TIMEOUT;
    let mut seen = 0;
    let mut changed = Instant::now();
    loop {
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        let counts = counts();
        if counts.iter().all(|&c| c >= expected) {
            return Ok(());
        }
        let total: usize = counts.iter().sum();
        let now = Instant::now();
        if total != seen {
            seen = total;
            changed = now;
        }
        if now >= deadline || now.duration_since(changed) >= DRAIN_STALL {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `condition` until it gives a value, `timeout` passes (then
/// `Failed`), or the benchmark is interrupted.
fn until<T>(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> Result<Option<T>, Abort>,
) -> Result<T, Abort> {
    let deadline = Instant::now() + timeout;
    loop {
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        if let Some(value) = condition()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(Abort::Failed(format!("{what}: not within {timeout:?}")));
        }
        std::thread::sleep(POLL);
    }
}

fn progress(line: &str) {
    sys::say(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_loss_needs_everything_accepted_and_delivered() {
        let mut run = RateRun {
            attempted: 10,
            accepted: 10,
            delivered_all: 10,
            ..RateRun::default()
        };
        assert!(run.zero_loss());
        run.lagged = 1;
        assert!(!run.zero_loss());
        run.lagged = 0;
        run.delivered_all = 9;
        assert!(!run.zero_loss());
    }
}
