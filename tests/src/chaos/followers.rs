//! The chaos test's followers of a node: a raw JSON-RPC subscriber (a script
//! on the socket, resuming by cursor), and `rossipctl tail -f --json`; and
//! the node's records they are held against: its history and its delivery
//! order.
//!
//! The subscriber speaks raw lines rather than the typed client: it must see
//! the `cursor` of every event and of the `subscribe` answer exactly as the
//! daemon wrote them (as [`crate::stream`] does for one connection; this one
//! outlives the daemon's restarts).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::background::Background;
use crate::ctl;
use crate::rpc::RpcClient;
use crate::stream::{self, Delivered};

/// Pause between attempts to reach a daemon that is down (killed,
/// restarting): short, so that a restart is followed at once.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(100);

/// How long one read waits before the thread checks whether to stop.
const READ_SLICE: Duration = Duration::from_millis(100);

/// Problems a [`StreamLog`] keeps in full: one broken event usually means
/// many, and the first few say what they are.
pub const KEPT_PROBLEMS: usize = 10;

/// The id of the subscriber's `subscribe` request (one per connection).
const SUBSCRIBE_ID: u64 = 1;

/// What a [`Subscriber`] recorded so far.
#[derive(Debug, Clone, Default)]
pub struct StreamLog {
    /// The first `subscribe` was answered.
    pub attached: bool,
    /// The cursor the first `subscribe` answered with (absent when the store
    /// had never delivered anything): the stream covers what came after it.
    pub start: Option<String>,
    /// Every `message` event, in the order read, across reconnections.
    pub deliveries: Vec<Delivered>,
    /// Subscriptions after the first: after a lost connection or a `lagged`.
    pub resumes: u64,
    /// `lagged` notices read.
    pub lag_notices: u64,
    /// Sum of `dropped` over the `lagged` notices.
    pub lag_dropped: u64,
    /// What went wrong that the stream itself cannot show (a refused
    /// resumption, a line that does not parse, a resumption without cursor):
    /// the first [`KEPT_PROBLEMS`], then only [`StreamLog::more_problems`].
    pub problems: Vec<String>,
    /// Problems beyond the kept ones.
    pub more_problems: u64,
    /// Set when the thread gave up (a refused subscription): nothing more
    /// will be recorded.
    pub ended: bool,
}

impl StreamLog {
    /// Records a problem, keeping the first [`KEPT_PROBLEMS`] in full.
    fn problem(&mut self, text: String) {
        if self.problems.len() < KEPT_PROBLEMS {
            self.problems.push(text);
        } else {
            self.more_problems += 1;
        }
    }

    /// The cursor to resume after: the last message's, else the first
    /// `subscribe` answer's.
    fn resume_point(&self) -> Option<&str> {
        self.deliveries
            .last()
            .map(|d| d.cursor.as_str())
            .or(self.start.as_deref())
    }
}

