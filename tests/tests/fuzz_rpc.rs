//! Fuzzing the daemon's JSON-RPC path (framing, parsing, dispatch, the
//! method handlers) through a real `rossipd`'s local socket: the RPC
//! server's functions need a live driver, so the whole daemon is the unit.
//!
//! Inputs are mutations of the request corpus `tests/corpus/rpc/requests.jsonl`
//! (byte flips, truncations, splices, invalid UTF-8, extreme JSON values,
//! deep nesting, duplicate keys, batches of mutants, over-long lines). After
//! each input the test sends a sentinel `status` request on the same
//! connection and reads up to its answer, so every input is matched to what
//! it produced. Properties:
//! - the daemon never closes the connection and never dies;
//! - every line it writes is JSON-RPC 2.0: a response with an id and exactly
//!   one of `result`/`error` (a documented code), a batch array of such, or
//!   an `event` notification;
//! - an input gets at most one reply line; a line that is not JSON gets
//!   exactly one parse error; an object with an `id` exactly one answer; an
//!   over-long line exactly one invalid-request error;
//! - the unmutated corpus gets the answers it documents (`expect` field).
//!
//! Bounded: `ROSSIP_FUZZ_CASES` lines (default 1,500, a few seconds);
//! `ROSSIP_FUZZ_SEED` picks another seed. Inputs that would reach `join`
//! (traffic to an arbitrary address) or `leave` are skipped.
//!
//! The corpus is written by code (see [`corpus`]):
//! `cargo test -p rossip-tests --test fuzz_rpc -- --ignored write_corpus`.

use std::path::PathBuf;
use std::time::Duration;

use rossip_proto::rpc::{MAX_LINE_BYTES, code};
use rossip_tests::daemon::Daemon;
use rossip_tests::rng::Rng;
use rossip_tests::{RpcClient, sys};
use serde_json::{Value, json};

const READ: Duration = Duration::from_secs(20);
const DEFAULT_CASES: usize = 1_500;
const DEFAULT_SEED: u64 = 0x00f0_22c0;

fn cases() -> usize {
    std::env::var("ROSSIP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn seed() -> u64 {
    std::env::var("ROSSIP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn corpus_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/rpc/requests.jsonl")
}

/// The corpus: one request a line, each with what it must get back under
/// the key `expect` ("result", or an error code). The daemon ignores
/// members it does not know, so `expect` travels inside the request.
fn corpus() -> Vec<Value> {
    let req = |id: u64, method: &str, params: Value, expect: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params, "expect": expect});
    vec![
        req(1, "status", json!({}), json!("result")),
        req(2, "peers", json!({"all": true}), json!("result")),
        req(3, "send", json!({"text": "fuzz seed"}), json!("result")),
        req(
            4,
            "send",
            json!({"text": "on a channel", "channel": "fuzz"}),
            json!("result"),
        ),
        req(5, "send", json!({"text": ""}), json!(code::EMPTY_MESSAGE)),
        req(
            6,
            "send",
            json!({"text": "x", "channel": "bad channel\u{7}"}),
            json!(code::INVALID_CHANNEL),
        ),
        req(7, "history", json!({"n": 3}), json!("result")),
        req(
            8,
            "history",
            json!({"n": 2, "channel": "fuzz"}),
            json!("result"),
        ),
        req(
            9,
            "history",
            json!({"since": "00000000000000000000000000000000-1"}),
            json!(code::UNKNOWN_MESSAGE_ID),
        ),
        req(
            10,
            "subscribe",
            json!({"events": ["peer"], "n": 0}),
            json!("result"),
        ),
        req(
            11,
            "unsubscribe",
            json!({"subscription": 987_654}),
            json!(code::UNKNOWN_SUBSCRIPTION),
        ),
        req(12, "keys.list", json!({}), json!("result_or_error")),
        req(
            13,
            "keys.use",
            json!({"id": "zzzz"}),
            json!("result_or_error"),
        ),
        req(
            14,
            "no.such.method",
            json!({}),
            json!(code::METHOD_NOT_FOUND),
        ),
        req(15, "send", json!({"text": 5}), json!(code::INVALID_PARAMS)),
        json!({"jsonrpc": "2.0", "id": 16, "method": "status", "params": [1], "expect": code::INVALID_PARAMS}),
        json!({"jsonrpc": "1.0", "id": 17, "method": "status", "expect": code::INVALID_REQUEST}),
        json!({"jsonrpc": "2.0", "method": "status", "expect": "nothing"}),
        json!([
            {"jsonrpc": "2.0", "id": 18, "method": "status"},
            {"jsonrpc": "2.0", "id": 19, "method": "history", "params": {"n": 1}},
            {"jsonrpc": "2.0", "method": "peers"},
            5
        ]),
        req(
            20,
            "presence.set",
            json!({"state": "away", "status": "fuzzing"}),
            json!("result"),
        ),
        req(21, "who", json!({}), json!("result")),
        req(
            22,
            "presence.set",
            json!({"state": "offline", "status": null}),
            json!(code::INVALID_PARAMS),
        ),
    ]
}

