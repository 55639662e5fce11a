//! Running without systemd, through the real binary: `--daemonize` detaches
//! (a new session, no terminal, reparented, in "/"), returns once the daemon
//! serves its socket, and fails with the daemon's own error when it cannot
//! start; `--pid-file` holds the right pid under a lock and is removed at
//! exit; `--syslog` sends each line as a datagram with priority and pid.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{DEADLINE, Pid, Scratch, call, read, rossipd, stat_field, wait_for};

fn output(cmd: &mut Command) -> (Output, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run rossipd --daemonize");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn read_pid(path: &Path) -> u32 {
    let text = read(path);
    assert!(text.ends_with('\n'), "pid file {path:?} holds {text:?}");
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {path:?} holds {text:?}: {e}"))
}

/// A guard for the daemon whose pid `path` names, if the file exists.
fn guard(path: &Path) -> Option<Pid> {
    path.exists().then(|| Pid(read_pid(path)))
}

/// Guards for any daemon started with this exact `--socket` path (unique
/// to the test's scratch directory): one that should not have started
/// must not outlive a failing test either.
fn daemons_on(socket: &Path) -> Vec<Pid> {
    pids_on(socket).into_iter().map(Pid).collect()
}

/// The live processes (zombies excluded) with `socket` as an argument.
fn pids_on(socket: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let socket = socket.as_os_str().as_encoded_bytes();
        if cmdline.split(|&b| b == 0).any(|arg| arg == socket) {
            found.push(pid);
        }
    }
    found
}

/// Runs a `--daemonize` start that must be refused: exit status 1, and no
/// daemon left on `socket` (one that started anyway is stopped when the
/// assertion fails). Its stderr.
fn refused_start(cmd: &mut Command, socket: &Path) -> String {
    let (out, stderr) = output(cmd);
    if out.status.code() != Some(1) {
        // A daemon that started anyway is stopped as the test fails.
        let _started = daemons_on(socket);
        panic!(
            "expected exit status 1, got {:?}; stderr: {stderr}",
            out.status
        );
    }
    // The starting command returns on the daemon's word; the daemon itself
    // is then on its way out. Watched without guards (a guard would stop
    // it), and only one still there after the deadline is a failure.
    let deadline = std::time::Instant::now() + DEADLINE;
    while !pids_on(socket).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let running = daemons_on(socket);
    assert!(
        running.is_empty(),
        "a daemon runs although its start was refused"
    );
    stderr
}

#[test]
fn daemonize_detaches_writes_the_pid_file_and_a_second_daemon_is_refused() {
    let scratch = Scratch::new("daemonize");
    let dir = &scratch.0;
    // Relative paths: the daemon moves to "/", so they must be resolved first.
    let mut cmd = rossipd(dir, Path::new("/dev/null"), 0);
    cmd.current_dir(dir).args([
        "--daemonize",
        "--pid-file",
        "rossipd.pid",
        "--log-file",
        "rossipd.log",
        "--name",
        "detached",
    ]);
    let (out, stderr) = output(&mut cmd);
    let log = scratch.path("rossipd.log");
    let pid_path = scratch.path("rossipd.pid");
    // The guard first: whatever fails below, the daemon is stopped.
    let daemon = guard(&pid_path);
    assert!(
        out.status.success(),
        "rossipd --daemonize failed: {:?}\nstderr: {stderr}\nlog:\n{}",
        out.status,
        read(&log)
    );
    let daemon = daemon.unwrap_or_else(|| panic!("no pid file; log:\n{}", read(&log)));
    assert!(
        daemon.alive(),
        "pid {} from the pid file is not running",
        daemon.0
    );

    // Ready when the command returned: the socket answers at once.
    let status = call(&support::socket(dir), "status").unwrap_or_else(|| {
        panic!(
            "the socket does not answer after --daemonize returned; log:\n{}",
            read(&log)
        )
    });
    assert_eq!(status["name"], "detached");
    assert_eq!(
        status["state_dir"],
        scratch.path("state").display().to_string(),
        "a relative --state-dir is taken from the starting directory"
    );

    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.0)).expect("stat");
    let own_stat = std::fs::read_to_string("/proc/self/stat").expect("own stat");
    let parent = stat_field(&stat, 4).expect("ppid");
    assert_ne!(parent, std::process::id().to_string(), "not reparented");
    assert_ne!(
        stat_field(&stat, 6),
        stat_field(&own_stat, 6),
        "still in the starting command's session"
    );
    assert_eq!(
        stat_field(&stat, 7).as_deref(),
        Some("0"),
        "has a controlling terminal"
    );
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", daemon.0)).expect("cwd");
    assert_eq!(cwd, Path::new("/"), "the daemon keeps a directory busy");
    let text = read(&log);
    assert!(text.contains("rossipd is running"), "log:\n{text}");

    // The same pid file: refused, with the holder's pid, by the starting command.
    let other = Scratch::new("daemonize-second");
    let mut second = rossipd(&other.0, Path::new("/dev/null"), 0);
    second.arg("--daemonize").arg("--pid-file").arg(&pid_path);
    second.arg("--log-file").arg(other.path("rossipd.log"));
    let stderr = refused_start(&mut second, &support::socket(&other.0));
    assert!(
        stderr.contains("is locked") && stderr.contains(&daemon.0.to_string()),
        "stderr: {stderr}"
    );
    assert_eq!(
        read_pid(&pid_path),
        daemon.0,
        "the second daemon overwrote the pid file"
    );
    assert!(daemon.alive());

    daemon.signal("TERM");
    assert!(
        daemon.wait_gone(DEADLINE),
        "pid {} outlived SIGTERM",
        daemon.0
    );
    assert!(!pid_path.exists(), "the pid file outlived the daemon");
    let text = read(&log);
    assert!(text.contains("SIGTERM received"), "log:\n{text}");
}

