//! SIGHUP, through the real binary: the log level changes without a
//! restart, the log file is reopened (logrotate), settings that need a
//! restart are named, a broken config file changes nothing, and the key
//! file's new keys are installed (never used to seal or removed: those
//! are `rossipctl keys` steps), with what was left undone said.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use rossip_proto::seal::ClusterKey;
use support::{Running, Scratch, call, call_with, read, rossipd, wait_for};

/// SIGHUP to the daemon.
fn hangup(daemon: &Running) {
    daemon.pid().signal("HUP");
}

/// Waits until the log holds `want`, else panics with the log.
fn wait_for_log(log: &Path, want: &str) {
    wait_for(&format!("{want:?} in {}", log.display()), || {
        read(log).contains(want).then_some(())
    });
}

/// Waits until `want` occurs `count` times in the log.
fn wait_for_log_count(log: &Path, want: &str, count: usize) {
    wait_for(&format!("{count} x {want:?} in {}", log.display()), || {
        (read(log).matches(want).count() >= count).then_some(())
    });
}

fn key_file(path: &Path, keys: &[&ClusterKey]) {
    let text: String = keys.iter().map(|k| format!("{}\n", k.to_hex())).collect();
    std::fs::write(path, text).expect("write key file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn sighup_changes_the_log_level_reopens_the_log_and_names_what_needs_a_restart() {
    let scratch = Scratch::new("reload-log");
    let config = scratch.path("rossipd.toml");
    let log = scratch.path("rossipd.log");
    let write_config = |text: &str| std::fs::write(&config, text).expect("write config");
    write_config(&format!(
        "log_level = \"info\"\nlog_file = \"{}\"\nname = \"before\"\n",
        log.display()
    ));
    let daemon = Running::spawn(&mut rossipd(&scratch.0, &config, 0));
    let socket = support::socket(&scratch.0);
    wait_for("the socket to answer", || call(&socket, "status"));
    wait_for_log(&log, "rossipd is running");
    assert!(
        !read(&log).contains(" DEBUG "),
        "debug lines at info:\n{}",
        read(&log)
    );

    // logrotate's move, then the new config, then the signal.
    let rotated = scratch.path("rossipd.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    write_config(&format!(
        "log_level = \"debug\"\nlog_file = \"{}\"\nname = \"after\"\n",
        log.display()
    ));
    hangup(&daemon);
    wait_for_log(&log, "reload: log_level info -> debug");
    let text = read(&log);
    assert!(
        text.contains("reload: not applied: name before -> after (needs a restart)"),
        "log:\n{text}"
    );
    assert!(
        read(&rotated).contains("SIGHUP received"),
        "the old file did not get the lines before the reopen:\n{}",
        read(&rotated)
    );
    assert!(
        text.contains("reload: reopened the log file"),
        "log:\n{text}"
    );
    let status = call(&socket, "status").expect("status after reload");
    assert_eq!(status["name"], "before", "a restart-only setting changed");
    // The new level is in force: a delivery is logged at debug, in the new file.
    let sent = call_with(
        &socket,
        "send",
        serde_json::json!({"text": "after the reload"}),
    )
    .expect("send after the reload");
    let id = sent["id"].as_str().expect("a message id").to_owned();
    wait_for("the delivery's debug line after the reload", || {
        let text = read(&log);
        text.lines()
            .any(|l| l.contains(" DEBUG ") && l.contains(&id))
            .then_some(())
    });

    // A broken file: the error says where, and nothing changes.
    write_config("log_level = \"info\"\nport = \"seven\"\n");
    hangup(&daemon);
    wait_for_log(
        &log,
        "reload failed, the running configuration is unchanged",
    );
    let text = read(&log);
    assert!(
        text.contains("line 2, key `port`"),
        "the reload error does not name the line and key:\n{text}"
    );
    assert!(
        text.contains("(only the log file was reopened)"),
        "the failed reload does not say the log file was reopened:\n{text}"
    );
    assert!(
        call(&socket, "status").is_some(),
        "the daemon died of a bad reload"
    );
    // One more reload, with a good file: reloads run one after the other,
    // so once it is done, the failed one has written all it will.
    write_config(&format!(
        "log_level = \"debug\"\nlog_file = \"{}\"\nname = \"before\"\n",
        log.display()
    ));
    hangup(&daemon);
    wait_for_log_count(&log, "reload done", 2);
    let text = read(&log);
    let failed = text
        .find("reload failed")
        .expect("the failed reload's line");
    let next = text[failed..]
        .find("SIGHUP received")
        .map_or(text.len(), |i| failed + i);
    assert!(
        !text[failed..next].contains("reload done"),
        "a failed reload claims to be done:\n{text}"
    );
    let before = text[..failed]
        .rfind("SIGHUP received")
        .expect("its SIGHUP line");
    assert!(
        !text[before..failed].contains("reload done"),
        "a failed reload claims to be done:\n{text}"
    );
}

