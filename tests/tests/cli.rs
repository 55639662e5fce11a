//! The `rossipctl` binary against real daemons: output formats and exit
//! codes as a script would rely on them.

use rossip_proto::rpc::{MessageView, PeerStateName, PeerView, StatusResult};
use rossip_tests::cluster::start_loopback_cluster;
use std::path::{Path, PathBuf};

use rossip_tests::ctl::{CtlOutput, first_line_then_closed_stdout, rossipctl, rossipctl_searching};
use rossip_tests::daemon::Daemon;
use rossip_tests::wait;
use std::time::Duration;

/// Exit code for "daemon not reachable" (sysexits EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: i32 = 69;

fn parse_lines<T: serde::de::DeserializeOwned>(out: &CtlOutput) -> Vec<T> {
    out.json_lines()
        .into_iter()
        .map(|v| {
            serde_json::from_value(v.clone()).unwrap_or_else(|e| {
                panic!("`{}` printed {v}, which does not parse: {e}", out.command)
            })
        })
        .collect()
}

#[test]
fn send_then_tail_json_shows_the_message() {
    let d = Daemon::builder("cli").loopback().spawn();
    rossipctl(d.socket(), &["send", "hello", "from", "the", "cli"]).assert_success();
    rossipctl(d.socket(), &["send", "second line"]).assert_success();

    let out = rossipctl(d.socket(), &["--json", "tail", "-n", "5"]);
    out.assert_success();
    let messages: Vec<MessageView> = parse_lines(&out);
    let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["hello from the cli", "second line"],
        "`{}` printed:\n{}",
        out.command,
        out.stdout
    );
    assert!(
        messages
            .iter()
            .all(|m| m.origin_name == "cli" && m.channel == "general"),
        "{messages:?}"
    );

    let out = rossipctl(d.socket(), &["--json", "tail", "-n", "1"]);
    let last: Vec<MessageView> = parse_lines(out.assert_success());
    assert_eq!(last.len(), 1, "tail -n 1 printed:\n{}", out.stdout);
    assert_eq!(last[0].text, "second line");
}

#[test]
fn peers_and_status_json_parse() {
    let nodes = start_loopback_cluster(&["one", "two"]);
    // Polled: on a loaded machine "two" can be `suspect` for a moment.
    wait::wait_until(
        Duration::from_secs(30),
        "`peers --json` lists two alive",
        || {
            let out = rossipctl(nodes[0].socket(), &["--json", "peers"]);
            let peers: Vec<PeerView> = parse_lines(out.assert_success());
            let listed: Vec<(&str, PeerStateName)> =
                peers.iter().map(|p| (p.name.as_str(), p.state)).collect();
            if listed == [("two", PeerStateName::Alive)] {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    );

    let out = rossipctl(nodes[0].socket(), &["--json", "peers", "--all"]);
    let all: Vec<PeerView> = parse_lines(out.assert_success());
    assert!(all.iter().any(|p| p.name == "two"), "{}", out.stdout);

    let out = rossipctl(nodes[1].socket(), &["--json", "status"]);
    let status: Vec<StatusResult> = parse_lines(out.assert_success());
    assert_eq!(
        status.len(),
        1,
        "status --json prints one object:\n{}",
        out.stdout
    );
    assert_eq!(status[0].name, "two");
    assert_eq!(status[0].peers.alive, 1, "{:?}", status[0]);

    // Human output works too (its format may change; it must not fail).
    for args in [&["peers"][..], &["status"][..], &["tail", "-n", "3"][..]] {
        rossipctl(nodes[0].socket(), args).assert_success();
    }
}

fn assert_unreachable(out: &CtlOutput, socket: &std::path::Path) {
    assert_eq!(
        out.code,
        Some(EXIT_UNAVAILABLE),
        "`{}` without a daemon: expected exit {EXIT_UNAVAILABLE}\nstdout:\n{}\nstderr:\n{}",
        out.command,
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "errors go to stderr, stdout was:\n{}",
        out.stdout
    );
    let path = socket.display().to_string();
    assert!(
        out.stderr.contains(&path) && out.stderr.contains("rossipd"),
        "the error should name the socket {path} and say to start rossipd; stderr:\n{}",
        out.stderr
    );
}

#[test]
fn no_daemon_exits_69_with_a_helpful_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("rossipd.sock");
    for args in [
        &["status"][..],
        &["send", "hi"][..],
        &["--json", "peers"][..],
    ] {
        assert_unreachable(&rossipctl(&missing, args), &missing);
    }

    // A stale socket file (its daemon gone) is just as unreachable.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind a socket"));
    assert!(stale.exists());
    assert_unreachable(&rossipctl(&stale, &["status"]), &stale);
}

#[test]
fn leave_answers_before_the_daemon_exits() {
    // The answer to `leave` is written while the daemon stops; it used to be
    // lost about one time in three. Several rounds make a regression show.
    for round in 0..8 {
        let mut d = Daemon::builder("leaver").loopback().spawn();
        let out = rossipctl(d.socket(), &["--json", "leave"]);
        out.assert_success();
        let answers = out.json_lines();
        assert_eq!(
            answers.len(),
            1,
            "round {round}: `{}` printed:\n{}",
            out.command,
            out.stdout
        );
        d.assert_clean_exit(
            std::time::Duration::from_secs(20),
            &format!("`rossipctl leave` (round {round})"),
        );
    }
}

/// The effective uid, which names the per-user places (`/run/user/UID`, `/tmp/rossip-UID`).
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    let file = tempfile::tempfile().expect("temp file");
    file.metadata().expect("metadata").uid()
}

