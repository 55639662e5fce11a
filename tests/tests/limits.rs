//! Limits with real daemons on loopback: a sender faster than the history
//! window allows is slowed down (its sends are held and answered late),
//! never accepted and then dropped; a pipelining client gets its answers in
//! order; the message size limit is configurable, and stated when exceeded.

use std::time::Duration;

use rossip_tests::cluster::start_joined_pair;
use rossip_tests::daemon::Daemon;
use rossip_tests::wait;
use serde_json::{Value, json};

/// Long enough for the held sends to be published (the window holds 10
/// messages younger than 3 s: about 3 s per 10 sends) and delivered.
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_flood_into_a_small_window_is_held_not_dropped_and_answered_in_order() {
    let (a, b) = start_joined_pair(
        Daemon::builder("bp-a").loopback().args(["--history", "10"]),
        Daemon::builder("bp-b").loopback(),
    );
    let mut client = a.client();
    // 25 into a window of 10 younger than 3 s: published at about 0, 3 and
    // 6 s, well inside the 10 s a send may be held.
    let count = 25;
    // Pipelined: every request written before any answer is read.
    for i in 0..count {
        let line = json!({"jsonrpc": "2.0", "id": i, "method": "send",
                          "params": {"text": format!("flood {i}")}});
        client.send_line(&line.to_string()).expect("write send");
    }
    let mut seqs = Vec::new();
    for i in 0..count {
        let answer: Value = client.recv_value(TIMEOUT);
        assert_eq!(answer["id"], i, "answers come in request order: {answer}");
        let id = answer["result"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("send {i} was refused: {answer}"));
        let seq: u64 = id
            .rsplit_once('-')
            .and_then(|(_, seq)| seq.parse().ok())
            .unwrap_or_else(|| panic!("message id {id} has no sequence number"));
        seqs.push(seq);
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "accepted in request order: {seqs:?}"
    );
    let status = a.status();
    assert!(
        status.messages.sends_held >= 10,
        "the sends past the window's room were held: {:?}",
        status.messages
    );
    assert_eq!(status.messages.sends_refused, 0);
    assert_eq!(status.messages.sends_waiting, 0);
    assert_eq!(status.messages.in_history, 10, "the window's bound holds");
    wait::wait_until(TIMEOUT, "b received all 25", || {
        b.status().messages.received == count
    });
    assert_eq!(b.status().messages.lost, 0);
}

#[test]
fn the_message_size_limit_is_configurable_and_stated() {
    let (a, b) = start_joined_pair(
        Daemon::builder("size-a")
            .loopback()
            .args(["--max-message-bytes", "200000"]),
        Daemon::builder("size-b").loopback(),
    );
    let text = "z".repeat(200_000);
    let sent = a.client().send(&text);
    wait::wait_until(TIMEOUT, "b holds the 200,000-byte message", || {
        b.client()
            .history()
            .iter()
            .any(|m| m.id == sent.id && m.text == text)
    });
    let refused = a
        .client()
        .call("send", json!({"text": "z".repeat(200_001)}))
        .expect_err("over the limit");
    assert_eq!(refused.code, rossip_proto::rpc::code::MESSAGE_TOO_LARGE);
    assert!(
        refused.message.contains("200001") && refused.message.contains("200000"),
        "{}",
        refused.message
    );
    // B keeps the default limit: it refuses to send what it received.
    let refused = b
        .client()
        .call("send", json!({"text": text}))
        .expect_err("over b's limit");
    assert!(refused.message.contains("65536"), "{}", refused.message);
}
