//! What the daemon-process tests of this crate share: a scratch directory,
//! a `rossipd` command isolated from the caller's environment, a guard that
//! stops a daemon by its pid (also when a test fails), polling, and a bare
//! JSON-RPC call.

#![allow(dead_code)] // Each test file uses its own part.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for anything a daemon does.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A temp directory of this test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rossipd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `rossipd` on loopback at `port` (0: a free one), no mDNS, its socket and
/// state in `dir`, none of the caller's ROSSIP_* variables, and the config
/// file `config` (an empty one: /dev/null).
pub fn rossipd(dir: &Path, config: &Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rossipd"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROSSIP_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    // A test run inside a systemd service must not make the daemon think
    // it is one (it would ignore --daemonize and notify the test's manager).
    cmd.env_remove("INVOCATION_ID").env_remove("NOTIFY_SOCKET");
    cmd.env("ROSSIP_CONFIG", config)
        .args(["--bind", "127.0.0.1", "--advertise", "127.0.0.1"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--no-mdns")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(socket(dir));
    cmd
}

/// The socket path `rossipd` gives the daemon.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("run").join("rossipd.sock")
}

/// A daemon's pid, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Pid(pub u32);

impl Pid {
    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.0)).exists() && !self.zombie()
    }

    fn zombie(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .map(|stat| stat_field(&stat, 3).as_deref() == Some("Z"))
            .unwrap_or(false)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.0);
    }

    /// Waits until the process is gone.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Pid {
    fn drop(&mut self) {
        if self.alive() {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
            if !self.wait_gone(Duration::from_secs(5)) {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.0.to_string()])
                    .status();
            }
        }
    }
}

/// Field `n` (1-based, as in proc(5)) of a /proc/PID/stat line.
pub fn stat_field(stat: &str, n: usize) -> Option<String> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(n.checked_sub(3)?).map(str::to_owned)
}

/// Polls `check` until it returns `Some`, or panics naming `what`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon started by the test (its child): stopped by its pid
/// ([`Pid`]) and then reaped when dropped, so that no process or zombie
/// outlives the test, also when it fails.
pub struct Running {
    pub child: Child,
    pid: Option<Pid>,
}

impl Running {
    pub fn new(child: Child) -> Running {
        Running {
            pid: Some(Pid(child.id())),
            child,
        }
    }

    /// Starts `cmd` with no standard streams (the daemon logs to a file).
    pub fn spawn(cmd: &mut Command) -> Running {
        Running::new(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start rossipd"),
        )
    }

    pub fn pid(&self) -> &Pid {
        self.pid.as_ref().expect("the pid is kept until drop")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.pid.take());
        let _ = self.child.wait();
    }
}

/// One JSON-RPC call; the whole reply (`result` or `error`). Panics if the
/// socket does not answer.
pub fn rpc(socket: &Path, method: &str, params: serde_json::Value) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let request =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    writeln!(stream, "{request}").expect("write the request");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read the reply");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"))
}

/// One JSON-RPC call on the daemon's socket; the `result`, or `None` if the
/// socket does not answer.
pub fn call(socket: &Path, method: &str) -> Option<serde_json::Value> {
    call_with(socket, method, serde_json::json!({}))
}

/// [`call`] with params.
pub fn call_with(
    socket: &Path,
    method: &str,
    params: serde_json::Value,
) -> Option<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let request =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    writeln!(stream, "{request}").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let reply: serde_json::Value = serde_json::from_str(&line).ok()?;
    reply.get("result").cloned()
}

/// The file's text ("" while it does not exist).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
