//! Message authenticity with real daemons on loopback: a member that holds
//! the cluster key (here, this test, crafting sealed datagrams itself)
//! still cannot send as another node, cannot alter a relayed message, and
//! a name used under a new key is flagged (trust on first use) in `tail`,
//! `status` and the log.

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rossip_proto::message::Hlc;
use rossip_proto::rpc::NameTrust;
use rossip_proto::seal::{ClusterKey, Keyring, Sealer};
use rossip_proto::sign::NodeKey;
use rossip_proto::wire::{self, Body, ClusterId, Header, Payload, Push};
use rossip_proto::{Message, NodeId};
use rossip_tests::cluster::start_joined_pair;
use rossip_tests::daemon::Daemon;
use rossip_tests::wait;

const TIMEOUT: Duration = Duration::from_secs(30);
const KEY: &str = "41c2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a697887960123";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A rogue cluster member: it has the cluster key and a signing key of its
/// own, and sends what it likes.
struct Rogue {
    key: NodeKey,
    sealer: Sealer,
    socket: UdpSocket,
}

impl Rogue {
    fn new(seed: u64) -> Rogue {
        let cluster_key = ClusterKey::from_hex(KEY).expect("cluster key");
        Rogue {
            key: NodeKey::for_testing(seed),
            sealer: Sealer::new(Keyring::new(cluster_key, Vec::new()), seed),
            socket: UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket"),
        }
    }

    fn push(&mut self, to: &str, message: Message) {
        let header = Header {
            flags: 0,
            cluster: ClusterId::from_label("rossip"),
            sender: self.key.node_id(),
        };
        let body = Body::Push(Push {
            relay: false,
            items: vec![Payload::Whole(message)],
        });
        let plain = wire::encode(&header, &body).expect("encode");
        let sealed = self.sealer.seal(&plain, now_ms()).expect("seal");
        self.socket
            .send_to(&sealed, to)
            .expect("send to the daemon");
    }

    /// A message from this rogue, signed with its own key.
    fn own(&self, seq: u64, name: &str, text: &str) -> Message {
        Message::signed(
            &self.key,
            seq,
            name.to_owned(),
            Hlc {
                ms: now_ms(),
                logical: 0,
            },
            rossip_proto::message::Draft::channel("general", text),
        )
    }
}

