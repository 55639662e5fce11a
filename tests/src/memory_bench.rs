//! The memory benchmark (the `memory-bench` binary is its command line):
//! one real `rossipd` on loopback per load, and its resident memory
//! (`VmRSS` of its pid, from `/proc`) before, during and after the load:
//!
//! - stalled subscribers: clients that subscribe and then never read while
//!   messages flow (100 of them with 5,000 messages of 1 KiB, and 30 with
//!   700 of 60 KiB), then close; the daemon must stay under its baseline +
//!   [`STALLED_PEAK_BOUND_MIB`] and come back within
//!   [`STALLED_SETTLED_BOUND_MIB`] of it once they are gone;
//! - one `history` call for a full window of 96,000 messages, read to its
//!   end (page after page, if the daemon pages): RSS may grow by at most
//!   [`HISTORY_GROWTH_BOUND_MIB`];
//! - an mDNS flood of forged records (measured by the mDNS hardening's own
//!   code; see [`mdns_flood`]).
//!
//! The peak is the highest of samples taken every [`SAMPLE_INTERVAL`] by a
//! thread of its own, so a shorter spike may be missed: it is a lower
//! bound of the true peak. Every wait checks [`bench::interrupted`], so
//! Ctrl-C ends the run through the normal return path and `Drop` stops the
//! daemons.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::{self, Abort};
use crate::daemon::Daemon;
use crate::rpc::RpcClient;
use crate::sys;

/// How often the daemon's RSS is sampled while a load runs.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// Stalled subscribers: the peak may be at most this far above the baseline.
pub const STALLED_PEAK_BOUND_MIB: f64 = 160.0;

/// Stalled subscribers: after they closed and the daemon settled, RSS must
/// be at most this far above the baseline.
pub const STALLED_SETTLED_BOUND_MIB: f64 = 64.0;

/// `history` of a full window: "a few MB" of growth at most, before and
/// during the call.
pub const HISTORY_GROWTH_BOUND_MIB: f64 = 8.0;

/// Messages in the full history window of the `history` load.
pub const HISTORY_WINDOW: usize = 96_000;

/// Text bytes of each message of the `history` load.
const HISTORY_TEXT_BYTES: usize = 200;

/// `send` requests written ahead of their answers while loading a daemon.
const SEND_WINDOW: usize = 256;

/// How long one answer may take (a debug daemon under a big load is slow).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Messages per page when a `history` call comes back with less than the
/// whole window and a cursor to continue from.
const HISTORY_PAGE: usize = 1_000;

/// How long the daemon gets to close the connections of clients that left.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The loads, in order.
    pub loads: Vec<Load>,
    /// How long the daemon may settle after a load before the last figure.
    pub settle: Duration,
    /// `--log-level` of the daemons.
    pub log_level: String,
}

/// One load the benchmark can put on a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// 100 subscribers that never read, 5,000 messages of 1 KiB.
    StalledSmall,
    /// 30 subscribers that never read, 700 messages of 60 KiB.
    StalledLarge,
    /// One `history` call for a full window of 96,000 messages.
    History,
    /// A flood of forged mDNS records.
    Mdns,
}

impl Load {
    /// Every load, in the order they run by default.
    pub const ALL: [Load; 4] = [
        Load::StalledSmall,
        Load::StalledLarge,
        Load::History,
        Load::Mdns,
    ];

    /// Its name on the command line (`--loads`).
    pub fn name(self) -> &'static str {
        match self {
            Load::StalledSmall => "stalled-small",
            Load::StalledLarge => "stalled-large",
            Load::History => "history",
            Load::Mdns => "mdns",
        }
    }

    /// The load named `name`.
    pub fn parse(name: &str) -> Option<Load> {
        Load::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// One figure of a section: a label and VmRSS in KiB (`None`: not taken).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What the figure is.
    pub label: String,
    /// VmRSS, KiB.
    pub kib: Option<u64>,
}

/// A bound the issue sets on a load, and whether it held.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// What is bounded, e.g. `peak <= baseline + 160 MiB`.
    pub rule: String,
    /// The measured growth over the reference, MiB (`None`: not measured).
    pub growth_mib: Option<f64>,
    /// The most growth allowed, MiB.
    pub limit_mib: f64,
}

impl Bound {
    /// `Some(true)` if measured and within the limit.
    pub fn held(&self) -> Option<bool> {
        self.growth_mib.map(|g| g <= self.limit_mib)
    }
}

/// What one load measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// The load, in words.
    pub title: String,
    /// Figures, in the order they were taken.
    pub figures: Vec<Figure>,
    /// The bounds, checked.
    pub bounds: Vec<Bound>,
    /// Other facts worth printing (counters, how `history` answered).
    pub notes: Vec<String>,
    /// Why the load was not measured (fully), if so.
    pub error: Option<String>,
}

