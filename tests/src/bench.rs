//! The membership benchmark of issue 3 (the `membership-bench` binary is
//! its command line): for each cluster size N it builds a namespaced LAN
//! ([`NsCluster`]: one mDNS-only `rossipd` per host, a
//! [`PeerRecorder`](crate::events::PeerRecorder) on each) and measures
//! discovery, failure detection after SIGKILL and after a silent vanish,
//! leave propagation, rejoin after a restart, and false `failed`
//! transitions under 10% loss and under a full-speed flood of messages
//! from every node (which saturates this machine's cores).
//!
//! Every figure is computed from the recorders' receive instants, so the
//! polling interval of the waits does not enter it. Each wait checks
//! [`interrupted`], so a Ctrl-C or SIGTERM (see the binary) ends the run
//! through the normal return path and `Drop` removes namespaces and daemons.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rossip_proto::rpc::PeerStateName;

use crate::nscluster::NsCluster;

/// Set when the benchmark should stop (Ctrl-C, SIGTERM); checked by every
/// wait.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Percentage of inbound packets dropped on every host in the loss phase.
pub const LOSS_PERCENT: u8 = 10;

const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
const DETECTION_TIMEOUT: Duration = Duration::from_secs(30);
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Polling for a condition; figures come from event timestamps, not from this.
const POLL: Duration = Duration::from_millis(20);

/// Asks every running and future wait of the benchmark to give up.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Cluster sizes, in order.
    pub sizes: Vec<usize>,
    /// Runs of each kill/vanish/leave measurement per size.
    pub runs: usize,
    /// How long the loss phase lasts.
    pub loss: Duration,
    /// How long the flood phase lasts (zero: no flood phase).
    pub flood: Duration,
    /// `--log-level` of the daemons.
    pub log_level: String,
    /// Print every recorder's transitions after each size.
    pub verbose: bool,
}

/// Why a size stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// The user asked to stop.
    Interrupted,
    /// A step did not complete; the message says which and what was seen.
    Failed(String),
}

/// The loss phase's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossReport {
    /// How long the loss was in force.
    pub held: Duration,
    /// `failed` transitions recorded by all subscribers together: each one
    /// is a false alarm, every node was alive.
    pub failed: usize,
    /// `suspect` transitions (allowed; they show the detector at work).
    pub suspect: usize,
    /// Packets the loss rules dropped, all hosts together.
    pub dropped: u64,
}

/// The flood phase's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodReport {
    /// How long the senders sent.
    pub held: Duration,
    /// `failed` transitions recorded by all subscribers together: each one
    /// is a false alarm, every node was alive.
    pub failed: usize,
    /// `suspect` transitions (allowed; they show the detector at work).
    pub suspect: usize,
    /// Messages the daemons accepted, all senders together.
    pub accepted: u64,
    /// UDP datagrams the kernels dropped for want of room in a socket's
    /// receive buffer (`RcvbufErrors` of `/proc/net/snmp`), all hosts
    /// together: membership datagrams lost this way look like a dead peer.
    pub rcvbuf_errors: u64,
    /// Renewals ("declared failed while running"), from `status`, all
    /// daemons together.
    pub renewals: u64,
    /// The most any daemon's `status` said it ran behind its inputs
    /// (`membership.lag_ms`, sampled every second during the flood; 0 from
    /// daemons that do not measure it).
    pub max_lag_ms: u64,
}

/// Everything measured for one cluster size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SizeReport {
    /// N.
    pub hosts: usize,
    /// Spawn of the first daemon → every daemon's socket answered.
    pub sockets_up: Option<Duration>,
    /// Spawn of the first daemon → the last observer had the last peer alive.
    pub discovery: Option<Duration>,
    /// SIGKILL → the last observer recorded `failed`, per run.
    pub kill: Vec<Duration>,
    /// Cut off at the switch (then SIGKILL) → the last `failed`, per run.
    pub vanish: Vec<Duration>,
    /// Cut → kill, per vanish run (how long the cut preceded the kill).
    pub vanish_kill_gap: Vec<Duration>,
    /// SIGTERM → the last observer recorded `left`, per run.
    pub leave: Vec<Duration>,
    /// Restart (same state dir) → the last observer recorded `alive`.
    pub rejoin: Vec<Duration>,
    /// The loss phase, if it ran.
    pub loss: Option<LossReport>,
    /// The flood phase, if it ran.
    pub flood: Option<FloodReport>,
    /// Why the size stopped early, if it did.
    pub error: Option<String>,
    /// Every recorder's transitions (with `verbose`).
    pub history: String,
}