/// Writes the corpus (after a change of the RPC contract).
#[test]
#[ignore = "writes the corpus: cargo test -p rossip-tests --test fuzz_rpc -- --ignored write_corpus"]
fn write_corpus() {
    let path = corpus_path();
    std::fs::create_dir_all(path.parent().expect("corpus dir")).expect("create the corpus dir");
    let lines: Vec<String> = corpus().iter().map(Value::to_string).collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the corpus");
}

fn load_corpus() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(corpus_path()).unwrap_or_else(|e| {
        panic!(
            "{} missing ({e}): cargo test -p rossip-tests --test fuzz_rpc -- --ignored write_corpus",
            corpus_path().display()
        )
    });
    text.lines().map(|l| l.as_bytes().to_vec()).collect()
}

/// JSON fragments that stress parsers and handlers.
const NASTY: &[&str] = &[
    "1e400",
    "-0",
    "18446744073709551616",
    "-9223372036854775809",
    "0.5",
    "null",
    "true",
    "[]",
    "{}",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"\u{202e}\u{1b}[31m\"",
    "\"general\"",
    "\"status\"",
    "\"send\"",
    "\"subscribe\"",
    "\"history\"",
    "\"unsubscribe\"",
    "\"2.0\"",
    "4294967296",
    "\"00000000000000000000000000000000-18446744073709551615\"",
];

/// One hostile line (no newline inside) from the corpus.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut line = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(3) {
        match rng.below(10) {
            0 if !line.is_empty() => {
                let at = rng.below(line.len());
                line[at] ^= 1 << rng.below(8);
            }
            1 => line.truncate(rng.below(line.len() + 1)),
            2 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(line.len() + 1);
                let from = rng.below(other.len() + 1);
                line.truncate(cut);
                line.extend_from_slice(&other[from..]);
            }
            3 => {
                // Replace a value after a colon with something nasty.
                let colons: Vec<usize> = (0..line.len()).filter(|i| line[*i] == b':').collect();
                if let Some(&at) = colons.get(rng.below(colons.len())) {
                    let end = (at + 1..line.len())
                        .find(|i| matches!(line[*i], b',' | b'}' | b']'))
                        .unwrap_or(line.len());
                    let nasty = NASTY[rng.below(NASTY.len())].as_bytes();
                    line.splice(at + 1..end, nasty.iter().copied());
                }
            }
            4 => {
                let depth = 1 + rng.below(300);
                let mut nested = vec![b'['; depth];
                nested.extend(std::iter::repeat_n(b']', depth));
                let at = rng.below(line.len() + 1);
                line.splice(at..at, nested);
            }
            5 => {
                // Invalid UTF-8 and control bytes.
                let at = rng.below(line.len() + 1);
                let junk: &[u8] = match rng.below(3) {
                    0 => &[0xff, 0xfe],
                    1 => &[0xc3],
                    _ => &[0x00, 0x1b, b'\r'],
                };
                line.splice(at..at, junk.iter().copied());
            }
            6 => {
                // A batch of mutants (parsed as a whole or not at all).
                let mut batch = b"[".to_vec();
                for i in 0..rng.below(6) {
                    if i > 0 {
                        batch.push(b',');
                    }
                    batch.extend_from_slice(&corpus[rng.below(corpus.len())]);
                }
                batch.push(b']');
                line = batch;
            }
            7 => {
                // A duplicate key: serde_json's Value keeps the last.
                if line.first() == Some(&b'{') {
                    let key = [
                        &b"\"id\":\"dup\","[..],
                        b"\"method\":\"nope\",",
                        b"\"params\":{},",
                    ];
                    line.splice(1..1, key[rng.below(3)].iter().copied());
                }
            }
            8 => {
                // A long string value (under the line cap).
                let text = "w".repeat(rng.below(200_000));
                line = json!({"jsonrpc": "2.0", "id": "long", "method": "send", "params": {"text": text}})
                    .to_string()
                    .into_bytes();
            }
            _ => {
                let at = rng.below(line.len() + 1);
                line.insert(at, u8::try_from(rng.below(256)).unwrap_or(0));
            }
        }
    }
    // Framing is by newline: a newline inside would make two inputs.
    for byte in &mut line {
        if *byte == b'\n' {
            *byte = b' ';
        }
    }
    line
}

