//! Test helpers for the following commands (`tail -f`, `events`): a scripted fake rossipd
//! on a real Unix socket, and a stdout that closes like a pipe whose reader left.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rossip_proto::rpc::{EventBody, Notification, Request, Response};
use serde_json::Value;

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

    /// Reads the next request; returns it and its params.
    pub fn request(&mut self) -> (Request, Value) {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a request");
        let request: Request = serde_json::from_str(&line).expect("request JSON");
        let params = request.params.clone().unwrap_or(Value::Null);
        (request, params)
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