impl Section {
    fn new(title: String) -> Section {
        Section {
            title,
            ..Section::default()
        }
    }

    fn figure(&mut self, label: &str, kib: Option<u64>) {
        self.figures.push(Figure {
            label: label.to_owned(),
            kib,
        });
    }

    fn bound(&mut self, rule: &str, from: Option<u64>, to: Option<u64>, limit_mib: f64) {
        self.bounds.push(Bound {
            rule: rule.to_owned(),
            growth_mib: from.zip(to).map(|(from, to)| mib(to) - mib(from)),
            limit_mib,
        });
    }
}

/// Runs the loads of `options`, each on a daemon of its own.
pub fn measure(options: &Options) -> Vec<Section> {
    let mut sections = Vec::new();
    for &load in &options.loads {
        if bench::interrupted() {
            break;
        }
        let section = match load {
            Load::StalledSmall => stalled(options, 100, 5_000, 1024),
            Load::StalledLarge => stalled(options, 30, 700, 60 * 1024),
            Load::History => history_window(options),
            Load::Mdns => mdns_flood(options),
        };
        progress(&format!("{} done", load.name()));
        sections.push(section);
    }
    sections
}

/// `subscribers` clients subscribe and never read while `messages` messages
/// of `bytes` bytes are sent; then every client closes.
fn stalled(options: &Options, subscribers: usize, messages: usize, bytes: usize) -> Section {
    let mut section = Section::new(format!(
        "stalled subscribers: {subscribers} that never read, {messages} messages of {bytes} bytes"
    ));
    let daemon = Daemon::builder("mem-stalled")
        .loopback()
        .log_level(&options.log_level)
        .spawn();
    let outcome = run_stalled(&daemon, options, subscribers, messages, bytes, &mut section);
    let baseline = section.figures.first().and_then(|f| f.kib);
    let peak = figure(&section, "peak");
    let settled = section.figures.last().and_then(|f| f.kib);
    section.bound(
        &format!("peak <= baseline + {STALLED_PEAK_BOUND_MIB} MiB"),
        baseline,
        peak,
        STALLED_PEAK_BOUND_MIB,
    );
    section.bound(
        &format!("settled <= baseline + {STALLED_SETTLED_BOUND_MIB} MiB"),
        baseline,
        settled,
        STALLED_SETTLED_BOUND_MIB,
    );
    finish(&mut section, outcome, &daemon);
    section
}

fn run_stalled(
    daemon: &Daemon,
    options: &Options,
    subscribers: usize,
    messages: usize,
    bytes: usize,
    section: &mut Section,
) -> Result<(), Abort> {
    let pid = daemon.pid();
    settle(Duration::from_secs(1))?;
    section.figure("baseline", sys::vm_rss_kib(pid));
    let sampler = Sampler::start(pid);
    let mut stalled: Vec<RpcClient> = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut client = connect(daemon)?;
        client
            .try_call("subscribe", json!({}), ANSWER_TIMEOUT)
            .map_err(|e| failed(format!("subscribe: {e}")))?
            .map_err(|e| failed(format!("subscribe refused: {e:?}")))?;
        stalled.push(client);
    }
    section.figure("subscribed", sys::vm_rss_kib(pid));
    let padding = "m".repeat(bytes.saturating_sub(16));
    let texts = (0..messages).map(|k| format!("mem {k:>8} {padding}"));
    connect(daemon)?
        .send_pipelined(texts, SEND_WINDOW, ANSWER_TIMEOUT)
        .map_err(failed)?;
    section.figure("all sent", sys::vm_rss_kib(pid));
    let drops = daemon.status().subscriber_drops;
    drop(stalled);
    wait_connections_closed(daemon)?;
    let peak = sampler.stop();
    section.figure("peak", Some(peak));
    section.figure("after the clients closed", sys::vm_rss_kib(pid));
    settle(options.settle)?;
    section.figure(
        &format!("settled ({} s later)", options.settle.as_secs()),
        sys::vm_rss_kib(pid),
    );
    section.notes.push(format!(
        "subscriber_drops (events dropped for stalled subscribers): {drops}"
    ));
    section.notes.push(window_note(daemon));
    Ok(())
}

