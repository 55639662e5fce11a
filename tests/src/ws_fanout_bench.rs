//! The WebSocket fan-out benchmark (the `ws-fanout-bench` binary is its
//! command line): one `rossipd` on loopback with its HTTP gateway
//! (`--http 127.0.0.1:0`), N WebSocket followers ([`crate::ws_follower`],
//! `GET /ws?events=message`, as the web chat), and one sender writing
//! paced `send` requests over the JSON-RPC socket
//! ([`crate::delivery_send`], pipelined). Figures:
//!
//! - latency from the moment each `send` request was written to the moment
//!   each follower read the message's frame, over every (follower, message)
//!   pair;
//! - deliveries expected (accepted × followers) against received: anything
//!   missing or duplicated is a failure;
//! - the daemon's VmRSS before the followers came, with them idle, at the
//!   peak of the run (sampled, [`Sampler`]) and after they closed; its CPU
//!   time over the run.
//!
//! A second phase runs the same load on a fresh daemon with one more
//! follower that stalls (reads nothing) for the whole run, then reads
//! again: the daemon's memory must stay bounded and the others' latency
//! unaffected; what the stalled one got (messages, `lagged`) is reported.
//!
//! Every wait checks [`bench::interrupted`]; daemons stop by PID in `Drop`
//! (their temp dirs go with them), whatever way a phase ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rossip_proto::rpc::StatusResult;
use serde_json::json;
use tokio::sync::watch;

use crate::bench::{self, Abort};
use crate::daemon::Daemon;
use crate::delivery_send::{self, MESSAGE_BYTES, Sent};
use crate::delivery_table::quantile;
use crate::memory_bench::Sampler;
use crate::rpc::{CALL_TIMEOUT, RpcClient};
use crate::sys;
use crate::ws_follower::{self, Follower, Pace, Record, Stage};

/// How long every follower may take to connect and get its first frame.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the gateway may take to show its address in `status`.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(20);

/// After the last send: the followers are done when nothing new arrived
/// for this long (or everything did).
const DRAIN_STALL: Duration = Duration::from_secs(5);

/// Polling for progress; figures come from the followers' own instants.
const POLL: Duration = Duration::from_millis(20);

/// How long the daemon sits before the first figure, and with idle
/// followers before the second.
const QUIET: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Followers (WebSocket clients) reading every frame.
    pub clients: usize,
    /// Messages per second the sender offers.
    pub rate: f64,
    /// How long the sender sends.
    pub secs: f64,
    /// `send` requests written ahead of their answers (1: sequential).
    pub window: usize,
    /// Whether to run the slow-reader phase after the plain one.
    pub slow_reader: bool,
    /// `SO_RCVBUF` of the slow reader's socket.
    pub slow_recv_buffer: u32,
    /// How long the slow reader may take to catch up once it reads again.
    pub catch_up: Duration,
    /// How long the followers may take, at most, to get every message after
    /// the last send.
    pub drain: Duration,
    /// How long the daemon settles after the followers closed, before the
    /// last figure.
    pub settle: Duration,
    /// Worker threads of the followers' runtime.
    pub client_threads: usize,
    /// The daemon's `--history` (messages kept), if not its default: a
    /// window smaller than the run makes the slow reader fall out of it.
    pub history: Option<u64>,
    /// `--log-level` of the daemon.
    pub log_level: String,
}

/// A phase: the plain fan-out, or the same with a slow reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// N followers reading promptly.
    FanOut,
    /// N followers and one that stalls for the whole run.
    SlowReader,
}

impl Phase {
    /// Its column title.
    pub fn title(self) -> &'static str {
        match self {
            Phase::FanOut => "fan-out",
            Phase::SlowReader => "+ 1 slow reader",
        }
    }

    /// The run's tag, the start of every message key.
    fn tag(self) -> &'static str {
        match self {
            Phase::FanOut => "wsf",
            Phase::SlowReader => "wss",
        }
    }
}

/// The daemon's VmRSS at the points of a phase, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Gateway up, no follower yet.
    pub before: Option<u64>,
    /// Every follower subscribed, nothing sent yet.
    pub idle: Option<u64>,
    /// The highest sample from the first send until the followers had
    /// everything (in the slow-reader phase: while it still stalls).
    pub peak: Option<u64>,
    /// The followers closed, and the daemon settled.
    pub after: Option<u64>,
}

