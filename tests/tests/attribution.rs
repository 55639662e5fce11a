//! Who said it cannot be faked through the local socket: one daemon whose
//! socket two users may use (root and `nobody`), real `rossipctl` processes
//! of each. Every message names the user the kernel says sent it (the
//! socket's peer credentials), a `send` naming a user of its own is refused,
//! and a display name (`nick`), which anyone may choose, is shown beside
//! `user@node`, never instead of it.
//!
//! Needs root (to run a second uid with `setpriv`) and `socat` (a raw
//! request as that uid); without root it prints one line and passes, except
//! under `CI=true`, where it must run.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rossip_proto::rpc::{MessageView, code};
use rossip_tests::ctl::rossipctl;
use rossip_tests::daemon::Daemon;
use rossip_tests::history::history;
use rossip_tests::{bins, sys, wait};
use serde_json::{Value, json};

/// The unprivileged user (`nobody`).
const NOBODY: u32 = 65534;

const TIMEOUT: Duration = Duration::from_secs(20);

/// The node's name, which `user@node` shows.
const NODE: &str = "attrib";

/// The other user's programs: `rossipctl` copied where that user may run it
/// (the checkout may be closed to it), run through `setpriv`.
struct OtherUser {
    rossipctl: PathBuf,
    setpriv: PathBuf,
}

impl OtherUser {
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(&self.setpriv);
        cmd.arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg(program)
            .env_remove("ROSSIP_SOCKET")
            .stdin(Stdio::null());
        cmd
    }

    /// `rossipctl --socket SOCKET ARGS…` as `nobody`.
    fn rossipctl(&self, socket: &Path, args: &[&str]) -> Output {
        self.command(&self.rossipctl)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .output()
            .expect("run rossipctl as nobody")
    }

    /// One raw JSON-RPC request line as `nobody` (through `socat`); the
    /// answer.
    fn raw_request(&self, socket: &Path, request: &Value) -> Value {
        let socat = sys::find_program("socat").expect("`socat` is needed (apt-get install socat)");
        let mut cmd = self.command(&socat);
        let target: OsString = format!("UNIX-CONNECT:{}", socket.display()).into();
        cmd.args(["-t".into(), "5".into(), OsString::from("-"), target])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run socat as nobody");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("socat's stdin");
            writeln!(stdin, "{request}").expect("write the request");
        }
        let out = child.wait_with_output().expect("socat's answer");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "socat as nobody: not a JSON answer ({e}): {text:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// `nobody`'s user name as rossipd sees it (NSS, else `uid65534`).
