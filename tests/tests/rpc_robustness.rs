//! The local API against hostile or broken clients, on one real daemon per
//! test: every malformation gets the JSON-RPC 2.0 answer and the connection
//! (and the daemon) keeps serving. Also a subscriber that never reads and
//! garbage UDP datagrams on the gossip port.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rossip_proto::rpc::{EventBody, code};
use rossip_tests::daemon::Daemon;
use rossip_tests::rpc::RpcClient;
use rossip_tests::sys;
use rossip_tests::wait::wait_until;
use serde_json::{Value, json};

const READ: Duration = Duration::from_secs(20);

fn daemon(name: &str) -> Daemon {
    Daemon::builder(name).loopback().spawn()
}

/// Sends `line` and expects one error response with `code`; returns it.
fn expect_error(client: &mut RpcClient, line: &str, want: i64) -> Value {
    client.send_line(line).expect("write request");
    let response = client.recv_value(READ);
    let got = response.pointer("/error/code").and_then(Value::as_i64);
    assert_eq!(
        got,
        Some(want),
        "request {line:?}: expected error {want}, got {response}"
    );
    assert_eq!(
        response["jsonrpc"], "2.0",
        "response without jsonrpc: {response}"
    );
    assert!(
        response.get("result").is_none(),
        "error with a result: {response}"
    );
    response
}

/// The connection still works after whatever came before.
fn still_serves(client: &mut RpcClient) {
    let status = client.status();
    assert_eq!(status.state, "running", "status after errors: {status:?}");
}

#[test]
fn malformed_json_is_a_parse_error_with_null_id() {
    let d = daemon("parse");
    let mut c = d.client();
    for line in [r#"{"jsonrpc":"2.0","method":"#, "{not json}", r#"{"a":1"#] {
        let response = expect_error(&mut c, line, code::PARSE_ERROR);
        assert_eq!(
            response["id"],
            Value::Null,
            "parse error must carry id null: {response}"
        );
    }
    still_serves(&mut c);
}

#[test]
fn non_objects_are_invalid_requests() {
    let d = daemon("nonobj");
    let mut c = d.client();
    for line in ["42", r#""x""#, "null", "true"] {
        let response = expect_error(&mut c, line, code::INVALID_REQUEST);
        assert_eq!(response["id"], Value::Null, "{line}: {response}");
    }
    still_serves(&mut c);
}

#[test]
fn missing_or_wrong_jsonrpc_member_is_an_invalid_request() {
    let d = daemon("version");
    let mut c = d.client();
    for line in [
        r#"{"method":"status","id":1}"#,
        r#"{"jsonrpc":"1.0","method":"status","id":2}"#,
        r#"{"jsonrpc":2.0,"method":"status","id":3}"#,
        r#"{"jsonrpc":"2.0","id":4}"#,
        r#"{"jsonrpc":"2.0","method":5,"id":6}"#,
    ] {
        let response = expect_error(&mut c, line, code::INVALID_REQUEST);
        let id = &response["id"];
        assert!(
            id.is_null() || id.is_number(),
            "{line}: the id is the request's or null: {response}"
        );
    }
    still_serves(&mut c);
}

#[test]
fn unknown_method_echoes_the_id() {
    let d = daemon("unknown");
    let mut c = d.client();
    let response = expect_error(
        &mut c,
        r#"{"jsonrpc":"2.0","method":"no_such_method","id":"abc-1"}"#,
        code::METHOD_NOT_FOUND,
    );
    assert_eq!(response["id"], "abc-1");
    let response = expect_error(
        &mut c,
        r#"{"jsonrpc":"2.0","method":"Status","id":77}"#,
        code::METHOD_NOT_FOUND,
    );
    assert_eq!(response["id"], 77);
    still_serves(&mut c);
}

#[test]
fn wrong_params_are_invalid_params() {
    let d = daemon("params");
    let mut c = d.client();
    for (id, params) in [
        (1, json!({"text": 5})),
        (2, json!({"text": "x", "bogus": 1})),
        (3, json!({})),
        (4, json!(["positional"])),
        (5, json!("text")),
    ] {
        let line = json!({"jsonrpc": "2.0", "method": "send", "params": params, "id": id});
        let response = expect_error(&mut c, &line.to_string(), code::INVALID_PARAMS);
        assert_eq!(response["id"], id, "{line}: {response}");
    }
    let line = r#"{"jsonrpc":"2.0","method":"history","params":{"n":"ten"},"id":6}"#;
    expect_error(&mut c, line, code::INVALID_PARAMS);
    assert!(c.history().is_empty(), "a refused send was stored");
    still_serves(&mut c);
}