/// What the slow reader got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlowReport {
    /// Messages of the run it received once it read again.
    pub received: u64,
    /// `lagged` frames: events dropped, summed, and how many frames.
    pub dropped: u64,
    /// How many `lagged` frames it got (and how many had a cursor).
    pub lagged_frames: usize,
    /// …of which came with a cursor.
    pub lagged_with_cursor: usize,
    /// Messages neither received nor covered by a `lagged` count.
    pub unaccounted: u64,
    /// Messages it got twice.
    pub duplicates: u64,
    /// From reading again until it had everything (received + dropped),
    /// if it got there within [`Options::catch_up`].
    pub caught_up: Option<Duration>,
    /// Bytes in the kernel between the gateway and it at the end of the
    /// stall: the gateway's send queue and its own receive queue.
    pub kernel_queued: Option<(u64, u64)>,
    /// Why it ended early, if it did.
    pub error: Option<String>,
}

/// What one phase measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseReport {
    /// Which phase (`None`: not run).
    pub phase: Option<Phase>,
    /// `send` requests written.
    pub attempted: u64,
    /// Sends the daemon accepted.
    pub accepted: u64,
    /// Refused sends by code.
    pub send_errors: BTreeMap<String, u64>,
    /// From the first send due to the last written.
    pub send_elapsed: Duration,
    /// accepted × followers.
    pub expected: u64,
    /// Distinct (follower, message) pairs received.
    pub received: u64,
    /// Copies received again.
    pub duplicates: u64,
    /// Events the gateway reported dropped to the prompt followers.
    pub dropped: u64,
    /// Frames that were not the run's messages.
    pub foreign: u64,
    /// Latency percentiles over every pair: p50, p90, p99, max.
    pub latency: [Option<Duration>; 4],
    /// Latency until the first follower read each message: p50, p99 (the
    /// send path alone, without waiting for the last of the fan-out).
    pub first_latency: [Option<Duration>; 2],
    /// The daemon's memory.
    pub memory: Memory,
    /// The daemon's CPU time from the first send until the followers had
    /// everything, and that wall time.
    pub daemon_cpu: Option<(Duration, Duration)>,
    /// This benchmark's own CPU time over the same span (followers and
    /// sender share the machine with the daemon).
    pub bench_cpu: Option<Duration>,
    /// The slow reader (slow-reader phase only).
    pub slow: Option<SlowReport>,
    /// Followers that ended early, with why (first few).
    pub follower_errors: Vec<String>,
    /// Why the phase stopped early, if it did.
    pub error: Option<String>,
}

impl PhaseReport {
    /// Achieved send rate, messages/s.
    pub fn achieved(&self) -> f64 {
        if self.send_elapsed.is_zero() {
            0.0
        } else {
            self.attempted as f64 / self.send_elapsed.as_secs_f64()
        }
    }

    /// Deliveries expected but not received.
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Whether every accepted message reached every prompt follower exactly
    /// once, every send was accepted and nothing went wrong.
    pub fn complete(&self) -> bool {
        self.error.is_none()
            && self.follower_errors.is_empty()
            && self.accepted == self.attempted
            && self.accepted > 0
            && self.missing() == 0
            && self.duplicates == 0
            && self
                .slow
                .as_ref()
                .is_none_or(|s| s.error.is_none() && s.unaccounted == 0 && s.duplicates == 0)
    }
}

