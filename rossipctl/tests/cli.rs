//! The real `rossipctl` binary: exit codes, where messages go, and what a user sees when
//! no daemon runs. Where a daemon's answer matters, a scripted fake speaks JSON-RPC on a
//! Unix socket in a temp dir (tests against the real rossipd live in the `tests` crate).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const EXIT_UNAVAILABLE: i32 = 69;

fn rossipctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rossipctl"));
    cmd.env_remove("ROSSIP_SOCKET").stdin(Stdio::null());
    cmd
}

/// Held (shared) while a test's rossipctl runs, and alone by the tests
/// that need their child's stdout pipe to lose its last reader: under
/// load, a closed-pipe test was seen to hang until its deadline while
/// other tests spawned children (as if one of them still held the pipe).
static CHILDREN: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn alongside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    CHILDREN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run(cmd: &mut Command) -> Output {
    let _children = alongside_others();
    cmd.output().expect("run rossipctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code, printing the command's output if it differs.
fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn missing_socket_exits_69_and_says_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("nothing-here.sock");
    for args in [
        &["status"][..],
        &["peers"],
        &["send", "hi"],
        &["tail", "-f"],
        &["tail", "-f", "--peers"],
        &["events"],
    ] {
        let out = run(rossipctl().arg("--socket").arg(&socket).args(args));
        assert_exit(&out, EXIT_UNAVAILABLE, &format!("rossipctl {args:?}"));
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("rossipctl: error: cannot reach rossipd at "),
            "{stderr}"
        );
        assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
        assert!(stderr.contains("start it with `rossipd`"), "{stderr}");
        assert!(stderr.contains("--socket"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    }
}

#[test]
fn stale_socket_file_exits_69() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    drop(UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists(), "the stale socket file stays behind");
    let out = run(rossipctl().arg("--socket").arg(&socket).arg("status"));
    assert_exit(&out, EXIT_UNAVAILABLE, "stale socket");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(stderr.contains("is rossipd running?"), "{stderr}");
}

#[test]
fn socket_comes_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("from-env.sock");
    let out = run(rossipctl().env("ROSSIP_SOCKET", &socket).arg("status"));
    assert_exit(&out, EXIT_UNAVAILABLE, "ROSSIP_SOCKET");
    assert!(text(&out.stderr).contains(&socket.display().to_string()));
}

/// The effective uid, as rossipctl names the per-user places (`/run/user/UID`, …).
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    let file = tempfile::tempfile().expect("temp file");
    file.metadata().expect("metadata").uid()
}

/// The places rossipctl searches when the fixed ones are moved under `root` (by the
/// test-only `ROSSIPCTL_TEST_ROOT`) and XDG_RUNTIME_DIR is `xdg`, in order.
fn places(xdg: Option<&Path>, root: &Path) -> Vec<std::path::PathBuf> {
    let uid = my_uid();
    let mut all: Vec<_> = xdg
        .map(|x| x.join("rossip/rossipd.sock"))
        .into_iter()
        .collect();
    all.push(root.join(format!("run/user/{uid}/rossip/rossipd.sock")));
    all.push(root.join(format!("tmp/rossip-{uid}/rossipd.sock")));
    all.push(root.join("run/rossip/rossipd.sock"));
    all
}

/// rossipctl without --socket, with XDG_RUNTIME_DIR `xdg` (unset if None) and the fixed
/// places under `root`.
fn searching_rossipctl(xdg: Option<&Path>, root: &Path) -> Command {
    let mut cmd = rossipctl();
    cmd.env("ROSSIPCTL_TEST_ROOT", root);
    match xdg {
        Some(xdg) => cmd.env("XDG_RUNTIME_DIR", xdg),
        None => cmd.env_remove("XDG_RUNTIME_DIR"),
    };
    cmd
}