fn nobody_name() -> String {
    sys::run("getent", &["passwd", &NOBODY.to_string()])
        .ok()
        .and_then(|out| {
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            line.split(':').next().map(str::to_owned)
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("uid{NOBODY}"))
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Opens the daemon's socket (and its directory) to every local user, so
/// that only the peer credentials tell the users apart.
fn open_socket_to_all(socket: &Path) {
    if let Some(dir) = socket.parent() {
        set_mode(dir, 0o755);
    }
    set_mode(socket, 0o666);
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn succeeded(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{what}: {}", describe(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The message with `text` in the daemon's history, once it is there.
fn message(daemon: &Daemon, text: &str) -> MessageView {
    wait::wait_until(TIMEOUT, &format!("{text:?} in history"), || {
        history(daemon).into_iter().find(|m| m.text == text)
    })
}

#[test]
fn attribution_comes_from_the_socket_and_a_nick_never_replaces_it() {
    if sys::effective_uid() != Some(0) {
        assert!(!sys::ci(), "CI=true: the attribution test must run as root");
        sys::skipped(
            "attribution_comes_from_the_socket_and_a_nick_never_replaces_it",
            "it needs root (to run rossipctl as a second user)",
        );
        return;
    }
    let base = tempfile::tempdir().expect("temp dir");
    set_mode(base.path(), 0o755);
    let socket = base.path().join("run").join("rossipd.sock");
    let other = OtherUser {
        rossipctl: base.path().join("rossipctl"),
        setpriv: sys::find_program("setpriv").expect("`setpriv` (util-linux) is needed"),
    };
    sys::place_program(&bins::rossipctl(), &other.rossipctl).expect("place rossipctl");
    let mut daemon = Daemon::builder(NODE).loopback().socket(&socket).spawn();
    open_socket_to_all(&socket);
    let nobody = nobody_name();

    // Each user's message names that user, whoever it claims to be.
    rossipctl(&socket, &["send", "from root"]).assert_success();
    succeeded(
        &other.rossipctl(&socket, &["send", "from nobody"]),
        "send as nobody",
    );
    let from_root = message(&daemon, "from root");
    let from_nobody = message(&daemon, "from nobody");
    assert_eq!(
        (from_root.user.as_str(), from_root.from.as_str()),
        ("root", format!("root@{NODE}").as_str())
    );
    assert_eq!(
        (from_nobody.user.as_str(), from_nobody.from.clone()),
        (nobody.as_str(), format!("{nobody}@{NODE}"))
    );
    assert_eq!((&from_root.nick, &from_nobody.nick), (&None, &None));

    // A parameter cannot name another user: `send` has no such field, and
    // an unknown field is refused, not ignored.
    for forged in [json!({"user": "root"}), json!({"author": {"user": "root"}})] {
        let mut params = json!({"text": "nobody claiming to be root"});
        if let (Some(params), Some(extra)) = (params.as_object_mut(), forged.as_object()) {
            params.extend(extra.clone());
        }
        let answer = other.raw_request(
            &socket,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "send", "params": params}),
        );
        assert_eq!(
            answer["error"]["code"],
            json!(code::INVALID_PARAMS),
            "{params}: {answer}"
        );
    }
    let answer = other.raw_request(
        &socket,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "nick", "params": {"nick": "x", "user": "root"}}),
    );
    assert_eq!(
        answer["error"]["code"],
        json!(code::INVALID_PARAMS),
        "{answer}"
    );
    let both = daemon
        .client()
        .call("nick", json!({"nick": "x", "clear": true}))
        .expect_err("setting and clearing at once");
    assert_eq!(both.code, code::INVALID_PARAMS, "{both:?}");
    assert!(
        history(&daemon)
            .iter()
            .all(|m| m.text != "nobody claiming to be root"),
        "a refused send was delivered"
    );

    // `nobody` may call itself "root": the name is shown beside the real
    // user@node, never instead of it.
    let set = succeeded(
        &other.rossipctl(&socket, &["--json", "nick", " root "]),
        "nick as nobody",
    );
    let set: Value = serde_json::from_str(set.trim()).expect("nick --json");
    assert_eq!(set, json!({"user": nobody, "nick": "root"}));
    let refused = other.rossipctl(&socket, &["nick", "root@attrib"]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("'@'") && stderr.contains(&code::INVALID_NICK.to_string()),
        "{stderr}"
    );
    succeeded(
        &other.rossipctl(&socket, &["send", "-c", "ops", "I am root"]),
        "send as nobody with a nick",
    );
    let posing = message(&daemon, "I am root");
    assert_eq!(
        (
            posing.user.as_str(),
            posing.nick.as_deref(),
            posing.from.clone()
        ),
        (nobody.as_str(), Some("root"), format!("{nobody}@{NODE}"))
    );
    // root's own messages do not take nobody's display name.
    rossipctl(&socket, &["send", "root again"]).assert_success();
    assert_eq!(message(&daemon, "root again").nick, None);
    let root_nick = rossipctl(&socket, &["nick"]);
    root_nick.assert_success();
    assert_eq!(root_nick.stdout.trim(), "root: no display name");

    // What people read: user@node for each, the display name beside it.
    let tail = rossipctl(&socket, &["tail", "-n", "10"]);
    tail.assert_success();
    let short: String = from_root.origin.chars().take(8).collect();
    let lines: Vec<&str> = tail.stdout.lines().collect();
    let line_of = |text: &str| {
        lines
            .iter()
            .find(|l| l.ends_with(&format!(": {text}")))
            .map(|l| l.split_once(' ').map_or(*l, |(_, rest)| rest))
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest))
            .unwrap_or_else(|| panic!("no line for {text:?} in:\n{}", tail.stdout))
    };
    assert_eq!(
        line_of("from root"),
        format!("root@{NODE} [{short}]: from root")
    );
    assert_eq!(
        line_of("from nobody"),
        format!("{nobody}@{NODE} [{short}]: from nobody")
    );
    assert_eq!(
        line_of("I am root"),
        format!("root ({nobody}@{NODE}) [{short}] #ops: I am root")
    );

    // The display name is kept across a restart; clearing it works.
    daemon.sigterm();
    assert!(daemon.wait_exit(TIMEOUT).is_some(), "rossipd did not stop");
    daemon.restart();
    open_socket_to_all(&socket);
    let shown = succeeded(&other.rossipctl(&socket, &["nick"]), "nick after restart");
    assert_eq!(shown.trim(), format!("{nobody}: display name \"root\""));
    let cleared = succeeded(
        &other.rossipctl(&socket, &["nick", "--clear"]),
        "nick --clear",
    );
    assert_eq!(cleared.trim(), format!("{nobody}: no display name"));
    succeeded(
        &other.rossipctl(&socket, &["send", "plain nobody"]),
        "send after clearing",
    );
    assert_eq!(message(&daemon, "plain nobody").nick, None);
}