/// Measures one cluster size. A failing step, or an interruption (see
/// [`interrupted`]), ends the size early with [`SizeReport::error`] set;
/// what was measured until then is kept.
pub fn measure(hosts: usize, options: &Options) -> SizeReport {
    let mut report = SizeReport {
        hosts,
        ..SizeReport::default()
    };
    let level = options.log_level.clone();
    let Ok(mut cluster) = NsCluster::start(
        &format!("bench{hosts}"),
        hosts,
        |_| {},
        |_, daemon| daemon.log_level(&level),
    ) else {
        report.error =
            Some("cannot build network namespaces here (root and iproute2 needed)".to_owned());
        return report;
    };
    let outcome = run_phases(&mut cluster, options, &mut report);
    if options.verbose {
        report.history = cluster.describe();
    }
    report.error = match outcome {
        Ok(()) => None,
        Err(Abort::Interrupted) => Some("interrupted".to_owned()),
        Err(Abort::Failed(why)) => Some(why),
    };
    report
}

fn run_phases(
    cluster: &mut NsCluster,
    options: &Options,
    report: &mut SizeReport,
) -> Result<(), Abort> {
    let hosts = cluster.daemons.len();
    report.sockets_up = cluster
        .recorders
        .iter()
        .map(|r| r.snapshot().map(|s| s.at))
        .collect::<Option<Vec<Instant>>>()
        .and_then(|ats| ats.into_iter().max())
        .map(|at| at.saturating_duration_since(cluster.spawned));
    wait_all_alive(cluster, DISCOVERY_TIMEOUT, "discovery")?;
    report.discovery = cluster
        .discovered_at()
        .into_iter()
        .collect::<Option<Vec<Instant>>>()
        .and_then(|ats| ats.into_iter().max())
        .map(|at| at.saturating_duration_since(cluster.spawned));
    progress(&format!("N={hosts}: discovery {}", show(report.discovery)));

    for removal in [Removal::Leave, Removal::Kill, Removal::Vanish] {
        for run in 0..options.runs {
            let victim = victim(run, hosts);
            let took = removal.measure(cluster, victim, report)?;
            rejoin(cluster, victim, report)?;
            progress(&format!(
                "N={hosts}: {} run {}: {} {} everywhere after {:.3} s",
                removal.name(),
                run + 1,
                cluster.name(victim),
                removal.expected().as_str(),
                took.as_secs_f64()
            ));
        }
    }

    if !options.loss.is_zero() {
        report.loss = Some(loss_phase(cluster, options.loss)?);
    }
    if !options.flood.is_zero() {
        report.flood = Some(flood_phase(cluster, options.flood)?);
    }
    Ok(())
}

/// A way of taking a node out of the cluster, each measured from the
/// moment it starts until every other node recorded the expected state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// SIGTERM: a graceful leave.
    Leave,
    /// SIGKILL: a crash, found by the failure detector.
    Kill,
    /// Cut off at the switch, then SIGKILL: nothing at all reaches the
    /// others, not even the kernel closing the socket.
    Vanish,
}

impl Removal {
    /// Its name in the progress lines.
    fn name(self) -> &'static str {
        match self {
            Removal::Leave => "leave",
            Removal::Kill => "kill",
            Removal::Vanish => "vanish",
        }
    }

    /// The state the others must record.
    fn expected(self) -> PeerStateName {
        match self {
            Removal::Leave => PeerStateName::Left,
            Removal::Kill | Removal::Vanish => PeerStateName::Failed,
        }
    }

    /// Takes `victim` out, waits until every other node recorded it in
    /// [`Removal::expected`], records the time in `report` and leaves the
    /// victim stopped and reachable again (ready for [`rejoin`]). Returns
    /// the time measured.
    fn measure(
        self,
        cluster: &mut NsCluster,
        victim: usize,
        report: &mut SizeReport,
    ) -> Result<Duration, Abort> {
        let start = Instant::now();
        let (what, series) = match self {
            Removal::Leave => {
                cluster.daemons[victim].sigterm();
                ("SIGTERM -> left", &mut report.leave)
            }
            Removal::Kill => {
                cluster.daemons[victim].kill9();
                ("SIGKILL -> failed", &mut report.kill)
            }
            Removal::Vanish => {
                cluster.lan.isolate(victim);
                cluster.daemons[victim].kill9();
                report.vanish_kill_gap.push(start.elapsed());
                ("vanish -> failed", &mut report.vanish)
            }
        };
        let took = wait_entered(cluster, victim, self.expected(), start, what)? - start;
        series.push(took);
        match self {
            Removal::Leave => {
                if cluster.daemons[victim].wait_exit(EXIT_TIMEOUT).is_none() {
                    return Err(failed(format!(
                        "{} did not exit within {EXIT_TIMEOUT:?} of SIGTERM",
                        cluster.name(victim)
                    )));
                }
            }
            Removal::Kill => {}
            Removal::Vanish => cluster.lan.reconnect(victim),
        }
        Ok(took)
    }
}