#[test]
fn no_daemon_anywhere_names_every_place_it_looked() {
    let xdg = tempfile::tempdir().expect("temp dir");
    let root = tempfile::tempdir().expect("temp dir");
    // A stale socket at one place: passed over, and said to be stale.
    let stale = places(None, root.path())[1].clone();
    std::fs::create_dir_all(stale.parent().expect("dir")).expect("mkdir");
    drop(UnixListener::bind(&stale).expect("bind"));
    for (xdg, count) in [(Some(xdg.path()), 4), (None, 3)] {
        // An empty ROSSIP_SOCKET counts as unset.
        let out = run(searching_rossipctl(xdg, root.path())
            .env("ROSSIP_SOCKET", "")
            .arg("status"));
        assert_exit(&out, EXIT_UNAVAILABLE, "no daemon");
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("rossipctl: error: cannot reach rossipd: "),
            "{stderr}"
        );
        let expected = places(xdg, root.path());
        assert_eq!(expected.len(), count);
        let mut rest = stderr.as_str();
        for place in &expected {
            let shown = place.display().to_string();
            let at = rest
                .find(&shown)
                .unwrap_or_else(|| panic!("{shown} missing or out of order: {stderr}"));
            rest = &rest[at + shown.len()..];
        }
        assert!(stderr.contains("(no such file)"), "{stderr}");
        assert!(
            stderr.contains(&format!("{} (nothing listens", stale.display())),
            "{stderr}"
        );
        assert!(stderr.contains("start it with `rossipd`"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_live_daemon_is_preferred_to_a_stale_socket_before_it() {
    let xdg = tempfile::tempdir().expect("temp dir");
    let root = tempfile::tempdir().expect("temp dir");
    let all = places(Some(xdg.path()), root.path());
    for stale in &all[..2] {
        std::fs::create_dir_all(stale.parent().expect("dir")).expect("mkdir");
        drop(UnixListener::bind(stale).expect("bind"));
    }
    let live = &all[2];
    std::fs::create_dir_all(live.parent().expect("dir")).expect("mkdir");
    let daemon = fake_daemon(live, |conn| {
        let (id, method, _) = conn.request();
        assert_eq!(method, "send");
        conn.send(json!({"jsonrpc": "2.0", "id": id, "result": {"id": "ab-1", "ts": 1}}));
    });
    let out = run(searching_rossipctl(Some(xdg.path()), root.path()).args(["send", "hi"]));
    assert_exit(&out, 0, "a daemon at the third place");
    daemon.join().expect("fake daemon");
}

#[test]
fn a_tmp_directory_of_another_user_is_not_used() {
    if !permissions_are_bypassed() {
        skipped(
            "a_tmp_directory_of_another_user_is_not_used",
            "needs root to give a directory to another user",
        );
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let planted = places(None, root.path())[1].clone();
    let dir = planted.parent().expect("dir");
    std::fs::create_dir_all(dir).expect("mkdir");
    // A world-writable parent with a sticky bit, like /tmp, and the directory someone else's.
    chmod(dir.parent().expect("tmp"), "1777");
    let _listener = UnixListener::bind(&planted).expect("bind");
    let status = Command::new("chown")
        .arg("65534")
        .arg(dir)
        .status()
        .expect("chown");
    assert!(status.success(), "chown");
    let out = run(searching_rossipctl(None, root.path()).arg("status"));
    assert_exit(&out, EXIT_UNAVAILABLE, "a planted directory");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("not used: {} belongs to uid 65534", dir.display())),
        "{stderr}"
    );
}

/// A socket listened on by `nobody` (uid 65534) through `setpriv` and `socat`, which sends
/// nothing and hangs up once the client has; stopped by PID when dropped. socat rather than
/// our own binary: a checkout under /root is out of nobody's reach.
struct ForeignListener {
    child: Child,
}

impl ForeignListener {
    /// Listens at `socket`, whose directory must let nobody in; None if `setpriv` or `socat`
    /// cannot be run here.
    fn start(socket: &Path) -> Option<ForeignListener> {
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "socat"])
            .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
            .arg("/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if UnixStream::connect(socket).is_ok() {
                return Some(ForeignListener { child });
            }
            if child.try_wait().expect("socat's status").is_some() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "socat as nobody did not listen on {} within 30 s",
                socket.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ForeignListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_daemon_of_another_user_is_passed_over() {
    const TEST: &str = "a_daemon_of_another_user_is_passed_over";
    if !permissions_are_bypassed() {
        skipped(TEST, "needs root to listen as another user");
        return;
    }
    if Command::new("socat").arg("-V").output().is_err() {
        skipped(TEST, "needs `socat`");
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    chmod(root.path(), "755");
    let all = places(None, root.path());
    let (user_place, system_place) = (&all[1], &all[2]);
    // /tmp/rossip-UID as it is when another user made it and listened there between
    // rossipctl's look at the directory and its connection: the directory passes (it is
    // this user's here), the listener does not. Open to all, so nobody can listen in it.
    let user_dir = user_place.parent().expect("dir");
    let system_dir = system_place.parent().expect("dir");
    for dir in [user_dir, system_dir] {
        std::fs::create_dir_all(dir).expect("mkdir");
        chmod(dir, "777");
    }
    for dir in ["tmp", "run"] {
        chmod(&root.path().join(dir), "755");
    }
    chmod(&root.path().join("tmp"), "1777");
    let Some(_foreign) = ForeignListener::start(user_place) else {
        skipped(TEST, "cannot run `socat` as nobody through `setpriv`");
        return;
    };

    // This user's daemon at a later place is the one used.
    let daemon = fake_daemon(system_place, |conn| {
        let (id, method, _) = conn.request();
        assert_eq!(method, "send");
        conn.send(json!({"jsonrpc": "2.0", "id": id, "result": {"id": "ab-1", "ts": 1}}));
    });
    let out = run(searching_rossipctl(None, root.path()).args(["send", "hi"]));
    assert_exit(&out, 0, "past nobody's listener to this user's daemon");
    daemon.join().expect("fake daemon");

    // Without it, the error names the listener passed over, and whose it was.
    let passed_over = |place: &Path| {
        format!(
            "{} (served by uid 65534, not you: passed over)",
            place.display()
        )
    };
    std::fs::remove_file(system_place).expect("remove the fake daemon's socket");
    let out = run(searching_rossipctl(None, root.path()).arg("status"));
    assert_exit(&out, EXIT_UNAVAILABLE, "only nobody's listener");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&passed_over(user_place)), "{stderr}");

    // At the system socket, nobody is no better while root owns its directory; once the
    // directory is nobody's (the service's `User=`), its listener is the system service.
    let _service = ForeignListener::start(system_place).expect("socat ran once already");
    let out = run(searching_rossipctl(None, root.path()).arg("status"));
    assert_exit(&out, EXIT_UNAVAILABLE, "nobody at the system socket");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&passed_over(user_place)), "{stderr}");
    assert!(stderr.contains(&passed_over(system_place)), "{stderr}");
    let status = Command::new("chown")
        .arg("65534")
        .arg(system_dir)
        .status()
        .expect("chown");
    assert!(status.success(), "chown");
    let out = run(searching_rossipctl(None, root.path()).arg("status"));
    // socat answers nothing and hangs up: the request was sent, so the place was used.
    assert_exit(&out, EXIT_UNAVAILABLE, "the service user's socket");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "rossipctl: error: lost the connection to rossipd at {}",
            system_place.display()
        )),
        "{stderr}"
    );
}