#[test]
fn a_daemon_that_cannot_start_fails_the_starting_command_with_its_error() {
    let scratch = Scratch::new("daemonize-fail");
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let port = taken.local_addr().expect("addr").port();
    let pid_path = scratch.path("rossipd.pid");
    let mut cmd = rossipd(&scratch.0, Path::new("/dev/null"), port);
    cmd.arg("--daemonize").arg("--pid-file").arg(&pid_path);
    cmd.arg("--log-file").arg(scratch.path("rossipd.log"));
    let stderr = refused_start(&mut cmd, &support::socket(&scratch.0));
    assert!(
        stderr.starts_with("rossipd: error: ") && stderr.contains(&port.to_string()),
        "the starting command does not say why: {stderr}"
    );
    assert!(
        !pid_path.exists(),
        "a daemon that did not start left its pid file"
    );
    drop(taken);
}

/// Reads datagrams from the test's syslog socket (each kept in `lines`)
/// until one contains `want`; that one.
fn next_line_with(syslog: &UnixDatagram, want: &str, lines: &mut Vec<String>) -> String {
    wait_for(&format!("a syslog line with {want:?}"), || {
        let mut buf = vec![0u8; 65536];
        let n = syslog.recv(&mut buf).ok()?;
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        lines.push(line.clone());
        line.contains(want).then_some(line)
    })
}

#[test]
fn syslog_gets_one_datagram_per_line_with_priority_and_the_daemons_pid() {
    let scratch = Scratch::new("syslog");
    let syslog_path = scratch.path("log.sock");
    let syslog = UnixDatagram::bind(&syslog_path).expect("bind the test's syslog socket");
    syslog
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let pid_path = scratch.path("rossipd.pid");
    // --daemonize with no --log-file logs to syslog.
    let mut cmd = rossipd(&scratch.0, Path::new("/dev/null"), 0);
    cmd.env("ROSSIP_SYSLOG_SOCKET", &syslog_path)
        .arg("--daemonize")
        .arg("--pid-file")
        .arg(&pid_path);
    let (out, stderr) = output(&mut cmd);
    let daemon = guard(&pid_path);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let daemon = daemon.expect("the pid file of a daemon that started");

    let mut lines = Vec::new();
    let running = next_line_with(&syslog, "rossipd is running", &mut lines);
    // Facility daemon (3), severity informational (6): 3 * 8 + 6.
    let prefix = format!("<30>rossipd[{}]: ", daemon.0);
    assert!(
        running.starts_with(&prefix),
        "{running:?} does not start with {prefix:?}"
    );
    assert!(
        !running.ends_with('\n') && !lines.iter().any(|l| l.matches("rossipd[").count() > 1),
        "lines are not one per datagram: {lines:?}"
    );

    // A reload with nothing changed names nothing as changed: the daemon
    // compares like with like (it chose syslog itself, having no log file).
    daemon.signal("HUP");
    let done = next_line_with(&syslog, "reload done", &mut lines);
    assert!(
        done.ends_with("reload done: 0 applied, 0 not applied"),
        "{done:?}; all lines: {lines:?}"
    );
    daemon.signal("TERM");
    assert!(daemon.wait_gone(DEADLINE));
}

