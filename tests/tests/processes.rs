//! Real `rossipd` processes on loopback (`--no-mdns --bind 127.0.0.1
//! --port 0`, B and C `--join` A): delivery, graceful SIGTERM, a second
//! daemon on a live socket or a state directory in use, and kill -9.

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
fn a_second_daemon_on_a_state_directory_in_use_refuses_to_start() {
    let first = Daemon::builder("first").loopback().spawn();
    // Its own socket and port: only the state directory (the node
    // identity) is shared.
    let mut second = Daemon::builder("second")
        .loopback()
        .state_dir(first.state_dir())
        .spawn_unready();
    let status = second.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second daemon on the state directory {} should exit non-zero within {EXIT_TIMEOUT:?}; got {status:?}\n{}",
        first.state_dir().display(),
        second.log_excerpt()
    );
    let message = second.log();
    let socket = first.socket().display().to_string();
    for wanted in [
        format!("pid {}", first.pid()),
        format!("rossipctl --socket {socket}"),
        first.state_dir().display().to_string(),
    ] {
        assert!(
            message.contains(&wanted),
            "the refusal should say {wanted:?}; it said:\n{message}"
        );
    }
    assert!(
        !second.socket().exists(),
        "the refused daemon bound its socket {}",
        second.socket().display()
    );
    let status = first.status();
    assert_eq!(status.name, "first", "the first daemon stopped answering");
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
fn a_restarted_daemon_greets_the_peers_in_its_cache() {
    // A lone daemon (no mDNS, no --join) knows nobody: only its peer cache
    // can make it send anything. A socket of this test is the cached peer.
    let stand_in = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    stand_in
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set a read timeout");
    let cached = stand_in.local_addr().expect("its address");
    let mut lone = Daemon::builder("lone").loopback().spawn();
    lone.stop_with_sigterm(EXIT_TIMEOUT);
    std::fs::write(lone.state_dir().join("peers"), format!("{cached}\n"))
        .expect("write the peer cache");
    lone.restart();
    let mut buf = [0u8; 2048];
    let greeting = rossip_tests::wait::try_wait_until(DELIVERY_TIMEOUT, || {
        stand_in
            .recv_from(&mut buf)
            .ok()
            .map(|(len, _)| buf[..len].to_vec())
    })
    .unwrap_or_else(|_| {
        panic!(
            "the restarted daemon never greeted its cached peer {cached}\n{}",
            lone.log_excerpt()
        )
    });
    assert!(
        greeting.starts_with(b"RS"),
        "the greeting is not a rossip datagram: {greeting:02x?}"
    );
}

#[test]
fn a_leaving_daemon_saves_its_live_peers_and_finds_them_again() {
    // a is the seed (no --join, no mDNS): after a restart its peer cache
    // (or the others knocking on its door) brings it back.
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
