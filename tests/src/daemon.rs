//! A `rossipd` process under test: its own temp dir (socket, state, log),
//! optionally inside a network namespace, stopped by PID when dropped.
//!
//! When the test is failing (`std::thread::panicking()`), `Drop` prints the
//! daemon's name, command line and the last lines of its log, so a failure
//! report carries what is needed to reproduce it.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rossip_proto::rpc::StatusResult;

use crate::rpc::RpcClient;
use crate::{bins, sys, wait};

/// How long a daemon may take from spawn until `status` answers.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Log lines printed for each daemon when a test fails.
pub const LOG_LINES_ON_FAILURE: usize = 100;

/// Environment variable choosing the daemons' `--log-level` (default `debug`,
/// so a failure's log says what happened).
pub const LOG_LEVEL_ENV: &str = "ROSSIP_TEST_LOG_LEVEL";

/// Environment variable that makes every daemon print its log excerpt when
/// dropped, also when the test passes (`cargo test -- --nocapture`).
pub const SHOW_LOGS_ENV: &str = "ROSSIP_TEST_SHOW_LOGS";

/// How to start a daemon. Build with [`Daemon::builder`].
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    name: String,
    args: Vec<OsString>,
    netns: Option<String>,
    socket: Option<PathBuf>,
    /// Whether `--socket` is passed; without it the daemon picks its default socket from
    /// its environment and the harness expects it at `socket`.
    socket_flag: bool,
    state_dir: Option<PathBuf>,
    log_level: String,
    envs: Vec<(OsString, OsString)>,
    /// Whether to pass `--name` (the builder's name); without it the
    /// daemon picks its default name.
    pass_name: bool,
    /// Run as this uid and gid (through `setpriv`) instead of the test's.
    user: Option<u32>,
}

impl DaemonBuilder {
    /// Only local traffic: `--no-mdns --bind 127.0.0.1 --port 0`.
    pub fn loopback(self) -> Self {
        self.args(["--no-mdns", "--bind", "127.0.0.1", "--port", "0"])
    }

    /// `--join ADDR`.
    pub fn join(self, addr: &str) -> Self {
        self.args(["--join", addr])
    }

    /// One more command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run inside network namespace `ns` (`ip netns exec`, which execs the
    /// daemon in place, so the child's PID is the daemon's).
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_owned());
        self
    }

    /// Use this socket path instead of one in the daemon's temp dir.
    pub fn socket(mut self, path: &Path) -> Self {
        self.socket = Some(path.to_path_buf());
        self
    }

    /// Passes no `--socket`: the daemon chooses its default socket from its environment
    /// (set with [`Self::env`], e.g. `XDG_RUNTIME_DIR`), and the harness expects it at `path`.
    pub fn default_socket_at(mut self, path: &Path) -> Self {
        self.socket = Some(path.to_path_buf());
        self.socket_flag = false;
        self
    }

    /// Use this state directory instead of one in the daemon's temp dir
    /// (e.g. another daemon's, or a copy of it: one node identity twice).
    pub fn state_dir(mut self, path: &Path) -> Self {
        self.state_dir = Some(path.to_path_buf());
        self
    }

    /// One environment variable for the daemon (e.g. systemd's
    /// `NOTIFY_SOCKET`); set after the harness clears the `ROSSIP_*` ones.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// `--log-level` (overrides [`LOG_LEVEL_ENV`]).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// No `--name`: the daemon names itself (the builder's name still
    /// labels its temp dir and failure reports).
    pub fn default_name(mut self) -> Self {
        self.pass_name = false;
        self
    }

    /// Run the daemon as `uid` (gid the same, no supplementary groups)
    /// through `setpriv` (util-linux), which execs it in place; the test
    /// must be root. Its temp dir is given to that user.
    pub fn as_user(mut self, uid: u32) -> Self {
        self.user = Some(uid);
        self
    }

    /// Starts the daemon and waits until it answers `status`. Panics (with
    /// its log) if it exits or does not answer within [`READY_TIMEOUT`].
    pub fn spawn(self) -> Daemon {
        let mut daemon = self.spawn_unready();
        daemon.wait_ready(READY_TIMEOUT);
        daemon
    }

    /// Starts the daemon without waiting for it (for daemons expected to
    /// refuse to start).
    pub fn spawn_unready(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rossip-{}-", self.name))
            .tempdir()
            .expect("create the daemon's temp dir");
        let socket = self
            .socket
            .clone()
            .unwrap_or_else(|| dir.path().join("rossipd.sock"));
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("state"));
        let log_path = dir.path().join("rossipd.log");
        let log = File::create(&log_path).expect("create the daemon's log file");
        let log_err = log.try_clone().expect("clone the log file handle");

        let mut args: Vec<OsString> = Vec::new();
        if self.pass_name {
            args.extend(["--name".into(), self.name.clone().into()]);
        }
        if self.socket_flag {
            args.extend(["--socket".into(), socket.clone().into()]);
        }
        args.extend([
            "--state-dir".into(),
            state_dir.clone().into(),
            "--log-level".into(),
            self.log_level.clone().into(),
        ]);
        args.extend(self.args);
        let (program, args) = match self.user {
            Some(uid) => {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))
                    .expect("give the daemon's temp dir to its user");
                let setpriv =
                    sys::find_program("setpriv").expect("`setpriv` (util-linux) is needed");
                // The binary in the daemon's own directory: the checkout
                // (e.g. under /root) may be closed to that user.
                let binary = dir.path().join("rossipd");
                sys::place_program(&bins::rossipd(), &binary)
                    .expect("place rossipd where its user can run it");
                let mut full: Vec<OsString> = vec![
                    format!("--reuid={uid}").into(),
                    format!("--regid={uid}").into(),
                    "--clear-groups".into(),
                    binary.into(),
                ];
                full.extend(args);
                (setpriv, full)
            }
            None => (bins::rossipd(), args),
        };
        let (program, args) = sys::in_netns(self.netns.as_deref(), program, args);
        let command_line = sys::command_line(&program, &args);
        let child = start(&program, &args, &self.envs, log, log_err, &command_line);
        Daemon {
            name: self.name,
            netns: self.netns,
            socket,
            state_dir,
            log_path,
            program,
            args,
            envs: self.envs,
            command_line,
            child,
            exit: None,
            dir,
        }
    }
}

