//! rossip and HashiCorp Serf side by side (the `compare-bench` binary is
//! its command line): the same namespaced LAN ([`crate::netns::Lan`]), the
//! same N, the same workload, runs alternating between the systems, one
//! table with both and the ratio per row ([`table`]).
//!
//! For each N: first the discovery samples, each on a fresh LAN with one
//! idle host (all nodes started at once, then one more once they
//! converged); then one working cluster per system, kept for the other
//! rows, which run in [`Row::ALL`]'s order (idle first, before any traffic;
//! floods last), each run alternating rossip, Serf, rossip, …
//! A run that fails is recorded as an error of its row and the benchmark
//! goes on; a node the row stopped is restarted before the next row.
//!
//! Arrival and membership times are the instants this process read the
//! notification (rossip: its subscription on each node's socket; Serf: the
//! agent's log line, see [`serf`]), so the polling of the waits does not
//! enter the figures. Every wait checks [`bench::interrupted`]: Ctrl-C or
//! SIGTERM ends the run through the normal return path, and `Drop` kills
//! the processes by PID and removes the namespaces.

pub mod rossip;
pub mod serf;
pub mod table;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rossip_proto::rpc::PeerStateName;

use crate::bench::{self, Abort};
use crate::delivery_bench::{self, Deliveries, RateRun};
use crate::delivery_send::{MESSAGE_BYTES, Sent};
use crate::delivery_table::quantile;
use crate::netns::Lan;
use crate::sys;

pub use self::rossip::RossipSwarm;
pub use self::serf::SerfSwarm;

/// Inbound loss on every host in the loss rows, percent: the membership
/// benchmark's.
pub use crate::bench::LOSS_PERCENT;

const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const DETECTION_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one latency sample may take to reach everyone before it
/// counts as lost.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a probe of the largest-message search waits for arrival.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest size the message search tries: a command-line argument is at
/// most 128 KiB on Linux, and both CLIs take the message as one.
pub const LARGEST_PROBE: usize = 131_000;
/// Polling for conditions; figures come from recorded instants.
const POLL: Duration = Duration::from_millis(1);

/// The systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// This repository's `rossipd`.
    Rossip,
    /// HashiCorp Serf's agent.
    Serf,
}

impl System {
    /// Both, in the order runs alternate.
    pub const ALL: [System; 2] = [System::Rossip, System::Serf];