/// `--daemonize` without `--log-file` on a host without syslog: the daemon
/// starts anyway, logging to `<state dir>/rossipd.log` (mode 640), and says
/// so on the starting command's stderr and in that log; a reload keeps
/// that file. A symbolic link in its place is refused, as for --log-file.
#[test]
fn without_syslog_a_detached_daemon_logs_to_the_state_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = Scratch::new("no-syslog");
    let no_syslog = scratch.path("no-such-log.sock");
    let pid_path = scratch.path("rossipd.pid");
    let log = scratch.0.join("state").join("rossipd.log");
    let mut cmd = rossipd(&scratch.0, Path::new("/dev/null"), 0);
    cmd.env("ROSSIP_SYSLOG_SOCKET", &no_syslog)
        .arg("--daemonize")
        .arg("--pid-file")
        .arg(&pid_path);
    let (out, stderr) = output(&mut cmd);
    let daemon = guard(&pid_path);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let daemon = daemon.expect("the pid file of a daemon that started");
    assert!(
        stderr.contains(&no_syslog.display().to_string())
            && stderr.contains(&log.display().to_string()),
        "the starting command does not say where the log went: {stderr}"
    );
    wait_for("the daemon's log in the state directory", || {
        read(&log).contains("rossipd is running").then_some(())
    });
    let text = read(&log);
    assert!(
        text.contains("no syslog") && text.contains(&log.display().to_string()),
        "the log does not say why it is there:\n{text}"
    );
    let mode = std::fs::metadata(&log).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "created as --log-file would be");
    assert!(call(&support::socket(&scratch.0), "status").is_some());

    // A reload compares like with like: the same file, nothing to restart.
    daemon.signal("HUP");
    wait_for("the reload's last line", || {
        read(&log).contains("reload done").then_some(())
    });
    let text = read(&log);
    assert!(
        text.contains("reload done: 1 applied, 0 not applied"),
        "only the log file is reopened:\n{text}"
    );
    daemon.signal("TERM");
    assert!(daemon.wait_gone(DEADLINE));

    // A link planted where the file goes is refused, not followed.
    std::fs::remove_file(&log).expect("remove the log");
    let target = scratch.path("elsewhere");
    std::fs::write(&target, "").expect("write the link's target");
    std::os::unix::fs::symlink(&target, &log).expect("plant a link");
    let mut cmd = rossipd(&scratch.0, Path::new("/dev/null"), 0);
    cmd.env("ROSSIP_SYSLOG_SOCKET", &no_syslog)
        .arg("--daemonize")
        .arg("--pid-file")
        .arg(&pid_path);
    let stderr = refused_start(&mut cmd, &support::socket(&scratch.0));
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(read(&target), "", "the link's target was written to");
}

/// A state directory whose parent sits in a directory anyone may write to
/// (as `/tmp/rossip-UID/state` does, the fallback without HOME and
/// XDG_STATE_HOME) is refused when that parent is a symbolic link or
/// another user's, as the socket's directory would be; nothing is written
/// into it, neither the fallback log of a detached daemon without syslog
/// nor the state of a daemon in the foreground.
#[test]
fn a_state_directory_in_a_planted_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = Scratch::new("planted-state");
    let shared = scratch.path("tmp");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let target = scratch.path("elsewhere");
    std::fs::create_dir(&target).expect("mkdir");
    let link = shared.join("rossip-link");
    std::os::unix::fs::symlink(&target, &link).expect("plant a link");
    let mut planted = vec![(link, "is a symbolic link", target)];
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if root {
        let theirs = shared.join("rossip-theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        planted.push((theirs.clone(), "belongs to uid 65534", theirs));
    }
    let no_syslog = scratch.path("no-such-log.sock");
    for (parent, problem, inside) in &planted {
        for daemonize in [true, false] {
            // State in PARENT/state (the socket would follow, but the state
            // directory is checked first).
            let mut cmd = rossipd(parent, Path::new("/dev/null"), 0);
            cmd.env("ROSSIP_SYSLOG_SOCKET", &no_syslog);
            if daemonize {
                cmd.arg("--daemonize");
            }
            let stderr = refused_start(&mut cmd, &support::socket(parent));
            assert!(
                stderr.contains(&format!(
                    "the state directory's parent {} {problem}",
                    parent.display()
                )),
                "daemonize {daemonize}: {stderr}"
            );
            let written: Vec<_> = std::fs::read_dir(inside)
                .expect("read the planted directory")
                .collect();
            assert!(
                written.is_empty(),
                "daemonize {daemonize}: written into the planted directory: {written:?}"
            );
        }
    }
}
