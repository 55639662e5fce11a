//! `rossipctl events` and `rossipctl tail -f --peers` against real daemons on
//! loopback: what a script sees when a node joins and when it leaves with
//! SIGTERM.
//!
//! Every wait polls with a generous deadline. On failure the rossipctl
//! output (stdout and stderr, from [`Background`]'s `Drop`) and the daemons'
//! command lines and logs (from [`Daemon`]'s `Drop`) are printed.

use std::time::Duration;

use rossip_proto::rpc::PeerStateName;
use rossip_tests::background::Background;
use rossip_tests::cluster::{MEMBERSHIP_TIMEOUT, wait_peer_state};
use rossip_tests::ctl::{first_line_then_closed_stdout, rossipctl, spawn_rossipctl};
use rossip_tests::daemon::Daemon;
use serde_json::Value;

/// How long a membership change or a message may take to reach rossipctl.
/// Well under a second on loopback; this is for loaded CI hosts.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a daemon may take to exit after SIGTERM (its leave included).
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `v` is a peer line about `name` with `change`.
fn is_change(v: &Value, change: &str, name: &str) -> bool {
    v["kind"] == "peer" && v["change"] == change && v["peer"]["name"] == name
}

/// A loopback daemon `name` joining the node at `addr`.
fn joiner(name: &str, addr: &str) -> Daemon {
    Daemon::builder(name).loopback().join(addr).spawn()
}

/// A first node, and a second (`present`) that joined it and that it lists
/// as alive, so a subscription started after this sees it in its snapshot.
fn pair(first: &str, present: &str) -> (Daemon, Daemon) {
    let a = Daemon::builder(first).loopback().spawn();
    let c = joiner(present, &a.addr());
    wait_peer_state(&a, present, PeerStateName::Alive, MEMBERSHIP_TIMEOUT);
    (a, c)
}

/// Panics with `what` and the offending `line` unless `ok` (`Drop`s print
/// the rest).
fn check(events: &Background, ok: bool, what: &str, line: &dyn std::fmt::Display) {
    assert!(ok, "`{}`: expected {what}, got:\n{line}", events.command());
}

#[test]
fn events_json_shows_a_node_joining_and_leaving() {
    // `evt-c` is there before `events` starts: its snapshot line shows the
    // subscription is in place, so `evt-b`'s join cannot happen before it.
    let (a, _c) = pair("evt-a", "evt-c");
    let mut events = spawn_rossipctl(None, a.socket(), &["--json", "events", "--snapshot"]);
    let snapshot = events.wait_for_json(CHANGE_TIMEOUT, "evt-c's snapshot line", |v| {
        is_change(v, "snapshot", "evt-c")
    });
    check(
        &events,
        snapshot["peer"]["state"] == "alive" && snapshot["previous"].is_null(),
        "evt-c alive in the snapshot, with a null `previous`",
        &snapshot,
    );

    let mut b = joiner("evt-b", &a.addr());
    let b_addr = b.addr();
    let joined = events.wait_for_json(CHANGE_TIMEOUT, "evt-b joined", |v| {
        is_change(v, "joined", "evt-b")
    });
    check(
        &events,
        joined["peer"]["state"] == "alive"
            && joined["peer"]["addr"] == b_addr.as_str()
            && joined["previous"].is_null()
            && joined["time"].as_u64().is_some_and(|t| t > 0),
        &format!("evt-b alive at {b_addr}, `previous` null, a `time`"),
        &joined,
    );

    b.stop_with_sigterm(EXIT_TIMEOUT);
    let left = events.wait_for_json(CHANGE_TIMEOUT, "evt-b left", |v| {
        is_change(v, "left", "evt-b")
    });
    check(
        &events,
        left["peer"]["state"] == "left"
            && matches!(left["previous"].as_str(), Some("alive" | "suspect")),
        "evt-b left, previously alive or suspect",
        &left,
    );
    // It said goodbye: nothing reported it failed. (Only evt-b: on a loaded
    // machine a debug daemon starved of CPU for a second may be failed and
    // come back, which is not what this test is about.)
    let failed: Vec<Value> = events
        .json_lines::<Value>()
        .into_iter()
        .filter(|v| v["change"] == "failed" && v["peer"]["name"] == "evt-b")
        .collect();
    check(
        &events,
        failed.is_empty(),
        "no `failed` line for evt-b",
        &format!("{failed:?}"),
    );
}

#[test]
fn events_human_lines_name_the_change() {
    let (a, _c) = pair("evh-a", "evh-c");
    let mut events = spawn_rossipctl(None, a.socket(), &["events", "--snapshot"]);
    events.wait_for_line(CHANGE_TIMEOUT, "evh-c's snapshot line", |l| {
        l.contains(" * evh-c is alive (") && l.contains("; since ")
    });

    let mut b = joiner("evh-b", &a.addr());
    let b_addr = b.addr();
    let joined = events.wait_for_line(CHANGE_TIMEOUT, "evh-b joined", |l| {
        l.contains(" * evh-b joined (")
    });
    let suffix = format!(" at {b_addr}; new -> alive)");
    check(
        &events,
        joined.ends_with(&suffix),
        &format!("the line to end in {suffix:?}"),
        &joined,
    );

    b.stop_with_sigterm(EXIT_TIMEOUT);
    let left = events.wait_for_line(CHANGE_TIMEOUT, "evh-b left", |l| {
        l.contains(" * evh-b left (")
    });
    check(
        &events,
        left.ends_with(" -> left)"),
        "the line to end in \" -> left)\"",
        &left,
    );
}

#[test]
fn tail_follow_peers_interleaves_messages_and_membership() {
    let a = Daemon::builder("tp-a").loopback().spawn();
    rossipctl(a.socket(), &["send", "before the join"]).assert_success();
    let mut tail = spawn_rossipctl(None, a.socket(), &["--json", "tail", "-f", "--peers"]);
    // The backlog is replayed on the subscription itself, so once it is
    // printed the subscription is live and the join below cannot be missed.
    let message = tail.wait_for_json(CHANGE_TIMEOUT, "the message", |v| {
        v["text"] == "before the join"
    });
    check(
        &tail,
        message.get("kind").is_none() && message["origin_name"] == "tp-a",
        "the message line as without --peers (no `kind`)",
        &message,
    );

    let b = joiner("tp-b", &a.addr());
    let joined = tail.wait_for_json(CHANGE_TIMEOUT, "tp-b joined", |v| {
        is_change(v, "joined", "tp-b")
    });
    check(
        &tail,
        joined["peer"]["state"] == "alive",
        "tp-b alive",
        &joined,
    );

    rossipctl(b.socket(), &["send", "-c", "ops", "after the join"]).assert_success();
    let message = tail.wait_for_json(CHANGE_TIMEOUT, "the message from tp-b", |v| {
        v["text"] == "after the join"
    });
    check(
        &tail,
        message["origin_name"] == "tp-b" && message["channel"] == "ops",
        "tp-b's message on #ops",
        &message,
    );
}

#[test]
fn events_into_head_ends_on_a_quiet_bus() {
    // `rossipctl events --snapshot | head -1`: the snapshot's one line, then no membership
    // change ever comes; rossipctl must notice the closed pipe without one.
    let (a, _c) = pair("evq-a", "evq-c");
    let line = first_line_then_closed_stdout(a.socket(), &["--json", "events", "--snapshot"]);
    let snapshot: Value = serde_json::from_str(&line).expect("a JSON line");
    assert!(is_change(&snapshot, "snapshot", "evq-c"), "{line}");
}