#[test]
fn sighup_installs_the_key_files_new_keys_and_leaves_use_and_remove_to_rossipctl() {
    let scratch = Scratch::new("reload-keys");
    let old = ClusterKey::new(&[0x11; 32]);
    let new = ClusterKey::new(&[0x22; 32]);
    let keys = scratch.path("rossip.key");
    key_file(&keys, &[&old]);
    let log = scratch.path("rossipd.log");
    let mut cmd = rossipd(&scratch.0, Path::new("/dev/null"), 0);
    cmd.arg("--key-file").arg(&keys).arg("--log-file").arg(&log);
    let daemon = Running::spawn(&mut cmd);
    let socket = support::socket(&scratch.0);
    let status = wait_for("the socket to answer", || call(&socket, "status"));
    assert_eq!(status["keys"], serde_json::json!([old.id().to_string()]));

    // The operator pushes a key file that seals with the new key.
    key_file(&keys, &[&new, &old]);
    hangup(&daemon);
    wait_for_log(&log, &format!("reload: installed key {}", new.id()));
    let text = read(&log);
    let want = format!(
        "seals with key {}, this node with {}: run `rossipctl keys use {}`",
        new.id(),
        old.id(),
        new.id()
    );
    assert!(text.contains(&want), "log lacks {want:?}:\n{text}");
    let status = call(&socket, "status").expect("status");
    assert_eq!(
        status["keys"],
        serde_json::json!([old.id().to_string(), new.id().to_string()]),
        "the new key is accepted, the old one still seals"
    );
    let saved = read(&scratch.path("state").join("keyring"));
    assert!(
        saved.contains(&new.to_hex()),
        "the installed key was not saved for the next start:\n{saved}"
    );

    // After `keys use NEW`, a key file still listing only OLD is stale: the
    // reload says so without advising a rollback, and never offers the
    // sealing key for removal.
    let used = call_with(
        &socket,
        "keys.use",
        serde_json::json!({"id": new.id().to_string()}),
    );
    assert!(used.is_some(), "keys.use {} failed", new.id());
    key_file(&keys, &[&old]);
    hangup(&daemon);
    wait_for_log_count(&log, "reload done", 2);
    let text = read(&log);
    let stale = format!(
        "lists key {} first, but this node seals with {} (the keyring saved by `rossipctl keys` \
         supersedes the key file)",
        old.id(),
        new.id()
    );
    assert!(text.contains(&stale), "log lacks {stale:?}:\n{text}");
    assert!(
        !text.contains(&format!("key {} is held but not in", new.id())),
        "the sealing key was offered for removal:\n{text}"
    );

    // A key file others can read is refused, and the keyring stays.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    hangup(&daemon);
    wait_for_log(&log, "reload: not applied: key file:");
    let status = call(&socket, "status").expect("status");
    assert_eq!(
        status["keys"],
        serde_json::json!([new.id().to_string(), old.id().to_string()])
    );

    // The rotation ends with `keys remove OLD`; the key file still lists
    // OLD. A reload must not bring the revoked key back.
    let removed = call_with(
        &socket,
        "keys.remove",
        serde_json::json!({"id": old.id().to_string()}),
    );
    assert!(removed.is_some(), "keys.remove {} failed", old.id());
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    hangup(&daemon);
    wait_for_log_count(&log, "reload done", 4);
    let status = call(&socket, "status").expect("status");
    assert_eq!(
        status["keys"],
        serde_json::json!([new.id().to_string()]),
        "a stale key file reinstalled a removed key:\n{}",
        read(&log)
    );
    let text = read(&log);
    assert!(
        text.contains(&format!("key {} has been in", old.id()))
            && text.contains("not installed again"),
        "{text}"
    );
}

#[test]
fn a_reload_under_systemd_compares_like_with_like_and_leaves_credentials_to_a_restart() {
    let scratch = Scratch::new("reload-systemd");
    let log = scratch.path("rossipd.log");
    let config = scratch.path("rossipd.toml");
    // `daemonize = true` in the file is ignored under a service manager that
    // waits for READY=1; a reload of the same file must not call that a change.
    std::fs::write(
        &config,
        format!("daemonize = true\nlog_file = \"{}\"\n", log.display()),
    )
    .expect("write config");
    let notify = std::os::unix::net::UnixDatagram::bind(scratch.path("notify"))
        .expect("bind a NOTIFY_SOCKET");
    let credentials = scratch.path("credentials");
    std::fs::create_dir_all(&credentials).expect("credentials dir");
    let key = ClusterKey::new(&[0x33; 32]);
    key_file(&credentials.join("rossip.key"), &[&key]);
    let mut cmd = rossipd(&scratch.0, &config, 0);
    cmd.env("NOTIFY_SOCKET", scratch.path("notify"))
        .env("CREDENTIALS_DIRECTORY", &credentials);
    let daemon = Running::spawn(&mut cmd);
    let socket = support::socket(&scratch.0);
    let status = wait_for("the socket to answer", || call(&socket, "status"));
    assert_eq!(status["keys"], serde_json::json!([key.id().to_string()]));
    assert!(read(&log).contains("daemonize ignored"), "{}", read(&log));

    hangup(&daemon);
    wait_for_log(&log, "reload done");
    let text = read(&log);
    assert!(
        text.contains("reload done: 1 applied, 1 not applied"),
        "only the log file reopen and the credential:\n{text}"
    );
    assert!(
        text.contains("the key comes from systemd's credential")
            && text.contains("`systemctl restart rossipd` reads a new one"),
        "{text}"
    );
    drop(notify);
}
