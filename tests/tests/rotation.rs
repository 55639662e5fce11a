//! Key rotation without downtime (issue 5, item 2), on a live cluster: three
//! `rossipd` processes in network namespaces on one bridge, finding each
//! other by mDNS, sealed with a cluster key. While two senders send steadily
//! (50 messages/s between them), `rossipctl keys install NEW` (the key on
//! stdin), `keys use NEWID` and `keys remove OLDID` run on one node. Every
//! node must then hold every message exactly once, seal with the new key
//! only (`keys list`, `status`), and a restarted node must come back with
//! the new keyring (from `<state dir>/keyring`, although its `--key-file`
//! still holds the old key).
//!
//! Needs root, iproute2 and nftables; without them it prints one line and
//! passes, except with `CI=true`, where it must run.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rossip_proto::rpc::{KeysChangeResult, KeysListResult, MessageView};
use rossip_proto::seal::ClusterKey;
use rossip_tests::cpu::exclusive;
use rossip_tests::ctl::{CtlOutput, rossipctl_in};
use rossip_tests::daemon::Daemon;
use rossip_tests::delivery::{MessageRecorder, key_of};
use rossip_tests::nscluster::{NsCluster, secs};
use rossip_tests::rpc::RpcClient;
use rossip_tests::{bins, sys, wait};

const OLD_KEY: &str = "5d2c8e1f0a3b4c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f";
const NEW_KEY: &str = "a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff";

/// mDNS plus the first probes; generous for a loaded 2-core machine.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Every node must hold every message by then.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(90);
/// Each sender's pace: 25 messages/s each, 50/s together.
const SEND_INTERVAL: Duration = Duration::from_millis(40);
/// How often a step is tried before the test fails (a step is safe to
/// repeat; a loaded machine may miss the 2 s answer window once).
const STEP_ATTEMPTS: usize = 8;
/// Senders stop by then whatever happens (a failing step must not leave
/// them running, which would keep the test from ending).
const MAX_SENDING: Duration = Duration::from_secs(120);

/// Tells the senders to stop when dropped: also when a step panics, since
/// a scope joins its threads before it passes the panic on.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn key_id(hex: &str) -> String {
    ClusterKey::from_hex(hex)
        .expect("a valid key")
        .id()
        .to_string()
}

/// A subscriber on `daemon`, attached.
fn recorder(daemon: &Daemon) -> MessageRecorder {
    let recorder = MessageRecorder::start(daemon.name(), daemon.socket())
        .unwrap_or_else(|e| panic!("recorder on {}: {e}", daemon.name()));
    wait::wait_until(Duration::from_secs(15), "subscribed", || {
        recorder
            .subscribed()
            .unwrap_or_else(|why| panic!("{}: {why}", daemon.name()))
    });
    recorder
}

fn history(daemon: &Daemon) -> Vec<MessageView> {
    RpcClient::connect(daemon.socket())
        .map(|mut client| client.history())
        .unwrap_or_else(|e| panic!("history of {}: {e}", daemon.name()))
}

/// Sends `rot/{sender}.{k}` to `daemon` every [`SEND_INTERVAL`] until `stop`;
/// returns the keys the daemon accepted.
fn send_steadily(daemon: &Daemon, sender: usize, stop: &AtomicBool) -> Vec<String> {
    let mut client = daemon.client();
    let start = Instant::now();
    let mut sent = Vec::new();
    for k in 0u32.. {
        if stop.load(Ordering::Relaxed) || start.elapsed() > MAX_SENDING {
            break;
        }
        // Pacing, not waiting for a condition: message k is due at start + k·interval.
        let due = start + SEND_INTERVAL * k;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let key = format!("rot/{sender}.{k}");
        client.send(&format!("{key} sent during a key rotation"));
        sent.push(key);
    }
    sent
}