/// `rossipctl` run by an unprivileged user: as is when we are not root, else through
/// `setpriv` as `nobody` (root may connect to any socket). None, after saying that `test`
/// skipped, if neither works here.
fn unprivileged_rossipctl(test: &str) -> Option<Command> {
    let found = unprivileged_rossipctl_here();
    if found.is_none() {
        skipped(test, "running as root without a usable `setpriv`");
    }
    found
}

/// The command of [`unprivileged_rossipctl`], or None where no unprivileged run works.
fn unprivileged_rossipctl_here() -> Option<Command> {
    if permissions_are_bypassed() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_rossipctl"))
            .env_remove("ROSSIP_SOCKET")
            .stdin(Stdio::null());
        let mut probe = Command::new("setpriv");
        probe
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_rossipctl"))
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let works = probe.status().is_ok_and(|status| status.success());
        works.then_some(cmd)
    } else {
        Some(rossipctl())
    }
}

/// Whether this process ignores file permissions (root, or CAP_DAC_OVERRIDE).
fn permissions_are_bypassed() -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("probe.sock");
    let _listener = UnixListener::bind(&socket).expect("bind probe");
    chmod(&socket, "000");
    UnixStream::connect(&socket).is_ok()
}

fn chmod(path: &Path, mode: &str) {
    let status = Command::new("chmod")
        .arg(mode)
        .arg(path)
        .status()
        .expect("chmod");
    assert!(status.success(), "chmod {mode} {}", path.display());
}

