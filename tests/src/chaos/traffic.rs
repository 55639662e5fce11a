//! The chaos test's traffic: one paced sender per node, over the real socket
//! with raw JSON-RPC `send`, recording which sends were acknowledged.
//!
//! A send that gets no answer (the daemon was killed with it in flight, or
//! stopped past the call timeout) is not acknowledged: it may or may not be
//! in history, and the test only requires it to be in every stream exactly
//! when it is in history. A send answered with an error is not acknowledged
//! either; those are counted by code.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::rpc::{CALL_TIMEOUT, RpcClient};

/// Pause before trying again to reach a daemon that is down.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(100);

/// What one sender did.
#[derive(Debug, Clone, Default)]
pub struct SendLog {
    /// Ids of the acknowledged sends, in the order sent.
    pub acked: Vec<String>,
    /// Sends that got no answer (connection lost or timed out).
    pub unanswered: u64,
    /// Sends answered with an error, by error code.
    pub refused: BTreeMap<i64, u64>,
    /// The first refusal of each code, for the report.
    pub first_refusal: BTreeMap<i64, String>,
}

/// Sends `chaos <node> <n>` to one node every `interval` until finished.
#[derive(Debug)]
pub struct Sender {
    log: Arc<Mutex<SendLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sender {
    /// Starts sending to the node called `node` on `socket`.
    pub fn start(node: &str, socket: &Path, interval: Duration) -> Sender {
        let log = Arc::new(Mutex::new(SendLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, log, stop) = (socket.to_path_buf(), Arc::clone(&log), Arc::clone(&stop));
            let node = node.to_owned();
            std::thread::Builder::new()
                .name(format!("chaos-send-{node}"))
                .spawn(move || send_paced(&node, &socket, interval, &log, &stop))
                .expect("spawn a sender thread")
        };
        Sender {
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sending (after the send in flight is answered or times out)
    /// and returns the record.
    pub fn finish(mut self) -> SendLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Not joined: a send to a stopped daemon may take CALL_TIMEOUT.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn send_paced(
    node: &str,
    socket: &Path,
    interval: Duration,
    log: &Mutex<SendLog>,
    stop: &AtomicBool,
) {
    let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
    let mut client: Option<RpcClient> = None;
    let mut next = Instant::now();
    let mut number = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Pacing, not waiting for a condition: the traffic has a rate. After
        // a stall (a stopped daemon) it goes on from now, without a burst.
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next = next.max(now) + interval;
        let connection = match client.as_mut() {
            Some(connection) => connection,
            None => match RpcClient::connect(socket) {
                Ok(connection) => client.insert(connection),
                Err(_) => {
                    next = Instant::now() + RECONNECT_INTERVAL;
                    continue;
                }
            },
        };
        let text = format!("chaos {node} {number}");
        number += 1;
        match connection.try_call("send", json!({"text": text}), CALL_TIMEOUT) {
            Ok(Ok(result)) => match result.get("id").and_then(Value::as_str) {
                Some(id) => lock().acked.push(id.to_owned()),
                None => {
                    let mut log = lock();
                    *log.refused.entry(0).or_default() += 1;
                    log.first_refusal
                        .entry(0)
                        .or_insert_with(|| format!("a send result without id: {result}"));
                }
            },
            Ok(Err(error)) => {
                let mut log = lock();
                *log.refused.entry(error.code).or_default() += 1;
                log.first_refusal
                    .entry(error.code)
                    .or_insert_with(|| format!("{text:?}: {}", error.message));
            }
            Err(_) => {
                lock().unanswered += 1;
                client = None;
            }
        }
    }
}
