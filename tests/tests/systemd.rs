//! The systemd integration: a real `rossipd` speaks the notification
//! protocol (READY=1 once it serves, STATUS=, WATCHDOG=1, STOPPING=1) to a
//! NOTIFY_SOCKET this test listens on, and the unit files in `systemd/` pass
//! `systemd-analyze verify` and the `security` score check (at most 2.0).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rossip_tests::daemon::Daemon;
use rossip_tests::{bins, sys};

/// From spawn to READY=1, on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// WATCHDOG_USEC the daemon is given: it must ping every 0.5 s.
const WATCHDOG_USEC: &str = "1000000";
/// The window in which at least two WATCHDOG=1 must arrive.
const WATCHDOG_WINDOW: Duration = Duration::from_secs(3);
/// From SIGTERM to STOPPING=1 and to the exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The highest `systemd-analyze security` exposure the system unit may have.
const MAX_EXPOSURE: f64 = 2.0;

/// The notification socket the daemon is pointed at, and every datagram
/// received so far (printed when an assertion fails).
struct NotifyListener {
    socket: UnixDatagram,
    received: Vec<String>,
}

impl NotifyListener {
    fn bind(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).expect("bind the NOTIFY_SOCKET datagram socket");
        Self {
            socket,
            received: Vec::new(),
        }
    }

    /// Receives until a datagram satisfies `wanted` (returned) or `timeout`
    /// passes (`None`).
    fn recv_until(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("set the notify socket's read timeout");
            match self.socket.recv(&mut buf) {
                Ok(len) => {
                    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                    self.received.push(text.clone());
                    if wanted(&text) {
                        return Some(text);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("receiving on the notify socket: {e}"),
            }
        }
    }

    fn history(&self) -> String {
        format!("{:?}", self.received)
    }
}

fn has_line(datagram: &str, line: &str) -> bool {
    datagram.lines().any(|l| l == line)
}

#[test]
fn notify_socket_sees_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir for the notify socket");
    let notify_path = dir.path().join("notify.sock");
    let mut listener = NotifyListener::bind(&notify_path);
    let mut daemon = Daemon::builder("notify")
        .loopback()
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .spawn_unready();

    let ready = listener
        .recv_until(READY_TIMEOUT, |d| has_line(d, "READY=1"))
        .unwrap_or_else(|| {
            panic!(
                "no READY=1 within {READY_TIMEOUT:?} ({}); received: {}",
                daemon.command_line(),
                listener.history()
            )
        });
    let ready_at = Instant::now();
    // READY=1 means serving: the socket answers right away.
    let status = daemon.status();
    assert!(
        !listener.received[..listener.received.len() - 1]
            .iter()
            .any(|d| d.contains("WATCHDOG=1")),
        "WATCHDOG=1 before READY=1: {}",
        listener.history()
    );
    assert!(
        has_line(
            &ready,
            &format!("STATUS={} peers alive", status.peers.alive)
        ),
        "READY=1 should carry the peer count (alive: {}): {ready:?}",
        status.peers.alive
    );

    let mut pings = ready.lines().filter(|l| *l == "WATCHDOG=1").count();
    while pings < 2 {
        let left = WATCHDOG_WINDOW.saturating_sub(ready_at.elapsed());
        if listener
            .recv_until(left, |d| has_line(d, "WATCHDOG=1"))
            .is_none()
        {
            break;
        }
        pings += 1;
    }
    assert!(
        pings >= 2,
        "expected WATCHDOG=1 at least twice within {WATCHDOG_WINDOW:?} of READY=1 \
         (WATCHDOG_USEC={WATCHDOG_USEC}); received: {}",
        listener.history()
    );

    daemon.sigterm();
    let stopping = listener.recv_until(STOP_TIMEOUT, |d| has_line(d, "STOPPING=1"));
    assert!(
        stopping.is_some(),
        "no STOPPING=1 within {STOP_TIMEOUT:?} of SIGTERM; received: {}",
        listener.history()
    );
    daemon.assert_clean_exit(STOP_TIMEOUT, "SIGTERM");
}

#[test]
fn without_notify_socket_the_daemon_runs_normally() {
    // Nothing to receive: the point is that no NOTIFY_SOCKET means no error
    // and no difference in behaviour.
    let mut daemon = Daemon::builder("no-notify").loopback().spawn();
    assert_eq!(daemon.status().peers.alive, 0);
    daemon.stop_with_sigterm(STOP_TIMEOUT);
}

/// `systemd-analyze`, or `None` (after a notice) when it is not installed
/// outside CI. CI must have it.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    let found = sys::find_program("systemd-analyze");
    if found.is_none() {
        assert!(
            !sys::ci(),
            "systemd-analyze is required with CI=true (apt-get install systemd)"
        );
        sys::skipped(
            test,
            "systemd-analyze is not installed (apt-get install systemd)",
        );
    }
    found
}

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("systemd")
}

/// A copy of `unit` in `dir` whose `ExecStart=` runs the freshly built
/// rossipd: `verify` insists that the command exists, and the unit names
/// the installed `/usr/bin/rossipd`. Nothing else changes.
fn with_built_binary(unit: &Path, dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(unit).unwrap_or_else(|e| panic!("read {}: {e}", unit.display()));
    assert!(
        text.contains("ExecStart=/usr/bin/rossipd"),
        "{} should start /usr/bin/rossipd",
        unit.display()
    );
    let binary = bins::rossipd();
    let text = text.replace(
        "ExecStart=/usr/bin/rossipd",
        &format!("ExecStart={}", binary.display()),
    );
    std::fs::create_dir_all(dir).expect("create the unit copy's directory");
    let copy = dir.join("rossipd.service");
    std::fs::write(&copy, text).expect("write the unit copy");
    copy
}

fn run_analyze(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run systemd-analyze {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze {what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze("unit_files_pass_systemd_analyze_verify") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir for unit copies");
    let system = with_built_binary(
        &units_dir().join("rossipd.service"),
        &dir.path().join("system"),
    );
    run_analyze(
        Command::new(&analyze).arg("verify").arg(&system),
        "verify (system unit)",
    );
    let user = with_built_binary(
        &units_dir().join("user").join("rossipd.service"),
        &dir.path().join("user"),
    );
    // A user manager needs a runtime directory, which a CI container's root
    // shell lacks: give it an empty one.
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).expect("create a runtime dir");
    run_analyze(
        Command::new(&analyze)
            .args(["--user", "verify"])
            .arg(&user)
            .env("XDG_RUNTIME_DIR", &runtime),
        "--user verify (user unit)",
    );
}

/// The number in "→ Overall exposure level for rossipd.service: 1.3 OK 🙂".
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.split_once(".service:")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn system_unit_security_exposure_is_at_most_two() {
    let Some(analyze) = systemd_analyze("system_unit_security_exposure_is_at_most_two") else {
        return;
    };
    let unit = units_dir().join("rossipd.service");
    let report = run_analyze(
        Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit),
        "security --offline=yes",
    );
    let score =
        exposure(&report).unwrap_or_else(|| panic!("no exposure level in the report:\n{report}"));
    sys::say(&format!(
        "systemd-analyze security: rossipd.service exposure {score}"
    ));
    assert!(
        score <= MAX_EXPOSURE,
        "rossipd.service exposure {score} is above {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn exposure_is_parsed_from_the_report_line() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for rossipd.service: 1.3 OK 🙂\n"),
        Some(1.3)
    );
    assert_eq!(exposure("nothing here"), None);
}