#[test]
fn a_key_holder_cannot_send_as_another_node_and_a_borrowed_name_is_flagged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_path = dir.path().join("cluster.key");
    std::fs::write(&key_path, format!("{KEY}\n")).expect("write key file");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key_arg = key_path.to_str().expect("utf-8 path");
    let (alice, bob) = start_joined_pair(
        Daemon::builder("alice")
            .loopback()
            .args(["--key-file", key_arg]),
        Daemon::builder("bob")
            .loopback()
            .args(["--key-file", key_arg]),
    );
    let alice_id: NodeId = alice.status().id.parse().expect("node id");
    let real = alice.client().send("the real alice");
    wait::wait_until(TIMEOUT, "bob has alice's message", || {
        bob.client().history().iter().any(|m| m.id == real.id)
    });
    let mut rogue = Rogue::new(666);

    // 1. A message claiming alice's id, signed with the rogue's key.
    let mut forged = rogue.own(2, "alice", "wire the money (forged origin)");
    forged.id.origin = alice_id;
    rogue.push(&bob.addr(), forged);
    // 2. alice's real message, as signed by alice (read from bob's store),
    //    with the text altered: what a lying relay would pass on.
    let bob_id: NodeId = bob.status().id.parse().expect("node id");
    let retention = rossipd::store::Retention {
        limit: 1_000,
        max_bytes: usize::MAX,
        max_age: None,
    };
    let stored = rossipd::store::Store::open(bob.state_dir(), bob_id, retention)
        .expect("open bob's store (WAL: readable while bob runs)")
        .load_window(now_ms())
        .expect("read bob's history");
    let mut altered = stored
        .into_iter()
        .find(|m| m.id.to_string() == real.id)
        .expect("alice's message, with her signature");
    assert_eq!(
        altered.verify(&mut rossip_proto::sign::Verifier::default()),
        Ok(()),
        "the stored copy is alice's, signed"
    );
    altered.text = "the real alice (altered)".to_owned();
    rogue.push(&bob.addr(), altered);
    wait::wait_until(TIMEOUT, "bob refused both forgeries", || {
        bob.dropped("bad_signature") >= 2
    });

    // 3. The rogue speaks as itself but calls itself "alice": delivered
    //    (it is a member with a key), and flagged, since bob first saw the
    //    name "alice" with alice's key.
    let borrowed = rogue.own(1, "alice", "hi, it's alice (really the rogue)");
    let borrowed_id = borrowed.id;
    rogue.push(&bob.addr(), borrowed);
    wait::wait_until(TIMEOUT, "bob delivered the rogue's own message", || {
        bob.client()
            .history()
            .iter()
            .any(|m| m.id == borrowed_id.to_string())
    });

    let history = bob.client().history();
    assert!(
        history
            .iter()
            .all(|m| !m.text.contains("forged") && !m.text.contains("altered")),
        "a forged or altered message was delivered: {history:#?}"
    );
    let by_alice: Vec<_> = history
        .iter()
        .filter(|m| m.origin == alice_id.to_string())
        .collect();
    assert_eq!(by_alice.len(), 1, "only alice's own message is hers");
    assert!(by_alice[0].verified);
    assert_eq!(by_alice[0].name_trust, NameTrust::Pinned);
    let rogue_view = history
        .iter()
        .find(|m| m.id == borrowed_id.to_string())
        .expect("the rogue's message");
    assert!(rogue_view.verified, "its signature is its own, and valid");
    assert_eq!(rogue_view.origin, rogue.key.node_id().to_string());
    assert_eq!(
        rogue_view.name_trust,
        NameTrust::Changed,
        "the name alice was pinned to alice's key"
    );
    assert_ne!(rogue_view.key, by_alice[0].key);

    let status = bob.status();
    assert_eq!(status.identity.name_conflicts, 1, "{:?}", status.identity);
    assert!(status.identity.pinned_names >= 2, "{:?}", status.identity);
    assert!(
        bob.log().contains("NAME CHANGED KEY"),
        "the conflict is logged loudly:\n{}",
        bob.log_excerpt()
    );

    // `rossipctl tail` marks both: who sent each message, and the borrowed name.
    let out = rossip_tests::ctl::rossipctl(bob.socket(), &["tail", "-n", "10"]);
    let text = &out.stdout;
    let alice_short: String = alice_id.to_string().chars().take(8).collect();
    let rogue_short: String = rogue.key.node_id().to_string().chars().take(8).collect();
    // alice's message names the local user who sent it (the test's own),
    // the rogue's (made by hand) names none.
    let alice_user = &by_alice[0].user;
    assert!(!alice_user.is_empty(), "{:?}", by_alice[0]);
    assert!(
        text.contains(&format!(
            "{alice_user}@alice [{alice_short}]: the real alice"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "alice [{rogue_short}] [NAME CHANGED KEY]: hi, it's alice"
        )),
        "{text}"
    );
}

/// The unprivileged user the quick-start daemon runs as (`nobody`).
const NOBODY: u32 = 65534;