/// The loss phase: every host drops [`LOSS_PERCENT`]% of what it receives
/// for `duration`; then the loss is lifted and everyone must see everyone
/// alive. Counts the transitions recorded from the start of the loss until
/// then.
fn loss_phase(cluster: &NsCluster, duration: Duration) -> Result<LossReport, Abort> {
    let hosts = cluster.daemons.len();
    let started = Instant::now();
    cluster.lan.set_loss_all(LOSS_PERCENT);
    hold(cluster, duration)?;
    let held = started.elapsed();
    let dropped = (0..hosts).map(|i| cluster.lan.fault_drops(i)).sum();
    cluster.lan.heal();
    wait_all_alive(cluster, REJOIN_TIMEOUT, "after the loss")?;
    let count = |state| {
        cluster
            .recorders
            .iter()
            .map(|r| r.count_entered(state, started))
            .sum()
    };
    let report = LossReport {
        held,
        failed: count(PeerStateName::Failed),
        suspect: count(PeerStateName::Suspect),
        dropped,
    };
    progress(&format!(
        "N={hosts}: {LOSS_PERCENT}% loss for {:.0} s: {} failed, {} suspect transitions; {} packets dropped",
        held.as_secs_f64(),
        report.failed,
        report.suspect,
        report.dropped
    ));
    Ok(report)
}

/// Unanswered `send`s each flood sender keeps in flight: enough that the
/// daemon always has the next request queued (see [`crate::delivery_send`]).
const FLOOD_WINDOW: usize = 64;

/// A rate no daemon reaches: the flood senders send as fast as their
/// daemon accepts.
const FLOOD_RATE: f64 = 1e9;

/// The flood phase: every node's local socket gets `send`s of 200-byte
/// messages as fast as the daemon accepts them, for `duration`, which
/// saturates the machine's cores; then everyone must see everyone alive.
/// Counts the transitions recorded from the start of the flood until then,
/// the kernels' receive-buffer drops and the daemons' renewals.
fn flood_phase(cluster: &NsCluster, duration: Duration) -> Result<FloodReport, Abort> {
    let hosts = cluster.daemons.len();
    let rcvbuf_before = rcvbuf_errors(cluster);
    let renewals_before = renewals(cluster);
    let started = Instant::now();
    let flooding = AtomicBool::new(true);
    let mut max_lag_ms = 0;
    let sent: Vec<crate::delivery_send::Sent> = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_max_lag(cluster, &flooding));
        let senders: Vec<_> = cluster
            .daemons
            .iter()
            .enumerate()
            .map(|(i, d)| {
                scope.spawn(move || {
                    crate::delivery_send::send_paced(
                        d.socket(),
                        "flood",
                        i,
                        FLOOD_RATE,
                        duration,
                        FLOOD_WINDOW,
                    )
                })
            })
            .collect();
        let sent = senders
            .into_iter()
            .map(|s| s.join().unwrap_or_default())
            .collect();
        flooding.store(false, Ordering::Relaxed);
        max_lag_ms = sampler.join().unwrap_or_default();
        sent
    });
    let held = started.elapsed();
    if interrupted() {
        return Err(Abort::Interrupted);
    }
    if let Some(why) = cluster
        .recorders
        .iter()
        .find_map(|r| r.ended().map(|(_, why)| format!("{}: {why}", r.observer())))
    {
        return Err(failed(format!(
            "a daemon's event stream ended under the flood: {why}"
        )));
    }
    wait_all_alive(cluster, REJOIN_TIMEOUT, "after the flood")?;
    let count = |state| {
        cluster
            .recorders
            .iter()
            .map(|r| r.count_entered(state, started))
            .sum()
    };
    let report = FloodReport {
        held,
        failed: count(PeerStateName::Failed),
        suspect: count(PeerStateName::Suspect),
        accepted: sent.iter().map(|s| s.accepted.len() as u64).sum(),
        rcvbuf_errors: rcvbuf_errors(cluster).saturating_sub(rcvbuf_before),
        renewals: renewals(cluster).saturating_sub(renewals_before),
        max_lag_ms,
    };
    progress(&format!(
        "N={hosts}: flood for {:.0} s: {} failed, {} suspect transitions; {} renewals; \
         {} messages accepted ({:.0}/s); {} datagrams dropped by full receive buffers; \
         daemons up to {} ms behind their inputs",
        held.as_secs_f64(),
        report.failed,
        report.suspect,
        report.renewals,
        report.accepted,
        report.accepted as f64 / held.as_secs_f64(),
        report.rcvbuf_errors,
        report.max_lag_ms
    ));
    Ok(report)
}

