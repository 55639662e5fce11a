//! Helpers over several daemons: start a loopback cluster, wait for
//! membership, count deliveries.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rossip_proto::rpc::{EventBody, MessageView, PeerStateName, PeerView};

use crate::daemon::{Daemon, DaemonBuilder};
use crate::rpc::RpcClient;
use crate::wait;

/// How long a small cluster may take to agree that everyone is alive.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to keep listening after the first copy of a message, to catch
/// a duplicate that arrives late (e.g. by anti-entropy).
pub const DUPLICATE_WINDOW: Duration = Duration::from_millis(1500);

/// One mDNS-only daemon per host of `lan`, all spawned before any is waited
/// for (so the discovery time measures the daemons, not their start-up one
/// by one), each ready, all listing each other alive within
/// [`MEMBERSHIP_TIMEOUT`]. Returns the daemons and the time from the first
/// spawn until then.
pub fn start_on_lan(lan: &crate::netns::Lan) -> (Vec<Daemon>, Duration) {
    let started = Instant::now();
    let mut daemons: Vec<Daemon> = lan
        .hosts()
        .iter()
        .map(|host| Daemon::builder(&host.name).netns(&host.ns).spawn_unready())
        .collect();
    for daemon in &mut daemons {
        daemon.wait_ready(crate::daemon::READY_TIMEOUT);
    }
    let nodes: Vec<(&str, &Path)> = daemons.iter().map(|d| (d.name(), d.socket())).collect();
    wait_all_alive(&nodes, MEMBERSHIP_TIMEOUT);
    (daemons, started.elapsed())
}

/// Spawns `first`, then `second` joined to it, and returns once both list
/// each other as `alive`: [`start_loopback_cluster`] for two daemons that
/// need flags of their own.
pub fn start_joined_pair(first: DaemonBuilder, second: DaemonBuilder) -> (Daemon, Daemon) {
    let a = first.spawn();
    let b = second.join(&a.addr()).spawn();
    wait_all_alive(
        &[(a.name(), a.socket()), (b.name(), b.socket())],
        MEMBERSHIP_TIMEOUT,
    );
    (a, b)
}

/// Starts one loopback daemon per name (`--no-mdns --bind 127.0.0.1 --port
/// 0`); every daemon after the first joins the first. Returns once each
/// lists all the others as `alive`.
pub fn start_loopback_cluster(names: &[&str]) -> Vec<Daemon> {
    let mut daemons: Vec<Daemon> = Vec::with_capacity(names.len());
    for name in names {
        let mut builder = Daemon::builder(name).loopback();
        if let Some(first) = daemons.first() {
            builder = builder.join(&first.addr());
        }
        daemons.push(builder.spawn());
    }
    let sockets: Vec<(&str, &Path)> = daemons.iter().map(|d| (d.name(), d.socket())).collect();
    wait_all_alive(&sockets, MEMBERSHIP_TIMEOUT);
    daemons
}

/// `name: state` for every member in `peers`, for failure messages.
pub fn describe_peers(peers: &[PeerView]) -> String {
    let parts: Vec<String> = peers
        .iter()
        .map(|p| format!("{}={}", p.name, p.state.as_str()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// State of the member called `name` in `peers` (the first one listed).
pub fn state_of(peers: &[PeerView], name: &str) -> Option<PeerStateName> {
    peers.iter().find(|p| p.name == name).map(|p| p.state)
}

/// Whether `peers` lists every name in `others` as alive.
pub fn lists_alive(peers: &[PeerView], others: &[&str]) -> bool {
    others
        .iter()
        .all(|name| state_of(peers, name) == Some(PeerStateName::Alive))
}

/// Polls every node's `peers` until each lists all the others as `alive`.
/// Nodes are `(name, socket)`. Returns the time it took.
pub fn wait_all_alive(nodes: &[(&str, &Path)], timeout: Duration) -> Duration {
    let start = Instant::now();
    wait::wait_until(timeout, "every node to list the others as alive", || {
        let mut seen = BTreeMap::new();
        for (name, socket) in nodes {
            let others: Vec<&str> = nodes
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n != name)
                .collect();
            let peers = match RpcClient::connect(socket)
                .and_then(|mut c| c.try_call("peers", serde_json::json!({}), wait_rpc_timeout()))
            {
                Ok(Ok(v)) => serde_json::from_value::<rossip_proto::rpc::PeersResult>(v)
                    .map(|r| r.peers)
                    .map_err(|e| format!("{name}: peers result does not parse: {e}"))?,
                Ok(Err(e)) => return Err(format!("{name}: peers failed: {e:?}")),
                Err(e) => return Err(format!("{name}: {e}")),
            };
            if !lists_alive(&peers, &others) {
                seen.insert(*name, describe_peers(&peers));
            }
        }
        if seen.is_empty() {
            Ok(())
        } else {
            Err(format!("not yet: {seen:?}"))
        }
    });
    start.elapsed()
}

/// Polls `observer`'s `peers {all: true}` until the member called `name` is
/// in `state`.
pub fn wait_peer_state(observer: &Daemon, name: &str, state: PeerStateName, timeout: Duration) {
    let what = format!("{} to see {name} as {}", observer.name(), state.as_str());
    wait::wait_until(timeout, &what, || {
        let peers = RpcClient::connect(observer.socket())
            .map_err(|e| e.to_string())?
            .peers(true);
        if state_of(&peers, name) == Some(state) {
            Ok(())
        } else {
            Err(describe_peers(&peers))
        }
    });
}

/// Reads `message` events from `client` until `expected` copies of `text`
/// arrived, then keeps reading for [`DUPLICATE_WINDOW`] to catch late
/// duplicates; returns every message carrying `text` (other messages are
/// ignored). Panics, naming `who`, if fewer than `expected` arrive within
/// `timeout`.
pub fn collect_messages(
    client: &mut RpcClient,
    who: &str,
    text: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<MessageView> {
    let mut deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(event) = client.next_event(left) else {
            break;
        };
        if let EventBody::Message { message } = event.event
            && message.text == text
        {
            seen.push(message);
            if seen.len() == expected {
                deadline = Instant::now() + DUPLICATE_WINDOW;
            }
        }
    }
    assert!(
        seen.len() >= expected,
        "{who} received {} of {expected} copies of {text:?} within {timeout:?}: {seen:?}",
        seen.len()
    );
    seen
}

/// How many copies of `text` `client` delivers (see [`collect_messages`]);
/// at least one must arrive within `timeout`.
pub fn count_deliveries(client: &mut RpcClient, who: &str, text: &str, timeout: Duration) -> usize {
    collect_messages(client, who, text, 1, timeout).len()
}

/// How many messages in `history` carry `text`.
pub fn count_text(history: &[MessageView], text: &str) -> usize {
    history.iter().filter(|m| m.text == text).count()
}

/// A short RPC timeout for polling loops, so one slow answer does not eat
/// the whole deadline.
fn wait_rpc_timeout() -> Duration {
    Duration::from_secs(5)
}
