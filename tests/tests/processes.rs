//! Real `rossipd` processes on loopback (`--no-mdns --bind 127.0.0.1
//! --port 0`, B and C `--join` A): delivery, graceful SIGTERM, a second
//! daemon on a live socket, and kill -9.

use std::time::Duration;

use rossip_proto::rpc::PeerStateName;
use rossip_tests::cluster::{
    self, count_deliveries, count_text, start_loopback_cluster, wait_peer_state,
};
use rossip_tests::daemon::Daemon;
use rossip_tests::rpc::RpcClient;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// Graceful leave is announced; 30 s leaves room for a busy machine.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);
/// A crash is only noticed by the failure detector (probe, suspicion,
/// timeout), which takes longer than a leave.
const FAILURE_TIMEOUT: Duration = Duration::from_secs(90);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn three_processes_deliver_a_message_exactly_once() {
    let nodes = start_loopback_cluster(&["a", "b", "c"]);
    let mut subscribers: Vec<RpcClient> = nodes
        .iter()
        .map(|d| d.client().subscribed_to_messages())
        .collect();

    let text = "hello from b, as a process";
    let sent = nodes[1].client().send(text);

    for (node, subscriber) in nodes.iter().zip(subscribers.iter_mut()) {
        let copies = count_deliveries(subscriber, node.name(), text, DELIVERY_TIMEOUT);
        assert_eq!(
            copies,
            1,
            "{} delivered {text:?} {copies} times",
            node.name()
        );
        let history = node.client().history();
        assert_eq!(
            count_text(&history, text),
            1,
            "{} history: {history:?}",
            node.name()
        );
        assert!(
            history.iter().any(|m| m.id == sent.id),
            "{} does not hold id {}",
            node.name(),
            sent.id
        );
    }
}

#[test]
fn sigterm_leaves_gracefully_and_removes_the_socket() {
    let mut nodes = start_loopback_cluster(&["a", "b", "c"]);
    let mut leaving = nodes.pop().expect("three nodes");
    let socket = leaving.socket().to_path_buf();
    leaving.stop_with_sigterm(EXIT_TIMEOUT);
    assert!(
        !socket.exists(),
        "{} left its socket {} behind",
        leaving.name(),
        socket.display()
    );
    for observer in &nodes {
        wait_peer_state(observer, "c", PeerStateName::Left, LEAVE_TIMEOUT);
    }
}

#[test]
fn a_second_daemon_on_a_live_socket_refuses_to_start() {
    let first = Daemon::builder("first").loopback().spawn();
    let mut second = Daemon::builder("second")
        .loopback()
        .socket(first.socket())
        .spawn_unready();
    let status = second.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second daemon on {} should exit non-zero within {EXIT_TIMEOUT:?}; got {status:?}\n{}",
        first.socket().display(),
        second.log_excerpt()
    );
    let message = second.log();
    let path = first.socket().display().to_string();
    assert!(
        message.contains(&path) || message.to_lowercase().contains("already"),
        "the refusal should name the socket {path} or say a daemon is already running; it said:\n{message}"
    );
    // The first one is untouched: same socket file, still answering.
    assert!(first.socket().exists(), "the first daemon's socket is gone");
    let status = first.status();
    assert_eq!(status.name, "first", "someone else answers on the socket");
}

#[test]
fn kill_9_is_detected_as_failed() {
    let mut nodes = start_loopback_cluster(&["a", "b", "c"]);
    nodes[2].kill9();
    for observer in &nodes[..2] {
        wait_peer_state(observer, "c", PeerStateName::Failed, FAILURE_TIMEOUT);
    }
    // The survivors still see each other.
    let sockets: Vec<_> = nodes[..2].iter().map(|d| (d.name(), d.socket())).collect();
    cluster::wait_all_alive(&sockets, cluster::MEMBERSHIP_TIMEOUT);
    nodes[0].client().send("after crash");
}

#[test]
fn a_restarted_seed_finds_its_cluster_again_through_its_peer_cache() {
    // a is the seed (no --join, no mDNS): after a restart nothing but its
    // peer cache (or the others knocking) can bring it back.
    let mut nodes = start_loopback_cluster(&["a", "b", "c"]);
    let mut seed = nodes.remove(0);
    seed.stop_with_sigterm(EXIT_TIMEOUT);
    let cache = std::fs::read_to_string(seed.state_dir().join("peers"))
        .expect("a leaving daemon saves its peer cache");
    for other in &nodes {
        assert!(
            cache.lines().any(|line| line == other.addr()),
            "the peer cache of a does not list {} ({}):\n{cache}",
            other.name(),
            other.addr()
        );
    }
    seed.restart();
    let everyone: Vec<_> = std::iter::once(&seed)
        .chain(nodes.iter())
        .map(|d| (d.name(), d.socket()))
        .collect();
    cluster::wait_all_alive(&everyone, cluster::MEMBERSHIP_TIMEOUT);
}
