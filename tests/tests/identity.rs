//! One node identity on two machines: h2 and h3 start with copies of one
//! state directory (one node key, so one node id), h1 is a normal node; all
//! find each other by mDNS in network namespaces. One copy must say so
//! loudly, naming both addresses, and take a new identity; the two must not
//! race (bounded log), and all three must deliver each other's messages
//! once. Then the copy that yielded gets the shared key back and restarts:
//! a copy started well after the other (the age difference that made the
//! race run for as many rounds as milliseconds), which now keeps the id
//! while the older one yields. Needs root, iproute2 and nftables; without
//! them it prints one line and passes, except with `CI=true`, where it must
//! run.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use rossip_proto::rpc::PeerStateName;
use rossip_tests::cluster::count_deliveries;
use rossip_tests::cpu::shared;
use rossip_tests::daemon::{Daemon, DaemonBuilder};
use rossip_tests::nscluster::NsCluster;
use rossip_tests::rpc::RpcClient;
use rossip_tests::{sys, wait};

/// mDNS, the first probes and the switch; generous for a loaded machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Each message must reach every node within this.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The window over which the log must stay quiet after the switch: the
/// race this guards against wrote thousands of lines a second.
const QUIET_WINDOW: Duration = Duration::from_secs(10);
/// Most bytes the three logs (at `info`) may grow by in [`QUIET_WINDOW`]:
/// a settled cluster logs next to nothing; the race logged about 700 kB/s.
const MAX_QUIET_LOG_BYTES: u64 = 64 * 1024;
/// Most renewal lines ("declared failed while running") a copy may log in
/// all: they are not supposed to happen here at all.
const MAX_RENEWAL_LINES: usize = 3;

/// The WARN line of the copy that yields.
const IN_USE: &str = "this node's id is also used by the node at";
/// The WARN line once it switched.
const TOOK_NEW: &str = "this node took a new identity";
const RENEWAL: &str = "declared failed while running";

/// The shared key's seed, as `node.key` holds it.
fn shared_seed() -> String {
    "5e".repeat(32)
}

/// Writes the shared node key into `dir`, as `rossipd` keeps it.
fn write_node_key(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the state dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod dir");
    let path = dir.join("node.key");
    std::fs::write(&path, format!("{}\n", shared_seed())).expect("write node.key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

fn log_bytes(daemons: &[Daemon]) -> u64 {
    daemons
        .iter()
        .map(|d| std::fs::metadata(d.log_path()).map_or(0, |m| m.len()))
        .sum()
}

/// What `daemon` logged after the first `from` bytes (a phase of the test).
fn log_since(daemon: &Daemon, from: usize) -> String {
    daemon.log().get(from..).unwrap_or_default().to_owned()
}

/// Which of the two copies (host indices 1 and 2) yields, and which keeps
/// the id, in the phase whose logs start at `offsets`; checks what each
/// says and that h1 lists both alive under two ids. Returns (yielder,
/// keeper).
fn settled(
    cluster: &NsCluster,
    copies: &[std::path::PathBuf],
    offsets: &[usize],
) -> (usize, usize) {
    let yielder = wait::wait_until(SETTLE_TIMEOUT, "one copy to take a new identity", || {
        let switched: Vec<usize> = [1, 2]
            .into_iter()
            .filter(|&i| log_since(&cluster.daemons[i], offsets[i]).contains(TOOK_NEW))
            .collect();
        match switched.as_slice() {
            [one] => Ok(*one),
            other => Err(format!("{} copies switched", other.len())),
        }
    });
    let keeper = 3 - yielder;
    let (y, k) = (&cluster.daemons[yielder], &cluster.daemons[keeper]);
    let (yielder_addr, keeper_addr) = (y.addr(), k.addr());
    let ids = wait::wait_until(SETTLE_TIMEOUT, "h1 to list both copies alive", || {
        let peers = cluster.peers_all(0);
        let alive: Vec<_> = peers
            .iter()
            .filter(|p| p.state == PeerStateName::Alive)
            .collect();
        let at = |addr: &str| alive.iter().find(|p| p.addr == addr).map(|p| p.id.clone());
        match (at(&yielder_addr), at(&keeper_addr)) {
            (Some(a), Some(b)) if a != b => Ok((a, b)),
            _ => Err(format!("h1 lists {peers:?}")),
        }
    });
    assert_eq!(ids.0, y.status().id, "h1 lists the new id");
    assert_eq!(ids.1, k.status().id, "h1 lists the kept id");
    for (observer, other) in [(y, k), (k, y)] {
        let other_id = other.status().id;
        wait::wait_until(
            SETTLE_TIMEOUT,
            &format!("{} to list {} alive", observer.name(), other.name()),
            || {
                let peers = observer.client().peers(false);
                peers
                    .iter()
                    .any(|p| p.id == other_id && p.state == PeerStateName::Alive)
                    .then_some(())
                    .ok_or_else(|| format!("{peers:?}"))
            },
        );
    }

    // Loudly, once, naming both addresses.
    let log = log_since(y, offsets[yielder]);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(IN_USE)).collect();
    assert_eq!(
        warnings.len(),
        1,
        "{} should warn once: {warnings:#?}",
        y.name()
    );
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains(&yielder_addr)
            && warnings[0].contains(&keeper_addr),
        "the warning should be a WARN naming {yielder_addr} and {keeper_addr}: {}",
        warnings[0]
    );
    // Its mDNS record follows: the old id's is withdrawn, the new one's
    // announced, so nobody is sent to it under the id the keeper holds.
    let new_id = y.status().id;
    wait::wait_until(SETTLE_TIMEOUT, "the yielder to announce its new id", || {
        log_since(y, offsets[yielder])
            .lines()
            .any(|l| l.contains("mDNS: announcing this node's new id") && l.contains(&new_id))
            .then_some(())
            .ok_or_else(|| format!("no such line in {}'s log", y.name()))
    });
    let saved = std::fs::read_to_string(copies[yielder - 1].join("node.key"))
        .expect("read the yielder's node.key");
    assert_ne!(
        saved.trim(),
        shared_seed(),
        "the yielder did not save its new key"
    );
    assert!(
        !log_since(k, offsets[keeper]).contains(TOOK_NEW),
        "both copies took a new identity"
    );
    (yielder, keeper)
}

