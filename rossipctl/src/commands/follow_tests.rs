//! `tail -f` against a scripted fake rossipd on a real Unix socket: a restart with a new
//! history store that refuses the cursor and forgets the last id, a start over overlapping
//! what was printed, a `lagged` notice, and a closed stdout ending the loop.

use jiff::tz::TimeZone;
use rossip_proto::rpc::{ErrorObject, PeerStateName, PeerView, Response};
use serde_json::json;

use super::*;
use crate::commands::test_daemon::{FakeConn, FakeDaemon, run_following};

const ORIGIN: &str = "abababababababababababababababab";

/// The store of the daemon's first life, and of its second (a wiped state directory).
const FIRST_STORE: &str = "00000000000000a1";
const SECOND_STORE: &str = "00000000000000b2";

fn message(seq: u64) -> MessageView {
    message_in(FIRST_STORE, seq)
}

/// Message `seq` as the daemon with history store `store` delivers it (as its `seq`th).
fn message_in(store: &str, seq: u64) -> MessageView {
    MessageView {
        id: format!("{ORIGIN}-{seq}"),
        origin: ORIGIN.to_owned(),
        origin_name: "alice".to_owned(),
        seq,
        ts: 1_000 * seq,
        ts_logical: 0,
        channel: "general".to_owned(),
        text: format!("message {seq}"),
        user: String::new(),
        from: String::new(),
        nick: None,
        to: None,
        key: String::new(),
        verified: true,
        name_trust: rossip_proto::rpc::NameTrust::Pinned,
        cursor: format!("{store}-{seq}"),
    }
}

/// Sends message `seq` of `store` as an event of `subscription`.
fn send_message(conn: &mut FakeConn, subscription: u64, store: &str, seq: u64) {
    let message = message_in(store, seq);
    conn.event(subscription, EventBody::Message { message });
}

/// Runs `tail -f -n 10` (with `--peers` if `peers`, printing JSON) against `script`
/// until stdout closes after `limit` lines; returns what it printed.
fn follow_fake_daemon(
    peers: bool,
    limit: usize,
    script: impl FnOnce(FakeDaemon) + Send + 'static,
) -> String {
    let what = if peers { "tail -f --peers" } else { "tail -f" };
    run_following(what, limit, script, move |resubscriber, out, client| {
        let mut follower = Follower::new(
            None,
            MessagePrinter::new(true, TimeZone::UTC),
            peers.then(|| PeerPrinter::new(true, TimeZone::UTC)),
        );
        let start = HistoryParams {
            n: Some(10),
            ..HistoryParams::default()
        };
        follow(resubscriber, out, &mut follower, client, start)
    })
}

/// The daemon's side of the scenario, step by step.
fn fake_daemon(daemon: FakeDaemon) {
    // First life: history, then a subscription after its cursor that delivers a message,
    // then the daemon dies.
    let mut conn = daemon.accept();
    let request = conn.expect_request("history", json!({"n": 10}));
    let cursor = format!("{FIRST_STORE}-1");
    conn.reply(
        &request,
        json!({"messages": [message(1)], "cursor": cursor}),
    );
    let request = conn.expect_request("subscribe", json!({"events": ["message"], "after": cursor}));
    conn.reply(&request, json!({"subscription": 1, "cursor": cursor}));
    send_message(&mut conn, 99, FIRST_STORE, 50); // another subscription's event: not ours
    send_message(&mut conn, 1, FIRST_STORE, 2);

    // Restarted (the client meanwhile finds no socket and retries) with a wiped state
    // directory: a new store, which refuses the old cursor and does not know message 2.
    let daemon = daemon.restart(conn);
    let mut conn = daemon.accept();
    let after = json!({"events": ["message"], "after": format!("{FIRST_STORE}-2")});
    let request = conn.expect_request("subscribe", after);
    let foreign = ErrorObject::new(code::FOREIGN_CURSOR, "cursor from another store");
    conn.send(&Response::err(request.id.clone().expect("id"), foreign));
    let request = conn.expect_request("history", json!({"since": message(2).id}));
    let unknown = ErrorObject::new(code::UNKNOWN_MESSAGE_ID, "unknown message id");
    conn.send(&Response::err(request.id.clone().expect("id"), unknown));

    // The client falls back to the time of message 2; the answer overlaps (2 again).
    let request = conn.expect_request("history", json!({"since": message(2).ts}));
    let cursor = format!("{SECOND_STORE}-3");
    let replay = [message_in(SECOND_STORE, 2), message_in(SECOND_STORE, 3)];
    conn.reply(&request, json!({"messages": replay, "cursor": cursor}));
    let request = conn.expect_request("subscribe", json!({"events": ["message"], "after": cursor}));
    conn.reply(&request, json!({"subscription": 7, "cursor": cursor}));

    // The client fell behind: message 4 left history before it was read.
    let lagged = EventBody::Lagged {
        dropped: 1,
        cursor: Some(format!("{SECOND_STORE}-4")),
    };
    conn.event(7, lagged);
    send_message(&mut conn, 7, SECOND_STORE, 5);
    send_message(&mut conn, 7, SECOND_STORE, 6); // stdout is closed by now
    conn.wait_for_hang_up();
}

