//! Misconfiguration is loud, with real daemons on loopback: a seed that
//! never answers, a peer with another `--cluster` label, a keyed node and
//! an unkeyed one, two different keys, a clock far off. Each is a WARN line at the default
//! log level (info) naming the address and what to check, and a `problems`
//! entry in `status` (and in `rossipctl status`), rather than `no peers`
//! and a drop counter. A flood of mismatched datagrams does not flood the
//! log, and no number of senders grows the problem table past its bound.
//! A seed that names the node itself (the same join list on every node) is
//! no problem.

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rossip_proto::NodeId;
use rossip_proto::node::ProtocolConfig;
use rossip_proto::rpc::{PeerStateName, ProblemKind, ProblemView};
use rossip_proto::seal::{ClusterKey, Keyring, Sealer};
use rossip_proto::wire::{self, Body, ClusterId, Header};
use rossip_tests::cluster::{MEMBERSHIP_TIMEOUT, wait_peer_state};
use rossip_tests::ctl::rossipctl;
use rossip_tests::daemon::{Daemon, DaemonBuilder};
use rossip_tests::wait;
use rossipd::{MAX_TRACKED, SEED_SILENCE, SWEEP_INTERVAL, WARN_EVERY};
use serde_json::json;

/// A seed is reported after [`SEED_SILENCE`] and at the next sweep; the
/// rest is slack for a loaded machine.
const SEED_REPORT_TIMEOUT: Duration = SEED_SILENCE
    .saturating_add(SWEEP_INTERVAL)
    .saturating_add(Duration::from_secs(55));

/// A refused datagram is listed as soon as it is handled.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

const KEY: &str = "6b1e0f3a9c2d4e5f60718293a4b5c6d7e8f9011223344556677889900aabbccd";
const OTHER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A loopback daemon logging at the default level, so that what the test
/// finds in its log is what an operator sees without asking for more.
fn daemon(name: &str) -> DaemonBuilder {
    Daemon::builder(name).loopback().log_level("info")
}

