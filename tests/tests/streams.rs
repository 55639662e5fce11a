//! Streams a client can trust, on real daemons through the real socket:
//! `tail -f` resumes by delivery cursor across a restart (so a message a
//! restarted node caught up from before its last printed line is shown,
//! once); the README's `socat` line and every request read before EOF get
//! their answers; subscribers that read along, or only once it is over,
//! take a 10,000-message catch-up burst whole, without a `lagged` notice; a
//! subscription's replay joins the live
//! stream without a hole or an overlap under concurrent traffic; cursors
//! from another store and malformed ones are refused with their own codes;
//! request ids come back byte for byte.
//!
//! The 3-host test needs root (network namespaces): without it, it prints
//! one line and passes, except with `CI=true`, where it must run. The rest
//! run anywhere, on loopback.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rossip_proto::rpc::{EventBody, code};
use rossip_tests::background::Background;
use rossip_tests::cluster::{start_joined_pair, wait_all_alive};
use rossip_tests::cpu::{exclusive, shared};
use rossip_tests::ctl::spawn_rossipctl;
use rossip_tests::daemon::Daemon;
use rossip_tests::delivery::MessageRecorder;
use rossip_tests::history::{history, ids};
use rossip_tests::nscluster::NsCluster;
use rossip_tests::stream::{Delivered, Subscription, delivered_after, history_page, is_prefix_of};
use rossip_tests::wait::wait_until;
use rossip_tests::{sys, wait};
use serde_json::{Value, json};

use rossip_proto::rpc::code::FOREIGN_CURSOR;

/// mDNS discovery and the first probes on a loaded 2-core machine.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// A restarted node's catch-up, a follower's reconnection, a burst's
/// delivery: all far quicker; the deadline only bounds a broken build.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(120);
/// A line that `tail -f` prints once the daemon delivered its message.
const PRINT_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// tail -f across a restart that caught up older messages

/// Cut A off from B and C; "old" is sent on C, then "new" on A (so "old"
/// orders before "new" in history); kill -9 A, heal, restart it. A catches
/// "old" up from the others after `tail -f` printed "new": a follower that
/// resumes "after the last printed message" in history order never shows
/// it, one that resumes by delivery cursor does.
#[test]
fn tail_f_shows_once_what_a_restarted_node_caught_up_from_before_its_last_line() {
    let _cpu = exclusive();
    let Ok(mut cluster) = NsCluster::start("streams-gap", 3, |_| {}, |_, daemon| daemon) else {
        return;
    };
    cluster.wait_all_alive(cluster.spawned, DISCOVERY_TIMEOUT, "discovery");
    let (a, c) = (0, 2);
    let socket = cluster.daemons[a].socket().to_path_buf();
    let mut human = spawn_rossipctl(None, &socket, &["tail", "-f", "-n", "0"]);
    let mut json = spawn_rossipctl(None, &socket, &["--json", "tail", "-f", "-n", "0"]);
    wait_following(&cluster.daemons[a], &mut [&mut human, &mut json]);

    cluster.lan.isolate(a);
    cluster.daemons[c].client().send("old");
    let b = &cluster.daemons[1];
    wait_until(CONVERGENCE_TIMEOUT, "h2 to hold \"old\" from h3", || {
        texts(&history(b)).contains("old")
    });
    cluster.daemons[a].client().send("new");
    for tail in [&mut human, &mut json] {
        tail.wait_for_line(PRINT_TIMEOUT, "\"new\"", |l| is_text(l, "new"));
    }
    assert!(
        !texts(&history(&cluster.daemons[a])).contains("old"),
        "h1 got \"old\" while cut off: the cut did not hold (isolation drops: {})",
        cluster.lan.isolation_drops()
    );

    // The followers are held still until the restarted node caught "old"
    // up, so that they resume after it holds it whatever the timing (as a
    // follower on a busy machine may): they must still show it.
    let followers = [human.pid(), json.pid()];
    for pid in followers {
        sys::signal(pid, "STOP").unwrap_or_else(|e| panic!("SIGSTOP `tail -f`: {e}"));
    }
    cluster.daemons[a].kill9();
    cluster.lan.heal();
    cluster.restart(a);
    let restarted = &cluster.daemons[a];
    wait_until(CONVERGENCE_TIMEOUT, "h1 to catch \"old\" up", || {
        texts(&history(restarted)).contains("old")
    });
    for pid in followers {
        sys::signal(pid, "CONT").unwrap_or_else(|e| panic!("SIGCONT `tail -f`: {e}"));
    }
    let held = ids(&history(restarted));
    // Delivered after "new" on this node, so a cursor-following tail owes it.
    for tail in [&mut human, &mut json] {
        tail.wait_for_line(PRINT_TIMEOUT, "\"old\", caught up after the restart", |l| {
            is_text(l, "old")
        });
    }
    // Whatever tail -f printed before this, it printed before "end".
    restarted.client().send("end");
    for tail in [&mut human, &mut json] {
        tail.wait_for_line(PRINT_TIMEOUT, "\"end\"", |l| is_text(l, "end"));
        for text in ["old", "new", "end"] {
            let printed = tail.lines().iter().filter(|l| is_text(l, text)).count();
            assert_eq!(
                printed,
                1,
                "`{}` printed {text:?} {printed} times (h1 holds {held:?})",
                tail.command()
            );
        }
        assert!(
            tail.exited().is_none(),
            "`{}` ended; it must keep following across a restart",
            tail.command()
        );
    }
}

