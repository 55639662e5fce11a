//! A TCP port inside a test host's network namespace, reached from the test process.
//!
//! The test process lives in the root namespace and cannot connect to an address inside a
//! host (a daemon's `--http 10.77.0.11:8080`, a chromedriver on the host's loopback): the
//! LAN has no route out, on purpose. Unix socket paths are not namespaced, so the bridge is
//! a `socat UNIX-LISTEN:…,fork TCP:TARGET` run inside the host, and a listener on
//! `127.0.0.1:0` in the test process that pipes each accepted connection into that socket.
//! A client in the test then talks to [`NsForward::addr`] as if it were `TARGET`; the
//! server sees connections from its own host (socat's address), as from a local client.

use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::{TcpListener, UnixStream};
use tokio::runtime::Runtime;

use crate::netns::Host;
use crate::{sys, wait};

/// How long socat may take to create its socket inside the host.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines of socat's log printed when a test fails.
const LOG_LINES_ON_FAILURE: usize = 40;

/// A loopback port in the test's namespace that reaches a port inside a host; stops socat
/// (by PID) and its listener when dropped.
#[derive(Debug)]
pub struct NsForward {
    /// What [`NsForward::addr`] reaches, inside `ns`.
    target: SocketAddr,
    ns: String,
    /// The test's end: `127.0.0.1:<free port>`.
    local: SocketAddr,
    socat: Child,
    command_line: String,
    log_path: PathBuf,
    /// Runs the accept loop and the connections' copies; a runtime of its own, so that the
    /// forward works whether the test is synchronous or async.
    runtime: Option<Runtime>,
    /// Holds the Unix socket and socat's log; removed last.
    dir: tempfile::TempDir,
}

impl NsForward {
    /// Starts forwarding `127.0.0.1:<free port>` (see [`NsForward::addr`]) to `target` as
    /// seen from inside `host` (its LAN address, or its own loopback). Panics if socat
    /// cannot start or its socket does not appear; connections to a `target` that nobody
    /// listens on are accepted and closed at once.
    pub fn start(host: &Host, target: SocketAddr) -> NsForward {
        let dir = tempfile::Builder::new()
            .prefix("rossip-fwd-")
            .tempdir()
            .expect("create the forward's temp dir");
        let socket = dir.path().join("fwd.sock");
        let log_path = dir.path().join("socat.log");
        let socat = sys::find_program("socat").expect("`socat` is needed to reach into a netns");
        let tcp = match target {
            SocketAddr::V4(v4) => format!("TCP4:{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!("TCP6:[{}]:{}", v6.ip(), v6.port()),
        };
        let args = vec![
            // Errors and the connections' ends, for the log printed on failure.
            "-d".into(),
            format!("UNIX-LISTEN:{},fork", socket.display()).into(),
            tcp.into(),
        ];
        let (program, args) = sys::in_netns(Some(&host.ns), socat, args);
        let command_line = sys::command_line(&program, &args);
        let log = File::create(&log_path).expect("create socat's log file");
        let child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone socat's log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{command_line}`: {e}"));

        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let local = listener.local_addr().expect("the loopback port's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener for tokio");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ns-forward")
            .enable_all()
            .build()
            .expect("a runtime for the forward");
        let mut forward = NsForward {
            target,
            ns: host.ns.clone(),
            local,
            socat: child,
            command_line,
            log_path,
            runtime: None,
            dir,
        };
        forward.wait_listening(&socket);
        let accept_socket = socket.clone();
        runtime.spawn(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    sys::say(&format!("ns forward {local}: cannot listen: {e}"));
                    return;
                }
            };
            accept_loop(listener, accept_socket).await;
        });
        forward.runtime = Some(runtime);
        forward
    }

    /// The address in the test's namespace that reaches the target.
    pub fn addr(&self) -> SocketAddr {
        self.local
    }

    /// What it reaches, inside its host.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Polls until socat has created its socket; panics (with its log) if it exits first.
    fn wait_listening(&mut self, socket: &Path) {
        let command_line = self.command_line.clone();
        let result = wait::try_wait_until(LISTEN_TIMEOUT, || {
            if let Ok(Some(status)) = self.socat.try_wait() {
                return Err(format!("socat exited with {status}"));
            }
            if socket.exists() {
                Ok(())
            } else {
                Err("no socket yet".to_owned())
            }
        });
        if let Err(last) = result {
            panic!(
                "`{command_line}` did not listen on {} within {LISTEN_TIMEOUT:?}: {}\nits log:\n{}",
                socket.display(),
                last.unwrap_or_default(),
                sys::tail_lines(&self.log_path, LOG_LINES_ON_FAILURE)
            );
        }
    }
}

/// Pipes every connection accepted on `listener` into a new connection to `socket`.
async fn accept_loop(listener: TcpListener, socket: PathBuf) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: the client sees a refused connection.
            continue;
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            let Ok(mut unix) = UnixStream::connect(&socket).await else {
                return;
            };
            // Either side closing ends the copy; the error (a reset) is what the client
            // sees, so there is nothing to add here.
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
        });
    }
}

impl Drop for NsForward {
    fn drop(&mut self) {
        // socat forks a process per connection; those are gone with their connections
        // once the runtime (holding our ends) is, and the parent is killed by its PID.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        sys::kill_tree(&mut self.socat);
        if std::thread::panicking() {
            eprintln!(
                "----- forward {} -> {} in {}: {}\n----- socat's log:\n{}\n----- end",
                self.local,
                self.target,
                self.ns,
                self.command_line,
                sys::tail_lines(&self.log_path, LOG_LINES_ON_FAILURE)
            );
        }
        // `dir` (socket and log) is removed after this, as the last field.
        let _ = &self.dir;
    }
}
