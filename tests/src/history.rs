//! Reading and writing a daemon's message history the way a user does, for
//! tests of durable history: the whole history, its ids, duplicate checks,
//! sends through the real `rossipctl` (one-shot and `send --lines -`), and
//! a sender that runs until its daemon is killed.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rossip_proto::rpc::{MessageView, SendResult};
use serde_json::json;

use crate::daemon::Daemon;
use crate::rpc::RpcClient;
use crate::{bins, ctl, sys, wait};

/// The whole history (up to 10,000 messages), oldest first.
pub fn history(daemon: &Daemon) -> Vec<MessageView> {
    #[derive(serde::Deserialize)]
    struct History {
        messages: Vec<MessageView>,
    }
    daemon
        .client()
        .call_ok::<History>("history", json!({"n": 10_000}))
        .messages
}

/// The ids of `messages`, in order.
pub fn ids(messages: &[MessageView]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// Panics (naming `who`) if an id occurs twice.
pub fn assert_unique(who: &str, messages: &[MessageView]) {
    let mut seen = BTreeSet::new();
    for m in messages {
        assert!(
            seen.insert(&m.id),
            "{who} holds {} twice: {messages:?}",
            m.id
        );
    }
}

/// The sequence number of a message id `<origin>-<seq>`.
pub fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, seq)| seq.parse().ok())
        .unwrap_or_else(|| panic!("message id {id} has no sequence number"))
}

/// Sends per node that are each a `rossipctl send TEXT` process of their
/// own (in [`send_with_cli`]); the rest go through one `rossipctl send
/// --lines -`. Not all of them: the harness polls a one-shot `rossipctl`
/// for its exit every 50 ms (`wait::POLL_INTERVAL`), so 500 one-shots per
/// node took 25 s. Both ways
/// are the real CLI, and it prints an id only once `send` was acknowledged.
pub const ONE_SHOT_SENDS: usize = 100;

/// Sends `LABEL 0` … `LABEL count-1` to `socket` with `rossipctl`, in that
/// order; returns the ids it printed, each one an acknowledged send.
pub fn send_with_cli(socket: &Path, label: &str, count: usize) -> Vec<String> {
    let one_shot = count.min(ONE_SHOT_SENDS);
    let mut sent: Vec<String> = (0..one_shot)
        .map(|i| {
            let out = ctl::rossipctl(socket, &["send", &format!("{label} {i}")]);
            out.assert_success().stdout.trim().to_owned()
        })
        .collect();
    let lines: String = (one_shot..count)
        .map(|i| format!("{label} {i}\n"))
        .collect();
    let args = [
        "--socket".as_ref(),
        socket.as_os_str(),
        "send".as_ref(),
        "--lines".as_ref(),
        "-".as_ref(),
    ];
    let command = sys::command_line(bins::rossipctl(), &args);
    let mut child = Command::new(bins::rossipctl())
        .args(args)
        .env_remove("ROSSIP_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{command}`: {e}"));
    let mut stdin = child.stdin.take().expect("rossipctl's stdin");
    // Written on a thread, so that rossipctl's output cannot fill a pipe
    // while this one waits for it to read its input.
    let writer = std::thread::spawn(move || stdin.write_all(lines.as_bytes()));
    let stdout = read_in_background(child.stdout.take().expect("rossipctl's stdout"));
    let stderr = read_in_background(child.stderr.take().expect("rossipctl's stderr"));
    let status = wait::try_wait_until(ctl::CTL_TIMEOUT, || child.try_wait().expect("poll"))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("`{command}` did not finish within {:?}", ctl::CTL_TIMEOUT)
        });
    writer
        .join()
        .expect("stdin writer")
        .expect("write rossipctl's stdin");
    let (stdout, stderr) = (
        stdout.join().expect("stdout"),
        stderr.join().expect("stderr"),
    );
    assert!(
        status.success(),
        "`{command}` exited with {status}\nstderr:\n{stderr}\nstdout:\n{stdout}"
    );
    sent.extend(stdout.lines().map(str::to_owned));
    assert_eq!(
        sent.len(),
        count,
        "`{command}` printed fewer ids:\n{stdout}\nstderr:\n{stderr}"
    );
    for id in &sent {
        seq_of(id);
    }
    sent
}

/// Everything `pipe` yields until it closes, read on a thread of its own.
pub fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text)
            .map(|_| text)
            .unwrap_or_else(|e| format!("(unreadable: {e})"))
    })
}

/// stdout of `rossipctl ARGS…` against `daemon`; panics unless it exits 0.
pub fn ctl_stdout(daemon: &Daemon, args: &[&str]) -> String {
    ctl::rossipctl(daemon.socket(), args)
        .assert_success()
        .stdout
        .clone()
}

/// Panics, naming `what` and the first line that differs, unless `after`
/// has exactly the lines of `before`.
pub fn assert_same_lines(what: &str, before: &str, after: &str) {
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    if let Some(i) = (0..b.len().max(a.len())).find(|&i| b.get(i) != a.get(i)) {
        panic!(
            "{what} differs ({} lines before, {} after); first at line {}:\nbefore: {:?}\nafter:  {:?}",
            b.len(),
            a.len(),
            i + 1,
            b.get(i),
            a.get(i)
        );
    }
}

/// Polls until `daemon` holds every id in `expected`, for at most `timeout`.
pub fn wait_holds_all(daemon: &Daemon, expected: &[String], timeout: Duration) {
    let what = format!("{} to hold all {} messages", daemon.name(), expected.len());
    wait::wait_until(timeout, &what, || {
        let held: BTreeSet<String> = ids(&history(daemon)).into_iter().collect();
        let missing: Vec<&String> = expected.iter().filter(|id| !held.contains(*id)).collect();
        match missing.first() {
            None => Ok(()),
            Some(first) => Err(format!("{} missing, e.g. {first}", missing.len())),
        }
    });
}

/// Sends `mid-stream N` to `socket` over one connection until the daemon
/// goes away, counting acknowledgements in `acked`. Returns the acked ids,
/// and what went wrong if the run ended otherwise than by the daemon dying
/// (an error response, or no kill within `timeout`).
pub fn send_until_killed(
    socket: PathBuf,
    acked: Arc<AtomicUsize>,
    timeout: Duration,
) -> (Vec<String>, Option<String>) {
    let mut client = RpcClient::connect(&socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    let mut ids = Vec::new();
    // Bounded, so the thread ends even if the test fails before the kill.
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let text = format!("mid-stream {}", ids.len());
        match client.try_call("send", json!({"text": text}), crate::rpc::CALL_TIMEOUT) {
            Ok(Ok(result)) => {
                let sent: SendResult = serde_json::from_value(result).expect("send result");
                ids.push(sent.id);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Err(error)) => return (ids, Some(format!("{text:?}: {error:?}"))),
            // The daemon died with this send in flight: not acknowledged.
            Err(_) => return (ids, None),
        }
    }
    (ids, Some(format!("still sending after {timeout:?}")))
}