/// A running (or exited) `rossipd` process.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    netns: Option<String>,
    socket: PathBuf,
    state_dir: PathBuf,
    log_path: PathBuf,
    /// What was started, so [`Daemon::restart`] can start it again.
    program: OsString,
    args: Vec<OsString>,
    /// Extra environment ([`DaemonBuilder::env`]), kept for restarts.
    envs: Vec<(OsString, OsString)>,
    command_line: String,
    child: Child,
    exit: Option<ExitStatus>,
    /// Kept last so the files outlive everything that reads them in `Drop`.
    dir: tempfile::TempDir,
}

impl Daemon {
    /// A builder for a daemon named `name` (also its temp dir's prefix).
    pub fn builder(name: &str) -> DaemonBuilder {
        DaemonBuilder {
            name: name.to_owned(),
            args: Vec::new(),
            netns: None,
            socket: None,
            socket_flag: true,
            state_dir: None,
            envs: Vec::new(),
            log_level: std::env::var(LOG_LEVEL_ENV).unwrap_or_else(|_| "debug".to_owned()),
            pass_name: true,
            user: None,
        }
    }

    /// The `--name` it was given (its label, with [`DaemonBuilder::default_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace it runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Its local socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Its temp dir (socket, state and log live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The command line it was started with.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A new connection to its socket; panics (with the log) if it fails.
    pub fn client(&self) -> RpcClient {
        RpcClient::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect to {} ({}): {e}", self.socket.display(), self.name))
    }

    /// `status` over a fresh connection.
    pub fn status(&self) -> StatusResult {
        self.client().status()
    }

    /// Datagrams it dropped for `reason` so far (`status.datagrams.dropped`).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.status()
            .datagrams
            .dropped
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    /// The gossip address in use (`status.addr`).
    pub fn addr(&self) -> String {
        self.status().addr
    }