/// Whether an input could reach a method this test must not call: `join`
/// sends to any address it names, `leave` ends the node's membership.
fn is_off_limits(line: &[u8]) -> bool {
    fn any_string(value: &Value, bad: &dyn Fn(&str) -> bool) -> bool {
        match value {
            Value::String(s) => bad(s),
            Value::Array(items) => items.iter().any(|v| any_string(v, bad)),
            Value::Object(map) => map.iter().any(|(k, v)| bad(k) || any_string(v, bad)),
            _ => false,
        }
    }
    match serde_json::from_slice::<Value>(line) {
        // A line that does not parse is never dispatched.
        Err(_) => false,
        Ok(value) => any_string(&value, &|s| s.contains("join") || s.contains("leave")),
    }
}

/// Checks one line the daemon wrote; returns whether it was a response
/// (or a batch of them) rather than a notification.
fn check_reply(line: &str, input: &[u8]) -> Result<bool, String> {
    let value = parse_reply(line)?;
    match &value {
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                check_response(item)?;
            }
            Ok(true)
        }
        Value::Object(obj) if obj.get("method").is_some() => {
            if obj.get("method") != Some(&json!("event")) || obj.contains_key("id") {
                return Err("a notification other than event".into());
            }
            Ok(false)
        }
        _ => {
            check_response(&value)?;
            let _ = input;
            Ok(true)
        }
    }
}

/// A reply line as a `Value`. An id is echoed as the client wrote it, and
/// JSON allows numbers (`1e400`) that serde_json's `Value` cannot hold: such
/// an id is checked to be JSON and taken as the string of its text.
fn parse_reply(line: &str) -> Result<Value, String> {
    match serde_json::from_str(line) {
        Ok(value) => Ok(value),
        Err(e) => {
            serde_json::from_str::<&serde_json::value::RawValue>(line)
                .map_err(|e| format!("not JSON ({e})"))?;
            serde_json::from_str(&quote_number_ids(line)).map_err(|_| format!("not JSON ({e})"))
        }
    }
}

