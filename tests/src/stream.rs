//! A node's message stream as a client sees it through delivery cursors: a
//! subscription read line by line with each message's cursor and every
//! `lagged` notice ([`Subscription`]), and the node's delivery order read
//! back with `history {after}` page by page ([`delivered_after`]), so a
//! test can hold one against the other and find a gap, a duplicate or a
//! reordering.
//!
//! Lines are parsed as plain JSON rather than through the typed views of
//! [`crate::rpc`]: the point is to see the cursor fields exactly as the
//! daemon writes them, and to fail with the line itself when one is
//! missing.

use std::path::Path;
use std::time::{Duration, Instant};

use rossip_proto::rpc::ErrorObject;
use serde_json::{Value, json};

use crate::rpc::{CALL_TIMEOUT, RpcClient};

/// Messages asked for per `history {after, n}` page.
pub const HISTORY_PAGE: usize = 1_000;

/// One message as a stream or `history` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Its message id (`<origin>-<seq>`), the same on every node.
    pub id: String,
    /// Its text.
    pub text: String,
    /// This node's delivery cursor for it (opaque).
    pub cursor: String,
}

impl Delivered {
    /// Reads a Message object; `Err` (with the object) when it has no id,
    /// text or cursor.
    pub fn from_message(message: &Value) -> Result<Delivered, String> {
        let field = |name: &str| {
            message
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("a message without a string `{name}`: {message}"))
        };
        Ok(Delivered {
            id: field("id")?,
            text: field("text")?,
            cursor: field("cursor")?,
        })
    }
}

/// What a subscription delivered, in the order it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A `message` event.
    Message(Delivered),
    /// A `lagged` notice, as written (`dropped`, `cursor`).
    Lagged(Value),
}

/// One subscription on a connection of its own, read line by line.
#[derive(Debug)]
pub struct Subscription {
    client: RpcClient,
    /// The id `subscribe` returned.
    pub id: u64,
    /// The `cursor` of the `subscribe` result: where replay ends and live
    /// messages begin (absent only for a store that never delivered).
    pub start: Option<String>,
    /// Everything read so far.
    pub events: Vec<StreamEvent>,
}

impl Subscription {
    /// Connects to `socket` and sends `subscribe` with `params`. `Err` is
    /// the daemon's refusal; I/O trouble panics (the daemon is expected to
    /// be up).
    pub fn start(socket: &Path, params: Value) -> Result<Subscription, ErrorObject> {
        let mut client = RpcClient::connect(socket)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": params});
        client
            .send_line(&request.to_string())
            .unwrap_or_else(|e| panic!("write subscribe to {}: {e}", socket.display()));
        let mut early = Vec::new();
        let result = loop {
            let value = client.recv_value(CALL_TIMEOUT);
            if value.get("method").is_some() {
                // The daemon answers before any event; kept all the same, in order.
                early.push(value);
                continue;
            }
            break response_result(&value, &request)?;
        };
        let id = result
            .get("subscription")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("subscribe result without a subscription id: {result}"));
        let start = result
            .get("cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut subscription = Subscription {
            client,
            id,
            start,
            events: Vec::new(),
        };
        for line in early {
            subscription.take(&line);
        }
        Ok(subscription)
    }

    /// The messages read so far, in order.
    pub fn messages(&self) -> Vec<&Delivered> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Message(m) => Some(m),
                StreamEvent::Lagged(_) => None,
            })
            .collect()
    }

    /// The `lagged` notices read so far.
    pub fn lagged(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Lagged(v) => Some(v),
                StreamEvent::Message(_) => None,
            })
            .collect()
    }

    /// Reads events until `enough` holds for what was read, or `timeout`
    /// passes (`Err` saying how far it got).
    pub fn read_until(
        &mut self,
        timeout: Duration,
        enough: impl Fn(&Subscription) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !enough(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "after {timeout:?}: {} messages and {} lagged notices read",
                    self.messages().len(),
                    self.lagged().len()
                ));
            }
            match self.client.recv_line(left) {
                Ok(Some(line)) => {
                    let value: Value = serde_json::from_str(&line).map_err(|e| {
                        format!("the daemon wrote a line that is not JSON ({e}): {line}")
                    })?;
                    self.take(&value);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("the subscription's connection: {e}")),
            }
        }
        Ok(())
    }

    /// Records one notification line; panics on one that breaks the contract.
    fn take(&mut self, line: &Value) {
        let params = &line["params"];
        assert_eq!(
            line["method"], "event",
            "a notification that is not an event: {line}"
        );
        if params["subscription"].as_u64() != Some(self.id) {
            return;
        }
        match params["kind"].as_str() {
            Some("message") => {
                let message = Delivered::from_message(&params["message"])
                    .unwrap_or_else(|e| panic!("{e}\nin the event {line}"));
                self.events.push(StreamEvent::Message(message));
            }
            Some("lagged") => self.events.push(StreamEvent::Lagged(params.clone())),
            _ => panic!("an event of a kind this subscription did not ask for: {line}"),
        }
    }
}

