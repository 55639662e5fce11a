//! JSON-RPC 2.0 framing of requests and responses: a line becomes a
//! [`Parsed`] request (or batch, or an error to answer), and answers
//! become lines. Ids are kept as the exact JSON text the client sent, so
//! that any id the spec allows comes back as it was (`18446744073709551616`
//! and `1e400` too, which a number type would round or refuse).

use rossip_proto::rpc::{self, ErrorObject};
use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

/// Requests one batch may hold: its answers are written as one array, so
/// the batch bounds what the daemon holds for it.
pub const MAX_BATCH: usize = 256;

/// A request id: the JSON text of a string, a number or null, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawId(String);

impl RawId {
    /// The id of a response to a request whose id could not be read.
    pub fn null() -> RawId {
        RawId("null".to_owned())
    }

    /// A string, number or null id; `None` for any other JSON value.
    fn of(raw: &RawValue) -> Option<RawId> {
        let text = raw.get();
        let first = text.as_bytes().first()?;
        // A string must be Unicode (no lone surrogate escape): many
        // clients could not read the answer otherwise.
        if *first == b'"' && serde_json::from_str::<String>(text).is_err() {
            return None;
        }
        matches!(first, b'"' | b'-' | b'0'..=b'9' | b'n').then(|| RawId(text.to_owned()))
    }
}

/// One request as read from a line or a batch element.
#[derive(Debug)]
pub struct Call {
    /// `None` for a notification (no answer, not even an error).
    pub id: Option<RawId>,
    /// The method name.
    pub method: String,
    /// The params object (an empty one when absent or null).
    pub params: Value,
}

/// A batch element: a call, or the error it gets.
#[derive(Debug)]
pub enum Element {
    /// A well-formed request.
    Call(Call),
    /// A malformed one, answered with this.
    Invalid(RawId, ErrorObject),
    /// A notification with malformed params: no answer, not even an error
    /// (JSON-RPC 2.0 §4.1).
    Ignored,
}

/// What one line holds.
#[derive(Debug)]
pub enum Parsed {
    /// Only whitespace: nothing to answer.
    Blank,
    /// One request.
    Single(Element),
    /// A batch (never empty).
    Batch(Vec<Element>),
}

/// Parses a line (already within the size cap).
pub fn parse(line: &[u8]) -> Parsed {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Blank;
    }
    let raw: &RawValue = match serde_json::from_slice(line) {
        Ok(raw) => raw,
        Err(e) => {
            return Parsed::Single(Element::Invalid(
                RawId::null(),
                ErrorObject::new(rpc::code::PARSE_ERROR, format!("parse error: {e}")),
            ));
        }
    };
    if raw.get().starts_with('[') {
        let items: Vec<&RawValue> = match serde_json::from_str(raw.get()) {
            Ok(items) => items,
            Err(e) => {
                return Parsed::Single(Element::Invalid(
                    RawId::null(),
                    ErrorObject::new(rpc::code::PARSE_ERROR, format!("parse error: {e}")),
                ));
            }
        };
        if items.is_empty() {
            return Parsed::Single(invalid(RawId::null(), "empty batch"));
        }
        if items.len() > MAX_BATCH {
            return Parsed::Single(invalid(
                RawId::null(),
                &format!("a batch may hold at most {MAX_BATCH} requests"),
            ));
        }
        return Parsed::Batch(items.into_iter().map(element).collect());
    }
    Parsed::Single(element(raw))
}

/// The members of a request object that matter.
struct Envelope<'a> {
    jsonrpc: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    params: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
}

/// One request object.
fn element(raw: &RawValue) -> Element {
    // The members, each kept raw so that each malformation gets its own
    // error; a member given twice counts as its last, as in most parsers.
    if !raw.get().starts_with('{') {
        return invalid(RawId::null(), "a request must be a JSON object");
    }
    let Ok(members) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
        return invalid(RawId::null(), "a request must be a JSON object");
    };
    let envelope = Envelope {
        jsonrpc: members.get("jsonrpc").copied(),
        method: members.get("method").copied(),
        params: members.get("params").copied(),
        id: members.get("id").copied(),
    };
    // The id first, so that later errors can echo it.
    let id = match envelope.id {
        None => None,
        Some(raw) => match RawId::of(raw) {
            Some(id) => Some(id),
            None => return invalid(RawId::null(), "id must be a string, a number or null"),
        },
    };
    let reply_id = id.clone().unwrap_or_else(RawId::null);
    let version: Option<String> = envelope
        .jsonrpc
        .and_then(|v| serde_json::from_str(v.get()).ok());
    if version.as_deref() != Some(rpc::JSONRPC_VERSION) {
        return invalid(reply_id, "\"jsonrpc\" must be \"2.0\"");
    }
    let Some(method) = envelope
        .method
        .and_then(|m| serde_json::from_str::<String>(m.get()).ok())
    else {
        return invalid(reply_id, "\"method\" must be a string");
    };
    let params = match envelope
        .params
        .map(|p| serde_json::from_str::<Value>(p.get()))
    {
        None | Some(Ok(Value::Null)) => Value::Object(Default::default()),
        Some(Ok(p @ Value::Object(_))) => p,
        Some(_) if id.is_none() => return Element::Ignored,
        Some(Ok(_)) => {
            return Element::Invalid(
                reply_id,
                ErrorObject::new(
                    rpc::code::INVALID_PARAMS,
                    "params must be an object (by name)",
                ),
            );
        }
        Some(Err(e)) => {
            return Element::Invalid(
                reply_id,
                ErrorObject::new(rpc::code::INVALID_PARAMS, format!("invalid params: {e}")),
            );
        }
    };
    Element::Call(Call { id, method, params })
}