/// `line` with every `"id":NUMBER` made `"id":"NUMBER"`.
fn quote_number_ids(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut rest = line;
    while let Some(at) = rest.find("\"id\":") {
        let (head, tail) = rest.split_at(at + "\"id\":".len());
        out.push_str(head);
        let end = tail
            .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
            .unwrap_or(tail.len());
        if end > 0 {
            out.push('"');
            out.push_str(&tail[..end]);
            out.push('"');
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn check_response(value: &Value) -> Result<(), String> {
    if value.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(format!("no jsonrpc 2.0: {value}"));
    }
    let id = value.get("id").ok_or("no id")?;
    if !(id.is_string() || id.is_number() || id.is_null()) {
        return Err(format!("bad id: {value}"));
    }
    match (value.get("result"), value.get("error")) {
        (Some(_), None) => Ok(()),
        (None, Some(error)) => {
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .ok_or("error without code")?;
            let standard = [
                code::PARSE_ERROR,
                code::INVALID_REQUEST,
                code::METHOD_NOT_FOUND,
                code::INVALID_PARAMS,
                code::INTERNAL_ERROR,
            ];
            // Application errors are documented from -32000 down.
            if !standard.contains(&code) && !(-32099..=-32000).contains(&code) {
                return Err(format!("undocumented error code {code}"));
            }
            if !error.get("message").is_some_and(Value::is_string) {
                return Err(format!("error without message: {value}"));
            }
            Ok(())
        }
        _ => Err(format!("not exactly one of result and error: {value}")),
    }
}

/// Sends `input` and a sentinel; returns the reply lines `input` produced
/// (notifications left out).
fn exchange(client: &mut RpcClient, input: &[u8], sentinel: u64) -> Result<Vec<Value>, String> {
    let mut bytes = input.to_vec();
    bytes.push(b'\n');
    let marker =
        json!({"jsonrpc": "2.0", "id": format!("sentinel-{sentinel}"), "method": "status"});
    bytes.extend_from_slice(marker.to_string().as_bytes());
    bytes.push(b'\n');
    client.send_raw(&bytes).map_err(|e| format!("write: {e}"))?;
    let mut replies = Vec::new();
    loop {
        let line = match client.recv_line(READ) {
            Ok(Some(line)) => line,
            Ok(None) => return Err(format!("no sentinel answer within {READ:?}")),
            Err(e) => return Err(format!("read: {e}")),
        };
        if check_reply(&line, input)? {
            let value = parse_reply(&line)?;
            if value.get("id") == Some(&json!(format!("sentinel-{sentinel}"))) {
                return Ok(replies);
            }
            replies.push(value);
        }
    }
}

/// How many reply lines an input must get, by its shape (JSON-RPC 2.0
/// §4.1, §5, §6): none for a notification (a valid request without an id)
/// or a batch of only notifications; one for anything else.
fn expected_replies(input: &[u8]) -> usize {
    if input.len() > MAX_LINE_BYTES {
        return 1;
    }
    // Blank lines are skipped (keep-alives, `\r\n` from a terminal).
    if input.iter().all(u8::is_ascii_whitespace) {
        return 0;
    }
    match serde_json::from_slice::<Value>(input) {
        Ok(Value::Array(items)) if !items.is_empty() => {
            usize::from(!items.iter().all(is_notification))
        }
        Ok(value) => usize::from(!is_notification(&value)),
        Err(_) => 1,
    }
}

/// A valid request without an id.
fn is_notification(value: &Value) -> bool {
    let Value::Object(obj) = value else {
        return false;
    };
    !obj.contains_key("id")
        && obj.get("jsonrpc") == Some(&json!("2.0"))
        && obj.get("method").is_some_and(Value::is_string)
}

fn describe(input: &[u8]) -> String {
    let shown = &input[..input.len().min(400)];
    format!(
        "{:?}{}",
        String::from_utf8_lossy(shown),
        if input.len() > 400 { " …" } else { "" }
    )
}

#[test]
fn every_hostile_line_gets_a_json_rpc_answer_and_the_daemon_serves_on() {
    let daemon = Daemon::builder("fuzz-rpc")
        .loopback()
        .log_level("info")
        .spawn();
    let seed = seed();
    let repro = format!(
        "reproduce: ROSSIP_FUZZ_SEED={seed} ROSSIP_FUZZ_CASES={} cargo test -p rossip-tests --test fuzz_rpc",
        cases()
    );
    let corpus = load_corpus();
    let mut client = daemon.client();

    // The unmutated corpus gets what each request documents.
    for (n, line) in corpus.iter().enumerate() {
        let replies = exchange(&mut client, line, n as u64)
            .unwrap_or_else(|e| panic!("corpus line {n} {}: {e}", describe(line)));
        let request: Value = serde_json::from_slice(line).expect("the corpus is JSON");
        let want = request.get("expect").cloned().unwrap_or(Value::Null);
        let got = replies.first();
        let ok = match want.as_str() {
            Some("result") => got.is_some_and(|r| r.get("result").is_some()),
            Some("nothing") => replies.is_empty(),
            Some(_) => replies.len() == 1,
            None if want.is_i64() => {
                got.and_then(|r| r.pointer("/error/code"))
                    .and_then(Value::as_i64)
                    == want.as_i64()
            }
            None => replies.len() == 1 && got.is_some_and(Value::is_array),
        };
        assert!(
            ok,
            "corpus line {n} {} expected {want}, got {replies:?} (rewrite the corpus if the contract changed)",
            describe(line)
        );
    }

    let mut rng = Rng(seed | 1);
    let mut sentinel = 1_000_000u64;
    let mut skipped = 0usize;
    let mut inputs = 0usize;
    while inputs < cases() {
        let mut input = mutate(&mut rng, &corpus);
        // Now and then a line over the cap, which must be skipped whole.
        if rng.below(500) == 0 {
            input = vec![b'x'; MAX_LINE_BYTES + 1 + rng.below(4096)];
        }
        if is_off_limits(&input) {
            skipped += 1;
            continue;
        }
        inputs += 1;
        sentinel += 1;
        let replies = exchange(&mut client, &input, sentinel)
            .unwrap_or_else(|e| panic!("input {inputs} {}: {e}\n{repro}", describe(&input)));
        assert_eq!(
            replies.len(),
            expected_replies(&input),
            "input {inputs} {}: replies {replies:?}\n{repro}",
            describe(&input)
        );
        if input.len() > MAX_LINE_BYTES {
            assert_eq!(
                replies[0].pointer("/error/code").and_then(Value::as_i64),
                Some(code::INVALID_REQUEST),
                "over-long line\n{repro}"
            );
        }
    }
    println!("{inputs} hostile lines answered ({skipped} skipped as join/leave), seed {seed:#x}");
    assert!(sys::pid_alive(daemon.pid()), "the daemon died");
    let status = daemon.status();
    assert_eq!(status.state, "running", "{status:?}");
}