/// The `result` of `response` to `request`; `Err` with the error object;
/// panics on a response that fits neither.
fn response_result(response: &Value, request: &Value) -> Result<Value, ErrorObject> {
    if let Some(result) = response.get("result") {
        return Ok(result.clone());
    }
    match response.get("error") {
        Some(error) => Err(serde_json::from_value(error.clone())
            .unwrap_or_else(|e| panic!("an error object that does not parse ({e}): {response}"))),
        None => panic!("a response to {request} with neither result nor error: {response}"),
    }
}

/// One `history` call with `params`: its messages and its `cursor` (where
/// to continue). `Err` is the daemon's refusal.
pub fn history_page(
    client: &mut RpcClient,
    params: Value,
) -> Result<(Vec<Delivered>, Option<String>), ErrorObject> {
    let result = client.call("history", params)?;
    let messages = result["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("a history result without messages: {result}"))
        .iter()
        .map(|m| Delivered::from_message(m).unwrap_or_else(|e| panic!("history: {e}")))
        .collect();
    let cursor = result
        .get("cursor")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((messages, cursor))
}

/// What the node at `socket` delivered after `cursor`, in delivery order,
/// read with `history {after, n}` pages until at least `at_least` messages
/// are in hand or a page comes back empty. Panics if the daemon refuses.
pub fn delivered_after(socket: &Path, cursor: &str, at_least: usize) -> Vec<Delivered> {
    let mut client = RpcClient::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    let mut all = Vec::new();
    let mut after = cursor.to_owned();
    while all.len() < at_least {
        let params = json!({"after": after, "n": HISTORY_PAGE});
        let (page, next) = history_page(&mut client, params.clone())
            .unwrap_or_else(|e| panic!("history {params} refused: {e:?}"));
        if page.is_empty() {
            break;
        }
        all.extend(page);
        after = next.unwrap_or_else(|| panic!("history {params} returned messages but no cursor"));
    }
    all
}

/// Checks that `stream` (what a subscription showed) is exactly the start
/// of `reference` (the node's delivery order from the same point): same
/// messages, same cursors, same order, nothing missing, nothing twice.
/// `Err` names the first difference.
pub fn is_prefix_of(stream: &[&Delivered], reference: &[Delivered]) -> Result<(), String> {
    for (i, got) in stream.iter().enumerate() {
        match reference.get(i) {
            Some(want) if want == *got => {}
            Some(want) => {
                let elsewhere = reference.iter().position(|m| m.id == got.id);
                let before = stream[..i].iter().position(|m| m.id == got.id);
                let around = i.saturating_sub(3)..i + 3;
                return Err(format!(
                    "event {i} of the stream is {} ({:?}, cursor {}) where the delivery order has \
                     {} ({:?}, cursor {}); the stream's message is at {elsewhere:?} in the delivery \
                     order and was already at {before:?} in the stream.\n\
                     stream events {around:?}: {}\ndelivery order {around:?}: {}",
                    got.id,
                    got.text,
                    got.cursor,
                    want.id,
                    want.text,
                    want.cursor,
                    describe(stream.iter().copied().skip(around.start).take(6)),
                    describe(reference.iter().skip(around.start).take(6)),
                ));
            }
            None => {
                return Err(format!(
                    "the stream has {} messages, the delivery order from the same point only {}",
                    stream.len(),
                    reference.len()
                ));
            }
        }
    }
    Ok(())
}

/// `text@cursor, …` for a failure message.
fn describe<'a>(messages: impl Iterator<Item = &'a Delivered>) -> String {
    messages
        .map(|m| format!("{}@{}", m.text, m.cursor))
        .collect::<Vec<_>>()
        .join(", ")
}
