//! Durable history with real `rossipd` processes on loopback: what `send`
//! acknowledged survives kill -9, a restarted node delivers nothing twice,
//! and its clock never orders new messages before its old ones.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rossip_proto::message::Hlc;
use rossip_proto::rpc::{EventBody, MessageView};
use rossip_proto::sign::NodeKey;
use rossip_proto::{Message, NodeId};
use rossip_tests::cluster::{self, start_loopback_cluster};
use rossip_tests::daemon::Daemon;
use rossip_tests::history::{
    assert_same_lines, assert_unique, ctl_stdout, history, ids, send_until_killed, send_with_cli,
    seq_of, wait_holds_all,
};
use rossip_tests::wait;
use rossipd::store::{self, Batch, Retention, Store};

/// How long messages may take to reach every node.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a restarted node's subscription is watched for re-deliveries
/// after everything settled: several anti-entropy rounds (one a second).
const REDELIVERY_WATCH: Duration = Duration::from_secs(5);

#[test]
fn acknowledged_sends_survive_kill_9_in_the_same_order() {
    let mut daemon = Daemon::builder("solo").loopback().spawn();
    let mut client = daemon.client();
    let sent: Vec<String> = (0..200)
        .map(|i| client.send(&format!("durable {i}")).id)
        .collect();
    drop(client);
    let before = history(&daemon);
    assert_eq!(ids(&before), sent, "history before the kill");

    daemon.kill9();
    daemon.restart();

    let after = history(&daemon);
    assert_unique("solo after restart", &after);
    assert_eq!(
        ids(&after),
        ids(&before),
        "history after kill -9 and restart differs from before"
    );
    assert_eq!(after, before, "the restored messages differ in a field");
    let status = daemon.status();
    assert_eq!(status.store.messages, 200, "store: {:?}", status.store);
    assert_eq!(status.store.errors, 0, "store: {:?}", status.store);
    assert!(
        status.store.path.ends_with(store::FILE_NAME) && status.store.size_bytes > 0,
        "store: {:?}",
        status.store
    );
}

#[test]
fn a_restarted_node_keeps_its_history_and_delivers_nothing_twice() {
    let mut nodes = start_loopback_cluster(&["a", "b"]);
    let mut sender = nodes[0].client();
    let texts: Vec<String> = (0..50).map(|i| format!("before restart {i}")).collect();
    let sent: Vec<String> = texts.iter().map(|t| sender.send(t).id).collect();
    for node in &nodes {
        wait::wait_until(
            DELIVERY_TIMEOUT,
            &format!("{} to hold all 50 messages", node.name()),
            || {
                let held = history(node);
                let held_ids: BTreeSet<String> = ids(&held).into_iter().collect();
                let missing = sent.iter().filter(|id| !held_ids.contains(*id)).count();
                if missing == 0 {
                    Ok(())
                } else {
                    Err(format!("{missing} missing"))
                }
            },
        );
    }

    let b = &mut nodes[1];
    b.kill9();
    b.restart();
    // Subscribed at once: whatever B delivers from now on, this sees.
    let mut watcher = b.client().subscribed_to_messages();
    let restored = history(b);
    assert_unique("b after restart", &restored);
    assert_eq!(ids(&restored), sent, "b's history after restart");

    let sockets: Vec<_> = nodes.iter().map(|d| (d.name(), d.socket())).collect();
    cluster::wait_all_alive(&sockets, cluster::MEMBERSHIP_TIMEOUT);
    let after = "after restart";
    let new_id = sender.send(after).id;

    // Every message event B delivers, until the new message arrived and
    // several anti-entropy rounds passed.
    let mut delivered: Vec<MessageView> = Vec::new();
    let mut deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut arrived = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(event) = watcher.next_event(left) else {
            break;
        };
        if let EventBody::Message { message } = event.event {
            if message.id == new_id && !arrived {
                arrived = true;
                deadline = Instant::now() + REDELIVERY_WATCH;
            }
            delivered.push(message);
        }
    }
    assert!(
        arrived,
        "b never delivered {after:?} ({new_id}) within {DELIVERY_TIMEOUT:?}; it delivered {delivered:?}"
    );
    assert_eq!(
        ids(&delivered),
        vec![new_id.clone()],
        "after its restart b delivered something other than the one new message, once"
    );
    // Also what arrived before the subscription: one first copy this run.
    assert_received_once_since_restart(&nodes[1]);
    let final_history = history(&nodes[1]);
    assert_unique("b at the end", &final_history);
    let mut expected = sent.clone();
    expected.push(new_id);
    assert_eq!(ids(&final_history), expected, "b's history at the end");
}