/// The logs barely grow over [`QUIET_WINDOW`] (a window, not a wait for a
/// condition), and no copy logs renewals since `offsets`.
fn assert_quiet(cluster: &NsCluster, offsets: &[usize], phase: &str) {
    let before = log_bytes(&cluster.daemons);
    std::thread::sleep(QUIET_WINDOW);
    let grown = log_bytes(&cluster.daemons).saturating_sub(before);
    sys::say(&format!(
        "identity ({phase}): the three logs grew {grown} bytes in {QUIET_WINDOW:?} after the switch"
    ));
    assert!(
        grown <= MAX_QUIET_LOG_BYTES,
        "{phase}: the logs grew {grown} bytes in {QUIET_WINDOW:?}"
    );
    for (daemon, offset) in cluster.daemons.iter().zip(offsets) {
        let renewals = log_since(daemon, *offset).matches(RENEWAL).count();
        assert!(
            renewals <= MAX_RENEWAL_LINES,
            "{phase}: {} logged {renewals} renewals",
            daemon.name()
        );
    }
}

/// Every node delivers a message of every node once.
fn assert_delivery(cluster: &NsCluster, phase: &str) {
    let mut subscribers: Vec<RpcClient> = cluster
        .daemons
        .iter()
        .map(|d| d.client().subscribed_to_messages())
        .collect();
    for sender in &cluster.daemons {
        let text = format!("from {} ({phase})", sender.name());
        sender.client().send(&text);
        for (daemon, subscriber) in cluster.daemons.iter().zip(subscribers.iter_mut()) {
            let copies = count_deliveries(subscriber, daemon.name(), &text, DELIVERY_TIMEOUT);
            assert_eq!(
                copies,
                1,
                "{} delivered {text:?} {copies} times",
                daemon.name()
            );
        }
    }
}

/// The yielder's own name moved to its new key with it: it does not flag
/// itself.
fn assert_not_flagging_itself(daemon: &Daemon) {
    let own_pin = format!("peer={}", daemon.name());
    let flagged: Vec<String> = daemon
        .log()
        .lines()
        .filter(|l| l.contains("NAME CHANGED KEY") && l.contains(&own_pin))
        .map(str::to_owned)
        .collect();
    assert!(
        flagged.is_empty(),
        "{} flags its own name: {flagged:#?}",
        daemon.name()
    );
}

#[test]
fn two_copies_of_one_state_directory_settle_as_two_nodes() {
    let _cpu = shared();
    // Outlives the cluster (declared first, dropped last).
    let states = tempfile::tempdir().expect("temp dir");
    let copies = [states.path().join("h2"), states.path().join("h3")];
    for dir in &copies {
        write_node_key(dir);
    }
    let customize = |index: usize, daemon: DaemonBuilder| {
        let daemon = daemon.log_level("info");
        match index {
            0 => daemon,
            _ => daemon.state_dir(&copies[index - 1]),
        }
    };
    let Ok(mut cluster) = NsCluster::start("identity", 3, |_| {}, customize) else {
        return;
    };

    // Started together: one copy yields.
    let (yielder, _) = settled(&cluster, &copies, &[0, 0, 0]);
    assert_quiet(&cluster, &[0, 0, 0], "started together");
    assert_delivery(&cluster, "started together");
    assert_not_flagging_itself(&cluster.daemons[yielder]);

    // The yielder gets the shared key back and starts again: now the later
    // run, it keeps the id and the other, older copy yields.
    cluster.daemons[yielder].stop_with_sigterm(SETTLE_TIMEOUT);
    write_node_key(&copies[yielder - 1]);
    let offsets: Vec<usize> = cluster.daemons.iter().map(|d| d.log().len()).collect();
    cluster.restart(yielder);
    let (second_yielder, keeper) = settled(&cluster, &copies, &offsets);
    assert_eq!(keeper, yielder, "the later run should keep the id");
    assert_quiet(&cluster, &offsets, "one restarted later");
    assert_delivery(&cluster, "one restarted later");
    assert_not_flagging_itself(&cluster.daemons[second_yielder]);
}