fn key_file(dir: &std::path::Path, name: &str, key: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("write key file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.to_str().expect("utf-8 path").to_owned()
}

/// The problem of `kind` about `addr` in `d`'s status, or what is listed.
fn problem(d: &Daemon, kind: ProblemKind, addr: &str) -> Result<ProblemView, String> {
    let problems = d.status().problems;
    problems
        .iter()
        .find(|p| p.kind == kind && p.addr.as_deref() == Some(addr))
        .cloned()
        .ok_or_else(|| format!("{} lists {problems:?}", d.name()))
}

/// Waits until `d` lists a problem of `kind` about `addr`.
fn wait_problem(d: &Daemon, kind: ProblemKind, addr: &str, timeout: Duration) -> ProblemView {
    let what = format!("{} to list {} about {addr}", d.name(), kind.as_str());
    wait::wait_until(timeout, &what, || problem(d, kind, addr))
}

/// `d`'s WARN lines that contain every one of `needles`.
fn warnings(d: &Daemon, needles: &[&str]) -> Vec<String> {
    d.log()
        .lines()
        .filter(|l| l.contains(" WARN ") && needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Asserts that `d` logged a WARN line with every one of `needles`.
fn assert_warned(d: &Daemon, needles: &[&str]) {
    // The log line is written before the status that listed it answers;
    // polling covers a slow write.
    let what = format!("a WARN line in {}'s log with {needles:?}", d.name());
    wait::wait_until(REFUSAL_TIMEOUT, &what, || !warnings(d, needles).is_empty());
}

/// Asks `d` to join `addr` (no node of its cluster answers there: the
/// call fails after its 5 s, and its hello went out).
fn join_and_fail(d: &Daemon, addr: &str) {
    let answer = d.client().call("join", json!({ "addr": addr }));
    assert!(
        answer.is_err(),
        "{} joined {addr} across a mismatch: {answer:?}",
        d.name()
    );
}

#[test]
fn a_seed_that_never_answers_is_reported_until_it_answers() {
    // Bound, so nothing else takes the port, and silent.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent socket");
    let seed = silent.local_addr().expect("its address").to_string();
    let a = daemon("seed-asker").join(&seed).spawn();

    let reported = wait_problem(&a, ProblemKind::SeedSilent, &seed, SEED_REPORT_TIMEOUT);
    assert!(
        reported.detail.contains(&seed) && reported.detail.contains("--cluster"),
        "the detail names the seed and what to check: {}",
        reported.detail
    );
    assert!(reported.count >= 1, "{reported:?}");
    assert_warned(&a, &[&seed, "has not answered"]);
    let human = rossipctl(a.socket(), &["status"]);
    human.assert_success();
    assert!(
        human.stdout.contains("\nproblems:\n  seed_silent: seed ") && human.stdout.contains(&seed),
        "rossipctl status lists the problem:\n{}",
        human.stdout
    );

    // The seed comes up: the problem is over. (It greets the asker too, so
    // the test need not wait for the asker's next retry, up to 30 s away.)
    let port = silent.local_addr().expect("its address").port();
    drop(silent);
    let b = Daemon::builder("seed-late")
        .args([
            "--no-mdns",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .join(&a.addr())
        .log_level("info")
        .spawn();
    wait_peer_state(&a, b.name(), PeerStateName::Alive, MEMBERSHIP_TIMEOUT);
    wait::wait_until(
        REFUSAL_TIMEOUT,
        "the seed problem to clear",
        || match problem(&a, ProblemKind::SeedSilent, &seed) {
            Ok(still) => Err(format!("still listed: {still:?}")),
            Err(_) => Ok(()),
        },
    );
    let ok = rossipctl(b.socket(), &["status"]);
    ok.assert_success();
    assert!(
        !ok.stdout.contains("problems"),
        "no problems, nothing extra:\n{}",
        ok.stdout
    );
}

#[test]
fn a_seed_naming_this_node_is_not_reported() {
    // The same join list on every node names each node itself too, often
    // at another of its addresses than the one it advertises (a host name
    // that /etc/hosts maps to 127.0.1.1). Its own port, chosen up front.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let own = [format!("127.0.0.2:{port}"), format!("127.0.0.1:{port}")];
    // A seed that is silent indeed, in the same join list: once it is
    // reported, the silence period has passed for all of them.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent socket");
    let control = silent.local_addr().expect("its address").to_string();
    let a = Daemon::builder("seed-self")
        .args([
            "--no-mdns",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .join(&own[0])
        .join(&own[1])
        .join(&control)
        .log_level("info")
        .spawn();
    assert_eq!(a.addr(), own[1], "the daemon took the chosen port");

    // Every sample of the status until the control seed is reported, and
    // for two sweeps after it, lists no problem about this node's own.
    let own_listed = |d: &Daemon| -> Option<ProblemView> {
        d.status()
            .problems
            .into_iter()
            .find(|p| p.addr.as_ref().is_some_and(|addr| own.contains(addr)))
    };
    wait::wait_until(
        SEED_REPORT_TIMEOUT,
        "the silent control seed to be reported",
        || {
            if let Some(p) = own_listed(&a) {
                panic!("a seed naming the node itself is listed: {p:?}");
            }
            problem(&a, ProblemKind::SeedSilent, &control)
        },
    );
    let after = wait::try_wait_until(2 * SWEEP_INTERVAL, || own_listed(&a));
    assert!(
        after.is_err(),
        "a seed naming the node itself is listed: {after:?}"
    );

    assert_warned(&a, &[&format!("seed {control} has not answered")]);
    let about_own: Vec<String> = warnings(&a, &["has not answered"])
        .into_iter()
        .filter(|l| !l.contains(&format!("seed {control} has not answered")))
        .chain(warnings(&a, &["127.0.0.2"]))
        .collect();
    assert!(
        about_own.is_empty(),
        "warned about this node as a seed: {about_own:?}"
    );
}

#[test]
fn another_cluster_label_is_reported_on_both_sides() {
    let a = daemon("label-a").args(["--cluster", "lab-a"]).spawn();
    let b = daemon("label-b")
        .args(["--cluster", "lab-b"])
        .join(&a.addr())
        .spawn();
    let (a_addr, b_addr) = (a.addr(), b.addr());

    // a gets b's hellos and says whose they are and what to check…
    let refused = wait_problem(&a, ProblemKind::WrongCluster, &b_addr, REFUSAL_TIMEOUT);
    assert!(
        refused.detail.contains(&b_addr) && refused.detail.contains("`lab-a`"),
        "{}",
        refused.detail
    );
    assert_warned(
        &a,
        &[
            &format!("datagrams from {b_addr} carry another cluster label"),
            "check --cluster on both",
        ],
    );
    let human = rossipctl(a.socket(), &["status"]);
    human.assert_success();
    assert!(
        human
            .stdout
            .contains("problems:\n  wrong_cluster: datagrams from "),
        "{}",
        human.stdout
    );
    // …and b, which never hears back, names its seed.
    wait_problem(&b, ProblemKind::SeedSilent, &a_addr, SEED_REPORT_TIMEOUT);
    assert_warned(&b, &[&a_addr, "has not answered"]);
    assert!(a.client().peers(true).is_empty() && b.client().peers(true).is_empty());
}

#[test]
fn a_keyed_and_an_unkeyed_node_say_which_has_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path(), "a.key", KEY);
    let keyed = daemon("keyed").args(["--key-file", &key]).spawn();
    let plain = daemon("plain").join(&keyed.addr()).spawn();
    let (keyed_addr, plain_addr) = (keyed.addr(), plain.addr());
    join_and_fail(&keyed, &plain_addr);

    let refused = wait_problem(
        &keyed,
        ProblemKind::UnsealedRefused,
        &plain_addr,
        REFUSAL_TIMEOUT,
    );
    assert!(refused.detail.contains("--key-file"), "{}", refused.detail);
    assert_warned(
        &keyed,
        &[&format!("datagrams from {plain_addr} are not encrypted")],
    );
    let refused = wait_problem(
        &plain,
        ProblemKind::SealedWithoutKey,
        &keyed_addr,
        REFUSAL_TIMEOUT,
    );
    assert!(refused.detail.contains("--key-file"), "{}", refused.detail);
    assert_warned(
        &plain,
        &[&format!(
            "datagrams from {keyed_addr} are sealed with a cluster key, and this node has none"
        )],
    );
}

#[test]
fn two_keys_name_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path(), "a.key", KEY);
    let other = key_file(dir.path(), "b.key", OTHER_KEY);
    let a = daemon("key-one").args(["--key-file", &key]).spawn();
    let b = daemon("key-two")
        .args(["--key-file", &other])
        .join(&a.addr())
        .spawn();
    let (a_addr, b_addr) = (a.addr(), b.addr());
    join_and_fail(&a, &b_addr);

    for (node, sender, sender_node) in [(&a, &b_addr, &b), (&b, &a_addr, &a)] {
        let sender_key = sender_node.status().keys[0].clone();
        let own_key = node.status().keys[0].clone();
        let refused = wait_problem(node, ProblemKind::UnknownKey, sender, REFUSAL_TIMEOUT);
        assert!(
            refused.detail.contains(&sender_key) && refused.detail.contains(&own_key),
            "the detail names both keys ({sender_key}, {own_key}): {}",
            refused.detail
        );
        assert_warned(
            node,
            &[&format!(
                "datagrams from {sender} are sealed under key {sender_key}, which this node does not hold"
            )],
        );
    }
}

#[test]
fn a_sender_with_a_clock_far_off_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path(), "a.key", KEY);
    let a = daemon("clock-here").args(["--key-file", &key]).spawn();
    let target = a.addr();
    let status = a.status();

    // What a node with the key and a clock 10 minutes ahead sends: a
    // sealed datagram stamped by that clock.
    let mut sealer = Sealer::new(
        Keyring::new(ClusterKey::from_hex(KEY).expect("a key"), Vec::new()),
        0x0c10_c000_0000_0001,
    );
    let plain = wire::encode(
        &Header {
            flags: 0,
            cluster: ClusterId::from_label(&status.cluster),
            sender: NodeId([0x43; 16]),
        },
        &Body::Swim(Vec::new()),
    )
    .expect("a small datagram encodes");
    let ahead_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
        + 2 * ProtocolConfig::default().replay_freshness.as_millis() as u64;
    let sealed = sealer.seal(&plain, ahead_ms).expect("seal");
    let skewed = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let skewed_addr = skewed.local_addr().expect("address").to_string();
    skewed.send_to(&sealed, &target).expect("send on loopback");

    let reported = wait_problem(&a, ProblemKind::Stale, &skewed_addr, REFUSAL_TIMEOUT);
    assert!(reported.detail.contains("NTP"), "{}", reported.detail);
    assert_warned(
        &a,
        &[&format!(
            "datagrams from {skewed_addr} are stamped more than 5 minutes from this node's clock"
        )],
    );
}

#[test]
fn mismatched_traffic_does_not_flood_the_log() {
    let a = daemon("flooded").spawn();
    let target = a.addr();
    let started = Instant::now();
    let foreign = wire::encode(
        &Header {
            flags: 0,
            cluster: ClusterId::from_label("elsewhere"),
            sender: NodeId([0x42; 16]),
        },
        &Body::Swim(Vec::new()),
    )
    .expect("a small datagram encodes");

    // One sender, many datagrams: one problem, one warning a minute.
    const DATAGRAMS: u64 = 3_000;
    let loud = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let loud_addr = loud.local_addr().expect("address").to_string();
    for i in 0..DATAGRAMS {
        loud.send_to(&foreign, &target).expect("send on loopback");
        if i % 200 == 199 {
            // Paced, so the daemon's receive buffer keeps up.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let what = format!("{} to count datagrams from {loud_addr}", a.name());
    wait::wait_until(REFUSAL_TIMEOUT, &what, || {
        let listed = problem(&a, ProblemKind::WrongCluster, &loud_addr)?;
        // Loopback UDP may drop a few under load; most must arrive.
        if listed.count >= DATAGRAMS / 2 {
            Ok(())
        } else {
            Err(format!("counted {} so far", listed.count))
        }
    });

    // Many senders: the table stays bounded, the rest are counted as one.
    const SENDERS: usize = 3 * MAX_TRACKED;
    let crowd: Vec<UdpSocket> = (0..SENDERS)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    for socket in &crowd {
        socket.send_to(&foreign, &target).expect("send on loopback");
    }
    wait::wait_until(REFUSAL_TIMEOUT, "the overflow to be counted", || {
        let problems = a.status().problems;
        let many = problems.iter().find(|p| p.kind == ProblemKind::ManySenders);
        match many {
            Some(p) if p.addr.is_none() => Ok(problems.len()),
            _ => Err(format!("{problems:?}")),
        }
    });
    let listed = a.status().problems.len();
    assert!(
        listed <= MAX_TRACKED + 1,
        "{listed} problems listed; at most {MAX_TRACKED} and the overflow"
    );

    // At most one warning per problem and minute since the flood began.
    let minutes = (started.elapsed().as_secs() / WARN_EVERY.as_secs()) + 1;
    let loud_lines = warnings(&a, &[&format!("datagrams from {loud_addr} ")]).len() as u64;
    assert!(
        (1..=minutes).contains(&loud_lines),
        "{loud_lines} warnings about {loud_addr} in {minutes} minute(s) of {DATAGRAMS} datagrams\n{}",
        a.log_excerpt()
    );
    let all_lines = warnings(&a, &["another cluster label"]).len() as u64;
    let bound = (MAX_TRACKED as u64 + 1) * minutes;
    assert!(
        all_lines <= bound,
        "{all_lines} warnings for {} senders; at most {bound}",
        SENDERS + 1
    );
}