/// A daemon whose history window holds [`HISTORY_WINDOW`] messages, full;
/// then one `history` call for all of it.
fn history_window(options: &Options) -> Section {
    let mut section = Section::new(format!(
        "history: one call for a full window of {HISTORY_WINDOW} messages of \
         {HISTORY_TEXT_BYTES} bytes"
    ));
    let daemon = Daemon::builder("mem-history")
        .loopback()
        .log_level(&options.log_level)
        .args(["--history", &HISTORY_WINDOW.to_string()])
        .spawn();
    let outcome = run_history(&daemon, options, &mut section);
    let before = figure(&section, "before the call");
    section.bound(
        &format!("peak during <= before + {HISTORY_GROWTH_BOUND_MIB} MiB"),
        before,
        figure(&section, "peak during the call"),
        HISTORY_GROWTH_BOUND_MIB,
    );
    section.bound(
        &format!("settled <= before + {HISTORY_GROWTH_BOUND_MIB} MiB"),
        before,
        section.figures.last().and_then(|f| f.kib),
        HISTORY_GROWTH_BOUND_MIB,
    );
    finish(&mut section, outcome, &daemon);
    section
}

fn run_history(daemon: &Daemon, options: &Options, section: &mut Section) -> Result<(), Abort> {
    let pid = daemon.pid();
    settle(Duration::from_secs(1))?;
    section.figure("baseline (empty)", sys::vm_rss_kib(pid));
    let padding = "h".repeat(HISTORY_TEXT_BYTES - 14);
    let texts = (0..HISTORY_WINDOW).map(|k| format!("hist {k:>8} {padding}"));
    connect(daemon)?
        .send_pipelined(texts, SEND_WINDOW, ANSWER_TIMEOUT)
        .map_err(failed)?;
    let held = daemon.status().messages.in_history;
    section.figure("window filled", sys::vm_rss_kib(pid));
    settle(options.settle)?;
    section.figure("before the call", sys::vm_rss_kib(pid));

    let sampler = Sampler::start(pid);
    let mut client = connect(daemon)?;
    let read = read_whole_history(&mut client, held);
    let peak = sampler.stop();
    section.figure("peak during the call", Some(peak));
    section.figure("after the call", sys::vm_rss_kib(pid));
    let (messages, calls) = read?;
    section.notes.push(format!(
        "`history` returned {messages} messages in {calls} call(s)"
    ));
    section.notes.push(window_note(daemon));
    drop(client);
    settle(options.settle)?;
    section.figure(
        &format!("settled ({} s later)", options.settle.as_secs()),
        sys::vm_rss_kib(pid),
    );
    Ok(())
}

/// `history {}`, then, if it came back with less than `held` messages and a
/// cursor (a paging daemon), `history {after, n}` until it is all read.
/// Returns the messages read and the calls made.
fn read_whole_history(client: &mut RpcClient, held: u64) -> Result<(usize, usize), Abort> {
    let mut params = json!({});
    let (mut messages, mut calls) = (0usize, 0usize);
    loop {
        let result = client
            .try_call("history", params.clone(), ANSWER_TIMEOUT)
            .map_err(|e| failed(format!("history {params}: {e}")))?
            .map_err(|e| failed(format!("history {params} refused: {e:?}")))?;
        calls += 1;
        let page = result["messages"].as_array().map_or(0, Vec::len);
        messages += page;
        let cursor = result.get("cursor").and_then(Value::as_str);
        match cursor {
            Some(cursor) if page > 0 && (messages as u64) < held => {
                params = json!({"after": cursor, "n": HISTORY_PAGE});
            }
            _ => return Ok((messages, calls)),
        }
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
    }
}

// ----- mDNS flood: wired in when the mDNS hardening is merged -----------
//
// The flood of forged `_rossip._udp` records (90,000 with a one-day TTL) and
// its bound (RSS within baseline + 10 MB, drops counted in `status`) are
// measured by the code that comes with the mDNS hardening (expected as
// `crate::mdns_flood::measure`, on namespaced hosts). At the merge, call it
// here and turn its figures into this section's; until then the section
// says it was not measured.
fn mdns_flood(_options: &Options) -> Section {
    let mut section = Section::new("mDNS flood: 90,000 forged records, one-day TTL".to_owned());
    let flood = crate::mdns_flood::FloodOptions::default();
    match crate::mdns_flood::measure(&flood) {
        Ok(figures) => {
            section.figure("baseline", Some(figures.baseline_kib));
            section.figure("peak", Some(figures.peak_kib));
            section.figure("after the flood", Some(figures.after_kib));
            section.bound(
                "peak <= baseline + 10 MiB",
                Some(figures.baseline_kib),
                Some(figures.peak_kib),
                10.0,
            );
            section.notes.push(format!(
                "{} forged records in {} packets over {:.1} s",
                figures.records_sent,
                figures.packets_sent,
                figures.flood_time.as_secs_f64()
            ));
        }
        Err(why) => section.error = Some(format!("not measured: {why} (run it as root)")),
    }
    section
}

