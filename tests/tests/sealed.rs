//! The cluster key with real daemons on loopback: nodes with the key form a
//! cluster and deliver; a node without it, or with another key, is refused
//! (its datagrams dropped and counted) and never listed; a key file others
//! can read is a refusal to start.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rossip_tests::cluster::start_joined_pair;
use rossip_tests::daemon::Daemon;
use rossip_tests::wait;

const TIMEOUT: Duration = Duration::from_secs(30);

const KEY: &str = "6b1e0f3a9c2d4e5f60718293a4b5c6d7e8f9011223344556677889900aabbccd";
const OTHER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn key_file(dir: &Path, name: &str, key: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("write key file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[test]
fn only_key_holders_form_the_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path(), "a.key", KEY, 0o600);
    let other = key_file(dir.path(), "other.key", OTHER_KEY, 0o600);
    let key_arg = key.to_str().expect("utf-8 path");
    let (a, b) = start_joined_pair(
        Daemon::builder("key-a")
            .loopback()
            .args(["--key-file", key_arg]),
        Daemon::builder("key-b")
            .loopback()
            .args(["--key-file", key_arg]),
    );
    let status = a.status();
    assert_eq!(
        status.keys.len(),
        1,
        "status names the key: {:?}",
        status.keys
    );

    let sent = a.client().send("sealed hello");
    wait::wait_until(TIMEOUT, "b has the message", || {
        b.client().history().iter().any(|m| m.id == sent.id)
    });

    let plain = Daemon::builder("key-none")
        .loopback()
        .join(&a.addr())
        .spawn();
    let stranger = Daemon::builder("key-other")
        .loopback()
        .args(["--key-file", other.to_str().expect("utf-8 path")])
        .join(&a.addr())
        .spawn();
    // Both keep knocking (seeds are retried); a counts each refusal.
    wait::wait_until(TIMEOUT, "a refused plaintext and a foreign key", || {
        a.dropped("unsealed_refused") > 0 && a.dropped("unknown_key") > 0
    });
    let listed: Vec<String> = a.client().peers(true).into_iter().map(|p| p.name).collect();
    assert_eq!(
        listed,
        vec!["key-b".to_owned()],
        "only the key holder is a member"
    );
    for outsider in [&plain, &stranger] {
        assert!(
            outsider.client().peers(true).is_empty(),
            "{} became a member of something",
            outsider.name()
        );
        assert!(
            outsider.client().history().iter().all(|m| m.id != sent.id),
            "{} read a sealed message",
            outsider.name()
        );
    }
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path(), "shared.key", KEY, 0o644);
    let mut daemon = Daemon::builder("key-shared")
        .loopback()
        .args(["--key-file", key.to_str().expect("utf-8 path")])
        .spawn_unready();
    let status = daemon
        .wait_exit(TIMEOUT)
        .expect("rossipd refuses to start with a shared key file");
    assert_eq!(status.code(), Some(1));
    let log = daemon.log();
    assert!(
        log.contains("mode 644") && log.contains("chmod 600"),
        "the refusal says why and what to do: {log}"
    );
}