/// Runs the phases of `options`, each on a daemon of its own.
pub fn measure(options: &Options) -> Vec<PhaseReport> {
    let mut phases = vec![Phase::FanOut];
    if options.slow_reader {
        phases.push(Phase::SlowReader);
    }
    let mut reports = Vec::new();
    for phase in phases {
        if bench::interrupted() {
            break;
        }
        let mut report = PhaseReport {
            phase: Some(phase),
            ..PhaseReport::default()
        };
        let mut builder = Daemon::builder("ws-fanout")
            .loopback()
            .log_level(&options.log_level)
            .args(["--http", "127.0.0.1:0"]);
        if let Some(history) = options.history {
            builder = builder.args(["--history", &history.to_string()]);
        }
        let daemon = builder.spawn();
        if let Err(abort) = run_phase(&daemon, phase, options, &mut report) {
            report.error = Some(match abort {
                Abort::Interrupted => "interrupted".to_owned(),
                Abort::Failed(why) => format!("{why}\n{}", daemon.log_excerpt()),
            });
        }
        progress(&format!(
            "{}: {} of {} deliveries, p99 {}",
            phase.title(),
            report.received,
            report.expected,
            ms(report.latency[2])
        ));
        reports.push(report);
        // The daemon stops (by PID) and its temp dir goes here.
        drop(daemon);
    }
    reports
}

fn run_phase(
    daemon: &Daemon,
    phase: Phase,
    options: &Options,
    report: &mut PhaseReport,
) -> Result<(), Abort> {
    let pid = daemon.pid();
    let http = gateway_addr(daemon)?;
    pause(QUIET)?;
    report.memory.before = sys::vm_rss_kib(pid);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads.max(1))
        .thread_name("ws-follower")
        .enable_all()
        .build()
        .map_err(|e| failed(format!("the followers' runtime: {e}")))?;
    let (stage, watching) = watch::channel(Stage::Follow);
    let url = format!("ws://{http}/ws?events=message");
    let tag = phase.tag();
    let mut followers: Vec<(Follower, tokio::task::JoinHandle<Record>)> = (0..options.clients)
        .map(|_| {
            ws_follower::spawn(
                runtime.handle(),
                url.clone(),
                http,
                tag,
                Pace::Prompt,
                watching.clone(),
            )
        })
        .collect();
    let slow = (phase == Phase::SlowReader).then(|| {
        ws_follower::spawn(
            runtime.handle(),
            url.clone(),
            http,
            tag,
            Pace::Stalled {
                recv_buffer: options.slow_recv_buffer,
            },
            watching.clone(),
        )
    });
    let clients = Clients {
        prompt: followers
            .iter()
            .map(|(follower, _)| follower.clone())
            .collect(),
        slow: slow.as_ref().map(|(follower, _)| follower.clone()),
        stage: &stage,
    };
    let outcome = follow_run(daemon, http, phase, options, &clients, report);
    // Whatever happened: every follower stops and hands back its record.
    let _ = stage.send(Stage::Stop);
    let slow_record = slow.map(|(_, task)| runtime.block_on(task));
    // A follower that panicked counts as one that received nothing.
    let records: Vec<Record> = followers
        .drain(..)
        .map(|(_, task)| {
            runtime.block_on(task).unwrap_or_else(|e| Record {
                error: Some(format!("the client's task failed: {e}")),
                ..Record::default()
            })
        })
        .collect();
    // Closes every socket.
    drop(runtime);
    let sent = outcome?;
    tally(&sent, &records, report);
    if let (Some(slow_report), Some(Ok(record))) = (report.slow.as_mut(), slow_record) {
        account_slow(slow_report, &record, &sent);
    }
    pause(options.settle)?;
    report.memory.after = sys::vm_rss_kib(pid);
    Ok(())
}

/// The clients of a phase as the run watches and steers them.
struct Clients<'a> {
    /// Those that read every frame.
    prompt: Vec<Follower>,
    /// The one that stalls, in the slow-reader phase.
    slow: Option<Follower>,
    /// Moves them all from one [`Stage`] to the next.
    stage: &'a watch::Sender<Stage>,
}