/// Where a daemon may put its socket, with the fixed places moved under `root`: rossipctl's
/// test-only `ROSSIPCTL_TEST_ROOT` moves them there, so the machine's own `/run/user`, `/tmp`
/// and `/run/rossip` are neither used nor disturbed, and parallel tests do not meet.
struct Places {
    root: tempfile::TempDir,
    uid: u32,
}

impl Places {
    fn new() -> Places {
        Places {
            root: tempfile::tempdir().expect("temp dir"),
            uid: my_uid(),
        }
    }

    /// What logind makes: `/run/user/UID`, mode 0700, this user's.
    fn run_user_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.root.path().join(format!("run/user/{}", self.uid));
        std::fs::create_dir_all(&dir).expect("create run/user/UID");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    /// The user daemon's fallback without a runtime directory: `/tmp/rossip-UID/rossipd.sock`.
    fn tmp_socket(&self) -> PathBuf {
        self.root
            .path()
            .join(format!("tmp/rossip-{}/rossipd.sock", self.uid))
    }

    /// `rossipctl ARGS…` without --socket, with `XDG_RUNTIME_DIR` set to `xdg` or unset.
    fn rossipctl(&self, xdg: Option<&Path>, args: &[&str]) -> CtlOutput {
        rossipctl_searching(
            &[
                ("ROSSIPCTL_TEST_ROOT", Some(self.root.path().as_os_str())),
                ("XDG_RUNTIME_DIR", xdg.map(Path::as_os_str)),
                ("ROSSIP_SOCKET", None),
            ],
            args,
        )
    }
}

/// Asserts that `out` is the status of the daemon whose socket is `socket`.
fn assert_status_of(out: &CtlOutput, name: &str, socket: &Path) {
    let status: Vec<StatusResult> = parse_lines(out.assert_success());
    assert_eq!(status.len(), 1, "`{}`:\n{}", out.command, out.stdout);
    assert_eq!(
        status[0].name, name,
        "`{}` reached another daemon",
        out.command
    );
    assert_eq!(
        Path::new(&status[0].socket),
        socket,
        "`{}` reached the daemon on another socket",
        out.command
    );
}

#[test]
fn rossipctl_finds_the_daemon_with_and_without_xdg_runtime_dir() {
    let places = Places::new();
    let xdg = places.run_user_dir();
    // A user daemon started in a login session: it chooses its socket from XDG_RUNTIME_DIR.
    let socket = xdg.join("rossip/rossipd.sock");
    let mut session = Daemon::builder("xdg-session")
        .loopback()
        .env("XDG_RUNTIME_DIR", &xdg)
        .default_socket_at(&socket)
        .spawn();

    // From the same session, and from su/cron (no XDG_RUNTIME_DIR): /run/user/UID.
    assert_status_of(
        &places.rossipctl(Some(&xdg), &["--json", "status"]),
        "xdg-session",
        &socket,
    );
    assert_status_of(
        &places.rossipctl(None, &["--json", "status"]),
        "xdg-session",
        &socket,
    );

    // That daemon dies and leaves a stale socket; a daemon started without a runtime
    // directory listens in /tmp/rossip-UID. The stale socket, tried first, is passed over.
    session.kill9();
    assert!(socket.exists(), "kill -9 leaves the socket file behind");
    let tmp_socket = places.tmp_socket();
    let mut cron = Daemon::builder("xdg-cron")
        .loopback()
        .socket(&tmp_socket)
        .spawn();
    for xdg in [Some(xdg.as_path()), None] {
        assert_status_of(
            &places.rossipctl(xdg, &["--json", "status"]),
            "xdg-cron",
            &tmp_socket,
        );
    }
    rossipctl(&tmp_socket, &["send", "found you"]).assert_success();
    let out = places.rossipctl(None, &["--json", "tail", "-n", "1"]);
    let messages: Vec<MessageView> = parse_lines(out.assert_success());
    assert_eq!(messages.len(), 1, "{}", out.stdout);
    assert_eq!(messages[0].text, "found you");

    // No daemon anywhere: every place is named, with what was there.
    cron.kill9();
    let out = places.rossipctl(Some(&xdg), &["status"]);
    assert_eq!(
        out.code,
        Some(EXIT_UNAVAILABLE),
        "{}: {}",
        out.command,
        out.stderr
    );
    let root = places.root.path();
    for place in [
        socket.clone(),
        root.join(format!("run/user/{}/rossip/rossipd.sock", places.uid)),
        tmp_socket.clone(),
        root.join("run/rossip/rossipd.sock"),
    ] {
        assert!(
            out.stderr.contains(&place.display().to_string()),
            "the error should name {}: {}",
            place.display(),
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("start it with `rossipd`"),
        "{}",
        out.stderr
    );
}

#[test]
fn tail_follow_into_head_ends_on_a_quiet_bus() {
    let d = Daemon::builder("quiet-tail").loopback().spawn();
    rossipctl(d.socket(), &["send", "the only message"]).assert_success();
    // `rossipctl tail -f | head -1`: head prints the message and exits; nothing else is sent.
    let line = first_line_then_closed_stdout(d.socket(), &["tail", "-f"]);
    assert!(line.ends_with(": the only message\n"), "{line:?}");
    let line = first_line_then_closed_stdout(d.socket(), &["--json", "tail", "-f", "-n", "1"]);
    let message: MessageView = serde_json::from_str(&line).expect("a message line");
    assert_eq!(message.text, "the only message");
}
