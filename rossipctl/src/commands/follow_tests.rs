//! `tail -f` against a scripted fake rossipd on a real Unix socket: a restart that forgets
//! the last id, a replay overlapping what was printed, a `lagged` gap fill, and a closed
//! stdout ending the loop.

use jiff::tz::TimeZone;
use rossip_proto::rpc::{ErrorObject, PeerStateName, PeerView, Response};
use serde_json::json;

use super::*;
use crate::commands::test_daemon::{FakeConn, FakeDaemon, run_following};

const ORIGIN: &str = "abababababababababababababababab";

fn message(seq: u64) -> MessageView {
    MessageView {
        id: format!("{ORIGIN}-{seq}"),
        origin: ORIGIN.to_owned(),
        origin_name: "alice".to_owned(),
        seq,
        ts: 1_000 * seq,
        ts_logical: 0,
        channel: "general".to_owned(),
        text: format!("message {seq}"),
        key: String::new(),
        verified: true,
        name_trust: rossip_proto::rpc::NameTrust::Pinned,
    }
}

/// Sends message `seq` as an event of `subscription`.
fn send_message(conn: &mut FakeConn, subscription: u64, seq: u64) {
    let message = message(seq);
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
        let mut follower = Follower {
            channel: None,
            start: None,
            started_ms: 0,
            last: None,
            seen: SeenIds::default(),
            printer: MessagePrinter::new(true, TimeZone::UTC),
            peers: peers.then(|| PeerPrinter::new(true, TimeZone::UTC)),
        };
        let first = SubscribeParams {
            events: Some(event_kinds(peers)),
            n: Some(10),
            since: None,
            channel: None,
        };
        follow(resubscriber, out, &mut follower, client, first)
    })
}

/// The daemon's side of the scenario, step by step.
fn fake_daemon(daemon: FakeDaemon) {
    // First life: a subscription that delivers two messages, then the daemon dies.
    let mut conn = daemon.accept();
    let request = conn.expect_request("subscribe", json!({"events": ["message"], "n": 10}));
    conn.reply(&request, json!({"subscription": 1}));
    send_message(&mut conn, 1, 1);
    send_message(&mut conn, 99, 50); // another subscription's event: not ours
    send_message(&mut conn, 1, 2);

    // Restarted (the client meanwhile finds no socket and retries). It lost its history,
    // so it does not know message 2 any more.
    let daemon = daemon.restart(conn);
    let mut conn = daemon.accept();
    let since_id = json!({"events": ["message"], "since": message(2).id});
    let request = conn.expect_request("subscribe", since_id);
    let unknown = ErrorObject::new(code::UNKNOWN_MESSAGE_ID, "unknown message id");
    conn.send(&Response::err(request.id.clone().expect("id"), unknown));

    // The client falls back to the time of message 2; the replay overlaps (2 again) and
    // arrives before the subscribe answer, as a real daemon may do.
    let since_time = json!({"events": ["message"], "since": message(2).ts});
    let request = conn.expect_request("subscribe", since_time);
    send_message(&mut conn, 7, 2);
    conn.reply(&request, json!({"subscription": 7}));
    send_message(&mut conn, 7, 3);

    // The client falls behind: the gap is fetched after the last printed id.
    conn.event(7, EventBody::Lagged { dropped: 1 });
    let request = conn.expect_request("history", json!({"since": message(3).id}));
    conn.reply(&request, json!({"messages": [message(3), message(4)]}));
    send_message(&mut conn, 7, 4); // queued before the lag was noticed: a duplicate
    send_message(&mut conn, 7, 5);
    send_message(&mut conn, 7, 6); // stdout is closed by now
    conn.wait_for_hang_up();
}

#[test]
fn follow_resumes_after_restart_and_lag_without_gaps_or_duplicates() {
    let printed = follow_fake_daemon(false, 5, fake_daemon);
    let ids: Vec<String> = printed
        .lines()
        .map(|line| {
            let m: MessageView = serde_json::from_str(line).expect("MessageView per line");
            m.id
        })
        .collect();
    let expected: Vec<String> = (1..=5).map(|seq| message(seq).id).collect();
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
        let first = json!({"events": ["message", "peer"], "n": 10});
        let request = conn.expect_request("subscribe", first);
        conn.reply(&request, json!({"subscription": 1}));
        send_message(&mut conn, 1, 1);
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
        let resume = json!({"events": ["message", "peer"], "since": message(1).id});
        let request = conn.expect_request("subscribe", resume);
        conn.reply(&request, json!({"subscription": 2}));
        let peer = bob(PeerStateName::Left);
        let previous = Some(PeerStateName::Alive);
        conn.event(2, EventBody::Peer { peer, previous });
        send_message(&mut conn, 2, 2);
        send_message(&mut conn, 2, 3); // stdout is closed by now
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