/// Polls every daemon's `status` once a second while `flooding` and
/// returns the largest `membership.lag_ms` seen (a daemon that does not
/// answer in time is skipped for that round).
fn sample_max_lag(cluster: &NsCluster, flooding: &AtomicBool) -> u64 {
    let mut max = 0;
    let mut clients: Vec<Option<crate::rpc::RpcClient>> =
        cluster.daemons.iter().map(|_| None).collect();
    while flooding.load(Ordering::Relaxed) && !interrupted() {
        for (daemon, client) in cluster.daemons.iter().zip(clients.iter_mut()) {
            if client.is_none() {
                *client = crate::rpc::RpcClient::connect(daemon.socket()).ok();
            }
            let Some(rpc) = client.as_mut() else {
                continue;
            };
            match rpc.try_call("status", serde_json::Value::Null, Duration::from_secs(5)) {
                Ok(Ok(status)) => {
                    let lag = status["membership"]["lag_ms"].as_u64().unwrap_or(0);
                    max = max.max(lag);
                }
                // An error answer, or a connection that failed: a new one
                // next round.
                Ok(Err(_)) | Err(_) => *client = None,
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    max
}

/// `RcvbufErrors` of the UDP line of every host's `/proc/net/snmp`, summed
/// (a host that cannot be read counts 0).
fn rcvbuf_errors(cluster: &NsCluster) -> u64 {
    (0..cluster.daemons.len())
        .filter_map(|i| cluster.lan.exec(i, &["cat", "/proc/net/snmp"]).ok())
        .filter_map(|out| udp_rcvbuf_errors(&String::from_utf8_lossy(&out.stdout)))
        .sum()
}

/// `RcvbufErrors` from the text of `/proc/net/snmp`: a `Udp:` line of
/// names, then a `Udp:` line of values.
pub fn udp_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let column = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// Renewals reported by every daemon's `status`, summed.
fn renewals(cluster: &NsCluster) -> u64 {
    cluster
        .daemons
        .iter()
        .map(|d| d.status().membership.renewals)
        .sum()
}

/// Restarts `victim` and waits until every other node recorded it alive
/// again and everyone sees everyone alive; records the first part.
fn rejoin(cluster: &mut NsCluster, victim: usize, report: &mut SizeReport) -> Result<(), Abort> {
    let restarted = cluster.restart(victim);
    let at = wait_entered(
        cluster,
        victim,
        PeerStateName::Alive,
        restarted,
        "restart -> alive",
    )?;
    report.rejoin.push(at - restarted);
    progress(&format!(
        "N={}: restart: {} alive everywhere after {:.3} s",
        cluster.daemons.len(),
        cluster.name(victim),
        (at - restarted).as_secs_f64()
    ));
    wait_all_alive(cluster, REJOIN_TIMEOUT, "after a restart")?;
    Ok(())
}

/// Run `run`'s victim: every host but h1 in turn.
fn victim(run: usize, hosts: usize) -> usize {
    1 + run % (hosts - 1).max(1)
}

/// Waits until everyone has everyone alive.
pub fn wait_all_alive(cluster: &NsCluster, timeout: Duration, what: &str) -> Result<(), Abort> {
    let names = cluster.names();
    until(timeout, what, || {
        let missing: Vec<String> = cluster
            .recorders
            .iter()
            .filter_map(|r| {
                let others: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| *n != r.observer())
                    .collect();
                r.all_alive(&others).err()
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    })
}

/// Waits until every node but `member` recorded it entering `state` at or
/// after `after`; returns the last of those instants.
fn wait_entered(
    cluster: &NsCluster,
    member: usize,
    state: PeerStateName,
    after: Instant,
    what: &str,
) -> Result<Instant, Abort> {
    let name = cluster.name(member);
    let observers = cluster.recorders_of(&cluster.all_but(member));
    until(DETECTION_TIMEOUT, what, || {
        let mut last = after;
        let mut missing = Vec::new();
        for r in &observers {
            match r.first_entered(name, state, after) {
                Some(at) => last = last.max(at),
                None => missing.push(format!(
                    "{} has {name} as {}{}",
                    r.observer(),
                    r.state_of(name).map_or("unknown", PeerStateName::as_str),
                    r.ended()
                        .map(|(_, why)| format!(" (stream ended: {why})"))
                        .unwrap_or_default()
                )),
            }
        }
        if missing.is_empty() {
            Ok(last)
        } else {
            Err(missing.join("; "))
        }
    })
}

/// Keeps a fault in force for `duration`, checking for interruption and
/// for a daemon whose event stream ended (it died).
fn hold(cluster: &NsCluster, duration: Duration) -> Result<(), Abort> {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        if interrupted() {
            return Err(Abort::Interrupted);
        }
        if let Some(why) = cluster
            .recorders
            .iter()
            .find_map(|r| r.ended().map(|(_, why)| format!("{}: {why}", r.observer())))
        {
            return Err(failed(format!(
                "a daemon's event stream ended under loss: {why}"
            )));
        }
        std::thread::sleep(
            Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())),
        );
    }
    Ok(())
}

/// Polls `condition` until it holds, `timeout` passes, or the benchmark is
/// interrupted.
fn until<T>(
    timeout: Duration,
    what: &str,
    condition: impl FnMut() -> Result<T, String>,
) -> Result<T, Abort> {
    poll_until(timeout, POLL, what, condition)
}

/// Polls `condition` every `poll` until it holds (its value), `timeout`
/// passes (`Failed` with `what` and what it last reported), or the
/// benchmark is interrupted.
pub fn poll_until<T>(
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut condition: impl FnMut() -> Result<T, String>,
) -> Result<T, Abort> {
    let deadline = Instant::now() + timeout;
    loop {
        if interrupted() {
            return Err(Abort::Interrupted);
        }
        match condition() {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => {
                return Err(failed(format!("{what}: not within {timeout:?}: {seen}")));
            }
            Err(_) => std::thread::sleep(poll),
        }
    }
}

fn failed(why: String) -> Abort {
    Abort::Failed(why)
}

/// One progress line on stderr (the table goes to stdout).
fn progress(line: &str) {
    crate::sys::say(line);
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.3} s", d.as_secs_f64()))
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// `median / max` in seconds, or `-` when nothing was measured.
fn median_max(values: &[Duration]) -> String {
    match (median(values), values.iter().max()) {
        (Some(median), Some(max)) => {
            format!("{:.3} / {:.3}", median.as_secs_f64(), max.as_secs_f64())
        }
        _ => "-".to_owned(),
    }
}

/// The result table and what each column measures.
pub fn table(reports: &[SizeReport], options: &Options) -> String {
    let mut out = String::new();
    let loss_title = format!("{LOSS_PERCENT}% loss {} s", options.loss.as_secs());
    let flood_title = format!("flood {} s", options.flood.as_secs());
    out.push_str(&format!(
        "{:>3}  {:>9}  {:>9}  {:>15}  {:>15}  {:>15}  {:>15}  {:>22}  {:>22}\n",
        "N",
        "sockets",
        "discovery",
        "kill->failed",
        "vanish->failed",
        "leave->left",
        "restart->alive",
        loss_title,
        flood_title
    ));
    out.push_str(&format!(
        "{:>3}  {:>9}  {:>9}  {:>15}  {:>15}  {:>15}  {:>15}  {:>22}  {:>22}\n",
        "",
        "s",
        "s",
        "med / max s",
        "med / max s",
        "med / max s",
        "med / max s",
        "false failed / suspect",
        "false failed / suspect"
    ));
    for r in reports {
        let loss = r.loss.map_or_else(
            || "-".to_owned(),
            |l| format!("{} / {}", l.failed, l.suspect),
        );
        let flood = r.flood.map_or_else(
            || "-".to_owned(),
            |f| format!("{} / {}", f.failed, f.suspect),
        );
        out.push_str(&format!(
            "{:>3}  {:>9}  {:>9}  {:>15}  {:>15}  {:>15}  {:>15}  {:>22}  {:>22}\n",
            r.hosts,
            r.sockets_up
                .map_or("-".to_owned(), |d| format!("{:.3}", d.as_secs_f64())),
            r.discovery
                .map_or("-".to_owned(), |d| format!("{:.3}", d.as_secs_f64())),
            median_max(&r.kill),
            median_max(&r.vanish),
            median_max(&r.leave),
            median_max(&r.rejoin),
            loss,
            flood
        ));
    }
    for r in reports {
        if let Some(why) = &r.error {
            out.push_str(&format!("N={} stopped early: {why}\n", r.hosts));
        }
    }
    out.push_str(&legend(reports, options));
    out
}

fn legend(reports: &[SizeReport], options: &Options) -> String {
    let gaps: Vec<Duration> = reports
        .iter()
        .flat_map(|r| r.vanish_kill_gap.iter().copied())
        .collect();
    let gap = gaps.iter().max().map_or_else(
        || "-".to_owned(),
        |g| format!("{:.0} ms", g.as_secs_f64() * 1000.0),
    );
    let drops: Vec<String> = reports
        .iter()
        .filter_map(|r| r.loss.map(|l| format!("N={}: {}", r.hosts, l.dropped)))
        .collect();
    let floods: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            r.flood.map(|f| {
                format!(
                    "N={}: {:.0} messages/s accepted, {} datagrams dropped by full receive \
                     buffers, {} renewals, daemons up to {} ms behind their inputs",
                    r.hosts,
                    f.accepted as f64 / f.held.as_secs_f64(),
                    f.rcvbuf_errors,
                    f.renewals,
                    f.max_lag_ms
                )
            })
        })
        .collect();
    format!(
        "\nWhat is measured (times are when each node's subscriber received the `peer` event, \
         `subscribe {{events:[\"peer\"]}}` on its local socket):\n\
         - sockets: from spawning the first daemon (`ip netns exec … rossipd`, all N spawned at \
         once) until every daemon's socket had answered subscribe and `peers`.\n\
         - discovery: from that same spawn until the last node had the last other node `alive` \
         (mDNS only, no --join). A node already alive in the snapshot taken right after \
         subscribing counts at the snapshot's time, an upper bound.\n\
         - kill->failed: from just before `kill -9` of one node until the last of the other N-1 \
         recorded it `failed`.\n\
         - vanish->failed: from just before the node's host was cut off at the switch (the \
         bridge drops every frame from or to it; `kill -9` followed within {gap}) until the last \
         other node recorded it `failed`.\n\
         - leave->left: from SIGTERM until the last other node recorded it `left`.\n\
         - restart->alive: from restarting the stopped node (same state dir, same node id) until \
         the last other node recorded it `alive` (after each leave, kill and vanish run).\n\
         - {LOSS_PERCENT}% loss: every host drops {LOSS_PERCENT}% of inbound packets for {} s; \
         `failed` and `suspect` transitions recorded by all N subscribers together, from the \
         start of the loss until all saw all alive after it was lifted. Every `failed` is a false \
         alarm. Packets dropped: {}.\n\
         - flood: every node's local socket gets `send`s of {}-byte messages as fast as its \
         daemon accepts them ({FLOOD_WINDOW} requests in flight per sender) for {} s, which \
         saturates the cores; `failed` and `suspect` transitions recorded by all N subscribers \
         together, from the start of the flood until all saw all alive after it. Every `failed` \
         is a false alarm. {}.\n\
         Victims rotate over h2..hN; {} runs per figure; median / max over the runs.\n",
        options.loss.as_secs(),
        if drops.is_empty() {
            "-".to_owned()
        } else {
            drops.join(", ")
        },
        crate::delivery_send::MESSAGE_BYTES,
        options.flood.as_secs(),
        if floods.is_empty() {
            "-".to_owned()
        } else {
            floods.join("; ")
        },
        options.runs
    )
}