#[test]
fn a_restarted_node_does_not_take_back_what_left_its_history() {
    // b keeps 10 messages: after 30 from a, the 20 oldest are only in its
    // seen set, while a still offers them. Restarted, b must not pull and
    // deliver them again.
    let a = Daemon::builder("a").loopback().spawn();
    let mut b = Daemon::builder("b")
        .loopback()
        .join(&a.addr())
        .args(["--history", "10"])
        .spawn();
    cluster::wait_all_alive(
        &[(a.name(), a.socket()), (b.name(), b.socket())],
        cluster::MEMBERSHIP_TIMEOUT,
    );
    let mut sender = a.client();
    let sent: Vec<String> = (0..30)
        .map(|i| sender.send(&format!("windowed {i}")).id)
        .collect();
    let newest: Vec<String> = sent[20..].to_vec();
    wait::wait_until(DELIVERY_TIMEOUT, "b to hold the newest 10", || {
        let held = ids(&history(&b));
        if held == newest {
            Ok(())
        } else {
            Err(format!("{held:?}"))
        }
    });
    wait::wait_until(DELIVERY_TIMEOUT, "b to have received all 30", || {
        let received = b.status().messages.received;
        if received >= 30 {
            Ok(())
        } else {
            Err(format!("{received} received"))
        }
    });

    b.kill9();
    b.restart();
    let mut watcher = b.client().subscribed_to_messages();
    assert_eq!(ids(&history(&b)), newest, "b's history after restart");
    cluster::wait_all_alive(
        &[(a.name(), a.socket()), (b.name(), b.socket())],
        cluster::MEMBERSHIP_TIMEOUT,
    );
    let marker = sender.send("marker").id;
    let mut delivered = Vec::new();
    let mut deadline = Instant::now() + DELIVERY_TIMEOUT;
    while let Some(event) = watcher.next_event(deadline.saturating_duration_since(Instant::now())) {
        if let EventBody::Message { message } = event.event {
            if message.id == marker {
                deadline = Instant::now() + REDELIVERY_WATCH;
            }
            delivered.push(message.id);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    assert_eq!(
        delivered,
        vec![marker],
        "after its restart b delivered more than the one new message"
    );
    assert_received_once_since_restart(&b);
}

/// `daemon` (restarted, then sent one new message) delivered exactly one
/// message from others in this run: nothing old came back, not even before
/// a test could subscribe.
fn assert_received_once_since_restart(daemon: &Daemon) {
    let messages = daemon.status().messages;
    assert_eq!(
        messages.received,
        1,
        "{} delivered {} messages from others since its restart; only the new one was due: {messages:?}",
        daemon.name(),
        messages.received
    );
}

#[test]
fn a_restarted_node_stamps_new_messages_after_its_old_ones() {
    let mut daemon = Daemon::builder("clock").loopback().spawn();
    let first = daemon.client().send("first run");
    let own: NodeId = daemon.status().id.parse().expect("status id is a node id");
    daemon.kill9();

    // As if the first run's wall clock had been an hour ahead (then set
    // back): it left a message stamped in the future.
    let ahead = Hlc {
        ms: first.ts + 3_600_000,
        logical: 7,
    };
    // Signed with the node's own key, as its first run would have.
    let seed = std::fs::read_to_string(daemon.state_dir().join("node.key")).expect("node.key");
    let seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&seed.trim()[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let key = NodeKey::from_seed(&seed.try_into().expect("32 bytes"));
    assert_eq!(key.node_id(), own);
    let future = Message::signed(
        &key,
        1_000_000,
        "clock".to_owned(),
        ahead,
        rossip_proto::message::Draft::channel("general", "stamped an hour ahead".to_owned()),
    );
    {
        let retention = Retention {
            limit: 10_000,
            max_bytes: usize::MAX,
            max_age: None,
        };
        let mut store = Store::open(daemon.state_dir(), own, retention).expect("open the store");
        let number = store.next_cursor();
        let batch = Batch {
            messages: vec![(number, &future)],
            seen: vec![(own, vec![(1, 1), (1_000_000, 1_000_000)])],
        };
        store.commit(&batch, first.ts).expect("commit");
    }

    daemon.restart();
    let second = daemon.client().send("second run");
    let held = history(&daemon);
    let stamped = held
        .iter()
        .find(|m| m.id == second.id)
        .unwrap_or_else(|| panic!("history lacks {}: {held:?}", second.id));
    assert!(
        (stamped.ts, stamped.ts_logical) > (ahead.ms, ahead.logical),
        "the restarted node stamped ({}, {}), not after its stored ({}, {})",
        stamped.ts,
        stamped.ts_logical,
        ahead.ms,
        ahead.logical
    );
    let order: Vec<&str> = held.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(order, ["first run", "stamped an hour ahead", "second run"]);
}

#[test]
fn a_corrupt_store_is_moved_aside_and_the_daemon_starts_empty() {
    let mut daemon = Daemon::builder("damaged").loopback().spawn();
    daemon.client().send("lost with the damaged file");
    daemon.kill9();
    let path = daemon.state_dir().join(store::FILE_NAME);
    std::fs::write(&path, vec![0xa5; 4096]).expect("overwrite the store with garbage");

    daemon.restart();
    assert!(
        history(&daemon).is_empty(),
        "the daemon should start with an empty history"
    );
    let aside: Vec<String> = std::fs::read_dir(daemon.state_dir())
        .expect("list the state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("history.db.corrupt-") && !name.contains("-wal"))
        .filter(|name| !name.ends_with("-shm"))
        .collect();
    assert_eq!(aside.len(), 1, "expected one moved-aside file: {aside:?}");
    let kept = std::fs::read(daemon.state_dir().join(&aside[0])).expect("read it");
    assert_eq!(kept, vec![0xa5; 4096], "the damaged file is kept as it was");
    let log = daemon.log();
    assert!(
        log.contains(&path.display().to_string()) && log.contains(&aside[0]),
        "the warning should name {} and {}; log:\n{log}",
        path.display(),
        aside[0]
    );
    // The new store works.
    daemon.client().send("after the damage");
    assert_eq!(daemon.status().store.messages, 1);
}

#[test]
fn restarts_continue_the_sequence_without_gaps() {
    // A gap would be asked about by every node forever: restarts (clean or
    // kill -9) must continue right after the last number used.
    let mut daemon = Daemon::builder("seq").loopback().spawn();
    let mut seqs = Vec::new();
    for run in 0..4 {
        let mut client = daemon.client();
        for i in 0..3 {
            seqs.push(seq_of(&client.send(&format!("run {run} message {i}")).id));
        }
        drop(client);
        if run % 2 == 0 {
            daemon.kill9();
        } else {
            daemon.stop_with_sigterm(Duration::from_secs(20));
        }
        daemon.restart();
    }
    let expected: Vec<u64> = (1..=12).collect();
    assert_eq!(seqs, expected, "sequence numbers across 4 restarts");
}

/// Messages each node of the pair sends in the kill -9 acceptance test.
const PER_NODE: usize = 500;

/// Acknowledged sends to B before it is killed mid-stream.
const ACKS_BEFORE_KILL: usize = 200;

/// Checks the store counters `status` reports for `daemon` holding `held`.
fn assert_store_holds(daemon: &Daemon, held: usize) {
    let store = daemon.status().store;
    assert!(
        store.messages == held as u64
            && store.errors == 0
            && store.size_bytes > 0
            && store.path.ends_with(store::FILE_NAME),
        "{}: store status should count {held} messages and no errors: {store:?}",
        daemon.name()
    );
}

#[test]
fn a_thousand_cli_sends_from_two_nodes_survive_kill_9_and_tail_shows_the_same() {
    let started = Instant::now();
    let mut nodes = start_loopback_cluster(&["a", "b"]);
    let (a_socket, b_socket) = (nodes[0].socket().to_owned(), nodes[1].socket().to_owned());
    // Both nodes send at once, so A's history interleaves what it sent
    // with what it received.
    let (from_a, from_b) = std::thread::scope(|s| {
        let a = s.spawn(|| send_with_cli(&a_socket, "from a", PER_NODE));
        let b = s.spawn(|| send_with_cli(&b_socket, "from b", PER_NODE));
        let a = a.join().expect("the sender to a panicked");
        (a, b.join().expect("the sender to b panicked"))
    });
    eprintln!(
        "sent 2 x {PER_NODE} with rossipctl after {:?}",
        started.elapsed()
    );
    let all: Vec<String> = from_a.iter().chain(&from_b).cloned().collect();
    for node in &nodes {
        wait_holds_all(node, &all, DELIVERY_TIMEOUT);
    }

    let a = &mut nodes[0];
    let before = history(a);
    assert_unique("a before the kill", &before);
    assert_eq!(before.len(), all.len(), "a holds more than was sent");
    // Each node's sends were sequential: history keeps them in send order.
    for (origin, sent) in [("a", &from_a), ("b", &from_b)] {
        let held: Vec<String> = ids(&before)
            .into_iter()
            .filter(|id| sent.contains(id))
            .collect();
        assert_eq!(
            &held, sent,
            "a's history orders {origin}'s messages unlike they were sent"
        );
    }
    let n = all.len().to_string();
    let tail = ctl_stdout(a, &["tail", "-n", &n]);
    let tail_json = ctl_stdout(a, &["--json", "tail", "-n", &n]);
    assert_eq!(tail.lines().count(), all.len(), "tail -n {n}:\n{tail}");
    let json_views: Vec<MessageView> = tail_json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("tail --json line {l}: {e}")))
        .collect();
    assert_eq!(json_views, before, "--json tail -n {n} is not the history");
    assert_store_holds(a, all.len());

    a.kill9();
    a.restart();
    let after = history(a);
    assert_unique("a after restart", &after);
    assert_eq!(
        ids(&after),
        ids(&before),
        "a's history after kill -9 and restart"
    );
    assert_eq!(after, before, "a's restored messages differ in a field");
    assert_same_lines(
        "`tail -n 1000` after kill -9 and restart",
        &tail,
        &ctl_stdout(a, &["tail", "-n", &n]),
    );
    let json_after = ctl_stdout(a, &["--json", "tail", "-n", &n]);
    assert_same_lines(
        "`--json tail -n 1000` after kill -9 and restart",
        &tail_json,
        &json_after,
    );
    assert_store_holds(a, all.len());
    eprintln!("a restarted and checked after {:?}", started.elapsed());

    // Kill B while a client is sending to it: whatever it acknowledged
    // must be there after the restart, once.
    let acked = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (socket, acked) = (b_socket.clone(), Arc::clone(&acked));
        std::thread::spawn(move || send_until_killed(socket, acked, DELIVERY_TIMEOUT))
    };
    wait::wait_until(DELIVERY_TIMEOUT, "b to acknowledge sends", || {
        let n = acked.load(Ordering::SeqCst);
        if n >= ACKS_BEFORE_KILL {
            Ok(())
        } else {
            Err(format!("{n} acked"))
        }
    });
    let b = &mut nodes[1];
    b.kill9();
    let (mid_stream, problem) = sender.join().expect("the sender to b panicked");
    assert_eq!(problem, None, "the sends to b did not end with its kill");
    b.restart();
    let restored = history(b);
    assert_unique("b after restart", &restored);
    let held: BTreeSet<String> = ids(&restored).into_iter().collect();
    let lost: Vec<&String> = all
        .iter()
        .chain(&mid_stream)
        .filter(|id| !held.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "b lost {} acknowledged messages (of {} sent mid-stream before the kill), e.g. {:?}",
        lost.len(),
        mid_stream.len(),
        lost.first()
    );
    let acked_order: Vec<String> = ids(&restored)
        .into_iter()
        .filter(|id| mid_stream.contains(id))
        .collect();
    assert_eq!(acked_order, mid_stream, "b's history reorders its sends");
    // What B holds beyond the acked: at most the one send in flight at the kill.
    assert!(
        restored.len() <= all.len() + mid_stream.len() + 1,
        "b holds {} messages, {} acknowledged",
        restored.len(),
        all.len() + mid_stream.len()
    );
    assert_store_holds(b, restored.len());
    eprintln!(
        "b killed after {} acked mid-stream sends ({} held after restart); test took {:?}",
        mid_stream.len(),
        restored.len() - all.len(),
        started.elapsed()
    );
}