fn invalid(id: RawId, why: &str) -> Element {
    Element::Invalid(
        id,
        ErrorObject::new(
            rpc::code::INVALID_REQUEST,
            format!("invalid request: {why}"),
        ),
    )
}

/// A response as one JSON text (no newline).
pub fn response(id: &RawId, outcome: &Result<Value, ErrorObject>) -> String {
    let body = match outcome {
        Ok(result) => format!("\"result\":{}", encode(result)),
        Err(error) => format!("\"error\":{}", encode(error)),
    };
    format!("{{\"jsonrpc\":\"2.0\",{body},\"id\":{}}}", id.0)
}

/// The start of a success response whose result is written in pieces
/// (`history`): the result's text follows, then [`response_end`].
pub fn response_start() -> &'static str {
    "{\"jsonrpc\":\"2.0\",\"result\":"
}

/// The end of a response begun with [`response_start`].
pub fn response_end(id: &RawId) -> String {
    format!(",\"id\":{}}}", id.0)
}

pub use crate::api::encode;

#[cfg(test)]
mod tests {
    use super::*;

    fn single(line: &str) -> Element {
        match parse(line.as_bytes()) {
            Parsed::Single(element) => element,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_come_back_exactly() {
        for id in [
            "18446744073709551616",
            "1e400",
            "-0",
            "\"x\"",
            "null",
            "1.50",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","method":"status","id":{id}}}"#);
            let Element::Call(call) = single(&line) else {
                panic!("{line}")
            };
            let id = call.id.expect("an id");
            let text = response(&id, &Ok(Value::Bool(true)));
            assert!(text.ends_with(&format!(",\"id\":{}}}", id.0)), "{text}");
            assert_eq!(id.0, id_text(&line));
        }
    }

    fn id_text(line: &str) -> String {
        line.rsplit_once("\"id\":")
            .map(|(_, id)| id.trim_end_matches('}').to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn malformed_requests_get_their_errors() {
        let Element::Invalid(id, e) = single("{") else {
            panic!()
        };
        assert_eq!((id, e.code), (RawId::null(), rpc::code::PARSE_ERROR));
        let Element::Invalid(_, e) = single("[]") else {
            panic!()
        };
        assert_eq!(e.code, rpc::code::INVALID_REQUEST);
        let Element::Invalid(_, e) = single("1") else {
            panic!()
        };
        assert_eq!(e.code, rpc::code::INVALID_REQUEST);
        let Element::Invalid(id, e) = single(r#"{"jsonrpc":"2.0","method":"x","id":[1]}"#) else {
            panic!()
        };
        assert_eq!((id, e.code), (RawId::null(), rpc::code::INVALID_REQUEST));
        let Element::Invalid(id, e) = single(r#"{"jsonrpc":"1.0","method":"x","id":7}"#) else {
            panic!()
        };
        assert_eq!((id.0.as_str(), e.code), ("7", rpc::code::INVALID_REQUEST));
        let Element::Invalid(_, e) =
            single(r#"{"jsonrpc":"2.0","method":"x","params":[1],"id":7}"#)
        else {
            panic!()
        };
        assert_eq!(e.code, rpc::code::INVALID_PARAMS);
        assert!(matches!(parse(b"  "), Parsed::Blank));
        let Parsed::Batch(items) = parse(br#"[1,{"jsonrpc":"2.0","method":"x"}]"#) else {
            panic!()
        };
        assert!(matches!(items[0], Element::Invalid(..)));
        assert!(matches!(&items[1], Element::Call(c) if c.id.is_none()));
    }
}
