//! `tail -f` against a scripted fake rossipd on a real Unix socket: a restart that forgets
//! the last id, a replay overlapping what was printed, a `lagged` gap fill, and a closed
//! stdout ending the loop.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use jiff::tz::TimeZone;
use rossip_proto::rpc::{ErrorObject, Notification, Request, Response};
use serde_json::{Value, json};

use super::*;
use crate::output::StdoutClosed;

const ORIGIN: &str = "abababababababababababababababab";

fn message(seq: u64) -> MessageView {
    MessageView {
        id: format!("{ORIGIN}-{seq}"),
        origin: ORIGIN.to_owned(),
        origin_name: "alice".to_owned(),
        seq,
        ts: 1_000 * seq,
        ts_logical: 0,
        channel: "general".to_owned(),
        text: format!("message {seq}"),
    }
}

/// One accepted connection, speaking line-delimited JSON-RPC.
struct FakeConn {
    reader: BufReader<UnixStream>,
}

impl FakeConn {
    fn accept(listener: &UnixListener) -> FakeConn {
        let (stream, _) = listener.accept().expect("accept");
        // If the client under test misbehaves, fail instead of hanging.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        FakeConn {
            reader: BufReader::new(stream),
        }
    }

    fn request(&mut self) -> (Request, Value) {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a request");
        let request: Request = serde_json::from_str(&line).expect("request JSON");
        let params = request.params.clone().unwrap_or(Value::Null);
        (request, params)
    }

    fn send(&mut self, value: &impl serde::Serialize) {
        let mut line = serde_json::to_vec(value).expect("encode");
        line.push(b'\n');
        self.reader.get_mut().write_all(&line).expect("write");
    }

    fn reply(&mut self, request: &Request, result: Value) {
        let id = request.id.clone().expect("request has an id");
        self.send(&Response::ok(id, result));
    }

    fn event(&mut self, subscription: u64, event: EventBody) {
        self.send(&Notification::event(subscription, event));
    }

    fn message(&mut self, subscription: u64, seq: u64) {
        let message = message(seq);
        self.event(subscription, EventBody::Message { message });
    }
}

/// The daemon's side of the scenario, step by step.
fn fake_daemon(socket: &Path, listener: UnixListener) {
    // First life: a subscription that delivers two messages, then the daemon dies.
    let mut conn = FakeConn::accept(&listener);
    let (request, params) = conn.request();
    assert_eq!(request.method, "subscribe");
    assert_eq!(params, json!({"events": ["message"], "n": 10}));
    conn.reply(&request, json!({"subscription": 1}));
    conn.message(1, 1);
    conn.message(99, 50); // another subscription's event: not ours
    conn.message(1, 2);
    drop(conn);
    drop(listener);
    std::fs::remove_file(socket).expect("remove socket");

    // Restarted (the client meanwhile finds no socket and retries). It lost its history,
    // so it does not know message 2 any more.
    let listener = UnixListener::bind(socket).expect("rebind");
    let mut conn = FakeConn::accept(&listener);
    let (request, params) = conn.request();
    assert_eq!(
        params,
        json!({"events": ["message"], "since": message(2).id})
    );
    let unknown = ErrorObject::new(code::UNKNOWN_MESSAGE_ID, "unknown message id");
    conn.send(&Response::err(request.id.clone().expect("id"), unknown));

    // The client falls back to the time of message 2; the replay overlaps (2 again) and
    // arrives before the subscribe answer, as a real daemon may do.
    let (request, params) = conn.request();
    assert_eq!(
        params,
        json!({"events": ["message"], "since": message(2).ts})
    );
    conn.message(7, 2);
    conn.reply(&request, json!({"subscription": 7}));
    conn.message(7, 3);

    // The client falls behind: the gap is fetched after the last printed id.
    conn.event(7, EventBody::Lagged { dropped: 1 });
    let (request, params) = conn.request();
    assert_eq!(request.method, "history");
    assert_eq!(params, json!({"since": message(3).id}));
    conn.reply(&request, json!({"messages": [message(3), message(4)]}));
    conn.message(7, 4); // queued before the lag was noticed: a duplicate
    conn.message(7, 5);
    conn.message(7, 6); // stdout is closed by now
    // Keep the connection open until the client hung up, so its exit is due to stdout.
    let mut rest = String::new();
    let _ = conn.reader.read_line(&mut rest);
}

/// A stdout that takes `limit` lines, then behaves like a pipe whose reader left.
#[derive(Clone)]
struct HeadWriter {
    buf: Arc<Mutex<Vec<u8>>>,
    limit: usize,
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

#[test]
fn follow_resumes_after_restart_and_lag_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("rossipd.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let server_socket = socket.clone();
    let server = std::thread::spawn(move || fake_daemon(&server_socket, listener));

    let stdout = HeadWriter {
        buf: Arc::default(),
        limit: 5,
    };
    let printed = stdout.buf.clone();
    let (done_tx, done_rx) = mpsc::channel();
    let client_socket = socket.clone();
    std::thread::spawn(move || {
        let mut follower = Follower {
            socket: client_socket.clone(),
            channel: None,
            start: None,
            started_ms: 0,
            last: None,
            seen: SeenIds::default(),
            printer: MessagePrinter::new(true, TimeZone::UTC),
            retry: Duration::from_millis(10),
        };
        let first = SubscribeParams {
            events: Some(vec![EventKind::Message]),
            n: Some(10),
            since: None,
            channel: None,
        };
        let result = Client::connect(&client_socket)
            .map_err(anyhow::Error::from)
            .and_then(|client| follower.follow(&mut Out::new(stdout), client, first));
        let _ = done_tx.send(result);
    });

    let result = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("tail -f did not finish within 30 s");
    server.join().expect("fake daemon saw what it expected");
    let err = result.expect_err("follow ends only when stdout closes");
    assert!(err.downcast_ref::<StdoutClosed>().is_some(), "{err:#}");

    let printed = String::from_utf8(printed.lock().expect("lock").clone()).expect("UTF-8");
    let ids: Vec<String> = printed
        .lines()
        .map(|line| {
            let m: MessageView = serde_json::from_str(line).expect("MessageView per line");
            m.id
        })
        .collect();
    let expected: Vec<String> = (1..=5).map(|seq| message(seq).id).collect();
    assert_eq!(ids, expected, "printed:\n{printed}");
}

#[test]
fn seen_ids_forget_the_oldest() {
    let mut seen = SeenIds::default();
    assert!(seen.insert("a"));
    assert!(!seen.insert("a"));
    for i in 0..SEEN_CAPACITY {
        assert!(seen.insert(&i.to_string()));
    }
    assert_eq!(seen.order.len(), SEEN_CAPACITY);
    assert!(seen.insert("a"), "the oldest id was forgotten");
}