#[test]
fn permission_denied_exits_77_with_a_hint() {
    let Some(mut cmd) = unprivileged_rossipctl("permission_denied_exits_77_with_a_hint") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    chmod(dir.path(), "755");
    let socket = dir.path().join("rossipd.sock");
    let _listener = UnixListener::bind(&socket).expect("bind");
    chmod(&socket, "600");
    let out = run(cmd.arg("--socket").arg(&socket).arg("status"));
    assert_exit(&out, 77, "a socket only its owner may use");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains("`rossip` group"), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["send"],
        &["send", "--lines", "not-stdin"],
        &["send", "-c", "bad channel", "hi"],
        &["tail", "--since", "the day before yesterday"],
        &["tail", "-n", "minus-one"],
        &["join"],
        &["completions", "tcsh"],
        &["events", "extra"],
        &["events", "--all"],
    ] {
        let out = run(rossipctl().args(args));
        assert_exit(&out, 2, &format!("rossipctl {args:?}"));
        assert!(!out.stderr.is_empty(), "{args:?} explains itself on stderr");
    }
}

#[test]
fn help_lists_the_commands() {
    let out = run(rossipctl().arg("--help"));
    assert_exit(&out, 0, "--help");
    let help = text(&out.stdout);
    for command in [
        "send",
        "tail",
        "peers",
        "events",
        "status",
        "join",
        "leave",
        "completions",
    ] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }
    for flag in ["--socket", "--json", "ROSSIP_SOCKET"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn completions_are_printed_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(rossipctl().args(["completions", shell]));
        assert_exit(&out, 0, shell);
        let script = text(&out.stdout);
        assert!(script.contains("rossipctl"), "{shell}: {script}");
        assert!(script.contains("tail"), "{shell} completes subcommands");
        assert!(script.contains("events"), "{shell} completes `events`");
        // fish spells long options `-l snapshot`.
        assert!(
            script.contains("snapshot"),
            "{shell} completes `events --snapshot`"
        );
    }
    let bash = text(&run(rossipctl().args(["completions", "bash"])).stdout);
    assert!(bash.contains("complete -F"), "{bash}");
    assert!(
        bash.contains("rossipctl,events)"),
        "bash completes `events`: {bash}"
    );
    assert!(bash.contains("--peers"), "bash completes `tail --peers`");
}

#[test]
fn json_mode_keeps_errors_off_stdout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("absent.sock");
    for args in [
        &["peers"][..],
        &["status"],
        &["tail"],
        &["send", "x"],
        &["events"],
    ] {
        let out = run(rossipctl()
            .arg("--json")
            .arg("--socket")
            .arg(&socket)
            .args(args));
        assert_exit(&out, EXIT_UNAVAILABLE, &format!("--json {args:?}"));
        assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
        assert!(text(&out.stderr).starts_with("rossipctl: error: "));
    }
}

/// A scripted daemon: accepts one connection and hands it to `script`.
fn fake_daemon(socket: &Path, script: impl FnOnce(&mut Conn) + Send + 'static) -> JoinHandle<()> {
    let listener = UnixListener::bind(socket).expect("bind fake daemon");
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        script(&mut Conn {
            reader: BufReader::new(stream),
        });
    })
}

struct Conn {
    reader: BufReader<UnixStream>,
}

impl Conn {
    /// Reads a request; returns (id, method, params).
    fn request(&mut self) -> (Value, String, Value) {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read request");
        let v: Value = serde_json::from_str(&line).expect("request is JSON");
        assert_eq!(v["jsonrpc"], "2.0", "{line}");
        (
            v["id"].clone(),
            v["method"].as_str().expect("method").to_owned(),
            v["params"].clone(),
        )
    }

    fn send(&mut self, value: Value) {
        let line = format!("{value}\n");
        self.reader
            .get_mut()
            .write_all(line.as_bytes())
            .expect("write");
    }
}