/// The quick start (a user's daemon, default name) and then the system
/// daemon of the same host (default name too, another key): a third node
/// that saw both flags neither. A rogue that takes the host's default name
/// with its own key is still flagged.
#[test]
fn a_hosts_user_and_system_daemons_with_default_names_raise_no_alarm() {
    if rossip_tests::sys::effective_uid() != Some(0) {
        assert!(
            !rossip_tests::sys::ci(),
            "CI=true: the default-name test must run as root (to run a daemon as another user)"
        );
        rossip_tests::sys::skipped(
            "a_hosts_user_and_system_daemons_with_default_names_raise_no_alarm",
            "it needs root",
        );
        return;
    }
    // Key files the daemons can read: root's, and one owned by `nobody` in
    // a directory it can enter.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let key_file = |name: &str, owner: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{KEY}\n")).expect("write key file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::chown(&path, Some(owner), Some(owner)).expect("chown key file");
        path.to_str().expect("utf-8 path").to_owned()
    };
    let root_key = key_file("root.key", 0);
    let nobody_key = key_file("nobody.key", NOBODY);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read the host name");
    let host = host
        .trim()
        .split('.')
        .next()
        .expect("a host name")
        .to_owned();

    let watcher = Daemon::builder("watcher")
        .loopback()
        .args(["--key-file", &root_key])
        .spawn();
    let seed = watcher.addr();

    // The quick start: a user's daemon, then stopped.
    let mut user = Daemon::builder("user")
        .default_name()
        .as_user(NOBODY)
        .loopback()
        .join(&seed)
        .args(["--key-file", &nobody_key])
        .spawn();
    let user_name = user.status().name;
    assert!(
        user_name.starts_with(&format!("{host}-")) && user_name.len() > host.len() + 1,
        "a user's daemon is named HOST-USER, got {user_name:?} on host {host:?}"
    );
    let from_user = user.client().send("from the quick start");
    wait::wait_until(TIMEOUT, "the watcher has the user daemon's message", || {
        watcher
            .client()
            .history()
            .iter()
            .any(|m| m.id == from_user.id)
    });
    user.stop_with_sigterm(TIMEOUT);

    // The system daemon of the same host: root, no XDG_CONFIG_HOME.
    let system = Daemon::builder("system")
        .default_name()
        .env("XDG_CONFIG_HOME", "")
        .loopback()
        .join(&seed)
        .args(["--key-file", &root_key])
        .spawn();
    assert_eq!(
        system.status().name,
        host,
        "the system daemon is named after the host"
    );
    let from_system = system.client().send("from the system service");
    wait::wait_until(
        TIMEOUT,
        "the watcher has the system daemon's message",
        || {
            watcher
                .client()
                .history()
                .iter()
                .any(|m| m.id == from_system.id)
        },
    );

    let history = watcher.client().history();
    for (id, name) in [(&from_user.id, &user_name), (&from_system.id, &host)] {
        let message = history
            .iter()
            .find(|m| &m.id == id)
            .expect("the message is in history");
        assert_eq!(&message.origin_name, name);
        assert_eq!(message.name_trust, NameTrust::Pinned, "{message:?}");
    }
    let identity = watcher.status().identity;
    assert_eq!(
        identity.name_conflicts,
        0,
        "{identity:?}\n{}",
        watcher.log_excerpt()
    );
    assert!(
        !watcher.log().contains("NAME CHANGED KEY"),
        "a false alarm:\n{}",
        watcher.log_excerpt()
    );

    // Another key under the host's default name is still an impostor.
    let mut rogue = Rogue::new(667);
    let borrowed = rogue.own(1, &host, "it's the host (really the rogue)");
    let borrowed_id = borrowed.id.to_string();
    rogue.push(&watcher.addr(), borrowed);
    wait::wait_until(TIMEOUT, "the watcher delivered the rogue's message", || {
        watcher
            .client()
            .history()
            .iter()
            .any(|m| m.id == borrowed_id)
    });
    let flagged = watcher
        .client()
        .history()
        .into_iter()
        .find(|m| m.id == borrowed_id)
        .expect("the rogue's message");
    assert_eq!(flagged.name_trust, NameTrust::Changed, "{flagged:?}");
    assert_eq!(watcher.status().identity.name_conflicts, 1);
    assert!(
        watcher.log().contains("NAME CHANGED KEY"),
        "{}",
        watcher.log_excerpt()
    );
}