#[test]
fn follow_resumes_by_cursor_after_restart_and_lag_without_duplicates() {
    let printed = follow_fake_daemon(false, 4, fake_daemon);
    let ids: Vec<String> = printed
        .lines()
        .map(|line| {
            let m: MessageView = serde_json::from_str(line).expect("MessageView per line");
            m.id
        })
        .collect();
    let expected: Vec<String> = [1, 2, 3, 5].map(|seq| message(seq).id).to_vec();
    assert_eq!(ids, expected, "printed:\n{printed}");
}

#[test]
fn seen_ids_forget_the_oldest() {
    let mut seen = SeenIds::default();
    assert!(seen.insert("a"));
    assert!(!seen.insert("a"));
    for i in 0..SEEN_CAPACITY {
        assert!(seen.insert(&i.to_string()));
    }
    assert_eq!(seen.order.len(), SEEN_CAPACITY);
    assert!(seen.insert("a"), "the oldest id was forgotten");
}

fn bob(state: PeerStateName) -> PeerView {
    PeerView {
        id: "cd".repeat(16),
        name: "bob".to_owned(),
        addr: "127.0.0.1:7465".to_owned(),
        state,
        since: 5_000,
        last_seen: None,
        rtt_ms: None,
        generation: 1,
        incarnation: 0,
        key: String::new(),
        name_trust: rossip_proto::rpc::NameTrust::Pinned,
    }
}

/// `tail -f --peers`: both kinds subscribed (also after a reconnection), peer lines
/// interleaved in arrival order and told apart by `kind`, messages printed as without
/// `--peers`.
#[test]
fn follow_with_peers_interleaves_membership_changes() {
    let printed = follow_fake_daemon(true, 4, |daemon| {
        let mut conn = daemon.accept();
        let request = conn.expect_request("history", json!({"n": 10}));
        let cursor = format!("{FIRST_STORE}-0");
        conn.reply(&request, json!({"messages": [], "cursor": cursor}));
        let first = json!({"events": ["message", "peer"], "after": cursor});
        let request = conn.expect_request("subscribe", first);
        conn.reply(&request, json!({"subscription": 1, "cursor": cursor}));
        send_message(&mut conn, 1, FIRST_STORE, 1);
        let peer = bob(PeerStateName::Alive);
        conn.event(
            1,
            EventBody::Peer {
                peer,
                previous: None,
            },
        );

        let daemon = daemon.restart(conn);
        let mut conn = daemon.accept();
        let resume = json!({"events": ["message", "peer"], "after": format!("{FIRST_STORE}-1")});
        let request = conn.expect_request("subscribe", resume);
        conn.reply(&request, json!({"subscription": 2}));
        let peer = bob(PeerStateName::Left);
        let previous = Some(PeerStateName::Alive);
        conn.event(2, EventBody::Peer { peer, previous });
        send_message(&mut conn, 2, FIRST_STORE, 2);
        send_message(&mut conn, 2, FIRST_STORE, 3); // stdout is closed by now
        conn.wait_for_hang_up();
    });

    let lines: Vec<serde_json::Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON per line"))
        .collect();
    assert_eq!(lines.len(), 4, "printed:\n{printed}");
    let m1: MessageView = serde_json::from_value(lines[0].clone()).expect("a message line");
    assert_eq!(m1, message(1));
    assert!(
        lines[0].get("kind").is_none(),
        "message lines are as before"
    );
    assert_eq!(lines[1]["kind"], "peer");
    assert_eq!(lines[1]["change"], "joined");
    assert_eq!(lines[1]["peer"]["name"], "bob");
    assert_eq!(lines[2]["kind"], "peer");
    assert_eq!(lines[2]["change"], "left");
    assert_eq!(lines[2]["previous"], "alive");
    let m2: MessageView = serde_json::from_value(lines[3].clone()).expect("a message line");
    assert_eq!(m2, message(2));
}