/// `rossipctl --json keys ARGS…` on `daemon` (with `stdin`, if any), repeated
/// until every other node confirmed it; panics after [`STEP_ATTEMPTS`].
fn keys_step(
    cluster: &[Daemon],
    daemon: &Daemon,
    args: &[&str],
    stdin: Option<&str>,
) -> KeysChangeResult {
    let mut full = vec!["--json", "keys"];
    full.extend_from_slice(args);
    for attempt in 1..=STEP_ATTEMPTS {
        let output = match stdin {
            None => rossipctl_in(daemon.netns(), daemon.socket(), &full),
            Some(text) => rossipctl_with_stdin(daemon, &full, text),
        };
        let result: Option<KeysChangeResult> = output
            .stdout
            .lines()
            .next()
            .and_then(|line| serde_json::from_str(line).ok());
        match (output.code, result) {
            (Some(0), Some(result)) if result.complete => return result,
            (_, Some(result)) if attempt < STEP_ATTEMPTS => {
                let silent: Vec<&str> = result
                    .nodes
                    .iter()
                    .filter(|n| !n.ok)
                    .map(|n| n.name.as_str())
                    .collect();
                sys::say(&format!(
                    "`keys {}` not confirmed by {silent:?} (attempt {attempt}): {:?}; repeating it",
                    args.join(" "),
                    result.nodes
                ));
            }
            // The safety check of `use` and `remove` asks every member
            // first, and refuses while one does not answer.
            (Some(1), None)
                if attempt < STEP_ATTEMPTS && output.stderr.contains("did not answer") =>
            {
                sys::say(&format!(
                    "`keys {}` refused (attempt {attempt}): {}; repeating it",
                    args.join(" "),
                    output.stderr.trim()
                ));
            }
            _ => panic!(
                "`{}` failed (exit {:?})\nstdout:\n{}\nstderr:\n{}\n{}",
                output.command,
                output.code,
                output.stdout,
                output.stderr,
                counters(cluster)
            ),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// `rossipctl --socket SOCKET ARGS…` in `daemon`'s namespace with `stdin`.
fn rossipctl_with_stdin(daemon: &Daemon, args: &[&str], stdin: &str) -> CtlOutput {
    use std::io::Write as _;
    let mut ctl_args: Vec<std::ffi::OsString> = vec!["--socket".into(), daemon.socket().into()];
    ctl_args.extend(args.iter().map(std::ffi::OsString::from));
    let (program, full) = sys::in_netns(daemon.netns(), bins::rossipctl(), ctl_args);
    let command = sys::command_line(&program, &full);
    let mut child = std::process::Command::new(&program)
        .args(&full)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .env_remove("ROSSIP_SOCKET")
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{command}`: {e}"));
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes())
            .unwrap_or_else(|e| panic!("`{command}`: writing stdin: {e}"));
    }
    // rossipctl ends within the daemon's 2 s answer window.
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{command}`: {e}"));
    CtlOutput {
        command,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every daemon's keys, peers and drop counters, for failure messages.
fn counters(daemons: &[Daemon]) -> String {
    daemons
        .iter()
        .map(|d| {
            let status = d.status();
            format!(
                "{}: keys {:?}, peers {:?}, dropped {:?}\n",
                d.name(),
                status.keys,
                status.peers,
                status.datagrams.dropped
            )
        })
        .collect()
}

/// `keys list` of `daemon`, parsed.
fn keys_list(daemon: &Daemon) -> KeysListResult {
    let output = rossipctl_in(daemon.netns(), daemon.socket(), &["--json", "keys", "list"]);
    output.assert_success();
    serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("`{}` printed no result: {e}", output.command))
}

/// `keys list` of `daemon` once every member answered it. Each call waits
/// 2 s for the members; on a loaded machine one may answer late, so a list
/// that is not complete is asked for again rather than taken as the result.
fn complete_keys_list(daemon: &Daemon) -> KeysListResult {
    wait::wait_until(
        Duration::from_secs(30),
        &format!("a complete `keys list` from {}", daemon.name()),
        || {
            let list = keys_list(daemon);
            if list.complete {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        },
    )
}

/// Waits until every daemon holds every key in `keys` in its history.
fn wait_converged(cluster: &NsCluster, keys: &BTreeSet<String>) {
    let deadline = Instant::now() + CONVERGENCE_TIMEOUT;
    loop {
        let missing: Vec<(String, usize)> = cluster
            .daemons
            .iter()
            .map(|d| {
                let held: BTreeSet<String> = history(d)
                    .iter()
                    .map(|m| key_of(&m.text).to_owned())
                    .collect();
                (
                    d.name().to_owned(),
                    keys.iter().filter(|k| !held.contains(*k)).count(),
                )
            })
            .filter(|(_, missing)| *missing > 0)
            .collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            cluster.fail(&format!(
                "not converged within {CONVERGENCE_TIMEOUT:?}; missing per node: {missing:?}\n{}",
                counters(&cluster.daemons)
            ));
        }
        std::thread::sleep(wait::POLL_INTERVAL);
    }
}

#[test]
fn rotating_the_cluster_key_while_messages_flow_loses_none() {
    let _cpu = exclusive();
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("rossip.key");
    std::fs::write(&key_file, format!("{OLD_KEY}\n")).expect("write key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key_arg = key_file.to_str().expect("utf-8 path").to_owned();
    let Ok(mut cluster) = NsCluster::start(
        "key-rot",
        3,
        |_| {},
        |_, daemon| daemon.args(["--key-file", key_arg.as_str()]),
    ) else {
        return;
    };
    let settled = cluster.wait_all_alive(cluster.spawned, DISCOVERY_TIMEOUT, "discovery");
    sys::say(&format!(
        "key-rot: 3 daemons alive {:.2} s after spawning",
        secs(cluster.spawned, settled)
    ));
    let (old_id, new_id) = (key_id(OLD_KEY), key_id(NEW_KEY));
    let recorders: Vec<MessageRecorder> = cluster.daemons.iter().map(recorder).collect();

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (sent, steps) = std::thread::scope(|scope| {
        let senders: Vec<_> = [0, 1]
            .into_iter()
            .map(|i| {
                let (daemon, stop) = (&cluster.daemons[i], &stop);
                scope.spawn(move || send_steadily(daemon, i, stop))
            })
            .collect();
        let stop_senders = StopOnDrop(&stop);
        let rotator = &cluster.daemons[2];
        // A second of traffic before, between and after the steps (pacing
        // the rotation, not waiting for anything).
        let traffic = || std::thread::sleep(Duration::from_secs(1));
        traffic();
        let install = keys_step(&cluster.daemons, rotator, &["install", "-"], Some(NEW_KEY));
        traffic();
        let used = keys_step(&cluster.daemons, rotator, &["use", &new_id], None);
        traffic();
        let removed = keys_step(&cluster.daemons, rotator, &["remove", &old_id], None);
        traffic();
        drop(stop_senders);
        let sent: BTreeSet<String> = senders
            .into_iter()
            .flat_map(|s| s.join().expect("a sender panicked"))
            .collect();
        (sent, [install, used, removed])
    });
    assert_eq!(steps[0].key, new_id, "install names the new key");
    assert_eq!(steps[2].local.keys, vec![new_id.clone()]);
    sys::say(&format!(
        "key-rot: rotated in {:.2} s while {} messages were sent",
        started.elapsed().as_secs_f64(),
        sent.len()
    ));
    assert!(sent.len() > 150, "messages flowed throughout the rotation");

    wait_converged(&cluster, &sent);
    for (daemon, recorder) in cluster.daemons.iter().zip(&recorders) {
        let held = history(daemon);
        let ids: BTreeSet<&str> = held.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids.len(),
            held.len(),
            "{}: an id twice in history",
            daemon.name()
        );
        assert_eq!(
            recorder.duplicates(),
            0,
            "{} delivered a message twice",
            daemon.name()
        );
        assert_eq!(
            recorder.lagged(),
            0,
            "{}'s subscriber lagged",
            daemon.name()
        );
        let got = recorder.take("rot");
        let missed = sent.iter().filter(|k| !got.contains_key(*k)).count();
        assert_eq!(missed, 0, "{}'s subscriber missed {missed}", daemon.name());
    }

    // Every node seals with the new key only, as each sees it and as the
    // others report it.
    for daemon in &cluster.daemons {
        assert_eq!(
            daemon.status().keys,
            vec![new_id.clone()],
            "{}: status",
            daemon.name()
        );
        let list = complete_keys_list(daemon);
        assert_eq!(list.local.keys, vec![new_id.clone()], "{}", daemon.name());
        for node in &list.nodes {
            assert_eq!(
                (node.primary.as_str(), &node.keys),
                (new_id.as_str(), &vec![new_id.clone()]),
                "{} reports {}",
                daemon.name(),
                node.name
            );
        }
        let saved = daemon.state_dir().join("keyring");
        let mode = std::fs::metadata(&saved)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", daemon.name(), saved.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}: keyring file mode", daemon.name());
    }
    let human = rossipctl_in(
        cluster.daemons[0].netns(),
        cluster.daemons[0].socket(),
        &["keys", "list"],
    );
    human.assert_success();
    assert!(
        human.stdout.contains(&format!("key {new_id}: held by 3"))
            && human.stdout.contains("primary on 3")
            && !human.stdout.contains(&old_id),
        "keys list for humans:\n{}",
        human.stdout
    );

    // A restart comes back with the new keyring (its --key-file still has
    // the old key) and rejoins.
    cluster.daemons[1].stop_with_sigterm(Duration::from_secs(15));
    let restarted = cluster.restart(1);
    assert_eq!(cluster.daemons[1].status().keys, vec![new_id.clone()]);
    assert!(
        cluster.daemons[1].log().contains("KEY FILE IGNORED"),
        "the log says, loudly, that the saved keyring superseded a --key-file that differs"
    );
    cluster.wait_all_alive(restarted, DISCOVERY_TIMEOUT, "rejoin after the restart");
    let after = cluster.daemons[0].client().send("rot/after the restart");
    wait::wait_until(
        CONVERGENCE_TIMEOUT,
        "the restarted node gets a new message",
        || {
            history(&cluster.daemons[1])
                .iter()
                .any(|m| m.id == after.id)
        },
    );
}

/// Refusals without namespaces: a node without a key refuses every `keys`
/// command and says how to enable encryption; a keyed node refuses to
/// remove the key it seals with, to use a key it lacks, and malformed ids.
#[test]
fn keys_commands_refuse_what_cannot_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("rossip.key");
    std::fs::write(&key_file, format!("{OLD_KEY}\n")).expect("write key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let plain = Daemon::builder("keys-plain").loopback().spawn();
    for args in [&["keys", "list"][..], &["keys", "install", NEW_KEY]] {
        let out = rossip_tests::ctl::rossipctl(plain.socket(), args);
        assert_eq!(out.code, Some(1), "`{}`: {}", out.command, out.stderr);
        assert!(
            out.stderr.contains("--key-file") && out.stderr.contains("-32010"),
            "`{}` explains: {}",
            out.command,
            out.stderr
        );
    }
    let keyed = Daemon::builder("keys-one")
        .loopback()
        .args(["--key-file", key_file.to_str().expect("utf-8 path")])
        .spawn();
    let old_id = key_id(OLD_KEY);
    for (args, expected) in [
        (vec!["keys", "remove", old_id.as_str()], "primary key"),
        (
            vec!["keys", "use", "12345678"],
            "no node holds key 12345678, this one included",
        ),
        (vec!["keys", "use", "xyz"], "8 hex digits"),
        (vec!["keys", "install", "abc"], "64 hexadecimal digits"),
    ] {
        let out = rossip_tests::ctl::rossipctl(keyed.socket(), &args);
        assert_eq!(out.code, Some(1), "`{}`: {}", out.command, out.stderr);
        assert!(
            out.stderr.contains(expected),
            "`{}` says {expected:?}: {}",
            out.command,
            out.stderr
        );
    }
    // Alone, a change needs no one's confirmation; it is saved at once.
    let out = rossip_tests::ctl::rossipctl(
        keyed.socket(),
        &[
            "keys",
            "install",
            "--key-file",
            key_file.to_str().expect("utf-8 path"),
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("on this node and 0 of 0 other nodes"),
        "{}",
        out.stdout
    );
    assert!(
        !keyed.state_dir().join("keyring").exists(),
        "installing a held key changes nothing"
    );
    let new = dir.path().join("new.key");
    std::fs::write(&new, format!("# the next key\n{NEW_KEY}\n")).expect("write");
    rossip_tests::ctl::rossipctl(
        keyed.socket(),
        &[
            "keys",
            "install",
            "--key-file",
            new.to_str().expect("utf-8 path"),
        ],
    )
    .assert_success();
    let saved = std::fs::read_to_string(keyed.state_dir().join("keyring")).expect("saved keyring");
    assert!(
        saved.contains(OLD_KEY) && saved.contains(NEW_KEY),
        "the saved keyring holds both keys"
    );
    assert_eq!(keyed.status().keys, vec![old_id, key_id(NEW_KEY)]);
}

/// The safety check: `keys use` is refused while a member lacks the key,
/// `keys remove` while a member still seals with it (each would cut that
/// member off); the refusal names the member, and nothing changes.
#[test]
fn use_and_remove_refuse_to_cut_members_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = |name: &str, keys: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, keys.join("\n")).expect("write key file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path.to_str().expect("utf-8 path").to_owned()
    };
    let (old_id, new_id) = (key_id(OLD_KEY), key_id(NEW_KEY));
    let refused = |daemon: &Daemon, args: &[&str], expected: &str| {
        let out = rossip_tests::ctl::rossipctl(daemon.socket(), args);
        assert_eq!(out.code, Some(1), "`{}`: {}", out.command, out.stderr);
        assert!(
            out.stderr.contains(expected) && out.stderr.contains("-32011"),
            "`{}` says {expected:?}: {}",
            out.command,
            out.stderr
        );
    };

    // b lacks the new key: nobody may seal with it yet.
    let (a, b) = rossip_tests::cluster::start_joined_pair(
        Daemon::builder("guard-a")
            .loopback()
            .args(["--key-file", &key_file("a.key", &[OLD_KEY, NEW_KEY])]),
        Daemon::builder("guard-b")
            .loopback()
            .args(["--key-file", &key_file("b.key", &[OLD_KEY])]),
    );
    refused(&a, &["keys", "use", &new_id], "guard-b does not hold it");
    // b itself lacks it: b says so, not only that others do.
    refused(
        &b,
        &["keys", "use", &new_id],
        &format!("this node does not hold key {new_id}"),
    );
    // Nobody holds it.
    refused(
        &a,
        &["keys", "use", "12345678"],
        "no node holds key 12345678, this one included",
    );
    assert_eq!(
        a.status().keys,
        vec![old_id.clone(), new_id.clone()],
        "a unchanged"
    );
    assert!(!a.state_dir().join("keyring").exists(), "nothing saved");
    drop((a, b));

    // d still seals with the old key: nobody may remove it yet.
    let (c, d) = rossip_tests::cluster::start_joined_pair(
        Daemon::builder("guard-c")
            .loopback()
            .args(["--key-file", &key_file("c.key", &[NEW_KEY, OLD_KEY])]),
        Daemon::builder("guard-d")
            .loopback()
            .args(["--key-file", &key_file("d.key", &[OLD_KEY, NEW_KEY])]),
    );
    refused(&c, &["keys", "remove", &old_id], "guard-d seals with it");
    assert_eq!(
        c.status().keys,
        vec![new_id.clone(), old_id.clone()],
        "c unchanged"
    );
    assert_eq!(
        d.status().keys,
        vec![old_id.clone(), new_id.clone()],
        "d unchanged"
    );
    // Once d seals with the new key too, the removal goes through everywhere.
    rossip_tests::ctl::rossipctl(d.socket(), &["keys", "use", &new_id]).assert_success();
    rossip_tests::ctl::rossipctl(c.socket(), &["keys", "remove", &old_id]).assert_success();
    for daemon in [&c, &d] {
        assert_eq!(
            daemon.status().keys,
            vec![new_id.clone()],
            "{}",
            daemon.name()
        );
    }
}