/// Everything between the followers' start and their stop: waits for them
/// to subscribe, sends, waits for the deliveries, lets the slow reader
/// catch up. Returns what the sender did.
fn follow_run(
    daemon: &Daemon,
    http: SocketAddr,
    phase: Phase,
    options: &Options,
    clients: &Clients<'_>,
    report: &mut PhaseReport,
) -> Result<Sent, Abort> {
    let pid = daemon.pid();
    let everyone: Vec<&Follower> = clients.prompt.iter().chain(&clients.slow).collect();
    wait_subscribed(&everyone)?;
    pause(QUIET)?;
    report.memory.idle = sys::vm_rss_kib(pid);

    let sampler = Sampler::start(pid);
    let cpu_start = (sys::cpu_time(pid), sys::cpu_time(std::process::id()));
    let started = Instant::now();
    let sent = delivery_send::send_paced(
        daemon.socket(),
        phase.tag(),
        0,
        options.rate,
        Duration::from_secs_f64(options.secs),
        options.window,
    );
    if bench::interrupted() {
        return Err(Abort::Interrupted);
    }
    let prompt: Vec<&Follower> = clients.prompt.iter().collect();
    wait_drained(&prompt, sent.accepted.len() as u64, options.drain)?;
    let wall = started.elapsed();
    report.daemon_cpu = cpu_start
        .0
        .zip(sys::cpu_time(pid))
        .map(|(from, to)| (to.saturating_sub(from), wall));
    report.bench_cpu = cpu_start
        .1
        .zip(sys::cpu_time(std::process::id()))
        .map(|(from, to)| to.saturating_sub(from));
    report.memory.peak = Some(sampler.stop());

    if let Some(follower) = &clients.slow {
        let mut slow_report = SlowReport {
            kernel_queued: follower
                .progress
                .local_addr
                .get()
                .and_then(|reader| kernel_queues(http, *reader)),
            ..SlowReport::default()
        };
        let resumed = Instant::now();
        let _ = clients.stage.send(Stage::CatchUp);
        let everything = sent.accepted.len() as u64;
        let deadline = resumed + options.catch_up;
        slow_report.caught_up = loop {
            let progress = &follower.progress;
            let got = progress.received.load(Ordering::Acquire)
                + progress.dropped.load(Ordering::Acquire);
            if got >= everything {
                break Some(resumed.elapsed());
            }
            if progress.ended.load(Ordering::Acquire) || Instant::now() >= deadline {
                break None;
            }
            if bench::interrupted() {
                return Err(Abort::Interrupted);
            }
            std::thread::sleep(POLL);
        };
        report.slow = Some(slow_report);
    }
    Ok(sent)
}

