//! Test helpers for the following commands (`tail -f`, `events`): a scripted fake rossipd
//! on a real Unix socket, a stdout that closes like a pipe whose reader left, and
//! [`run_following`], which runs one against the other.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rossip_proto::rpc::{EventBody, Notification, Request, Response};
use serde_json::Value;

use super::resubscribe::Resubscriber;
use crate::client::Client;
use crate::output::{Out, StdoutClosed};

/// Runs a following command against a fake daemon, both on threads: `script` plays the
/// daemon, `command` the client, writing to a stdout that takes `limit` lines. Waits
/// (30 s at most) for the command to end, then for the script (which fails the test if
/// the daemon saw something unexpected), checks that the command ended because stdout
/// closed, and returns what it printed. `what` names the command in failures.
pub fn run_following(
    what: &str,
    limit: usize,
    script: impl FnOnce(FakeDaemon) + Send + 'static,
    command: impl FnOnce(&Resubscriber, &mut Out<HeadWriter>, Client) -> anyhow::Result<()>
    + Send
    + 'static,
) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let daemon = FakeDaemon::bind(socket.clone());
    let server = std::thread::spawn(move || script(daemon));

    let stdout = HeadWriter::new(limit);
    let printed = stdout.clone();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let resubscriber = Resubscriber {
            socket: socket.clone(),
            retry: Duration::from_millis(10),
        };
        let result = Client::connect(&socket)
            .map_err(anyhow::Error::from)
            .and_then(|client| command(&resubscriber, &mut Out::new(stdout), client));
        let _ = done_tx.send(result);
    });

    let result = done_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what} did not finish within 30 s"));
    server.join().expect("fake daemon saw what it expected");
    let Err(err) = result else {
        panic!("{what} ended without an error; it ends only when stdout closes");
    };
    assert!(
        err.downcast_ref::<StdoutClosed>().is_some(),
        "{what}: {err:#}"
    );
    printed.text()
}

/// A fake rossipd's listening socket, which it can leave and come back to.
pub struct FakeDaemon {
    socket: PathBuf,
    listener: UnixListener,
}

impl FakeDaemon {
    /// Listens on `socket`.
    pub fn bind(socket: PathBuf) -> FakeDaemon {
        let listener = UnixListener::bind(&socket).expect("bind");
        FakeDaemon { socket, listener }
    }

    /// Accepts the next connection.
    pub fn accept(&self) -> FakeConn {
        FakeConn::accept(&self.listener)
    }

    /// Stops as a daemon does (hangs up `conn`, closes the socket and removes its file),
    /// then starts again on the same path; meanwhile the client finds no socket.
    pub fn restart(self, conn: FakeConn) -> FakeDaemon {
        drop(conn);
        drop(self.listener);
        std::fs::remove_file(&self.socket).expect("remove socket");
        FakeDaemon::bind(self.socket)
    }
}

/// One accepted connection, speaking line-delimited JSON-RPC.
pub struct FakeConn {
    /// The connection; tests read what is left of it to wait for the client to hang up.
    pub reader: BufReader<UnixStream>,
}

impl FakeConn {
    /// Accepts the next connection on `listener`.
    pub fn accept(listener: &UnixListener) -> FakeConn {
        let (stream, _) = listener.accept().expect("accept");
        // If the client under test misbehaves, fail instead of hanging.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        FakeConn {
            reader: BufReader::new(stream),
        }
    }

    /// Reads the next request, checks that it calls `method` with `params`, and returns it
    /// (to answer).
    pub fn expect_request(&mut self, method: &str, params: Value) -> Request {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a request");
        let request: Request = serde_json::from_str(&line).expect("request JSON");
        let got = request.params.clone().unwrap_or(Value::Null);
        assert_eq!((request.method.as_str(), got), (method, params), "{line}");
        request
    }

    /// Sends one JSON value as a line.
    pub fn send(&mut self, value: &impl serde::Serialize) {
        let mut line = serde_json::to_vec(value).expect("encode");
        line.push(b'\n');
        self.reader.get_mut().write_all(&line).expect("write");
    }

    /// Answers `request` with `result`.
    pub fn reply(&mut self, request: &Request, result: Value) {
        let id = request.id.clone().expect("request has an id");
        self.send(&Response::ok(id, result));
    }

    /// Sends an event notification.
    pub fn event(&mut self, subscription: u64, event: EventBody) {
        self.send(&Notification::event(subscription, event));
    }

    /// Waits until the client hangs up (or the read timeout passes), so that the client's
    /// exit is due to what the test meant (a closed stdout), not to the daemon leaving.
    pub fn wait_for_hang_up(&mut self) {
        let mut rest = String::new();
        while self.reader.read_line(&mut rest).is_ok_and(|n| n > 0) {}
    }
}

/// A stdout that takes `limit` lines, then behaves like a pipe whose reader left.
#[derive(Clone)]
pub struct HeadWriter {
    /// What was written.
    pub buf: Arc<Mutex<Vec<u8>>>,
    /// Lines accepted before writes fail with `BrokenPipe`.
    pub limit: usize,
}

impl HeadWriter {
    /// A writer that takes `limit` lines.
    pub fn new(limit: usize) -> Self {
        HeadWriter {
            buf: Arc::default(),
            limit,
        }
    }

    /// What was written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.buf.lock().expect("lock").clone()).expect("UTF-8")
    }
}

impl io::Write for HeadWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut buf = self.buf.lock().expect("lock");
        if buf.iter().filter(|&&b| b == b'\n').count() >= self.limit {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
