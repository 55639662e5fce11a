//! `events` against a scripted fake rossipd on a real Unix socket: the snapshot and the
//! changes racing with it, a lag, a restart, and a closed stdout ending the loop.

use rossip_proto::rpc::{MessageView, PeerStateName, PeerView};
use serde_json::{Value, json};

use super::*;
use crate::commands::test_daemon::{FakeConn, FakeDaemon, run_following};

fn peer(name: &str, state: PeerStateName) -> PeerView {
    PeerView {
        id: format!("{name:0>32}"),
        name: name.to_owned(),
        addr: "127.0.0.1:7465".to_owned(),
        state,
        since: 1_000,
        last_seen: None,
        rtt_ms: None,
        generation: 1,
        incarnation: 0,
        key: String::new(),
        name_trust: rossip_proto::rpc::NameTrust::Pinned,
    }
}

fn peer_event(name: &str, state: PeerStateName, previous: Option<PeerStateName>) -> EventBody {
    EventBody::Peer {
        peer: peer(name, state),
        previous,
    }
}

/// Runs a watcher (printing JSON, with `--snapshot` if `snapshot`) against `script`,
/// writing to a stdout that takes `limit` lines; returns what it printed, as JSON values,
/// after checking that it ended because stdout closed.
fn watch_fake_daemon(
    snapshot: bool,
    limit: usize,
    script: impl FnOnce(FakeDaemon) + Send + 'static,
) -> Vec<Value> {
    let text = run_following("events", limit, script, move |resubscriber, out, client| {
        let mut watcher = Watcher {
            printer: PeerPrinter::new(true, TimeZone::UTC),
            snapshot,
        };
        watch(resubscriber, out, &mut watcher, client)
    });
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// Answers the `subscribe` for peer events (all `events` asks for) with `subscription`.
fn answer_subscribe(conn: &mut FakeConn, subscription: u64) {
    let request = conn.expect_request("subscribe", json!({"events": ["peer"]}));
    conn.reply(&request, json!({ "subscription": subscription }));
}

/// Answers the `peers --all` of a snapshot with `members`.
fn answer_peers(conn: &mut FakeConn, members: &[PeerView]) {
    let request = conn.expect_request("peers", json!({"all": true}));
    conn.reply(&request, json!({ "peers": members }));
}

/// (change, name, state) of each printed line, for compact assertions.
fn summary(lines: &[Value]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .map(|l| {
            assert_eq!(l["kind"], "peer", "{l}");
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&l["change"]),
                s(&l["peer"]["name"]),
                s(&l["peer"]["state"]),
            )
        })
        .collect()
}

fn row(change: &str, name: &str, state: &str) -> (String, String, String) {
    (change.to_owned(), name.to_owned(), state.to_owned())
}

#[test]
fn snapshot_then_changes_across_a_lag_and_a_restart() {
    use PeerStateName::{Alive, Failed, Left};
    let lines = watch_fake_daemon(true, 4, |daemon| {
        let mut conn = daemon.accept();
        answer_subscribe(&mut conn, 1);
        // A change that happens between the subscription and the snapshot: it is
        // printed after the snapshot, which may or may not include it already.
        conn.event(1, peer_event("bob", Alive, None));
        answer_peers(&mut conn, &[peer("carol", Failed)]);
        conn.event(99, peer_event("mallory", Alive, None)); // not our subscription
        let message = MessageView {
            id: format!("{}-1", "ab".repeat(16)),
            origin: "ab".repeat(16),
            origin_name: "x".to_owned(),
            seq: 1,
            ts: 1,
            ts_logical: 0,
            channel: "general".to_owned(),
            text: "not asked for".to_owned(),
            user: String::new(),
            from: String::new(),
            nick: None,
            to: None,
            key: String::new(),
            verified: true,
            name_trust: rossip_proto::rpc::NameTrust::Pinned,
            cursor: String::new(),
        };
        conn.event(1, EventBody::Message { message });
        // Fell behind: the member list is fetched again.
        conn.event(
            1,
            EventBody::Lagged {
                dropped: 3,
                cursor: None,
            },
        );
        answer_peers(&mut conn, &[peer("bob", Alive)]);

        // Restarted: subscribe and snapshot again (the new daemon knows nobody yet).
        let daemon = daemon.restart(conn);
        let mut conn = daemon.accept();
        answer_subscribe(&mut conn, 5);
        answer_peers(&mut conn, &[]);
        conn.event(5, peer_event("bob", Left, Some(Alive)));
        conn.event(5, peer_event("bob", Alive, Some(Left))); // stdout is closed by now
        conn.wait_for_hang_up();
    });
    assert_eq!(
        summary(&lines),
        [
            row("snapshot", "carol", "failed"),
            row("joined", "bob", "alive"),
            row("snapshot", "bob", "alive"),
            row("left", "bob", "left"),
        ]
    );
    assert_eq!(lines[3]["previous"], "alive");
    assert!(
        lines
            .iter()
            .all(|l| l["time"].as_u64().is_some_and(|t| t > 0))
    );
}

#[test]
fn without_snapshot_only_changes_are_printed() {
    use PeerStateName::{Alive, Failed, Suspect};
    let lines = watch_fake_daemon(false, 2, |daemon| {
        let mut conn = daemon.accept();
        answer_subscribe(&mut conn, 1);
        conn.event(1, peer_event("bob", Suspect, Some(Alive)));
        // A lag without --snapshot asks nothing of the daemon.
        conn.event(
            1,
            EventBody::Lagged {
                dropped: 1,
                cursor: None,
            },
        );
        conn.event(1, peer_event("bob", Failed, Some(Suspect)));
        conn.event(1, peer_event("bob", Alive, Some(Failed))); // stdout is closed by now
        conn.wait_for_hang_up();
    });
    assert_eq!(
        summary(&lines),
        [
            row("suspected", "bob", "suspect"),
            row("failed", "bob", "failed"),
        ]
    );
}
