//! A small synchronous JSON-RPC 2.0 client over the daemon's Unix socket:
//! one compact JSON value per line, as a script with `socat` would speak it.
//!
//! Besides typed calls it exposes the raw line level, so robustness tests can
//! send malformed input and read exactly what comes back.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rossip_proto::rpc::{
    ErrorObject, EventParams, MessageView, Notification, PeerView, PeersResult, SendResult,
    StatusResult,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How long a call waits for its response unless told otherwise. Generous:
/// the machine may be busy compiling or running other tests.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to a daemon's local socket.
#[derive(Debug)]
pub struct RpcClient {
    path: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// Bytes of a line not yet complete when a read timed out; kept so that
    /// a timeout never loses or splits a line.
    partial: Vec<u8>,
    /// Notifications that arrived while waiting for a response.
    events: VecDeque<EventParams>,
    next_id: u64,
}

impl RpcClient {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> io::Result<RpcClient> {
        let writer = UnixStream::connect(path)?;
        writer.set_write_timeout(Some(CALL_TIMEOUT))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(RpcClient {
            path: path.to_path_buf(),
            writer,
            reader,
            partial: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
        })
    }

    /// The socket this client talks to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `line` followed by `\n`.
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send_raw(&bytes)
    }

    /// Writes bytes as they are (no newline added).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Reads the next line (response or notification), without its newline.
    /// `Ok(None)` when nothing complete arrived within `timeout`; an error
    /// of kind `UnexpectedEof` when the daemon closed the connection.
    pub fn recv_line(&mut self, timeout: Duration) -> io::Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // A zero read timeout means "block forever" to the OS.
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} closed the connection", self.path.display()),
                    ));
                }
                Ok(_) if self.partial.last() == Some(&b'\n') => {
                    let mut line = std::mem::take(&mut self.partial);
                    line.pop();
                    return String::from_utf8(line)
                        .map(Some)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
                }
                // EOF in the middle of a line: the next read reports it.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the next line and parses it as JSON; panics on timeout, EOF or
    /// invalid JSON (the daemon must only ever write JSON lines).
    pub fn recv_value(&mut self, timeout: Duration) -> Value {
        let line = match self.recv_line(timeout) {
            Ok(Some(line)) => line,
            Ok(None) => panic!("no line from {} within {timeout:?}", self.path.display()),
            Err(e) => panic!("reading from {}: {e}", self.path.display()),
        };
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("daemon wrote a line that is not JSON ({e}): {line}"))
    }

    /// Sends a request and waits for its response. Notifications that arrive
    /// first are queued for [`RpcClient::next_event`]. `Value::Null` params
    /// are left out of the request.
    pub fn try_call(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> io::Result<Result<Value, ErrorObject>> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if !params.is_null() {
            request["params"] = params;
        }
        self.send_line(&request.to_string())?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.recv_line(left)? else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no response to {method} within {timeout:?}"),
                ));
            };
            let value: Value = serde_json::from_str(&line)
                .map_err(|e| invalid(format!("not JSON ({e}): {line}")))?;
            if value.get("method").is_some() {
                self.queue_event(&line, value)?;
                continue;
            }
            if value.get("id") != Some(&Value::from(id)) {
                return Err(invalid(format!(
                    "response for another id (want {id}): {line}"
                )));
            }
            return match (value.get("result"), value.get("error")) {
                (Some(result), None) => Ok(Ok(result.clone())),
                (None, Some(error)) => serde_json::from_value(error.clone())
                    .map(Err)
                    .map_err(|e| invalid(format!("bad error object ({e}): {line}"))),
                _ => Err(invalid(format!("neither result nor error: {line}"))),
            };
        }
    }

    /// [`RpcClient::try_call`] with the default timeout; panics on I/O errors.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ErrorObject> {
        self.try_call(method, params, CALL_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} on {}: {e}", self.path.display()))
    }

    /// Calls and deserializes a successful result; panics on an error.
    pub fn call_ok<T: DeserializeOwned>(&mut self, method: &str, params: Value) -> T {
        match self.call(method, params.clone()) {
            Ok(result) => serde_json::from_value(result.clone()).unwrap_or_else(|e| {
                panic!("{method} result does not fit the contract ({e}): {result}")
            }),
            Err(error) => panic!(
                "{method} {params} on {} failed: {error:?}",
                self.path.display()
            ),
        }
    }

    /// `status`.
    pub fn status(&mut self) -> StatusResult {
        self.call_ok("status", json!({}))
    }

    /// `peers`, or `peers {all: true}` to include failed and left members.
    pub fn peers(&mut self, all: bool) -> Vec<PeerView> {
        self.call_ok::<PeersResult>("peers", json!({"all": all}))
            .peers
    }

    /// `send` on the default channel.
    pub fn send(&mut self, text: &str) -> SendResult {
        self.call_ok("send", json!({"text": text}))
    }

    /// Sends every text of `texts` with `send` on the default channel,
    /// writing up to `window` requests ahead of their answers (the daemon
    /// answers one connection in request order), each answer waited for at
    /// most `timeout`. Returns how many were accepted; `Err` describes the
    /// first refusal or I/O failure. Loads a daemon far faster than one
    /// call at a time.
    pub fn send_pipelined(
        &mut self,
        texts: impl IntoIterator<Item = String>,
        window: usize,
        timeout: Duration,
    ) -> Result<usize, String> {
        let mut texts = texts.into_iter().peekable();
        let mut accepted = 0;
        while texts.peek().is_some() {
            let first = self.next_id;
            for text in texts.by_ref().take(window.max(1)) {
                let request = json!({"jsonrpc": "2.0", "id": self.next_id, "method": "send",
                                     "params": {"text": text}});
                self.next_id += 1;
                self.send_line(&request.to_string())
                    .map_err(|e| format!("writing send {}: {e}", self.next_id - 1))?;
            }
            for id in first..self.next_id {
                let line = self
                    .recv_line(timeout)
                    .map_err(|e| format!("waiting for the answer to send {id}: {e}"))?
                    .ok_or_else(|| format!("no answer to send {id} within {timeout:?}"))?;
                let answer: Value = serde_json::from_str(&line)
                    .map_err(|e| format!("an answer that is not JSON ({e}): {line}"))?;
                if answer["id"] != id || !answer["result"]["id"].is_string() {
                    return Err(format!("send {id} (after {accepted} accepted): {line}"));
                }
                accepted += 1;
            }
        }
        Ok(accepted)
    }

    /// The whole `history`, oldest first.
    pub fn history(&mut self) -> Vec<MessageView> {
        #[derive(serde::Deserialize)]
        struct History {
            messages: Vec<MessageView>,
        }
        self.call_ok::<History>("history", json!({})).messages
    }

    /// `subscribe` with `params`; returns the subscription id.
    pub fn subscribe(&mut self, params: Value) -> u64 {
        #[derive(serde::Deserialize)]
        struct Subscribed {
            subscription: u64,
        }
        self.call_ok::<Subscribed>("subscribe", params).subscription
    }

    /// This client, subscribed to messages (the default event kind): the
    /// usual start of a delivery check.
    pub fn subscribed_to_messages(mut self) -> Self {
        self.subscribe(serde_json::json!({}));
        self
    }

    /// The next `event` notification, or `None` if none arrives in `timeout`.
    /// Panics on EOF or on a line that is not a notification (no request is
    /// outstanding while a test waits for events).
    pub fn next_event(&mut self, timeout: Duration) -> Option<EventParams> {
        self.try_next_event(timeout)
            .unwrap_or_else(|e| panic!("waiting for events on {}: {e}", self.path.display()))
    }

    /// Like [`RpcClient::next_event`], but hands EOF (kind `UnexpectedEof`),
    /// I/O errors and lines that are not notifications back as `Err`, for
    /// readers that outlive the daemon (e.g. an event recorder across a
    /// `kill -9`).
    pub fn try_next_event(&mut self, timeout: Duration) -> io::Result<Option<EventParams>> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        let Some(line) = self.recv_line(timeout)? else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(&line).map_err(|e| {
            invalid(format!(
                "daemon wrote a line that is not JSON ({e}): {line}"
            ))
        })?;
        self.queue_event(&line, value)?;
        Ok(self.events.pop_front())
    }

    fn queue_event(&mut self, line: &str, value: Value) -> io::Result<()> {
        let notification: Notification = serde_json::from_value(value).map_err(|e| {
            invalid(format!(
                "notification does not fit the contract ({e}): {line}"
            ))
        })?;
        if notification.method != "event" {
            return Err(invalid(format!("unexpected notification method: {line}")));
        }
        self.events.push_back(notification.params);
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