/// A script-like follower of one node's messages over the real socket:
/// `subscribe {events: ["message"]}` once, then after every lost connection
/// (kill -9, SIGTERM, restart) or `lagged` notice a new connection with
/// `subscribe {after: <last cursor>}`. Records every message event.
#[derive(Debug)]
pub struct Subscriber {
    node: String,
    log: Arc<Mutex<StreamLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Starts following the node called `node` on `socket`; returns at once.
    pub fn start(node: &str, socket: &Path) -> Subscriber {
        let log = Arc::new(Mutex::new(StreamLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, log, stop) = (socket.to_path_buf(), Arc::clone(&log), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("chaos-sub-{node}"))
                .spawn(move || follow(&socket, &log, &stop))
                .expect("spawn a subscriber thread")
        };
        Subscriber {
            node: node.to_owned(),
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// The node it follows.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A copy of what it recorded so far.
    pub fn log(&self) -> StreamLog {
        self.lock().clone()
    }

    /// `Ok(true)` once the first subscription was answered; `Err` when it
    /// never will be.
    pub fn attached(&self) -> Result<bool, String> {
        let log = self.lock();
        match (log.attached, log.ended) {
            (true, _) => Ok(true),
            (false, true) => Err(format!("{}: {}", self.node, log.problems.join("; "))),
            (false, false) => Ok(false),
        }
    }

    /// How many message events it recorded.
    pub fn len(&self) -> usize {
        self.lock().deliveries.len()
    }

    /// Whether it recorded no message event yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the thread and returns the record.
    pub fn finish(mut self) -> StreamLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.log()
    }

    fn lock(&self) -> MutexGuard<'_, StreamLog> {
        // A panic in the thread cannot leave the record half-updated.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Not joined: the thread sees the flag within READ_SLICE and ends.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How one subscription ended.
enum Ended {
    /// The connection went away, or a `lagged` notice: subscribe again.
    Resume,
    /// Told to stop, or the subscription was refused.
    Stop,
}

/// The subscriber thread: one subscription per connection, until stopped.
fn follow(socket: &Path, log: &Mutex<StreamLog>, stop: &AtomicBool) {
    let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let Ok(client) = RpcClient::connect(socket) else {
            std::thread::sleep(RECONNECT_INTERVAL);
            continue;
        };
        let mut params = json!({"events": ["message"]});
        if !first {
            let mut log = lock();
            log.resumes += 1;
            match log.resume_point().map(str::to_owned) {
                Some(cursor) => params["after"] = json!(cursor),
                None => log.problem(
                    "resubscribed live only: no cursor to resume after (no message yet, and \
                     the first subscribe answered without one)"
                        .to_owned(),
                ),
            }
        }
        match subscription(client, &params, first, log, stop) {
            // A resumption once the first subscribe was answered; until
            // then (the daemon went away before answering), a first try again.
            Ended::Resume => first = !lock().attached,
            Ended::Stop => break,
        }
    }
}

/// Subscribes with `params` on `client` and records its events until the
/// connection ends, a `lagged` notice, or `stop`.
fn subscription(
    mut client: RpcClient,
    params: &Value,
    first: bool,
    log: &Mutex<StreamLog>,
    stop: &AtomicBool,
) -> Ended {
    let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
    let request =
        json!({"jsonrpc": "2.0", "id": SUBSCRIBE_ID, "method": "subscribe", "params": params});
    if client.send_line(&request.to_string()).is_err() {
        return Ended::Resume;
    }
    while !stop.load(Ordering::Relaxed) {
        let line = match client.recv_line(READ_SLICE) {
            Ok(None) => continue,
            Ok(Some(line)) => line,
            // EOF or a reset: the daemon went away.
            Err(_) => return Ended::Resume,
        };
        let value: Value = match serde_json::from_str(&line) {
            Ok(value) => value,
            Err(e) => {
                lock().problem(format!("a line that is not JSON ({e}): {line}"));
                continue;
            }
        };
        if value.get("id").is_some() {
            if let Some(error) = value.get("error") {
                let mut log = lock();
                log.problem(format!("subscribe {params} was refused: {error}"));
                log.ended = true;
                return Ended::Stop;
            }
            if first {
                let mut log = lock();
                log.attached = true;
                log.start = value
                    .pointer("/result/cursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            continue;
        }
        let event = value.get("params").unwrap_or(&Value::Null);
        match event.get("kind").and_then(Value::as_str) {
            Some("message") => {
                let message = event.get("message").unwrap_or(&Value::Null);
                let mut log = lock();
                match Delivered::from_message(message) {
                    Ok(delivery) => log.deliveries.push(delivery),
                    Err(why) => log.problem(format!("a message event: {why}")),
                }
            }
            // The daemon dropped events for us: resubscribe after the last
            // cursor read, as a follower must, which replays what history
            // still holds.
            Some("lagged") => {
                let mut log = lock();
                log.lag_notices += 1;
                log.lag_dropped += event.get("dropped").and_then(Value::as_u64).unwrap_or(0);
                return Ended::Resume;
            }
            _ => lock().problem(format!("an unexpected line: {line}")),
        }
    }
    Ended::Stop
}

/// `rossipctl tail -f --json` on one host: the follower every user runs.
#[derive(Debug)]
pub struct Tail {
    node: String,
    process: Background,
}

impl Tail {
    /// Starts `rossipctl --socket SOCKET tail -f --json` inside `netns`.
    pub fn start(node: &str, netns: &str, socket: &Path) -> Tail {
        Tail {
            node: node.to_owned(),
            process: ctl::spawn_rossipctl(Some(netns), socket, &["tail", "-f", "--json"]),
        }
    }

    /// The command line, for reports.
    pub fn command(&self) -> &str {
        self.process.command()
    }

    /// The messages it printed so far, and what was wrong with lines that
    /// are not Message objects (or with its exit, if it exited).
    pub fn deliveries(&mut self) -> (Vec<Delivered>, Vec<String>) {
        let lines = self.process.lines();
        let (deliveries, mut problems) = parse_lines(&lines);
        if let Some(status) = self.process.exited() {
            problems.push(format!(
                "exited ({status}); stderr: {}",
                self.process.stderr_lines().join(" | ")
            ));
        }
        (deliveries, problems)
    }

    /// Stops it (by PID) and returns everything it printed.
    pub fn finish(mut self) -> TailRecord {
        let (deliveries, problems) = self.deliveries();
        TailRecord {
            node: self.node.clone(),
            command: self.process.command().to_owned(),
            stdout: self.process.lines(),
            stderr: self.process.stderr_lines(),
            deliveries,
            problems,
        }
    }
}

/// What `tail -f` printed, for the verdict and the kept evidence.
#[derive(Debug, Clone)]
pub struct TailRecord {
    /// The node it followed.
    pub node: String,
    /// Its command line.
    pub command: String,
    /// Its stdout, line by line.
    pub stdout: Vec<String>,
    /// Its stderr (reconnections, warnings).
    pub stderr: Vec<String>,
    /// The messages of its stdout, in order.
    pub deliveries: Vec<Delivered>,
    /// Lines that are not messages with a cursor; its exit, if it exited.
    pub problems: Vec<String>,
}

/// The messages among `lines` (`tail --json` output), and what is wrong
/// with the lines that are not messages with a cursor (the first
/// [`KEPT_PROBLEMS`] of them, then how many more).
fn parse_lines(lines: &[String]) -> (Vec<Delivered>, Vec<String>) {
    let mut deliveries = Vec::new();
    let mut problems = Vec::new();
    let mut more = 0u64;
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let parsed = serde_json::from_str::<Value>(line)
            .map_err(|e| e.to_string())
            .and_then(|v| Delivered::from_message(&v));
        match parsed {
            Ok(delivery) => deliveries.push(delivery),
            Err(_) if problems.len() >= KEPT_PROBLEMS => more += 1,
            Err(why) => problems.push(format!(
                "printed a line that is not a message ({why}): {line}"
            )),
        }
    }
    if more > 0 {
        problems.push(format!("and {more} more lines that are not messages"));
    }
    (deliveries, problems)
}

/// `history {}` of the node on `socket`: every message it holds, in history
/// order. Panics if the daemon refuses.
pub fn history(socket: &Path) -> Vec<Delivered> {
    let mut client = RpcClient::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream::history_page(&mut client, json!({}))
        .unwrap_or_else(|e| panic!("history on {}: {e:?}", socket.display()))
        .0
}

/// The node's delivery order: what it delivered after `start`, or when the
/// stream began on an empty store (no `start`), its first message `first`
/// followed by what it delivered after that one. `Err` when there is
/// neither.
pub fn delivery_order(
    socket: &Path,
    start: Option<&str>,
    first: Option<&Delivered>,
) -> Result<Vec<Delivered>, String> {
    match (start, first) {
        (Some(start), _) => Ok(stream::delivered_after(socket, start, usize::MAX)),
        (None, Some(first)) => {
            let mut order = vec![first.clone()];
            order.extend(stream::delivered_after(socket, &first.cursor, usize::MAX));
            Ok(order)
        }
        (None, None) => Err("the stream showed no message to list from".to_owned()),
    }
}
