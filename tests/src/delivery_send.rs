//! The paced senders of the delivery benchmark's throughput runs
//! ([`crate::delivery_bench`]): one connection to a daemon's socket,
//! message `k` due at `start + k / rate`. A sender behind schedule sends at
//! once and never skips, so what it achieved is what the daemon (and the
//! machine) let it.
//!
//! With a window of 1 it uses [`RpcClient`] and waits for each answer
//! (sequential calls). With a larger window it writes requests without
//! waiting, keeping at most `window` unanswered, while a second thread
//! reads the answers (JSON-RPC ids tell which send each one is for): the
//! daemon answers one connection's requests in order, so this only removes
//! the client's round-trip wait from the pacing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench;
use crate::delivery::key_of;
use crate::rpc::{CALL_TIMEOUT, RpcClient};

/// Size of every throughput message's text, bytes.
pub const MESSAGE_BYTES: usize = 200;

/// How long a pipelined sender's writer waits between checks of the window.
const WINDOW_POLL: Duration = Duration::from_micros(50);

/// What one sender did.
#[derive(Debug, Default)]
pub struct Sent {
    /// `send` requests written.
    pub attempted: u64,
    /// Keys of the messages the daemon accepted.
    pub accepted: Vec<String>,
    /// Errors by JSON-RPC code, or `io (…)` when the connection failed
    /// (then the unanswered requests count there too).
    pub errors: BTreeMap<String, u64>,
    /// From the first request due to the last written.
    pub elapsed: Duration,
    /// When each request was written (index `k`: message `k`), for
    /// latencies measured from the send (`ws-fanout-bench`).
    pub issued: Vec<Instant>,
}

impl Sent {
    /// A sender that could not start: one error, `io (why)`.
    pub fn broken(why: impl std::fmt::Display) -> Sent {
        let mut sent = Sent::default();
        sent.errors.insert(format!("io ({why})"), 1);
        sent
    }
}

/// The key of sender `sender`'s `k`th message of run `tag`.
pub fn key(tag: &str, sender: usize, k: u64) -> String {
    format!("{tag}/{sender}.{k}")
}

/// `key`, a space, and `x` up to [`MESSAGE_BYTES`] bytes.
pub fn pad(key: &str) -> String {
    pad_to(key, MESSAGE_BYTES)
}

/// `key`, a space, and `x` up to `bytes` bytes (longer if the key is).
pub fn pad_to(key: &str, bytes: usize) -> String {
    let mut text = format!("{key} ");
    let fill = bytes.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', fill));
    debug_assert_eq!(key_of(&text), key);
    text
}

/// What one call of a sequential sender ([`paced`]) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The daemon accepted the message.
    Accepted,
    /// The daemon refused it; the error code (or its name).
    Refused(String),
    /// The connection failed: the sender stops.
    Broken(String),
}

/// A sequential sender: calls `send(key)` for message `k` at
/// `start + k / rate` (behind schedule: at once, never skipping) for
/// `duration`, and records what each call came to.
pub fn paced(
    tag: &str,
    sender: usize,
    rate: f64,
    duration: Duration,
    mut send: impl FnMut(&str) -> SendOutcome,
) -> Sent {
    let mut sent = Sent::default();
    let start = Instant::now();
    let end = start + duration;
    loop {
        let now = Instant::now();
        if now >= end || bench::interrupted() {
            break;
        }
        let due = due(start, sent.attempted, rate);
        if due > now {
            std::thread::sleep((due - now).min(end - now));
            continue;
        }
        let key = key(tag, sender, sent.attempted);
        sent.attempted += 1;
        sent.issued.push(Instant::now());
        match send(&key) {
            SendOutcome::Accepted => sent.accepted.push(key),
            SendOutcome::Refused(code) => *sent.errors.entry(code).or_default() += 1,
            SendOutcome::Broken(why) => {
                *sent.errors.entry(format!("io ({why})")).or_default() += 1;
                break;
            }
        }
    }
    sent.elapsed = start.elapsed();
    sent
}

/// Sends `rate` messages/s to `socket` for `duration`, with at most
/// `window` unanswered (1: sequential calls). See the module docs.
pub fn send_paced(
    socket: &Path,
    tag: &str,
    sender: usize,
    rate: f64,
    duration: Duration,
    window: usize,
) -> Sent {
    if window <= 1 {
        sequential(socket, tag, sender, rate, duration)
    } else {
        pipelined(socket, tag, sender, rate, duration, window as u64)
    }
}

/// The instant message `k` is due.
fn due(start: Instant, k: u64, rate: f64) -> Instant {
    start + Duration::from_secs_f64(k as f64 / rate)
}