/// The gateway's address from `status` (`http.addr`, the port it was
/// given for `--http 127.0.0.1:0`), polled until the gateway is up.
fn gateway_addr(daemon: &Daemon) -> Result<SocketAddr, Abort> {
    let deadline = Instant::now() + GATEWAY_TIMEOUT;
    loop {
        let http = RpcClient::connect(daemon.socket())
            .ok()
            .and_then(|mut c| c.try_call("status", json!({}), CALL_TIMEOUT).ok())
            .and_then(Result::ok)
            .and_then(|status| serde_json::from_value::<StatusResult>(status).ok())
            .and_then(|status| status.http);
        if let Some(http) = http {
            return http
                .addr
                .parse()
                .map_err(|e| failed(format!("the gateway's address {:?}: {e}", http.addr)));
        }
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "no `http` in status within {GATEWAY_TIMEOUT:?}: is this rossipd built with the \
                 HTTP gateway (--http)?"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until every follower got its subscribed frame.
fn wait_subscribed(followers: &[&Follower]) -> Result<(), Abort> {
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    loop {
        let subscribed = followers
            .iter()
            .filter(|f| f.progress.subscribed.load(Ordering::Acquire))
            .count();
        if subscribed == followers.len() {
            return Ok(());
        }
        let ended = followers
            .iter()
            .filter(|f| f.progress.ended.load(Ordering::Acquire))
            .count();
        if ended > 0 || Instant::now() >= deadline {
            return Err(failed(format!(
                "{subscribed} of {} WebSocket clients subscribed ({ended} failed; see the \
                 follower errors) within {SUBSCRIBE_TIMEOUT:?}",
                followers.len()
            )));
        }
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until every follower has `expected` messages (or was told some
/// were dropped), nothing new arrived for [`DRAIN_STALL`], or `timeout`
/// passed.
fn wait_drained(followers: &[&Follower], expected: u64, timeout: Duration) -> Result<(), Abort> {
    use Ordering::Acquire;
    let deadline = Instant::now() + timeout;
    let (mut last_total, mut last_change) = (u64::MAX, Instant::now());
    loop {
        let done = followers.iter().all(|f| {
            f.progress.received.load(Acquire) + f.progress.dropped.load(Acquire) >= expected
                || f.progress.ended.load(Acquire)
        });
        let total: u64 = followers
            .iter()
            .map(|f| f.progress.received.load(Acquire))
            .sum();
        if total != last_total {
            (last_total, last_change) = (total, Instant::now());
        }
        if done || last_change.elapsed() >= DRAIN_STALL || Instant::now() >= deadline {
            return Ok(());
        }
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        std::thread::sleep(POLL);
    }
}

/// The kernel's queues on the slow reader's connection (local address
/// `reader`): the gateway's end's send queue and the reader's receive queue.
fn kernel_queues(http: SocketAddr, reader: SocketAddr) -> Option<(u64, u64)> {
    let (gateway_send, _) = ws_follower::tcp_queues(http, reader)?;
    let (_, reader_receive) = ws_follower::tcp_queues(reader, http)?;
    Some((gateway_send, reader_receive))
}

/// Counts the deliveries of the prompt followers and their latencies.
fn tally(sent: &Sent, records: &[Record], report: &mut PhaseReport) {
    report.attempted = sent.attempted;
    report.accepted = sent.accepted.len() as u64;
    report.send_errors = sent.errors.clone();
    report.send_elapsed = sent.elapsed;
    let accepted: Vec<usize> = accepted_indexes(sent);
    report.expected = report.accepted * records.len() as u64;
    let mut latencies: Vec<Duration> = Vec::with_capacity(report.expected as usize);
    let mut firsts: Vec<Option<Instant>> = vec![None; sent.issued.len()];
    for record in records {
        for &k in &accepted {
            if let Some(Some(at)) = record.arrivals.get(k) {
                report.received += 1;
                if let Some(issued) = sent.issued.get(k) {
                    latencies.push(at.saturating_duration_since(*issued));
                    let first = &mut firsts[k];
                    *first = Some(first.map_or(*at, |first| first.min(*at)));
                }
            }
        }
        report.duplicates += record.duplicates;
        report.foreign += record.foreign;
        report.dropped += record
            .lagged
            .iter()
            .map(|(dropped, _)| dropped)
            .sum::<u64>();
        if let Some(why) = &record.error {
            report.follower_errors.push(why.clone());
        }
    }
    let firsts: Vec<Duration> = firsts
        .iter()
        .zip(&sent.issued)
        .filter_map(|(first, issued)| Some(first.as_ref()?.saturating_duration_since(*issued)))
        .collect();
    report.first_latency = [quantile(&firsts, 0.50), quantile(&firsts, 0.99)];
    // Sorted once: the quantiles' own sorts then find it in order.
    latencies.sort_unstable();
    report.latency = [
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.90),
        quantile(&latencies, 0.99),
        latencies.last().copied(),
    ];
}

/// What the slow reader received, against what was sent.
fn account_slow(slow: &mut SlowReport, record: &Record, sent: &Sent) {
    let accepted = accepted_indexes(sent);
    slow.received = accepted
        .iter()
        .filter(|&&k| matches!(record.arrivals.get(k), Some(Some(_))))
        .count() as u64;
    slow.dropped = record.lagged.iter().map(|(dropped, _)| dropped).sum();
    slow.lagged_frames = record.lagged.len();
    slow.lagged_with_cursor = record.lagged.iter().filter(|(_, cursor)| *cursor).count();
    slow.unaccounted = (accepted.len() as u64).saturating_sub(slow.received + slow.dropped);
    slow.duplicates = record.duplicates;
    slow.error = record.error.clone();
}

/// The indexes `K` of the accepted messages (keys `TAG/0.K`).
fn accepted_indexes(sent: &Sent) -> Vec<usize> {
    sent.accepted
        .iter()
        .filter_map(|key| key.rsplit_once('.')?.1.parse().ok())
        .collect()
}

/// Lets the daemon be for `duration`; ends early on Ctrl-C.
fn pause(duration: Duration) -> Result<(), Abort> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now()));
    }
    Ok(())
}

fn failed(why: String) -> Abort {
    Abort::Failed(why)
}

fn progress(line: &str) {
    sys::say(&format!("ws-fanout-bench: {line}"));
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1e3),
    )
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "-".to_owned(),
        |kib| format!("{:.1}", kib as f64 / 1024.0),
    )
}