fn event(subscription: u64, seq: u64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "event", "params": {
        "subscription": subscription, "kind": "message", "message": message(seq, text)}})
}

fn message(seq: u64, text: &str) -> Value {
    let origin = "ab".repeat(16);
    json!({"id": format!("{origin}-{seq}"), "origin": origin, "origin_name": "alice",
           "seq": seq, "ts": 1_795_497_601_000u64 + seq, "ts_logical": 0,
           "channel": "general", "text": text, "key": "3fa2:91c0:0000:0000", "verified": true,
           "name_trust": "pinned"})
}

#[test]
fn send_reads_stdin_and_prints_the_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let daemon = fake_daemon(&socket, |conn| {
        let (id, method, params) = conn.request();
        assert_eq!(method, "send");
        assert_eq!(params, json!({"text": "two\nlines", "channel": "ops"}));
        conn.send(json!({"jsonrpc": "2.0", "id": id, "result": {"id": "x-1", "ts": 5}}));
    });
    let _children = alongside_others();
    let mut child = rossipctl()
        .args(["--json", "send", "-c", "ops", "-"])
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"two\nlines\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    daemon.join().expect("fake daemon saw the expected request");
    assert_exit(&out, 0, "send -");
    assert_eq!(text(&out.stdout), "{\"id\":\"x-1\",\"ts\":5}\n");
}