#[test]
fn a_batch_gets_an_array_without_the_notifications() {
    let d = daemon("batch");
    let mut c = d.client();
    let batch = r#"[{"jsonrpc":"2.0","method":"status","id":1},{"jsonrpc":"2.0","method":"status"},{"jsonrpc":"2.0","method":"peers","params":{},"id":"two"}]"#;
    c.send_line(batch).expect("write batch");
    let response = c.recv_value(READ);
    let items = response
        .as_array()
        .unwrap_or_else(|| panic!("a batch must get an array: {response}"));
    assert_eq!(
        items.len(),
        2,
        "one response per request, none for the notification: {response}"
    );
    let mut ids: Vec<String> = items.iter().map(|r| r["id"].to_string()).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![r#""two""#.to_owned(), "1".to_owned()],
        "{response}"
    );
    assert!(
        items.iter().all(|r| r.get("result").is_some()),
        "{response}"
    );

    // An empty batch is one invalid request, not an empty array.
    let response = expect_error(&mut c, "[]", code::INVALID_REQUEST);
    assert!(response.is_object(), "{response}");

    // A batch of one non-request answers with an array of one error.
    c.send_line("[1]").expect("write batch");
    let response = c.recv_value(READ);
    assert_eq!(
        response.pointer("/0/error/code").and_then(Value::as_i64),
        Some(code::INVALID_REQUEST),
        "[1]: {response}"
    );
    still_serves(&mut c);
}