/// The result table (one column per phase), what went wrong, and what each
/// row measures.
pub fn table(reports: &[PhaseReport], options: &Options) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, cell: &dyn Fn(&PhaseReport) -> String| {
        rows.push((label.to_owned(), reports.iter().map(cell).collect()));
    };
    row("", &|r| r.phase.map_or("-", Phase::title).to_owned());
    row("sent / accepted", &|r| {
        format!("{} / {}", r.attempted, r.accepted)
    });
    row("send rate achieved, msg/s", &|r| {
        format!("{:.0}", r.achieved())
    });
    row("deliveries expected", &|r| r.expected.to_string());
    row("received / missing / dup", &|r| {
        format!("{} / {} / {}", r.received, r.missing(), r.duplicates)
    });
    row("latency p50 / p90, ms", &|r| {
        format!("{} / {}", ms(r.latency[0]), ms(r.latency[1]))
    });
    row("latency p99 / max, ms", &|r| {
        format!("{} / {}", ms(r.latency[2]), ms(r.latency[3]))
    });
    row("daemon CPU, % of a core", &|r| {
        r.daemon_cpu.map_or_else(
            || "-".to_owned(),
            |(cpu, wall)| format!("{:.0}", 100.0 * cpu.as_secs_f64() / wall.as_secs_f64()),
        )
    });
    row("first client p50 / p99, ms", &|r| {
        format!("{} / {}", ms(r.first_latency[0]), ms(r.first_latency[1]))
    });
    row("daemon CPU per message, µs", &|r| match r.daemon_cpu {
        Some((cpu, _)) if r.accepted > 0 => {
            format!("{:.0}", cpu.as_secs_f64() * 1e6 / r.accepted as f64)
        }
        _ => "-".to_owned(),
    });
    row("daemon CPU per delivery, µs", &|r| match r.daemon_cpu {
        Some((cpu, _)) if r.received > 0 => {
            format!("{:.1}", cpu.as_secs_f64() * 1e6 / r.received as f64)
        }
        _ => "-".to_owned(),
    });
    row(
        "bench CPU, % of a core",
        &|r| match (r.bench_cpu, r.daemon_cpu) {
            (Some(cpu), Some((_, wall))) => {
                format!("{:.0}", 100.0 * cpu.as_secs_f64() / wall.as_secs_f64())
            }
            _ => "-".to_owned(),
        },
    );
    row("VmRSS before clients, MiB", &|r| mib(r.memory.before));
    row("  clients idle", &|r| mib(r.memory.idle));
    row("  peak during the run", &|r| mib(r.memory.peak));
    row(
        &format!("  after, {} s later", options.settle.as_secs()),
        &|r| mib(r.memory.after),
    );
    row("slow reader: received", &|r| {
        r.slow
            .as_ref()
            .map_or("-".to_owned(), |s| s.received.to_string())
    });
    row("  lagged frames (dropped)", &|r| {
        r.slow.as_ref().map_or("-".to_owned(), |s| {
            format!(
                "{} ({}){}",
                s.lagged_frames,
                s.dropped,
                if s.lagged_frames > 0 {
                    format!(", {} with cursor", s.lagged_with_cursor)
                } else {
                    String::new()
                }
            )
        })
    });
    row("  unaccounted / dup", &|r| {
        r.slow.as_ref().map_or("-".to_owned(), |s| {
            format!("{} / {}", s.unaccounted, s.duplicates)
        })
    });
    row("  caught up after, s", &|r| {
        r.slow.as_ref().map_or("-".to_owned(), |s| {
            s.caught_up
                .map_or("no".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
        })
    });
    row("  kernel queues, KiB", &|r| {
        r.slow.as_ref().map_or("-".to_owned(), |s| {
            s.kernel_queued.map_or("-".to_owned(), |(send, receive)| {
                format!(
                    "{:.0} + {:.0}",
                    send as f64 / 1024.0,
                    receive as f64 / 1024.0
                )
            })
        })
    });

    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let cell_width = rows
        .iter()
        .flat_map(|(_, cells)| cells.iter().map(|c| c.chars().count()))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, cells) in &rows {
        out.push_str(&format!("{label:<label_width$}"));
        for cell in cells {
            out.push_str(&format!("  {cell:>cell_width$}"));
        }
        out.push('\n');
    }
    for r in reports {
        let title = r.phase.map_or("-", Phase::title);
        for (code, n) in &r.send_errors {
            out.push_str(&format!("{title}: {n} sends refused: {code}\n"));
        }
        for why in r.follower_errors.iter().take(5) {
            out.push_str(&format!("{title}: a client ended early: {why}\n"));
        }
        if r.follower_errors.len() > 5 {
            out.push_str(&format!(
                "{title}: … {} clients ended early in all\n",
                r.follower_errors.len()
            ));
        }
        if r.foreign > 0 {
            out.push_str(&format!(
                "{title}: {} frames that were not the run's messages\n",
                r.foreign
            ));
        }
        if r.dropped > 0 {
            out.push_str(&format!(
                "{title}: the prompt clients were told of {} dropped events (lagged)\n",
                r.dropped
            ));
        }
        if let Some(why) = r.slow.as_ref().and_then(|s| s.error.as_ref()) {
            out.push_str(&format!("{title}: the slow reader ended early: {why}\n"));
        }
        if let Some(why) = &r.error {
            out.push_str(&format!("{title}: stopped early: {why}\n"));
        }
    }
    out.push_str(&legend(options));
    out
}