#[test]
fn daemon_error_exits_1_with_message_and_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let daemon = fake_daemon(&socket, |conn| {
        let (id, _, _) = conn.request();
        conn.send(json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": -32001, "message": "message is 5000 bytes; the limit is 1200"}}));
    });
    let out = run(rossipctl()
        .arg("--socket")
        .arg(&socket)
        .args(["send", "big"]));
    daemon.join().expect("fake daemon");
    assert_exit(&out, 1, "daemon error");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the limit is 1200"), "{stderr}");
    assert!(stderr.contains("-32001"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn daemon_hanging_up_exits_69() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let daemon = fake_daemon(&socket, |conn| {
        conn.request();
    });
    let out = run(rossipctl().arg("--socket").arg(&socket).arg("status"));
    daemon.join().expect("fake daemon");
    assert_exit(&out, EXIT_UNAVAILABLE, "daemon closed the connection");
    assert!(text(&out.stderr).contains("closed the connection"));
}

#[test]
fn tail_prints_sanitized_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let daemon = fake_daemon(&socket, |conn| {
        let (id, method, params) = conn.request();
        assert_eq!((method.as_str(), params), ("history", json!({"n": 10})));
        let mut hello = message(1, "hello");
        hello["user"] = json!("ann");
        // Another node may send any display name: it is sanitized, and shown beside the
        // real user@node.
        let mut fake = message(2, "\x1b[2Jgotcha\nroot: fake");
        fake["user"] = json!("eve");
        fake["nick"] = json!("root\x1b[A");
        let messages = [hello, fake];
        conn.send(json!({"jsonrpc": "2.0", "id": id, "result": {"messages": messages}}));
    });
    let out = run(rossipctl()
        .env("TZ", "UTC")
        .arg("--socket")
        .arg(&socket)
        .arg("tail"));
    daemon.join().expect("fake daemon");
    assert_exit(&out, 0, "tail");
    assert_eq!(
        text(&out.stdout),
        "2026-11-24 05:20:01 ann@alice [abababab]: hello\n\
         2026-11-24 05:20:01 root\\x1b[A (eve@alice) [abababab]: \\x1b[2Jgotcha\\nroot: fake\n"
    );
}

/// Polls `child` until it exits or the deadline passes.
fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("rossipctl did not exit within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `rossipctl args` (in UTC) against a daemon that answers a `subscribe` with
/// `params` and sends `first`, then nothing more; reads the first line and closes the pipe.
/// Asserts that rossipctl notices by itself (there is no further write to fail) and exits 0
/// quietly, and returns the first line.
fn first_line_then_closed_pipe(args: &[&str], params: Value, first: Value) -> String {
    first_line_after(args, None, params, first)
}

/// [`first_line_then_closed_pipe`], the `subscribe` preceded by a `history` call with the
/// params and answered with the result of `history` if given.
fn first_line_after(
    args: &[&str],
    history: Option<(Value, Value)>,
    params: Value,
    first: Value,
) -> String {
    let _alone = CHILDREN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let daemon = fake_daemon(&socket, move |conn| {
        if let Some((expected, result)) = history {
            let (id, method, got) = conn.request();
            assert_eq!((method.as_str(), got), ("history", expected));
            conn.send(json!({"jsonrpc": "2.0", "id": id, "result": result}));
        }
        let (id, method, got) = conn.request();
        assert_eq!((method.as_str(), got), ("subscribe", params));
        conn.send(json!({"jsonrpc": "2.0", "id": id, "result": {"subscription": 1}}));
        conn.send(first);
        // A quiet bus: nothing more, until the client hangs up.
        let mut rest = Vec::new();
        let _ = conn.reader.read_to_end(&mut rest);
    });
    let mut child = rossipctl()
        .env("TZ", "UTC")
        .args(args)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    drop(stdout);
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(0), "{args:?}: stderr: {stderr}");
    assert!(stderr.is_empty(), "{args:?}: quiet exit, got: {stderr}");
    daemon.join().expect("fake daemon");
    line
}

#[test]
fn tail_follow_into_a_closed_pipe_exits_0() {
    let cursor = "00000000000000a1-0";
    let first = first_line_after(
        &["tail", "-f", "-n", "1"],
        Some((json!({"n": 1}), json!({"messages": [], "cursor": cursor}))),
        json!({"events": ["message"], "after": cursor}),
        event(1, 1, "first"),
    );
    // From a node that names no user: the node's name and id.
    assert!(first.ends_with(" alice [abababab]: first\n"), "{first:?}");
}

#[test]
fn tail_peers_without_follow_is_a_usage_error() {
    let out = run(rossipctl().args(["tail", "--peers"]));
    assert_exit(&out, 2, "tail --peers");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--peers"), "{stderr}");
    assert!(stderr.contains("needs -f"), "{stderr}");
    assert!(stderr.contains("rossipctl peers"), "{stderr}");
    assert!(out.stdout.is_empty());
}

fn peer_event(subscription: u64, name: &str, state: &str, previous: Option<&str>) -> Value {
    let mut params = json!({"subscription": subscription, "kind": "peer", "peer": {
        "id": "0123456789abcdef0123456789abcdef", "name": name, "addr": "127.0.0.1:7465",
        "state": state, "since": 1_795_497_601_000u64}});
    if let Some(previous) = previous {
        params["previous"] = json!(previous);
    }
    json!({"jsonrpc": "2.0", "method": "event", "params": params})
}

#[test]
fn events_prints_sanitized_lines_and_exits_0_into_a_closed_pipe() {
    let first = first_line_then_closed_pipe(
        &["events"],
        json!({"events": ["peer"]}),
        peer_event(1, "bob\x1b[2J\nroot", "failed", Some("suspect")),
    );
    let (_, rest) = first.split_once(' ').expect("date");
    let (_, rest) = rest.split_once(' ').expect("time");
    assert_eq!(
        rest,
        "* bob\\x1b[2J\\nroot failed (01234567 at 127.0.0.1:7465; suspect -> failed)\n"
    );
}

#[test]
fn keygen_prints_a_fresh_key_each_time() {
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let out = run(rossipctl().arg("keygen"));
            assert_exit(&out, 0, "keygen");
            let key = text(&out.stdout);
            assert_eq!(key.len(), 65, "64 hex digits and a newline: {key:?}");
            assert!(key.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
            let stderr = text(&out.stderr);
            assert!(stderr.contains("key id"), "stderr names the id: {stderr}");
            assert!(!stderr.contains("warning"), "plain information: {stderr}");
            assert!(stderr.contains("keygen -o FILE"), "{stderr}");
            key
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

fn assert_key_line(text: &str) {
    assert_eq!(text.len(), 65, "64 hex digits and a newline: {text:?}");
    assert!(
        text.trim_end().chars().all(|c| c.is_ascii_hexdigit()),
        "{text:?}"
    );
}

#[test]
fn keygen_output_writes_a_private_file_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rossip.key");
    let out = run(rossipctl().arg("keygen").arg("-o").arg(&file));
    assert_exit(&out, 0, "keygen -o");
    assert!(
        out.stdout.is_empty(),
        "the key is not printed: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("key id "), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(!stderr.contains("warning"), "plain information: {stderr}");
    assert_eq!(mode_of(&file), 0o600);
    let first = std::fs::read_to_string(&file).expect("read key");
    assert_key_line(&first);

    let out = run(rossipctl().arg("keygen").arg("--output").arg(&file));
    assert_exit(&out, 1, "keygen -o an existing file");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read key"), first);

    // --force replaces it, with a new file of mode 600 whatever the old one's mode was.
    chmod(&file, "644");
    let out = run(rossipctl().args(["keygen", "--force", "-o"]).arg(&file));
    assert_exit(&out, 0, "keygen --force -o");
    let second = std::fs::read_to_string(&file).expect("read key");
    assert_key_line(&second);
    assert_ne!(first, second);
    assert_eq!(mode_of(&file), 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}

#[test]
fn keygen_output_refuses_a_symbolic_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "precious\n").expect("write target");
    let link = dir.path().join("rossip.key");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let dangling = dir.path().join("dangling.key");
    std::os::unix::fs::symlink(dir.path().join("absent"), &dangling).expect("symlink");
    for (path, force) in [(&link, false), (&link, true), (&dangling, false)] {
        let mut cmd = rossipctl();
        cmd.arg("keygen").arg("-o").arg(path);
        if force {
            cmd.arg("--force");
        }
        let out = run(&mut cmd);
        assert_exit(&out, 1, &format!("keygen -o a symlink (force: {force})"));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("symbolic link"), "{stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "precious\n"
    );
    assert!(!dir.path().join("absent").exists());
}

#[test]
fn keygen_json_prints_the_key_and_its_id() {
    let out = run(rossipctl().args(["--json", "keygen"]));
    assert_exit(&out, 0, "keygen --json");
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one object: {stdout}");
    let value: Value = serde_json::from_str(&stdout).expect("JSON");
    let key = value["key"].as_str().expect("a key");
    let id = value["id"].as_str().expect("an id");
    assert_key_line(&format!("{key}\n"));
    let mut bytes = [0u8; rossip_proto::seal::KEY_BYTES];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&key[2 * i..2 * i + 2], 16).expect("hex");
    }
    let expected = rossip_proto::seal::ClusterKey::new(&bytes).id().to_string();
    assert_eq!(id, expected);
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("k");
    let out = run(rossipctl().args(["--json", "keygen", "-o"]).arg(&file));
    assert_exit(&out, 0, "keygen --json -o");
    let value: Value = serde_json::from_str(&text(&out.stdout)).expect("JSON");
    assert!(
        value.get("key").is_none(),
        "the key stays in the file: {value}"
    );
    assert_eq!(value["file"], json!(file.display().to_string()));
    assert_eq!(value["id"].as_str().map(str::len), Some(8), "{value}");
}