    /// Polls until `status` answers; panics with the log if the process
    /// exits first or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited with {status} before answering status (log below)",
                    self.name
                );
            }
            let answered = RpcClient::connect(&self.socket)
                .and_then(|mut c| c.try_call("status", serde_json::json!({}), timeout))
                .is_ok_and(|r| r.is_ok());
            if answered {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not answer status on {} within {timeout:?} (log below)",
                    self.name,
                    self.socket.display()
                );
            }
            std::thread::sleep(wait::POLL_INTERVAL);
        }
    }

    /// Sends SIGTERM (graceful leave).
    pub fn sigterm(&self) {
        if let Err(e) = sys::signal(self.pid(), "TERM") {
            panic!("SIGTERM to {} ({}): {e}", self.name, self.pid());
        }
    }

    /// Sends SIGTERM (a graceful leave) and panics unless the process
    /// exits 0 within `timeout`.
    pub fn stop_with_sigterm(&mut self, timeout: Duration) {
        self.sigterm();
        self.assert_clean_exit(timeout, "SIGTERM");
    }

    /// Sends SIGINT (what Ctrl-C in a terminal does: a graceful leave too).
    pub fn sigint(&self) {
        if let Err(e) = sys::signal(self.pid(), "INT") {
            panic!("SIGINT to {} ({}): {e}", self.name, self.pid());
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        if self.try_exit().is_some() {
            panic!("{} already exited; cannot kill -9 it", self.name);
        }
        self.child.kill().expect("SIGKILL the daemon");
        self.exit = Some(self.child.wait().expect("reap the daemon"));
    }

    /// Starts the same command again after the process exited (after
    /// [`Daemon::kill9`], or a SIGTERM and [`Daemon::wait_exit`]): same name,
    /// socket and state directory, hence the same node id. The log file is
    /// appended to, after a marker line. Waits until it answers `status`.
    pub fn restart(&mut self) {
        self.restart_unready();
        self.wait_ready(READY_TIMEOUT);
    }

    /// [`Daemon::restart`] without waiting until it answers, so a caller
    /// can time the start itself.
    pub fn restart_unready(&mut self) {
        assert!(
            self.try_exit().is_some(),
            "{} (pid {}) is still running; stop it before restarting it",
            self.name,
            self.pid()
        );
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("open the daemon's log file for appending");
        let _ = writeln!(log, "===== restarted by the test harness =====");
        let log_err = log.try_clone().expect("clone the log file handle");
        self.child = start(
            &self.program,
            &self.args,
            &self.envs,
            log,
            log_err,
            &self.command_line,
        );
        self.exit = None;
    }

    /// The exit status if it has exited (reaping it), without blocking.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .expect("poll the daemon's exit status");
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait::try_wait_until(timeout, || self.try_exit()).ok()
    }

    /// Waits up to `timeout` for the process to exit and panics unless it
    /// exited 0; `after` names what should have stopped it (`SIGTERM`,
    /// `rossipctl leave`, …) for the message. The log follows from `Drop`.
    pub fn assert_clean_exit(&mut self, timeout: Duration, after: &str) {
        let status = self.wait_exit(timeout);
        assert!(
            status.is_some_and(|s| s.success()),
            "{} after {after}: expected exit 0 within {timeout:?}, got {status:?}",
            self.name
        );
    }

    /// Name, command line and the log's last lines, for failure messages.
    pub fn log_excerpt(&self) -> String {
        format!(
            "----- {} (pid {}): {}\n----- last {LOG_LINES_ON_FAILURE} lines of {}:\n{}\n----- end of {}",
            self.name,
            self.child.id(),
            self.command_line,
            self.log_path.display(),
            sys::tail_lines(&self.log_path, LOG_LINES_ON_FAILURE),
            self.name
        )
    }
}

/// Spawns `program args…` with its output going to `log`, with a clean
/// environment as far as rossip is concerned; panics if it cannot start.
fn start(
    program: &OsString,
    args: &[OsString],
    envs: &[(OsString, OsString)],
    log: File,
    log_err: File,
    command_line: &str,
) -> Child {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // The test decides every setting; nothing leaks in from the shell.
        .env_remove("RUST_LOG");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROSSIP_") {
            cmd.env_remove(key);
        }
    }
    // Nor from a config file on the machine (`/etc/rossip/rossipd.toml`
    // for a daemon run as root): an empty one, unless the test names one.
    cmd.env("ROSSIP_CONFIG", "/dev/null");
    cmd.envs(envs.iter().map(|(k, v)| (k, v)));
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawn `{command_line}`: {e}"))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exit.is_none() && self.child.try_wait().ok().flatten().is_none() {
            // Killed by PID (our own child), never by name.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() || std::env::var_os(SHOW_LOGS_ENV).is_some() {
            eprintln!("{}", self.log_excerpt());
        }
    }
}