/// Sends `ready N` on `daemon` until every tail printed one: a follower that
/// has not subscribed yet would miss a single message.
fn wait_following(daemon: &Daemon, tails: &mut [&mut Background]) {
    let mut client = daemon.client();
    let mut sent = 0;
    wait_until(PRINT_TIMEOUT, "every `tail -f` to print a message", || {
        sent += 1;
        client.send(&format!("ready {sent}"));
        tails
            .iter()
            .all(|t| t.lines().iter().any(|l| l.contains("ready ")))
    });
}

/// Whether a `tail` line (human or `--json`) shows a message whose text is
/// exactly `text`.
fn is_text(line: &str, text: &str) -> bool {
    match serde_json::from_str::<Value>(line) {
        Ok(message) => message["text"] == text,
        Err(_) => line.ends_with(&format!(": {text}")),
    }
}

/// The texts of `messages`.
fn texts(messages: &[rossip_proto::rpc::MessageView]) -> BTreeSet<String> {
    messages.iter().map(|m| m.text.clone()).collect()
}

// ---------------------------------------------------------------------------
// Every request read gets its answer, half-close included

/// The README's socat example runs (100 times) against one daemon, and every
/// run prints its answer: the request is written, socat shuts down its
/// write side, and the daemon must answer before it closes the connection.
#[test]
fn the_readme_socat_line_prints_its_answer_100_times_of_100() {
    let _cpu = shared();
    sys::find_program("socat")
        .expect("`socat` is needed for this test (apt-get install socat; .ci/run installs it)");
    let daemon = Daemon::builder("socat")
        .loopback()
        .log_level("info")
        .spawn();
    let (line, socket_in_readme) = readme_socat_example();
    // The README's command, against this daemon's socket.
    let command = line.replace(socket_in_readme, "\"$SOCKET\"");
    let runs = 100;
    let mut missing = Vec::new();
    for run in 0..runs {
        let out = sys::output(
            Command::new("sh")
                .args(["-c", &command])
                .env("SOCKET", daemon.socket()),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let answered = stdout.lines().any(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["id"] == 1 && v["result"]["id"].is_string())
        });
        if !answered {
            missing.push(format!(
                "run {run}: {} stdout {stdout:?} stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "`{command}` (SOCKET={}) printed no answer in {} of {runs} runs:\n{}",
        daemon.socket().display(),
        missing.len(),
        missing.join("\n")
    );
    let sent = history(&daemon)
        .iter()
        .filter(|m| m.text == "hello from socat")
        .count();
    assert_eq!(sent, runs, "messages the {runs} runs sent");
}

/// The README's `echo '…' | socat - UNIX-CONNECT:…` example as one shell
/// line, and the socket path it names.
fn readme_socat_example() -> (String, &'static str) {
    const SOCKET: &str = "$XDG_RUNTIME_DIR/rossip/rossipd.sock";
    let readme = sys::read(&sys::repo().join("README.md"));
    let mut lines = readme.lines();
    let first = lines
        .find(|l| l.starts_with("$ echo '") && l.contains("\"send\""))
        .expect("README.md has the `$ echo '{…send…}' | socat …` example");
    let mut command = first.trim_start_matches("$ ").to_owned();
    while command.ends_with('\\') {
        command.pop();
        command.push_str(
            lines
                .next()
                .expect("the example's continuation line")
                .trim(),
        );
    }
    assert!(
        command.contains("| socat ") && command.contains(SOCKET),
        "the README's socat example is not `echo … | socat - UNIX-CONNECT:{SOCKET}` any more: \
         {command}"
    );
    (command, SOCKET)
}

/// A request without a final newline, then EOF: the daemon answers it.
#[test]
fn a_request_without_a_final_newline_then_eof_gets_its_answer() {
    let _cpu = shared();
    let daemon = Daemon::builder("nonewline").loopback().spawn();
    for run in 0..10 {
        for (id, request) in [
            (7, json!({"jsonrpc": "2.0", "id": 7, "method": "status"})),
            (
                8,
                json!({"jsonrpc": "2.0", "id": 8, "method": "send",
                       "params": {"text": format!("no newline {run}")}}),
            ),
        ] {
            let written = request.to_string();
            let answers = answers_after_eof(daemon.socket(), written.as_bytes());
            assert!(
                answers.len() == 1 && answers[0]["id"] == id && answers[0].get("result").is_some(),
                "run {run}: {written} without a newline, then EOF: answered {answers:?}"
            );
        }
    }
}

/// Many sends written at once, then EOF: every one is answered, in order.
#[test]
fn pipelined_sends_then_eof_are_all_answered_in_order() {
    let _cpu = shared();
    let daemon = Daemon::builder("pipeline-eof").loopback().spawn();
    let sends = 50;
    for run in 0..10 {
        let mut written = String::new();
        for id in 1..=sends {
            let text = format!("pipelined {run}/{id}");
            written.push_str(
                &json!({"jsonrpc": "2.0", "id": id, "method": "send", "params": {"text": text}})
                    .to_string(),
            );
            written.push('\n');
        }
        // Every other run, the last request lacks its newline.
        if run % 2 == 1 {
            written.pop();
        }
        let answers = answers_after_eof(daemon.socket(), written.as_bytes());
        let answered: Vec<i64> = answers
            .iter()
            .filter(|a| a["result"]["id"].is_string())
            .filter_map(|a| a["id"].as_i64())
            .collect();
        let expected: Vec<i64> = (1..=sends).collect();
        assert_eq!(
            answered, expected,
            "run {run}: {sends} pipelined sends then EOF; the answers were {answers:?}"
        );
    }
}

/// Writes `bytes` on a new connection, shuts down the write side, and reads
/// until the daemon closes: every line it answered. Panics if it neither
/// answers nor closes within [`PRINT_TIMEOUT`].
fn answers_after_eof(socket: &Path, bytes: &[u8]) -> Vec<Value> {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream.write_all(bytes).expect("write the requests");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close the connection");
    stream
        .set_read_timeout(Some(PRINT_TIMEOUT))
        .expect("set a read timeout");
    let mut read = Vec::new();
    if let Err(e) = stream.read_to_end(&mut read) {
        panic!(
            "the daemon neither answered nor closed within {PRINT_TIMEOUT:?} ({e}); read so far: {}",
            String::from_utf8_lossy(&read)
        );
    }
    String::from_utf8_lossy(&read)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("an answer that is not JSON ({e}): {l}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Backlog as promised

/// Messages of the catch-up burst.
const BURST: usize = 10_000;

/// Nodes the burst's messages come from: a late joiner repairs from each
/// of them at once, as on a LAN.
const BURST_SOURCES: usize = 4;

/// A late joiner delivers the 10,000 messages it missed in one burst (from
/// four nodes at once) to a subscriber that reads all along, and to one
/// that reads nothing until the burst is over and then reads it all: each
/// gets every message once, and no `lagged` notice (the messages never left
/// the history window, so nothing was lost to either).
#[test]
fn subscribers_get_a_10000_message_catch_up_burst_once_without_lagged() {
    let _cpu = exclusive();
    let first = Daemon::builder("burst-a1")
        .loopback()
        .log_level("info")
        .spawn();
    let mut sources = vec![first];
    for i in 2..=BURST_SOURCES {
        let seed = sources[0].addr();
        sources.push(
            Daemon::builder(&format!("burst-a{i}"))
                .loopback()
                .log_level("info")
                .join(&seed)
                .spawn(),
        );
    }
    let members: Vec<(&str, &Path)> = sources.iter().map(|d| (d.name(), d.socket())).collect();
    wait_all_alive(&members, DISCOVERY_TIMEOUT);
    std::thread::scope(|scope| {
        for (i, source) in sources.iter().enumerate() {
            scope.spawn(move || {
                send_pipelined(source, &format!("burst/{i}"), BURST / BURST_SOURCES)
            });
        }
    });
    let late = Daemon::builder("burst-late")
        .loopback()
        .log_level("info")
        .spawn();
    let recorder = MessageRecorder::start(late.name(), late.socket())
        .unwrap_or_else(|e| panic!("a subscriber on {}: {e}", late.name()));
    wait_until(CONVERGENCE_TIMEOUT, "the subscriber on burst-late", || {
        recorder.subscribed().unwrap_or_else(|why| panic!("{why}"))
    });
    let mut paused = late.client();
    paused.subscribe(json!({}));
    // It joins late, so everything the others sent reaches it as one catch-up burst.
    late.client()
        .call("join", json!({"addr": sources[0].addr()}))
        .unwrap_or_else(|e| panic!("burst-late joining burst-a1: {e:?}"));
    let outcome = wait::try_wait_until(CONVERGENCE_TIMEOUT, || {
        recorder.lagged() > 0 || recorder.count("burst") == BURST
    });
    assert_eq!(
        recorder.lagged(),
        0,
        "a subscriber that kept reading was told it lagged, after {} of {BURST} messages",
        recorder.count("burst")
    );
    assert!(
        outcome.is_ok(),
        "the subscriber got {} of {BURST} messages within {CONVERGENCE_TIMEOUT:?}; burst-late \
         holds {}",
        recorder.count("burst"),
        history(&late).len()
    );
    // Anything delivered twice would come before a message sent after it.
    sources[0].client().send("burst-end");
    wait_until(PRINT_TIMEOUT, "the message after the burst", || {
        recorder.count("burst-end") == 1
    });
    assert_eq!(recorder.duplicates(), 0, "messages delivered twice");
    assert_eq!(recorder.lagged(), 0, "a lagged notice after the burst");
    assert_eq!(recorder.count("burst"), BURST);

    // The burst is over (the late node delivered it all, and one more): the
    // subscriber that waited reads now.
    let mut keys = BTreeSet::new();
    let mut twice = Vec::new();
    while !keys.contains("burst-end") {
        let event = paused.next_event(PRINT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "the subscriber that read after the burst got {} of {BURST} messages, then \
                 nothing for {PRINT_TIMEOUT:?}",
                keys.len()
            )
        });
        match event.event {
            EventBody::Message { message } => {
                let key = rossip_tests::delivery::key_of(&message.text).to_owned();
                if !keys.insert(key.clone()) {
                    twice.push(key);
                }
            }
            EventBody::Lagged { dropped, .. } => panic!(
                "the subscriber that read after the burst was told it lagged (dropped {dropped}) \
                 after {} messages, although burst-late holds all {BURST}",
                keys.len()
            ),
            EventBody::Peer { .. }
            | EventBody::Presence { .. }
            | EventBody::DirectStatus { .. } => {}
        }
    }
    assert!(
        twice.is_empty(),
        "the subscriber that read after the burst got {} messages twice, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    assert_eq!(keys.len(), BURST + 1, "messages the paused subscriber got");
}

/// Sends `tag/0 …` … `tag/{count-1} …` (short texts) to `daemon`, many
/// requests ahead of their answers; panics on a refused send.
fn send_pipelined(daemon: &Daemon, tag: &str, count: usize) {
    let texts = (0..count).map(|k| format!("{tag}/{k} pppppppppp"));
    if let Err(why) = daemon
        .client()
        .send_pipelined(texts, 256, CONVERGENCE_TIMEOUT)
    {
        panic!("sending to {}: {why}", daemon.name());
    }
}

// ---------------------------------------------------------------------------
// Replay to live without a hole or an overlap

/// Subscriptions of each kind started while messages flow.
const ROUNDS: usize = 8;
/// Messages each subscription reads past its replay.
const LIVE_PER_ROUND: usize = 100;

/// Two nodes send all along (so the node under test delivers its own
/// messages and received ones while subscriptions start); subscriptions
/// with `after` a cursor from `history`, and with `n`, are started again
/// and again. Each stream, held against `history {after}` read afterwards,
/// is the node's delivery order: nothing missing, nothing twice.
#[test]
fn replay_joins_live_without_a_hole_or_an_overlap_under_concurrent_traffic() {
    let _cpu = exclusive();
    let (a, b) = start_joined_pair(
        Daemon::builder("replay-a").loopback().log_level("info"),
        Daemon::builder("replay-b").loopback().log_level("info"),
    );
    let traffic = Traffic::start(&[&a, &b]);
    wait_until(CONVERGENCE_TIMEOUT, "traffic on replay-a", || {
        history(&a).len() > 200
    });
    for round in 0..ROUNDS {
        check_after_subscription(&a, round);
        check_n_subscription(&a, round);
    }
    let sent = traffic.stop();
    sys::say(&format!(
        "streams: {} subscriptions checked while {sent} messages were sent",
        2 * ROUNDS
    ));
}

/// `subscribe {after: C}` with C a cursor from a recent `history` page: the
/// stream is exactly `history {after: C}`, and the subscribe result's
/// cursor is where the replay ended within it.
fn check_after_subscription(daemon: &Daemon, round: usize) {
    let mut client = daemon.client();
    let (recent, _) = history_page(&mut client, json!({"n": 20}))
        .unwrap_or_else(|e| panic!("history {{n: 20}}: {e:?}"));
    let from = recent
        .first()
        .unwrap_or_else(|| panic!("replay-a's history is empty"))
        .cursor
        .clone();
    let mut subscription = Subscription::start(daemon.socket(), json!({"after": from}))
        .unwrap_or_else(|e| panic!("round {round}: subscribe {{after: {from}}} refused: {e:?}"));
    let replay_end = subscription
        .start
        .clone()
        .unwrap_or_else(|| panic!("round {round}: a subscribe result without a cursor"));
    subscription
        .read_until(CONVERGENCE_TIMEOUT, |s| {
            let messages = s.messages();
            messages
                .iter()
                .position(|m| m.cursor == replay_end)
                .is_some_and(|end| messages.len() > end + LIVE_PER_ROUND)
                || !s.lagged().is_empty()
        })
        .unwrap_or_else(|why| {
            panic!("round {round}: subscribe {{after: {from}}} (replay to {replay_end}): {why}")
        });
    assert_no_lag(&subscription, round);
    let stream = subscription.messages();
    let reference = delivered_after(daemon.socket(), &from, stream.len());
    if let Err(why) = is_prefix_of(&stream, &reference) {
        panic!("round {round}: subscribe {{after: {from}}} against history {{after}}: {why}");
    }
}

/// `subscribe {n: 20}`: 20 messages the node delivered before the
/// subscription's cursor C (whichever order the replay picks them in), each
/// once, then exactly `history {after: C}`: no hole between replay and live,
/// and nothing of the replay again.
fn check_n_subscription(daemon: &Daemon, round: usize) {
    const REPLAY: usize = 20;
    let mut client = daemon.client();
    // Far enough back that the replay starts after it, however fast messages come.
    let (before, _) = history_page(&mut client, json!({"n": 2_000}))
        .unwrap_or_else(|e| panic!("history {{n: 2000}}: {e:?}"));
    let from = before
        .first()
        .unwrap_or_else(|| panic!("replay-a's history is empty"))
        .cursor
        .clone();
    let mut subscription = Subscription::start(daemon.socket(), json!({"n": REPLAY}))
        .unwrap_or_else(|e| panic!("round {round}: subscribe {{n: {REPLAY}}} refused: {e:?}"));
    let live_from = subscription
        .start
        .clone()
        .unwrap_or_else(|| panic!("round {round}: a subscribe result without a cursor"));
    subscription
        .read_until(CONVERGENCE_TIMEOUT, |s| {
            s.messages().len() >= REPLAY + LIVE_PER_ROUND || !s.lagged().is_empty()
        })
        .unwrap_or_else(|why| panic!("round {round}: subscribe {{n: {REPLAY}}}: {why}"));
    assert_no_lag(&subscription, round);
    let stream = subscription.messages();
    let mut seen = BTreeSet::new();
    for (i, m) in stream.iter().enumerate() {
        assert!(
            seen.insert(&m.id),
            "round {round}: subscribe {{n: {REPLAY}}} delivered {} twice (event {i})",
            m.id
        );
    }
    let (replay, live) = stream.split_at(REPLAY);
    // The replay: delivered at or before C (after `from`, taken earlier).
    let delivered: Vec<Delivered> = delivered_after(daemon.socket(), &from, 2_000 + stream.len());
    let end = delivered
        .iter()
        .position(|m| m.cursor == live_from)
        .unwrap_or_else(|| {
            panic!("round {round}: the subscription's cursor {live_from} is not in history {{after: {from}}}")
        });
    for m in replay {
        assert!(
            delivered[..=end].contains(m),
            "round {round}: subscribe {{n: {REPLAY}}} replayed {} ({:?}, cursor {}), which this \
             node did not deliver before the subscription's cursor {live_from}",
            m.id,
            m.text,
            m.cursor
        );
    }
    // Then live: exactly what was delivered after C.
    let after = delivered_after(daemon.socket(), &live_from, live.len());
    if let Err(why) = is_prefix_of(live, &after) {
        panic!(
            "round {round}: subscribe {{n: {REPLAY}}} after its replay (cursor {live_from}): {why}"
        );
    }
}

fn assert_no_lag(subscription: &Subscription, round: usize) {
    assert!(
        subscription.lagged().is_empty(),
        "round {round}: a subscriber that kept reading lagged: {:?}",
        subscription.lagged()
    );
}

/// One sender thread per daemon, each sending `traffic/<node>/<n>` as fast
/// as its answers come (with a short pause, so the machine keeps room for
/// the subscriptions under test), until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<usize>>,
}

impl Traffic {
    /// Pause between one sender's messages.
    const PAUSE: Duration = Duration::from_millis(2);

    fn start(daemons: &[&Daemon]) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let senders = daemons
            .iter()
            .map(|daemon| {
                let stop = Arc::clone(&stop);
                let mut client = daemon.client();
                let name = daemon.name().to_owned();
                std::thread::spawn(move || {
                    let mut sent = 0;
                    while !stop.load(Ordering::Relaxed) {
                        client.send(&format!("traffic/{name}/{sent}"));
                        sent += 1;
                        // Pacing the load, not waiting for anything.
                        std::thread::sleep(Self::PAUSE);
                    }
                    sent
                })
            })
            .collect();
        Traffic { stop, senders }
    }

    /// Stops the senders; how many messages they sent together.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.senders
            .drain(..)
            .map(|s| s.join().expect("a sender thread"))
            .sum()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        // A failing test stops its senders too (their panics are its own).
        self.stop.store(true, Ordering::Relaxed);
        for sender in self.senders.drain(..) {
            let _ = sender.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Cursors that do not belong, and ids

/// A cursor of another node's store, or of this node's store before its
/// state directory was wiped, is refused with its own code and says so; a
/// malformed one is invalid params.
#[test]
fn foreign_cursors_are_refused_and_malformed_ones_are_invalid_params() {
    let _cpu = shared();
    let mut a = Daemon::builder("cursor-a").loopback().spawn();
    let b = Daemon::builder("cursor-b").loopback().spawn();
    for daemon in [&a, &b] {
        for i in 0..3 {
            daemon.client().send(&format!("{} {i}", daemon.name()));
        }
    }
    let a_cursor = cursor_of_second(&a);
    let b_cursor = cursor_of_second(&b);
    expect_foreign(&b, &a_cursor, "a cursor of cursor-a's store at cursor-b");
    expect_foreign(&a, &b_cursor, "a cursor of cursor-b's store at cursor-a");

    a.kill9();
    let state = a.state_dir().to_path_buf();
    std::fs::remove_dir_all(&state).unwrap_or_else(|e| panic!("wipe {}: {e}", state.display()));
    a.restart();
    for i in 0..3 {
        a.client().send(&format!("after the wipe {i}"));
    }
    expect_foreign(
        &a,
        &a_cursor,
        "a cursor from before the state dir was wiped",
    );

    let mut client = b.client();
    for (params, what) in [
        (json!({"after": "not a cursor"}), "text that is no cursor"),
        (json!({"after": ""}), "an empty cursor"),
        (json!({"after": 42}), "a number"),
        (json!({"after": {"cursor": b_cursor}}), "an object"),
        (
            json!({"after": b_cursor, "since": 0}),
            "`after` with `since`",
        ),
    ] {
        for method in ["history", "subscribe"] {
            let answer = client.call(method, params.clone());
            assert!(
                matches!(&answer, Err(e) if e.code == code::INVALID_PARAMS),
                "{method} {params} ({what}): expected invalid params ({}), got {answer:?}",
                code::INVALID_PARAMS
            );
        }
    }
    client.status();
}

/// The cursor of the second message in `daemon`'s history.
fn cursor_of_second(daemon: &Daemon) -> String {
    let (messages, _) = history_page(&mut daemon.client(), json!({}))
        .unwrap_or_else(|e| panic!("history of {}: {e:?}", daemon.name()));
    messages
        .get(1)
        .map(|m: &Delivered| m.cursor.clone())
        .unwrap_or_else(|| panic!("{} holds fewer than 2 messages", daemon.name()))
}

/// `history` and `subscribe` with `after: cursor` at `daemon` are refused
/// as a foreign cursor, with a message that says what is wrong.
fn expect_foreign(daemon: &Daemon, cursor: &str, what: &str) {
    let mut client = daemon.client();
    for method in ["history", "subscribe"] {
        let answer = client.call(method, json!({"after": cursor}));
        match &answer {
            Err(e) if e.code == FOREIGN_CURSOR => assert!(
                e.message.to_lowercase().contains("cursor"),
                "{method} at {} with {what}: the message does not say what is wrong: {e:?}",
                daemon.name()
            ),
            _ => panic!(
                "{method} {{after: {cursor}}} at {} ({what}): expected {FOREIGN_CURSOR}, got \
                 {answer:?}",
                daemon.name()
            ),
        }
    }
}

/// Request ids come back as written, byte for byte, in results and in
/// errors: a number past u64, one past f64's range, negative zero, a string.
#[test]
fn request_ids_are_echoed_byte_for_byte() {
    let _cpu = shared();
    let daemon = Daemon::builder("ids").loopback().spawn();
    let mut client = daemon.client();
    for id in ["18446744073709551616", "1e400", "-0", "\"x\""] {
        for (request, outcome) in [
            (r#""method":"peers""#, "result"),
            (r#""method":"no.such.method""#, "error"),
            (r#""method":"history","params":{"bogus":1}"#, "error"),
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{id},{request}}}"#);
            client.send_line(&line).expect("write a request");
            let response = client
                .recv_line(rossip_tests::rpc::CALL_TIMEOUT)
                .unwrap_or_else(|e| panic!("{line}: {e}"))
                .unwrap_or_else(|| panic!("{line}: no answer"));
            assert_eq!(
                top_level_member(&response, "id"),
                Some(id),
                "{line}: the id did not come back as written: {response}"
            );
            // Not parsed whole: serde_json refuses `1e400`, which JSON allows.
            assert!(
                top_level_member(&response, outcome).is_some(),
                "{line}: expected a response with {outcome}: {response}"
            );
        }
    }
    client.status();
}

/// The raw text of member `key` of the JSON object `json`, at its top
/// level, as written: `top_level_member(r#"{"a":{"id":1},"id":2e9}"#,
/// "id")` is `2e9`. Needed because parsing would change what is compared
/// (`1e400` does not fit an f64).
fn top_level_member<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // Where the value of the member being read at depth 1 started.
    let mut value_start: Option<usize> = None;
    let mut last_key: Option<&str> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let is_key = depth == 1
                    && value_start.is_none()
                    && json
                        .get(i + 1..)
                        .is_some_and(|rest| rest.trim_start().starts_with(':'));
                if is_key {
                    last_key = Some(&json[start + 1..i]);
                }
            }
            b':' if depth == 1 => value_start = Some(i + 1),
            b'{' | b'[' => depth += 1,
            b'}' | b']' | b',' if depth == 1 => {
                if let (Some(start), Some(found)) = (value_start, last_key)
                    && found == key
                {
                    return Some(json[start..i].trim());
                }
                value_start = None;
                if bytes[i] != b',' {
                    depth -= 1;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[test]
fn top_level_member_reads_the_raw_text() {
    let json = r#"{"jsonrpc":"2.0","result":{"id":"inner","list":[1,{"id":3}]},"id":1e400}"#;
    assert_eq!(top_level_member(json, "id"), Some("1e400"));
    assert_eq!(top_level_member(json, "jsonrpc"), Some("\"2.0\""));
    let first = r#"{"id":"a\"b","error":{"code":-32601,"message":"x, y"}}"#;
    assert_eq!(top_level_member(first, "id"), Some(r#""a\"b""#));
    assert_eq!(top_level_member(r#"{"id":-0}"#, "id"), Some("-0"));
    assert_eq!(top_level_member(r#"{"result":{"id":1}}"#, "id"), None);
}