/// The common start of a benchmark binary `program`: `parsed` is its
/// arguments (`Ok(None)`: `--help`, print `usage`), then `preflight` checks
/// the machine, then Ctrl-C and SIGTERM are watched. `Err` is the exit code
/// to return at once (0 after `--help`, 2 for a usage or preflight error).
pub fn start<O>(
    program: &'static str,
    usage: &str,
    parsed: Result<Option<O>, String>,
    preflight: impl FnOnce() -> Result<(), String>,
) -> Result<O, std::process::ExitCode> {
    let options = match parsed {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{usage}");
            return Err(std::process::ExitCode::SUCCESS);
        }
        Err(why) => {
            eprintln!("{program}: error: {why}\n\n{usage}");
            return Err(std::process::ExitCode::from(2));
        }
    };
    if let Err(why) = preflight() {
        eprintln!("{program}: error: {why}");
        return Err(std::process::ExitCode::from(2));
    }
    watch_signals(program);
    Ok(options)
}

/// Calls `handle(flag, value)` for each argument: `--flag value` and
/// `--flag=value` both work, and `value()` takes the flag's value when the
/// flag has one. `handle`'s error (e.g. an unknown flag) ends the parsing.
pub fn each_flag(
    mut args: impl Iterator<Item = String>,
    mut handle: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<(), String>,
) -> Result<(), String> {
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        handle(&flag, &mut value)?;
    }
    Ok(())
}