/// What the history window holds now: part of every figure after the
/// messages were sent, and rightly so (the window is kept in memory).
fn window_note(daemon: &Daemon) -> String {
    let messages = daemon.status().messages;
    format!(
        "the history window holds {} messages, {:.1} MiB of payload (part of the figures above)",
        messages.in_history,
        messages.history_bytes as f64 / (1024.0 * 1024.0)
    )
}

/// Records how a load ended and what the daemon last said.
fn finish(section: &mut Section, outcome: Result<(), Abort>, daemon: &Daemon) {
    match outcome {
        Ok(()) => {}
        Err(Abort::Interrupted) => section.error = Some("interrupted".to_owned()),
        Err(Abort::Failed(why)) => {
            section.error = Some(format!("{why}\n{}", daemon.log_excerpt()));
        }
    }
}

/// The figure labelled `label`, if taken.
fn figure(section: &Section, label: &str) -> Option<u64> {
    section
        .figures
        .iter()
        .find(|f| f.label == label)
        .and_then(|f| f.kib)
}

fn connect(daemon: &Daemon) -> Result<RpcClient, Abort> {
    RpcClient::connect(daemon.socket())
        .map_err(|e| failed(format!("connect to {}: {e}", daemon.socket().display())))
}

fn failed(why: String) -> Abort {
    Abort::Failed(why)
}

/// Polls `status` until the daemon serves no connection but the asking one.
fn wait_connections_closed(daemon: &Daemon) -> Result<(), Abort> {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    loop {
        let open = status_connections(daemon.socket());
        if open == Some(1) {
            return Ok(());
        }
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "the daemon still served {open:?} connections {CLOSE_TIMEOUT:?} after the \
                 clients closed"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_connections(socket: &Path) -> Option<u64> {
    let mut client = RpcClient::connect(socket).ok()?;
    let status = client
        .try_call("status", json!({}), ANSWER_TIMEOUT)
        .ok()?
        .ok()?;
    status["rpc"]["connections"].as_u64()
}

/// Lets the daemon be for `duration` (a settling period is part of what is
/// measured); ends early on Ctrl-C.
fn settle(duration: Duration) -> Result<(), Abort> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if bench::interrupted() {
            return Err(Abort::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now()));
    }
    Ok(())
}

/// Samples a process's VmRSS every [`SAMPLE_INTERVAL`] on a thread of its
/// own and keeps the highest (also `ws-fanout-bench`'s peak).
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(sys::vm_rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = sys::vm_rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_INTERVAL);
                }
            })
        };
        Sampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the highest VmRSS seen, KiB.
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.peak.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

/// KiB to MiB.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn progress(line: &str) {
    sys::say(&format!("memory-bench: {line}"));
}

/// The report: one block per load, then the bounds' verdict.
pub fn report(sections: &[Section]) -> String {
    let mut out = String::new();
    for section in sections {
        out.push_str(&format!("== {}\n", section.title));
        let reference = section.figures.first().and_then(|f| f.kib);
        for figure in &section.figures {
            let value = figure
                .kib
                .map_or_else(|| "-".to_owned(), |kib| format!("{:8.1} MiB", mib(kib)));
            let delta = match (figure.kib, reference) {
                (Some(kib), Some(reference)) => format!("  ({:+.1})", mib(kib) - mib(reference)),
                _ => String::new(),
            };
            out.push_str(&format!("  {:<28} {value}{delta}\n", figure.label));
        }
        for bound in &section.bounds {
            let verdict = match (bound.held(), bound.growth_mib) {
                (Some(true), Some(g)) => format!("held ({g:+.1} MiB)"),
                (Some(false), Some(g)) => format!("NOT HELD ({g:+.1} MiB)"),
                _ => "not measured".to_owned(),
            };
            out.push_str(&format!("  bound: {:<38} {verdict}\n", bound.rule));
        }
        for note in &section.notes {
            out.push_str(&format!("  {note}\n"));
        }
        if let Some(why) = &section.error {
            out.push_str(&format!("  {why}\n"));
        }
        out.push('\n');
    }
    let checked: Vec<bool> = sections
        .iter()
        .flat_map(|s| &s.bounds)
        .filter_map(Bound::held)
        .collect();
    out.push_str(&format!(
        "bounds: {} of {} held\n",
        checked.iter().filter(|held| **held).count(),
        checked.len()
    ));
    out.push_str(
        "Figures are VmRSS of the daemon's pid (/proc/PID/status); deltas are from each block's \
         first figure. A peak is the highest of samples taken every 10 ms.\n",
    );
    out
}
