//! `events` against a scripted fake rossipd on a real Unix socket: the snapshot and the
//! changes racing with it, a lag, a restart, and a closed stdout ending the loop.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use rossip_proto::rpc::{MessageView, PeerStateName, PeerView};
use serde_json::{Value, json};

use super::*;
use crate::commands::test_daemon::{FakeConn, HeadWriter};
use crate::output::StdoutClosed;

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
    }
}

fn peer_event(name: &str, state: PeerStateName, previous: Option<PeerStateName>) -> EventBody {
    EventBody::Peer {
        peer: peer(name, state),
        previous,
    }
}

/// Runs a watcher on `socket` writing to a stdout that takes `limit` lines; returns what
/// it printed, as JSON values, after checking that it ended because stdout closed.
fn watch(socket: PathBuf, snapshot: bool, limit: usize) -> Vec<Value> {
    let stdout = HeadWriter::new(limit);
    let printed = stdout.clone();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut watcher = Watcher {
            socket: socket.clone(),
            printer: PeerPrinter::new(true, TimeZone::UTC),
            snapshot,
            retry: Duration::from_millis(10),
            reconnected: false,
        };
        let result = Client::connect(&socket)
            .map_err(anyhow::Error::from)
            .and_then(|client| watcher.watch(&mut Out::new(stdout), client));
        let _ = done_tx.send(result);
    });
    let result = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("events did not finish within 30 s");
    let err = result.expect_err("events ends only when stdout closes");
    assert!(err.downcast_ref::<StdoutClosed>().is_some(), "{err:#}");
    let text = printed.text();
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
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
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let server_socket = socket.clone();
    let server = std::thread::spawn(move || {
        let mut conn = FakeConn::accept(&listener);
        let (request, params) = conn.request();
        assert_eq!(request.method, "subscribe");
        assert_eq!(params, json!({"events": ["peer"]}));
        conn.reply(&request, json!({"subscription": 1}));
        // A change that happens between the subscription and the snapshot: it is
        // printed after the snapshot, which may or may not include it already.
        conn.event(1, peer_event("bob", Alive, None));
        let (request, params) = conn.request();
        assert_eq!(
            (request.method.as_str(), params),
            ("peers", json!({"all": true}))
        );
        conn.reply(&request, json!({"peers": [peer("carol", Failed)]}));
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
        };
        conn.event(1, EventBody::Message { message });
        // Fell behind: the member list is fetched again.
        conn.event(1, EventBody::Lagged { dropped: 3 });
        let (request, params) = conn.request();
        assert_eq!(
            (request.method.as_str(), params),
            ("peers", json!({"all": true}))
        );
        conn.reply(&request, json!({"peers": [peer("bob", Alive)]}));
        drop(conn);
        drop(listener);
        std::fs::remove_file(&server_socket).expect("remove socket");

        // Restarted: subscribe and snapshot again (the new daemon knows nobody yet).
        let listener = UnixListener::bind(&server_socket).expect("rebind");
        let mut conn = FakeConn::accept(&listener);
        let (request, params) = conn.request();
        assert_eq!(params, json!({"events": ["peer"]}));
        conn.reply(&request, json!({"subscription": 5}));
        let (request, _) = conn.request();
        assert_eq!(request.method, "peers");
        conn.reply(&request, json!({"peers": []}));
        conn.event(5, peer_event("bob", Left, Some(Alive)));
        conn.event(5, peer_event("bob", Alive, Some(Left))); // stdout is closed by now
        conn.wait_for_hang_up();
    });

    let lines = watch(socket, true, 4);
    server.join().expect("fake daemon saw what it expected");
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
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let server = std::thread::spawn(move || {
        let mut conn = FakeConn::accept(&listener);
        let (request, params) = conn.request();
        assert_eq!(params, json!({"events": ["peer"]}));
        conn.reply(&request, json!({"subscription": 1}));
        conn.event(1, peer_event("bob", Suspect, Some(Alive)));
        // A lag without --snapshot asks nothing of the daemon.
        conn.event(1, EventBody::Lagged { dropped: 1 });
        conn.event(1, peer_event("bob", Failed, Some(Suspect)));
        conn.event(1, peer_event("bob", Alive, Some(Failed))); // stdout is closed by now
        conn.wait_for_hang_up();
    });
    let lines = watch(socket, false, 2);
    server.join().expect("fake daemon saw what it expected");
    assert_eq!(
        summary(&lines),
        [
            row("suspected", "bob", "suspect"),
            row("failed", "bob", "failed"),
        ]
    );
}