    /// Its name on the command line and in the raw data.
    pub fn name(self) -> &'static str {
        match self {
            System::Rossip => "rossip",
            System::Serf => "serf",
        }
    }

    /// The system named `name`.
    pub fn parse(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A group of measurements, selected with `--rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Row {
    /// All started at once until all list all; then a late joiner.
    Discovery,
    /// RSS and CPU of idle nodes: first, before any traffic (a flood
    /// leaves buffers and history behind in both systems).
    Idle,
    /// Wall time of one `send` and one member-list CLI call.
    Cli,
    /// `send` → every other node, no loss.
    Latency,
    /// The same with [`LOSS_PERCENT`]% inbound loss on every host.
    LatencyLoss,
    /// Largest message delivered everywhere.
    Largest,
    /// SIGKILL → failed everywhere.
    Kill,
    /// Graceful leave → left everywhere.
    Leave,
    /// False `failed` under [`LOSS_PERCENT`]% loss.
    LossFailures,
    /// Highest zero-loss rate of 200-byte messages from one sender.
    Throughput,
    /// The same with every node sending.
    ThroughputAll,
    /// False `failed` during a full-speed flood from every node.
    Flood,
}

impl Row {
    /// Every row, in the order they run.
    pub const ALL: [Row; 12] = [
        Row::Discovery,
        Row::Idle,
        Row::Cli,
        Row::Latency,
        Row::LatencyLoss,
        Row::Largest,
        Row::Kill,
        Row::Leave,
        Row::LossFailures,
        Row::Throughput,
        Row::ThroughputAll,
        Row::Flood,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Row::Discovery => "discovery",
            Row::Latency => "latency",
            Row::LatencyLoss => "latency-loss",
            Row::Throughput => "throughput",
            Row::ThroughputAll => "throughput-all",
            Row::Largest => "largest",
            Row::Kill => "kill",
            Row::Leave => "leave",
            Row::LossFailures => "loss-failures",
            Row::Flood => "flood",
            Row::Idle => "idle",
            Row::Cli => "cli",
        }
    }

    /// The row named `name`.
    pub fn parse(name: &str) -> Option<Row> {
        Row::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Cluster sizes, in order.
    pub sizes: Vec<usize>,
    /// Runs of each row per system and size.
    pub runs: usize,
    /// The rows, in [`Row::ALL`] order.
    pub rows: Vec<Row>,
    /// The systems, alternating in this order.
    pub systems: Vec<System>,
    /// Latency samples per run and loss setting.
    pub latency_samples: usize,
    /// How long each throughput step sends.
    pub rate_seconds: f64,
    /// Halvings of the interval between the last zero-loss rate and the
    /// first lossy one, after the doubling search.
    pub bisections: usize,
    /// How long the loss row holds the loss, the flood floods, and the
    /// idle row measures.
    pub hold: Duration,
    /// CLI calls per kind in the CLI row.
    pub cli_calls: usize,
    /// Where BENCHMARKS.md goes.
    pub out: PathBuf,
    /// Where the raw samples go.
    pub raw_dir: PathBuf,
    /// The command line, for the report.
    pub command: String,
    /// `--quick` was given.
    pub quick: bool,
}

impl Options {
    /// The defaults: the full benchmark.
    pub fn full() -> Options {
        Options {
            sizes: vec![3, 5, 10],
            runs: 2,
            rows: Row::ALL.to_vec(),
            systems: System::ALL.to_vec(),
            latency_samples: 200,
            rate_seconds: 5.0,
            bisections: 3,
            hold: Duration::from_secs(60),
            cli_calls: 30,
            out: sys::repo().join("BENCHMARKS.md"),
            raw_dir: sys::repo().join("target/compare-bench"),
            command: String::new(),
            quick: false,
        }
    }

    /// `--quick`: a few minutes for a first look.
    pub fn quick(mut self) -> Options {
        self.runs = 1;
        self.latency_samples = 50;
        self.rate_seconds = 2.0;
        self.bisections = 1;
        self.hold = Duration::from_secs(10);
        self.cli_calls = 10;
        self.quick = true;
        self
    }
}

/// A figure of the table, by what it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Spawn of all → the last node listed the last other, s.
    Discovery,
    /// Spawn of one more → every node listed every node, s.
    LateJoin,
    /// SIGKILL → failed everywhere, s.
    Kill,
    /// Leave → left everywhere, s.
    Leave,
    /// Per message: `send` start → the last other node had it, ms.
    Latency,
    /// Messages not everywhere within 5 s, per run.
    Lost,
    /// The same under loss, ms.
    LatencyLoss,
    /// The same under loss.
    LostLoss,
    /// Largest message delivered everywhere, bytes.
    Largest,
    /// Highest zero-loss rate on pace, one sender, msg/s.
    Throughput,
    /// The same, all senders together.
    ThroughputAll,
    /// False `failed` transitions under loss, per run.
    LossFailures,
    /// False `failed` transitions during the flood, per run.
    FloodFailures,
    /// Share of accepted flood messages delivered to all, %.
    FloodDelivered,
    /// Idle VmRSS per node, MiB.
    IdleRss,
    /// Idle CPU per node, % of a core.
    IdleCpu,
    /// One `send` CLI call, ms.
    CliSend,
    /// One member-list CLI call, ms.
    CliPeers,
}

impl Metric {
    /// Its name in the raw data.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Discovery => "discovery_s",
            Metric::LateJoin => "late_join_s",
            Metric::Latency => "latency_ms",
            Metric::LatencyLoss => "latency_loss_ms",
            Metric::Lost => "lost",
            Metric::LostLoss => "lost_loss",
            Metric::Throughput => "throughput_one_msg_s",
            Metric::ThroughputAll => "throughput_all_msg_s",
            Metric::Largest => "largest_bytes",
            Metric::Kill => "kill_failed_s",
            Metric::Leave => "leave_left_s",
            Metric::LossFailures => "false_failed_loss",
            Metric::FloodFailures => "false_failed_flood",
            Metric::FloodDelivered => "flood_delivered_pct",
            Metric::IdleRss => "idle_rss_mib",
            Metric::IdleCpu => "idle_cpu_pct",
            Metric::CliSend => "cli_send_ms",
            Metric::CliPeers => "cli_peers_ms",
        }
    }
}

/// Every sample taken, and what went wrong.
#[derive(Debug, Default)]
pub struct Results {
    /// Values by (N, metric, system), in the order taken.
    pub samples: HashMap<(usize, Metric, System), Vec<f64>>,
    /// Failed or skipped runs: N, system, row, why.
    pub errors: Vec<(usize, System, Row, String)>,
    /// The raw data file, once opened.
    raw: Option<std::fs::File>,
    /// Its path.
    pub raw_path: Option<PathBuf>,
}

impl Results {
    /// Results whose samples are also appended to a CSV file in `dir`.
    pub fn with_raw_dir(dir: &Path) -> Results {
        let stamp = jiff_free_stamp();
        let path = dir.join(format!("samples-{stamp}.csv"));
        let raw = std::fs::create_dir_all(dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&path))
            .map_err(|e| {
                sys::say(&format!(
                    "compare-bench: raw data not kept: {}: {e}",
                    path.display()
                ))
            })
            .ok();
        let mut results = Results {
            raw,
            raw_path: Some(path),
            ..Results::default()
        };
        results.write_raw("n,system,run,metric,value");
        results
    }

    fn write_raw(&mut self, line: &str) {
        if let Some(file) = &mut self.raw {
            // Raw data is a convenience; the table does not depend on it.
            let _ = writeln!(file, "{line}");
        }
    }

    /// Records one value.
    pub fn push(&mut self, n: usize, system: System, run: usize, metric: Metric, value: f64) {
        self.write_raw(&format!(
            "{n},{},{run},{},{value}",
            system.name(),
            metric.name()
        ));
        self.samples
            .entry((n, metric, system))
            .or_default()
            .push(value);
    }

    /// The values of one figure.
    pub fn values(&self, n: usize, metric: Metric, system: System) -> &[f64] {
        self.samples
            .get(&(n, metric, system))
            .map_or(&[], Vec::as_slice)
    }
}

/// Seconds since the Unix epoch, a name for this run's raw data.
fn jiff_free_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One system's cluster.
#[derive(Debug)]
pub enum Swarm {
    /// rossipd nodes.
    Rossip(RossipSwarm),
    /// Serf agents.
    Serf(SerfSwarm),
}

impl Swarm {
    /// Starts `hosts` nodes of `system` at once on a fresh LAN with `idle`
    /// more hosts. `Err`: the machine cannot build namespaces.
    pub fn start(system: System, hosts: usize, idle: usize) -> Result<Swarm, String> {
        let test = format!("cmp{}{hosts}", &system.name()[..1]);
        let started = match system {
            System::Rossip => RossipSwarm::start(&test, hosts, idle).map(Swarm::Rossip),
            System::Serf => SerfSwarm::start(&test, hosts, idle).map(Swarm::Serf),
        };
        started.map_err(|_| "cannot build network namespaces here (root and iproute2)".to_owned())
    }

    fn lan(&self) -> &Lan {
        match self {
            Swarm::Rossip(s) => s.lan(),
            Swarm::Serf(s) => s.lan(),
        }
    }

    fn spawned(&self) -> Instant {
        match self {
            Swarm::Rossip(s) => s.spawned(),
            Swarm::Serf(s) => s.spawned(),
        }
    }

    fn deliveries(&self) -> &dyn DeliveriesDyn {
        match self {
            Swarm::Rossip(s) => s,
            Swarm::Serf(s) => s,
        }
    }

    fn len(&self) -> usize {
        self.deliveries().nodes_dyn()
    }

    fn pid(&self, i: usize) -> u32 {
        match self {
            Swarm::Rossip(s) => s.pid(i),
            Swarm::Serf(s) => s.agent(i).pid(),
        }
    }

    fn alive_at(
        &self,
        observer: usize,
        members: &[usize],
        after: Instant,
    ) -> Result<Instant, String> {
        match self {
            Swarm::Rossip(s) => s.alive_at(observer, members, after),
            Swarm::Serf(s) => {
                let agent = s.agent(observer);
                let mut last = after;
                for &m in members.iter().filter(|&&m| m != observer) {
                    let name = s.lan().host(m).name.as_str();
                    if agent.state_of(name) != Some(PeerStateName::Alive) {
                        return Err(format!(
                            "{} has {name} as {:?}",
                            agent.name(),
                            agent.state_of(name)
                        ));
                    }
                    let seen = agent
                        .entered(name, PeerStateName::Alive, after)
                        .unwrap_or(after);
                    last = last.max(seen);
                }
                Ok(last)
            }
        }
    }

    fn entered(
        &self,
        observer: usize,
        member: usize,
        state: PeerStateName,
        after: Instant,
    ) -> Option<Instant> {
        match self {
            Swarm::Rossip(s) => s.entered(observer, member, state, after),
            Swarm::Serf(s) => s
                .agent(observer)
                .entered(&s.lan().host(member).name, state, after),
        }
    }

    fn count_entered(&self, observer: usize, state: PeerStateName, after: Instant) -> usize {
        match self {
            Swarm::Rossip(s) => s.count_entered(observer, state, after),
            Swarm::Serf(s) => s.agent(observer).count_entered(state, after),
        }
    }

    fn start_next(&mut self) -> usize {
        match self {
            Swarm::Rossip(s) => s.start_next(),
            Swarm::Serf(s) => s.start_next(),
        }
    }

    fn kill(&mut self, i: usize) {
        match self {
            Swarm::Rossip(s) => s.kill(i),
            Swarm::Serf(s) => s.kill(i),
        }
    }

    fn leave(&mut self, i: usize) -> Result<(), String> {
        match self {
            Swarm::Rossip(s) => s.leave(i, EXIT_TIMEOUT),
            Swarm::Serf(s) => s.leave(i, EXIT_TIMEOUT),
        }
    }

    fn restart(&mut self, i: usize) {
        match self {
            Swarm::Rossip(s) => s.restart(i),
            Swarm::Serf(s) => s.restart(i),
        }
    }

    /// The CLI line that sends a `bytes`-byte message keyed `key` from `i`.
    fn send_command(&self, i: usize, key: &str, bytes: usize) -> (OsString, Vec<OsString>) {
        match self {
            Swarm::Rossip(s) => s.send_command(i, key, bytes),
            Swarm::Serf(s) => {
                let (name, payload) = serf::user_event(key, bytes);
                s.cli(
                    i,
                    vec![
                        "event".into(),
                        "-coalesce=false".into(),
                        name.into(),
                        payload.into(),
                    ],
                )
            }
        }
    }

    /// The CLI line that lists node `i`'s members.
    fn members_command(&self, i: usize) -> (OsString, Vec<OsString>) {
        match self {
            Swarm::Rossip(s) => s.cli(i, vec!["peers".into()]),
            Swarm::Serf(s) => s.cli(i, vec!["members".into()]),
        }
    }

    fn cli_alive(&self, i: usize) -> Result<Vec<String>, String> {
        match self {
            Swarm::Rossip(s) => s.cli_alive(i),
            Swarm::Serf(s) => s.cli_alive(i),
        }
    }

    fn arrival(&self, node: usize, key: &str) -> Option<Instant> {
        match self {
            Swarm::Rossip(s) => s.arrival(node, key),
            Swarm::Serf(s) => s.arrival(node, key),
        }
    }

    fn describe(&self) -> String {
        match self {
            Swarm::Rossip(s) => s.describe(),
            Swarm::Serf(s) => s.describe(),
        }
    }

    fn name(&self, i: usize) -> &str {
        &self.lan().host(i).name
    }
}

/// [`Deliveries`] as a trait object, so [`Swarm`] can hand out either.
trait DeliveriesDyn: Sync {
    fn nodes_dyn(&self) -> usize;
    fn throughput_dyn(
        &self,
        tag: &str,
        rate: u64,
        senders: usize,
        seconds: f64,
    ) -> Result<RateRun, Abort>;
    fn send_dyn(&self, from: usize, tag: &str, rate: f64, duration: Duration) -> Sent;
    fn count_dyn(&self, node: usize, tag: &str) -> usize;
    fn take_dyn(&self, node: usize, tag: &str) -> HashMap<String, Instant>;
}

impl<D: Deliveries> DeliveriesDyn for D {
    fn nodes_dyn(&self) -> usize {
        self.nodes()
    }
    fn throughput_dyn(
        &self,
        tag: &str,
        rate: u64,
        senders: usize,
        seconds: f64,
    ) -> Result<RateRun, Abort> {
        delivery_bench::throughput(self, tag, rate, senders, seconds)
    }
    fn send_dyn(&self, from: usize, tag: &str, rate: f64, duration: Duration) -> Sent {
        self.send_paced(from, tag, rate, duration)
    }
    fn count_dyn(&self, node: usize, tag: &str) -> usize {
        self.count(node, tag)
    }
    fn take_dyn(&self, node: usize, tag: &str) -> HashMap<String, Instant> {
        self.take(node, tag)
    }
}

/// Runs everything `options` asks for; `results` fills as it goes (so an
/// interrupted run keeps what it measured).
pub fn measure(options: &Options, results: &mut Results) {
    for &n in &options.sizes {
        if bench::interrupted() {
            return;
        }
        if options.rows.contains(&Row::Discovery) {
            for run in 0..options.runs {
                for &system in &options.systems {
                    if bench::interrupted() {
                        return;
                    }
                    match discovery(system, n) {
                        Ok((all, late)) => {
                            progress(&format!(
                                "N={n} {}: discovery {all:.3} s, late joiner {late:.3} s",
                                system.name()
                            ));
                            results.push(n, system, run, Metric::Discovery, all);
                            results.push(n, system, run, Metric::LateJoin, late);
                        }
                        Err(why) => fail(results, n, system, Row::Discovery, why),
                    }
                }
            }
        }
        let rows: Vec<Row> = options
            .rows
            .iter()
            .copied()
            .filter(|r| *r != Row::Discovery)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut swarms: Vec<(System, Swarm)> = Vec::new();
        for &system in &options.systems {
            match Swarm::start(system, n, 0).and_then(|s| {
                converge(&s, s.spawned()).map_err(|why| format!("{why}\n{}", s.describe()))?;
                Ok(s)
            }) {
                Ok(swarm) => swarms.push((system, swarm)),
                Err(why) => fail(
                    results,
                    n,
                    system,
                    Row::Discovery,
                    format!("working cluster: {why}"),
                ),
            }
        }
        for &row in &rows {
            for run in 0..options.runs {
                for (system, swarm) in &mut swarms {
                    if bench::interrupted() {
                        return;
                    }
                    let outcome = measure_row(row, swarm, n, run, options, *system, results);
                    if let Err(why) = outcome {
                        fail(results, n, *system, row, why);
                    }
                    if bench::interrupted() {
                        return;
                    }
                    // Whatever the row did, the next one starts converged.
                    if let Err(why) = converge(swarm, Instant::now()) {
                        fail(
                            results,
                            n,
                            *system,
                            row,
                            format!("did not converge after the row: {why}"),
                        );
                    }
                }
            }
        }
    }
}

fn fail(results: &mut Results, n: usize, system: System, row: Row, why: String) {
    if why != "interrupted" {
        progress(&format!("N={n} {} {}: {why}", system.name(), row.name()));
    }
    results.errors.push((n, system, row, why));
}

fn abort_text(abort: Abort) -> String {
    match abort {
        Abort::Interrupted => "interrupted".to_owned(),
        Abort::Failed(why) => why,
    }
}

fn measure_row(
    row: Row,
    swarm: &mut Swarm,
    n: usize,
    run: usize,
    options: &Options,
    system: System,
    results: &mut Results,
) -> Result<(), String> {
    match row {
        Row::Discovery => {}
        Row::Latency | Row::LatencyLoss => {
            let loss = if row == Row::Latency { 0 } else { LOSS_PERCENT };
            let (samples, lost) =
                latency(swarm, loss, run, options.latency_samples).map_err(abort_text)?;
            let (metric, lost_metric) = if loss == 0 {
                (Metric::Latency, Metric::Lost)
            } else {
                (Metric::LatencyLoss, Metric::LostLoss)
            };
            for ms in &samples {
                results.push(n, system, run, metric, *ms);
            }
            results.push(n, system, run, lost_metric, lost as f64);
            progress(&format!(
                "N={n} {}: latency at {loss}% loss: p50 {:.1} ms, p99 {:.1} ms, lost {lost}",
                system.name(),
                quantile(&samples, 0.5).unwrap_or(f64::NAN),
                quantile(&samples, 0.99).unwrap_or(f64::NAN)
            ));
        }
        Row::Throughput | Row::ThroughputAll => {
            let senders = if row == Row::Throughput { 1 } else { n };
            let best = rate_search(swarm, system, senders, run, options).map_err(abort_text)?;
            let metric = if senders == 1 {
                Metric::Throughput
            } else {
                Metric::ThroughputAll
            };
            results.push(n, system, run, metric, best);
        }
        Row::Largest => {
            let bytes = largest(swarm, run).map_err(abort_text)?;
            progress(&format!(
                "N={n} {}: largest message {bytes} B",
                system.name()
            ));
            results.push(n, system, run, Metric::Largest, bytes as f64);
        }
        Row::Kill | Row::Leave => {
            let victim = 1 + run % (n - 1).max(1);
            let took = removal(swarm, victim, row).map_err(abort_text)?;
            progress(&format!(
                "N={n} {}: {} {took:.3} s",
                system.name(),
                row.name()
            ));
            let metric = if row == Row::Kill {
                Metric::Kill
            } else {
                Metric::Leave
            };
            results.push(n, system, run, metric, took);
        }
        Row::LossFailures => {
            let failed = loss_failures(swarm, options.hold).map_err(abort_text)?;
            progress(&format!(
                "N={n} {}: {failed} false failed under loss",
                system.name()
            ));
            results.push(n, system, run, Metric::LossFailures, failed as f64);
        }
        Row::Flood => {
            let (failed, delivered) = flood(swarm, run, options.hold).map_err(abort_text)?;
            progress(&format!(
                "N={n} {}: flood: {failed} false failed, {delivered:.1}% delivered to all",
                system.name()
            ));
            results.push(n, system, run, Metric::FloodFailures, failed as f64);
            results.push(n, system, run, Metric::FloodDelivered, delivered);
        }
        Row::Idle => {
            let per_node = idle(swarm, options.hold).map_err(abort_text)?;
            for (rss, cpu) in per_node {
                results.push(n, system, run, Metric::IdleRss, rss);
                results.push(n, system, run, Metric::IdleCpu, cpu);
            }
        }
        Row::Cli => {
            let (send, peers) = cli_calls(swarm, run, options.cli_calls)?;
            for ms in send {
                results.push(n, system, run, Metric::CliSend, ms);
            }
            for ms in peers {
                results.push(n, system, run, Metric::CliPeers, ms);
            }
        }
    }
    Ok(())
}

/// Waits until every node has every node alive (from its notifications),
/// then until every node's CLI lists every other node as alive. Returns the
/// instant of the last notification that completed the picture (after
/// `after`).
fn converge(swarm: &Swarm, after: Instant) -> Result<Instant, String> {
    let all: Vec<usize> = (0..swarm.len()).collect();
    let at = bench::poll_until(CONVERGE_TIMEOUT, POLL, "everyone alive everywhere", || {
        let mut last = after;
        for &observer in &all {
            last = last.max(swarm.alive_at(observer, &all, after)?);
        }
        Ok(last)
    })
    .map_err(abort_text)?;
    bench::poll_until(
        CONVERGE_TIMEOUT,
        POLL,
        "every CLI lists everyone alive",
        || {
            for &i in &all {
                let listed = swarm.cli_alive(i)?;
                if let Some(missing) = all
                    .iter()
                    .map(|&m| swarm.name(m))
                    .find(|name| *name != swarm.name(i) && !listed.iter().any(|l| l == name))
                {
                    return Err(format!(
                        "{}'s CLI does not list {missing} as alive",
                        swarm.name(i)
                    ));
                }
            }
            Ok(())
        },
    )
    .map_err(abort_text)?;
    Ok(at)
}

/// One discovery sample: N nodes started at once on a fresh LAN, until
/// every node had every other alive; then one more node, until every node
/// had it and it had everyone. Seconds, both.
fn discovery(system: System, n: usize) -> Result<(f64, f64), String> {
    let mut swarm = Swarm::start(system, n, 1)?;
    let spawned = swarm.spawned();
    let all = converge(&swarm, spawned).map_err(|why| format!("{why}\n{}", swarm.describe()))?;
    let before = Instant::now();
    swarm.start_next();
    let late = converge(&swarm, before)
        .map_err(|why| format!("late joiner: {why}\n{}", swarm.describe()))?;
    Ok((
        all.saturating_duration_since(spawned).as_secs_f64(),
        late.saturating_duration_since(before).as_secs_f64(),
    ))
}

/// `samples` messages from h1 through its CLI, one at a time, each until
/// every other node had it; `loss`% inbound loss on every host meanwhile.
/// Returns the latencies (ms) of the delivered ones and how many were lost.
fn latency(
    swarm: &Swarm,
    loss: u8,
    run: usize,
    samples: usize,
) -> Result<(Vec<f64>, usize), Abort> {
    swarm.lan().set_loss_all(loss);
    let outcome = latency_samples(swarm, loss, run, samples);
    swarm.lan().set_loss_all(0);
    outcome
}

fn latency_samples(
    swarm: &Swarm,
    loss: u8,
    run: usize,
    samples: usize,
) -> Result<(Vec<f64>, usize), Abort> {
    let others: Vec<usize> = (1..swarm.len()).collect();
    let mut latencies = Vec::with_capacity(samples);
    let mut lost = 0;
    for i in 0..samples {
        let key = format!("l{loss}r{run}/{i}");
        let (program, args) = swarm.send_command(0, &key, MESSAGE_BYTES);
        let start = Instant::now();
        if let Err(why) = delivery_bench::run_polled(&program, &args) {
            return Err(Abort::Failed(why));
        }
        match everywhere(swarm, &others, &key, SAMPLE_TIMEOUT) {
            Ok(at) => latencies.push(at.saturating_duration_since(start).as_secs_f64() * 1e3),
            Err(Abort::Interrupted) => return Err(Abort::Interrupted),
            Err(Abort::Failed(_)) => lost += 1,
        }
    }
    Ok((latencies, lost))
}

/// Waits until every node in `nodes` had message `key`; the last arrival.
fn everywhere(
    swarm: &Swarm,
    nodes: &[usize],
    key: &str,
    timeout: Duration,
) -> Result<Instant, Abort> {
    bench::poll_until(timeout, POLL, key, || {
        nodes
            .iter()
            .map(|&i| {
                swarm
                    .arrival(i, key)
                    .ok_or_else(|| format!("not at {}", swarm.name(i)))
            })
            .collect::<Result<Vec<Instant>, String>>()
            .map(|ats| ats.into_iter().max().unwrap_or_else(Instant::now))
    })
}

/// The highest rate (total, msg/s) at which `senders` nodes sent on pace
/// with zero loss: doubling from a start rate while runs pass, then
/// [`Options::bisections`] halvings of the gap.
fn rate_search(
    swarm: &Swarm,
    system: System,
    senders: usize,
    run: usize,
    options: &Options,
) -> Result<f64, Abort> {
    let d = swarm.deliveries();
    let mut step = 0;
    let mut attempt = |rate: u64| -> Result<bool, Abort> {
        step += 1;
        let tag = format!("t{senders}r{run}s{step}");
        let result = d.throughput_dyn(&tag, rate, senders, options.rate_seconds)?;
        let ok = result.zero_loss() && result.on_pace();
        progress(&format!(
            "{} {senders} sender(s) at {rate}/s: achieved {:.0}/s, {} of {} at all{}",
            system.name(),
            result.achieved(),
            result.delivered_all,
            result.attempted,
            if ok { "" } else { ": lossy or off pace" }
        ));
        Ok(ok)
    };
    let start: u64 = match system {
        System::Rossip => 2_000,
        System::Serf => 20,
    };
    let (mut good, mut bad) = (0u64, 0u64);
    let mut rate = start;
    // Up or down by doubling until a good and a bad rate bracket the limit.
    while bad == 0 || good == 0 {
        if attempt(rate)? {
            good = rate;
            if bad != 0 {
                break;
            }
            rate *= 2;
        } else {
            bad = rate;
            if good != 0 || rate <= 1 {
                break;
            }
            rate /= 2;
        }
        if rate > 10_000_000 {
            break;
        }
    }
    for _ in 0..options.bisections {
        if good == 0 || bad <= good + 1 {
            break;
        }
        let mid = good + (bad - good) / 2;
        if attempt(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(good as f64)
}

/// The largest message (bytes) h1's CLI sends that reaches every other
/// node, by binary search up to [`LARGEST_PROBE`].
fn largest(swarm: &Swarm, run: usize) -> Result<usize, Abort> {
    let others: Vec<usize> = (1..swarm.len()).collect();
    let mut probe = 0;
    let mut delivered = |bytes: usize| -> Result<bool, Abort> {
        probe += 1;
        let key = format!("z{run}/{probe}");
        let (program, args) = swarm.send_command(0, &key, bytes);
        if delivery_bench::run_polled(&program, &args).is_err() {
            return Ok(false);
        }
        match everywhere(swarm, &others, &key, PROBE_TIMEOUT) {
            Ok(_) => Ok(true),
            Err(Abort::Interrupted) => Err(Abort::Interrupted),
            Err(Abort::Failed(_)) => Ok(false),
        }
    };
    if delivered(LARGEST_PROBE)? {
        return Ok(LARGEST_PROBE);
    }
    let (mut good, mut bad) = (16, LARGEST_PROBE);
    if !delivered(good)? {
        return Ok(0);
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if delivered(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(good)
}

/// Takes `victim` out (SIGKILL for [`Row::Kill`], a graceful leave for
/// [`Row::Leave`]) and waits until every other node recorded it failed /
/// left; seconds. The victim is restarted before returning.
fn removal(swarm: &mut Swarm, victim: usize, row: Row) -> Result<f64, Abort> {
    let state = if row == Row::Kill {
        PeerStateName::Failed
    } else {
        PeerStateName::Left
    };
    let start = Instant::now();
    if row == Row::Kill {
        swarm.kill(victim);
    } else if let Err(why) = swarm.leave(victim) {
        swarm.restart(victim);
        return Err(Abort::Failed(why));
    }
    let others: Vec<usize> = (0..swarm.len()).filter(|&i| i != victim).collect();
    let outcome = bench::poll_until(
        DETECTION_TIMEOUT,
        POLL,
        &format!("{} {}", swarm.name(victim), state.as_str()),
        || {
            let mut last = start;
            for &o in &others {
                let at = swarm
                    .entered(o, victim, state, start)
                    .ok_or_else(|| format!("not yet at {}", swarm.name(o)))?;
                last = last.max(at);
            }
            Ok(last)
        },
    );
    swarm.restart(victim);
    Ok(outcome?.saturating_duration_since(start).as_secs_f64())
}

/// Counts `failed` transitions recorded by every node from the start of
/// `f` until everyone is alive everywhere again: each is false, as every
/// node stays up.
fn false_failures<T>(
    swarm: &Swarm,
    f: impl FnOnce() -> Result<T, Abort>,
) -> Result<(usize, T), Abort> {
    let start = Instant::now();
    let value = f()?;
    converge(swarm, start).map_err(Abort::Failed)?;
    let failed = (0..swarm.len())
        .map(|o| swarm.count_entered(o, PeerStateName::Failed, start))
        .sum();
    Ok((failed, value))
}

/// [`LOSS_PERCENT`]% inbound loss on every host for `hold`.
fn loss_failures(swarm: &Swarm, hold: Duration) -> Result<usize, Abort> {
    false_failures(swarm, || {
        swarm.lan().set_loss_all(LOSS_PERCENT);
        let held = sleep_checked(hold);
        swarm.lan().set_loss_all(0);
        held
    })
    .map(|(failed, ())| failed)
}

/// Every node sends 200-byte messages as fast as its daemon takes them for
/// `hold`, in one-second slices (each slice's arrivals are counted and
/// dropped two slices later, which keeps the records small). Returns the
/// false `failed` transitions and the share of accepted messages that
/// reached every node, %.
fn flood(swarm: &Swarm, run: usize, hold: Duration) -> Result<(usize, f64), Abort> {
    const FULL_SPEED: f64 = 1e7;
    let d = swarm.deliveries();
    let nodes = d.nodes_dyn();
    false_failures(swarm, || {
        let mut accepted: Vec<Vec<String>> = Vec::new();
        let (mut total, mut everywhere) = (0u64, 0u64);
        let mut count = |slice: usize, keys: &[String]| {
            let arrivals: Vec<HashMap<String, Instant>> = (0..nodes)
                .map(|i| d.take_dyn(i, &format!("f{run}s{slice}")))
                .collect();
            total += keys.len() as u64;
            everywhere += keys
                .iter()
                .filter(|k| arrivals.iter().all(|a| a.contains_key(*k)))
                .count() as u64;
        };
        let slices = hold.as_secs().max(1) as usize;
        for slice in 0..slices {
            if bench::interrupted() {
                return Err(Abort::Interrupted);
            }
            let tag = format!("f{run}s{slice}");
            let sent: Vec<Sent> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..nodes)
                    .map(|i| {
                        let tag = &tag;
                        scope.spawn(move || {
                            d.send_dyn(i, tag, FULL_SPEED / nodes as f64, Duration::from_secs(1))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            accepted.push(sent.into_iter().flat_map(|s| s.accepted).collect());
            if slice >= 2 {
                count(slice - 2, &accepted[slice - 2]);
                accepted[slice - 2] = Vec::new();
            }
        }
        let send_end = Instant::now();
        let pending: Vec<usize> = (slices.saturating_sub(2)..slices).collect();
        let expected: usize = pending.iter().map(|&s| accepted[s].len()).sum();
        delivery_bench::drain(
            || {
                (0..nodes)
                    .map(|i| {
                        pending
                            .iter()
                            .map(|&s| d.count_dyn(i, &format!("f{run}s{s}")))
                            .sum()
                    })
                    .collect()
            },
            expected,
            send_end,
        )?;
        for &s in &pending {
            count(s, &accepted[s]);
        }
        Ok(if total == 0 {
            0.0
        } else {
            100.0 * everywhere as f64 / total as f64
        })
    })
}

/// Sleeps `hold`, checking for interruption.
fn sleep_checked(hold: Duration) -> Result<(), Abort> {
    let end = Instant::now() + hold;
    while Instant::now() < end {
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        std::thread::sleep(
            Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())),
        );
    }
    Ok(())
}

/// Every node's VmRSS (MiB, at the end) and CPU (% of one core) over
/// `hold` of doing nothing.
fn idle(swarm: &Swarm, hold: Duration) -> Result<Vec<(f64, f64)>, Abort> {
    let pids: Vec<u32> = (0..swarm.len()).map(|i| swarm.pid(i)).collect();
    let cpu =
        |pid| sys::cpu_time(pid).ok_or_else(|| Abort::Failed(format!("no CPU time of pid {pid}")));
    let before = pids
        .iter()
        .map(|&p| cpu(p))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    sleep_checked(hold)?;
    let elapsed = start.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|(&pid, before)| {
            let used = cpu(pid)?.saturating_sub(before).as_secs_f64();
            let rss = sys::vm_rss_kib(pid)
                .ok_or_else(|| Abort::Failed(format!("no VmRSS of pid {pid}")))?;
            Ok((rss as f64 / 1024.0, 100.0 * used / elapsed))
        })
        .collect()
}

/// `calls` `send` and `calls` member-list calls of h1's CLI, alternating;
/// the wall time of each, ms.
fn cli_calls(swarm: &Swarm, run: usize, calls: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let (mut send, mut peers) = (Vec::new(), Vec::new());
    let timed = |(program, args): (OsString, Vec<OsString>)| -> Result<f64, String> {
        let start = Instant::now();
        delivery_bench::run_polled(&program, &args)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    for i in 0..calls {
        if bench::interrupted() {
            return Err("interrupted".to_owned());
        }
        send.push(timed(swarm.send_command(
            0,
            &format!("c{run}/{i}"),
            MESSAGE_BYTES,
        ))?);
        peers.push(timed(swarm.members_command(0))?);
    }
    Ok((send, peers))
}

fn progress(line: &str) {
    sys::say(&format!("compare-bench: {line}"));
}
