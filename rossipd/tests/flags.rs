//! The rossipd binary's command line: help, version, and refusals that must
//! happen before anything is bound.

use std::process::Command;

fn rossipd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rossipd"))
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rossipd-flags-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

#[test]
fn help_lists_the_flags() {
    let out = rossipd().arg("--help").output().expect("run rossipd");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--name",
        "--port",
        "--bind",
        "--socket",
        "--state-dir",
        "--join",
        "--cluster",
        "--no-mdns",
        "--iface",
        "--history",
        "--history-max-age",
        "--history-max-bytes",
        "--max-message-bytes",
        "--reap-after",
        "--log-level",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = rossipd().arg("--version").output().expect("run rossipd");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_malformed_flag_is_a_usage_error() {
    for args in [
        ["--bind", "not-an-address"],
        ["--reap-after", "soon"],
        ["--reap-after", "500ms"],
        ["--reap-after", "500000000000y"],
    ] {
        let out = rossipd().args(args).output().expect("run rossipd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: stderr: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: stderr: {stderr}");
    }
}

/// Starts a loopback-only daemon whose socket is `socket_dir/s.sock`, with
/// `extra` flags, and waits for it to exit (every caller expects a refusal).
fn start_refused(
    socket_dir: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    rossipd()
        .args(["--no-mdns", "--port", "0", "--bind", "127.0.0.1"])
        .args(extra)
        .arg("--socket")
        .arg(socket_dir.join("s.sock"))
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("run rossipd")
}

#[test]
fn a_bad_cluster_label_is_refused_with_a_reason() {
    let dir = temp_dir("cluster");
    let out = start_refused(&dir, &dir.join("state"), &["--cluster", "two words"]);
    // A bad value is a configuration error (2), found before anything is bound.
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster label"), "stderr: {stderr}");
    assert!(
        !stderr.contains("channel"),
        "a cluster label is no channel: {stderr}"
    );
    assert!(
        !dir.join("s.sock").exists(),
        "a refused start must not leave a socket behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_message_size_limit_beyond_one_request_line_is_refused() {
    let dir = temp_dir("maxmsg");
    let out = start_refused(
        &dir,
        &dir.join("state"),
        &["--max-message-bytes", "2000000"],
    );
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--max-message-bytes") && stderr.contains("must be at most 983040"),
        "stderr: {stderr}"
    );
    let out = rossipd()
        .args(["--max-message-bytes", "0"])
        .output()
        .expect("run rossipd");
    assert_eq!(out.status.code(), Some(2), "0 is a usage error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_interface_is_refused() {
    let dir = temp_dir("iface");
    let out = start_refused(&dir, &dir.join("state"), &["--iface", "no-such-if0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-if0"), "stderr: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_socket_directory_others_can_tamper_with_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("sockdir");
    let open = dir.join("open");
    std::fs::create_dir(&open).expect("mkdir");
    // World-writable without the sticky bit: anyone could replace the socket.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = start_refused(&open, &dir.join("state"), &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("world-writable"));

    // A directory owned by another (non-root) user: only root can set that up.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if root {
        let theirs = dir.join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        let out = start_refused(&theirs, &dir.join("state"), &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid 65534"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