#[test]
fn keygen_force_needs_output() {
    let out = run(rossipctl().args(["keygen", "--force"]));
    assert_exit(&out, 2, "keygen --force without -o");
}

/// The name /etc/group gives `gid`.
fn group_name(gid: u32) -> Option<String> {
    let gid = gid.to_string();
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .find(|line| line.split(':').nth(2) == Some(gid.as_str()))
        .and_then(|line| line.split(':').next().map(str::to_owned))
}

/// Whether /etc/group has a group `name`.
fn etc_group_has(name: &str) -> bool {
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(':').next() == Some(name))
}

#[test]
fn permission_hint_names_the_sockets_actual_group() {
    let Some(mut cmd) = unprivileged_rossipctl("permission_hint_names_the_sockets_actual_group")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    chmod(dir.path(), "755");
    let socket = dir.path().join("rossipd.sock");
    let _listener = UnixListener::bind(&socket).expect("bind");
    chmod(&socket, "660");
    // gid 4 (`adm` on Debian) stands for whatever group the socket was given.
    let status = Command::new("chgrp")
        .arg("4")
        .arg(&socket)
        .status()
        .expect("chgrp");
    if !status.success() {
        skipped(
            "permission_hint_names_the_sockets_actual_group",
            "cannot chgrp the socket here",
        );
        return;
    }
    let out = run(cmd.arg("--socket").arg(&socket).arg("status"));
    assert_exit(&out, 77, "a group socket, not our group");
    let stderr = text(&out.stderr);
    match group_name(4) {
        Some(name) => {
            assert!(
                stderr.contains(&format!("join the `{name}` group")),
                "{stderr}"
            );
            assert!(stderr.contains(&format!("usermod -aG {name} ")), "{stderr}");
        }
        None => assert!(stderr.contains("gid 4, which has no name"), "{stderr}"),
    }
}