fn legend(options: &Options) -> String {
    format!(
        "\n{clients} WebSocket clients (`GET /ws?events=message`) on one rossipd with \
         `--http 127.0.0.1:0`; one sender writes `send` requests of {MESSAGE_BYTES}-byte texts \
         over the JSON-RPC socket at {rate} msg/s for {secs} s (up to {window} unanswered). \
         Latency: from writing each `send` request until each client read the message's frame, \
         over every (client, message) pair; \"first client\": until the first of them read it \
         (the send path without the fan-out). Every accepted message must reach every client \
         once. \
         CPU: over the sending and until the clients had everything; the clients and the sender \
         (\"bench\") share the machine's {cpus} CPUs with the daemon. VmRSS of the daemon's pid; \
         the peak is the highest of samples every 10 ms. The slow reader (second column, a fresh \
         daemon) asks for a {recv} B receive buffer and reads nothing from its subscribed frame \
         until the others had everything (the peak is taken meanwhile); then it reads again: \
         what it received, the `lagged` frames it got, and the bytes queued in the kernel \
         toward it at the end of its stall (the gateway's send queue + its receive queue).\n",
        clients = options.clients,
        rate = options.rate,
        secs = options.secs,
        window = options.window,
        recv = options.slow_recv_buffer,
        cpus = std::thread::available_parallelism().map_or(0, usize::from),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_keys_give_their_indexes() {
        let sent = Sent {
            accepted: vec![
                delivery_send::key("wsf", 0, 0),
                delivery_send::key("wsf", 0, 17),
            ],
            ..Sent::default()
        };
        assert_eq!(accepted_indexes(&sent), [0, 17]);
    }

    #[test]
    fn latencies_pair_sends_with_arrivals() {
        let t0 = Instant::now();
        let sent = Sent {
            attempted: 2,
            accepted: vec![
                delivery_send::key("wsf", 0, 0),
                delivery_send::key("wsf", 0, 1),
            ],
            issued: vec![t0, t0 + Duration::from_millis(1)],
            elapsed: Duration::from_secs(1),
            ..Sent::default()
        };
        let records = vec![
            Record {
                arrivals: vec![
                    Some(t0 + Duration::from_millis(2)),
                    Some(t0 + Duration::from_millis(4)),
                ],
                ..Record::default()
            },
            Record {
                arrivals: vec![Some(t0 + Duration::from_millis(1))],
                ..Record::default()
            },
        ];
        let mut report = PhaseReport::default();
        tally(&sent, &records, &mut report);
        assert_eq!(report.expected, 4);
        assert_eq!(report.received, 3);
        assert_eq!(report.missing(), 1);
        assert_eq!(report.latency[3], Some(Duration::from_millis(3)));
        assert!(!report.complete());
    }
}