fn sequential(socket: &Path, tag: &str, sender: usize, rate: f64, duration: Duration) -> Sent {
    let mut client = match RpcClient::connect(socket) {
        Ok(client) => client,
        Err(e) => return Sent::broken(e),
    };
    paced(tag, sender, rate, duration, |key| {
        match client.try_call("send", json!({ "text": pad(key) }), CALL_TIMEOUT) {
            Ok(Ok(_)) => SendOutcome::Accepted,
            Ok(Err(error)) => SendOutcome::Refused(error.code.to_string()),
            Err(e) => SendOutcome::Broken(e.to_string()),
        }
    })
}

/// What the reader of a pipelined sender shares with its writer.
#[derive(Debug, Default)]
struct Answers {
    /// Requests answered so far.
    answered: AtomicU64,
    /// Set by the writer when it wrote its last request.
    finished: AtomicBool,
    /// How many the writer wrote (valid once `finished`).
    total: AtomicU64,
    /// Ids (= `k`) the daemon accepted, and errors by code.
    outcome: Mutex<(Vec<u64>, BTreeMap<String, u64>)>,
}

fn pipelined(
    socket: &Path,
    tag: &str,
    sender: usize,
    rate: f64,
    duration: Duration,
    window: u64,
) -> Sent {
    let mut sent = Sent::default();
    let connected = UnixStream::connect(socket).and_then(|writer| {
        writer.set_write_timeout(Some(CALL_TIMEOUT))?;
        let reader = writer.try_clone()?;
        reader.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok((writer, reader))
    });
    let (mut writer, reader) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            sent.errors.insert(format!("io ({e})"), 1);
            return sent;
        }
    };
    let answers = Answers::default();
    std::thread::scope(|scope| {
        let reading = scope.spawn(|| read_answers(reader, &answers));
        let start = Instant::now();
        let end = start + duration;
        let mut line = Vec::with_capacity(MESSAGE_BYTES + 100);
        loop {
            let now = Instant::now();
            if now >= end || bench::interrupted() || reading.is_finished() {
                break;
            }
            let due = due(start, sent.attempted, rate);
            if due > now {
                std::thread::sleep((due - now).min(end - now));
                continue;
            }
            if sent.attempted - answers.answered.load(Ordering::Acquire) >= window {
                std::thread::sleep(WINDOW_POLL);
                continue;
            }
            let k = sent.attempted;
            let request = json!({"jsonrpc": "2.0", "method": "send", "id": k,
                "params": {"text": pad(&key(tag, sender, k))}});
            line.clear();
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut line, &request);
            line.push(b'\n');
            sent.issued.push(Instant::now());
            if let Err(e) = writer.write_all(&line) {
                sent.issued.pop();
                sent.errors.insert(format!("io ({e})"), 1);
                break;
            }
            sent.attempted += 1;
        }
        sent.elapsed = start.elapsed();
        answers.total.store(sent.attempted, Ordering::Release);
        answers.finished.store(true, Ordering::Release);
        let _ = reading.join();
    });
    let (accepted, errors) = answers
        .outcome
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sent.accepted = accepted.into_iter().map(|k| key(tag, sender, k)).collect();
    for (code, n) in errors {
        *sent.errors.entry(code).or_default() += n;
    }
    let unanswered = sent.attempted - answers.answered.load(Ordering::Acquire);
    if unanswered > 0 {
        *sent.errors.entry("io (no answer)".to_owned()).or_default() += unanswered;
    }
    sent
}

/// Reads answers until every written request has one, the connection
/// fails, or nothing arrives for [`CALL_TIMEOUT`].
fn read_answers(reader: UnixStream, answers: &Answers) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut last = Instant::now();
    loop {
        let answered = answers.answered.load(Ordering::Acquire);
        if answers.finished.load(Ordering::Acquire)
            && answered >= answers.total.load(Ordering::Acquire)
        {
            return;
        }
        if last.elapsed() >= CALL_TIMEOUT {
            return;
        }
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.last() == Some(&b'\n') => {
                last = Instant::now();
                record_answer(&line, answers);
                line.clear();
                answers.answered.fetch_add(1, Ordering::AcqRel);
            }
            // A partial line: keep it, the rest follows.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn record_answer(line: &[u8], answers: &Answers) {
    let mut outcome = answers
        .outcome
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let value: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    match (
        value.get("result"),
        value.get("error"),
        value["id"].as_u64(),
    ) {
        (Some(_), None, Some(k)) => outcome.0.push(k),
        (None, Some(error), _) => {
            let code = error["code"]
                .as_i64()
                .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
            *outcome.1.entry(code).or_default() += 1;
        }
        _ => *outcome.1.entry("bad answer".to_owned()).or_default() += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_texts_are_200_bytes_and_keep_their_key() {
        let text = pad(&key("r1000n1", 0, 42));
        assert_eq!(text.len(), MESSAGE_BYTES);
        assert_eq!(key_of(&text), "r1000n1/0.42");
    }
}