#[test]
fn permission_hint_says_when_the_rossip_group_is_missing() {
    let Some(mut cmd) =
        unprivileged_rossipctl("permission_hint_says_when_the_rossip_group_is_missing")
    else {
        return;
    };
    // The socket cannot be seen: its directory is closed to the caller, as /run/rossip is to
    // those outside its group.
    let dir = tempfile::tempdir().expect("temp dir");
    chmod(dir.path(), "700");
    let socket = dir.path().join("rossipd.sock");
    let _listener = UnixListener::bind(&socket).expect("bind");
    let before = etc_group_has("rossip");
    let out = run(cmd.arg("--socket").arg(&socket).arg("status"));
    let after = etc_group_has("rossip");
    assert_exit(&out, 77, "an unseen socket");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("`rossip` group"), "{stderr}");
    // Other tests may create the group for a while; judge only a stable state.
    if !before && !after {
        assert!(
            stderr.contains("no `rossip` group in /etc/group"),
            "{stderr}"
        );
        assert!(stderr.contains("groupadd -r rossip"), "{stderr}");
    } else if before && after {
        assert!(!stderr.contains("no `rossip` group"), "{stderr}");
        assert!(stderr.contains("usermod -aG rossip "), "{stderr}");
    }
}

#[test]
fn a_system_socket_closed_to_the_caller_gives_the_permission_hint() {
    let Some(mut cmd) =
        unprivileged_rossipctl("a_system_socket_closed_to_the_caller_gives_the_permission_hint")
    else {
        return;
    };
    if !permissions_are_bypassed() {
        skipped(
            "a_system_socket_closed_to_the_caller_gives_the_permission_hint",
            "needs root to give the directory to a group",
        );
        return;
    }
    // The system service's directory as the caller, outside its group, meets it: mode 750,
    // so the socket inside cannot even be looked at. gid 4 (`adm` on Debian) stands for the
    // service's group.
    let root = tempfile::tempdir().expect("temp dir");
    chmod(root.path(), "755");
    let dir = root.path().join("run/rossip");
    std::fs::create_dir_all(&dir).expect("mkdir");
    chmod(&root.path().join("run"), "755");
    let socket = dir.join("rossipd.sock");
    let _listener = UnixListener::bind(&socket).expect("bind");
    chmod(&socket, "660");
    chmod(&dir, "750");
    for path in [&dir, &socket] {
        let status = Command::new("chgrp")
            .arg("4")
            .arg(path)
            .status()
            .expect("chgrp");
        assert!(status.success(), "chgrp 4 {}", path.display());
    }
    let out = run(cmd
        .env("ROSSIPCTL_TEST_ROOT", root.path())
        .env_remove("XDG_RUNTIME_DIR")
        .arg("status"));
    assert_exit(&out, 77, "the system socket, not in its group");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("permission denied on {}", socket.display())),
        "{stderr}"
    );
    match group_name(4) {
        Some(name) => assert!(
            stderr.contains(&format!("join the `{name}` group")),
            "{stderr}"
        ),
        None => assert!(stderr.contains("gid 4, which has no name"), "{stderr}"),
    }
}

/// Says that `test` returns without running, in the shape `.ci/run` counts
/// as a skipped test (`test skipped: NAME: why`). Written straight to stderr:
/// libtest captures `eprintln!` of passing tests.
fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "test skipped: {test}: {why}");
}