#[test]
fn a_notification_gets_no_response_but_runs() {
    let d = daemon("notify");
    let mut c = d.client();
    c.send_line(r#"{"jsonrpc":"2.0","method":"send","params":{"text":"sent as a notification"}}"#)
        .expect("write notification");
    c.send_line(r#"{"jsonrpc":"2.0","method":"no_such_method"}"#)
        .expect("write notification");
    c.send_line(r#"{"jsonrpc":"2.0","method":"status","id":99}"#)
        .expect("write request");
    let response = c.recv_value(READ);
    assert_eq!(
        response["id"], 99,
        "the first line after two notifications must be the request's response: {response}"
    );
    let history = c.history();
    assert!(
        history.iter().any(|m| m.text == "sent as a notification"),
        "a notification is still executed: {history:?}"
    );
}

#[test]
fn a_line_over_one_mebibyte_is_refused_and_the_connection_survives() {
    let d = daemon("bigline");
    let mut c = d.client();
    let text = "x".repeat(rossip_proto::rpc::MAX_LINE_BYTES + 100);
    let line = json!({"jsonrpc": "2.0", "method": "send", "params": {"text": text}, "id": 5});
    expect_error(&mut c, &line.to_string(), code::INVALID_REQUEST);
    still_serves(&mut c);
    let response = c.call("send", json!({"text": "small"}));
    assert!(
        response.is_ok(),
        "a normal send after the long line: {response:?}"
    );
    assert!(
        c.history().iter().all(|m| m.text.len() < 1000),
        "the over-long message was stored"
    );
}

#[test]
fn clients_that_disconnect_mid_request_do_not_hurt() {
    let d = daemon("halfreq");
    // One client stays connected with half a request written.
    let mut stuck = d.client();
    stuck
        .send_raw(br#"{"jsonrpc":"2.0","method":"sta"#)
        .expect("write half a request");
    for _ in 0..20 {
        let mut gone = d.client();
        gone.send_raw(br#"{"jsonrpc":"2.0","method":"send","par"#)
            .expect("write half a request");
        drop(gone);
        drop(d.client());
    }
    let mut c = d.client();
    still_serves(&mut c);
    assert!(c.history().is_empty(), "a half request was executed");
    drop(stuck);
    still_serves(&mut c);
}

/// Resident memory the flooded daemon may use. Generous for a debug build;
/// an unbounded per-subscriber queue of 20k events would still pass it only
/// if events were tiny, so the drop counter is checked too.
const MAX_RSS_KIB: u64 = 200 * 1024;
const FLOOD: usize = 20_000;

#[test]
fn a_subscriber_that_never_reads_is_dropped_not_buffered() {
    // A subscriber's backlog is the history window: it loses events only once
    // the window drops what it has not read. A small window makes the flood
    // overrun it (the back-pressure on the sender still lets it through).
    let d = Daemon::builder("flood")
        .loopback()
        .log_level("info")
        .args(["--history", "5000"])
        .spawn();
    let mut lazy = d.client();
    lazy.subscribe(json!({}));
    let mut sender = d.client();
    let mut observer = d.client();
    let mut max_rss = 0u64;
    let started = Instant::now();
    let text = "f".repeat(200);
    let mut sent = 0;
    while sent < FLOOD {
        match sender.call("send", json!({"text": text})) {
            Ok(_) => sent += 1,
            Err(e) => panic!("send {sent} failed: {e:?}"),
        }
        if sent % 2_000 == 0 {
            let rss = sys::vm_rss_kib(d.pid()).unwrap_or(0);
            max_rss = max_rss.max(rss);
            assert!(
                rss < MAX_RSS_KIB,
                "daemon RSS {rss} KiB after {sent} messages"
            );
            let asked = Instant::now();
            let answer = observer.try_call("status", json!({}), Duration::from_secs(10));
            assert!(
                matches!(answer, Ok(Ok(_))),
                "status on a third connection during the flood (after {sent} sends, \
                 {:?}): {answer:?}",
                asked.elapsed()
            );
        }
    }
    let rss = sys::vm_rss_kib(d.pid()).unwrap_or(0);
    max_rss = max_rss.max(rss);
    assert!(rss < MAX_RSS_KIB, "daemon RSS {rss} KiB after the flood");

    // When the lazy subscriber finally reads, it learns it lagged: at the
    // latest together with the next event, so one more message is sent once
    // the buffered events are read.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buffered = 0u64;
    let mut nudged = false;
    let lagged = loop {
        let wait = if nudged {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(2)
        };
        match lazy.next_event(wait).map(|e| e.event) {
            Some(EventBody::Lagged { dropped, .. }) => break dropped,
            Some(EventBody::Message { message }) if message.text == "after the flood" => {
                panic!("the next message came without a lagged notice first")
            }
            Some(_) => buffered += 1,
            None if !nudged => {
                sender.send("after the flood");
                nudged = true;
            }
            None => panic!("no lagged notice after {buffered} buffered events and one more send"),
        }
    };
    assert!(lagged > 0, "lagged notice with dropped = 0");
    // Counted as the subscriber is told (a stalled one holds only its
    // position, so what it misses is known when it reads on).
    let drops = wait_until(Duration::from_secs(30), "subscriber_drops > 0", || {
        let status = observer.status();
        if status.subscriber_drops > 0 {
            Ok(status.subscriber_drops)
        } else {
            Err(format!("subscriber_drops = 0, {status:?}"))
        }
    });
    println!(
        "flood: {FLOOD} sends in {:?} subscriber_drops {drops}, max RSS {max_rss} KiB",
        started.elapsed()
    );
    println!("lazy subscriber: {buffered} buffered events, then lagged {{dropped: {lagged}}}");
}

/// A small seeded generator (SplitMix64), so garbage is reproducible from
/// the printed seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// A real datagram from the daemon: asking it to `join` our socket makes it
/// contact us. `None` if it sends nothing within a few seconds.
fn capture_datagram(d: &Daemon, catcher: &UdpSocket) -> Option<Vec<u8>> {
    let addr = catcher.local_addr().expect("catcher address").to_string();
    let socket = d.socket().to_path_buf();
    // The join fails (nobody answers); it runs on its own connection and
    // thread so the capture does not wait for its timeout.
    std::thread::spawn(move || {
        if let Ok(mut c) = RpcClient::connect(&socket) {
            let _ = c.try_call("join", json!({"addr": addr}), Duration::from_secs(30));
        }
    });
    catcher
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut buf = vec![0u8; 65_536];
    let (len, _) = catcher.recv_from(&mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

fn total_dropped(d: &Daemon) -> u64 {
    d.status().datagrams.dropped.values().sum()
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    let seed = std::env::var("ROSSIP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("garbage seed: {seed} (rerun with ROSSIP_TEST_SEED={seed})");
    let d = daemon("garbage");
    let target: SocketAddr = d.addr().parse().expect("status.addr is IP:PORT");
    // Only ever loopback from this test.
    assert!(
        target.ip().is_loopback(),
        "gossip address {target} is not loopback"
    );

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
    let mut rng = SplitMix(seed);
    let mut garbage: Vec<Vec<u8>> = (0..30)
        .map(|_| {
            let len = 1 + (rng.next() % 1400) as usize;
            rng.bytes(len)
        })
        .collect();
    garbage.push(Vec::new());
    garbage.push(rng.bytes(60_000));
    garbage.push(vec![0]);
    garbage.push(vec![0xff; 3]);
    match capture_datagram(&d, &socket) {
        Some(real) => {
            println!(
                "captured a real {}-byte datagram; sending truncations",
                real.len()
            );
            for cut in [1, real.len() / 2, real.len().saturating_sub(1)] {
                if cut > 0 && cut < real.len() {
                    garbage.push(real[..cut].to_vec());
                }
            }
        }
        None => println!("no datagram captured from a join; random garbage only"),
    }

    let before = total_dropped(&d);
    for datagram in &garbage {
        socket.send_to(datagram, target).expect("send garbage");
    }
    let want = before + garbage.len() as u64;
    wait_until(
        Duration::from_secs(20),
        "every garbage datagram counted",
        || {
            let status = d.status();
            let total: u64 = status.datagrams.dropped.values().sum();
            if total >= want {
                Ok(())
            } else {
                Err(format!(
                    "dropped {:?} (total {total}, want >= {want}, seed {seed})",
                    status.datagrams.dropped
                ))
            }
        },
    );
    let mut c = d.client();
    let sent = c.send("still alive after garbage");
    assert!(!sent.id.is_empty());
    still_serves(&mut c);
}