/// `--sizes`' value: cluster sizes, each in 2..=[`MAX_HOSTS`](crate::netns::MAX_HOSTS).
pub fn parse_sizes(value: &str) -> Result<Vec<usize>, String> {
    let max = crate::netns::MAX_HOSTS;
    value
        .split(',')
        .map(|s| match s.trim().parse::<usize>() {
            Ok(n) if (2..=max).contains(&n) => Ok(n),
            _ => Err(format!("--sizes: {s:?} is not a size in 2..={max}")),
        })
        .collect()
}

/// Root, iproute2 and nftables: what a benchmark on namespaced hosts needs.
pub fn netns_preflight() -> Result<(), String> {
    if crate::sys::effective_uid() != Some(0) {
        return Err("needs root: it builds network namespaces (run it with sudo)".to_owned());
    }
    for tool in ["ip", "nft"] {
        if crate::sys::find_program(tool).is_none() {
            return Err(format!(
                "`{tool}` not found (apt-get install iproute2 nftables)"
            ));
        }
    }
    Ok(())
}

/// Watches for Ctrl-C and SIGTERM (in its own thread); on either, asks the
/// benchmark `program` to stop; it then returns
/// through `Drop`, which kills the daemons and removes the namespaces.
pub fn watch_signals(program: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("{program}: cannot watch for Ctrl-C: {e}");
                    return;
                }
            };
            let got_signal = runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate())?;
                tokio::select! {
                    result = tokio::signal::ctrl_c() => result,
                    _ = term.recv() => Ok(()),
                }
            });
            match got_signal {
                Ok(()) => {
                    crate::sys::say(&format!(
                        "{program}: stopping: killing daemons, removing namespaces"
                    ));
                    interrupt();
                }
                Err(e) => eprintln!("{program}: cannot watch for Ctrl-C: {e}"),
            }
        });
    if let Err(e) = spawned {
        eprintln!("{program}: cannot watch for Ctrl-C: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), Some(ms(2)));
        assert_eq!(
            median(&[ms(4), ms(1), ms(2), ms(3)]),
            Some(Duration::from_micros(2500))
        );
    }

    #[test]
    fn rcvbuf_errors_come_from_the_udp_values_line() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 10 0 7 12 7 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    UdpLite: 0 0 0 0 0 0\n";
        assert_eq!(udp_rcvbuf_errors(snmp), Some(7));
        assert_eq!(udp_rcvbuf_errors("Ip: 1 2\n"), None);
    }

    #[test]
    fn victims_rotate_over_everyone_but_h1() {
        assert_eq!(
            (0..5).map(|r| victim(r, 3)).collect::<Vec<_>>(),
            [1, 2, 1, 2, 1]
        );
        assert_eq!(victim(7, 2), 1);
    }
}
