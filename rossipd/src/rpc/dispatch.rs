//! JSON-RPC 2.0 request handling: single requests, batches and
//! notifications, each malformation answered with the spec's error. Method
//! bodies live in `methods`.

use rossip_proto::rpc::{self, ErrorObject, Response};
use serde_json::Value;

use super::connection::ConnectionState;
use super::methods;

/// What to write back for one line: nothing (notifications only), one
/// response, or a batch array.
#[derive(Debug)]
pub enum Reply {
    /// Nothing to send.
    None,
    /// One response.
    Single(Response),
    /// A batch's responses.
    Batch(Vec<Response>),
}

impl Reply {
    /// The line to send, if any.
    pub fn to_line(&self) -> Option<String> {
        let encoded = match self {
            Reply::None => return None,
            Reply::Single(r) => serde_json::to_string(r),
            Reply::Batch(rs) => serde_json::to_string(rs),
        };
        // Serializing our own types cannot fail; fall back to a fixed error anyway.
        Some(encoded.unwrap_or_else(|_| {
            r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"cannot encode response"},"id":null}"#.to_owned()
        }))
    }
}

/// Handles one line (already known to be within the size cap).
pub async fn handle_line(line: &[u8], conn: &mut ConnectionState) -> Reply {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Reply::Single(Response::err(
                Value::Null,
                ErrorObject::new(rpc::code::PARSE_ERROR, format!("parse error: {e}")),
            ));
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => Reply::Single(Response::err(
            Value::Null,
            ErrorObject::new(rpc::code::INVALID_REQUEST, "invalid request: empty batch"),
        )),
        Value::Array(items) => {
            let mut responses = Vec::new();
            for item in items {
                if let Some(r) = handle_value(item, conn).await {
                    responses.push(r);
                }
            }
            if responses.is_empty() {
                Reply::None
            } else {
                Reply::Batch(responses)
            }
        }
        other => match handle_value(other, conn).await {
            Some(r) => Reply::Single(r),
            None => Reply::None,
        },
    }
}

/// Handles one request object; `None` for a notification.
async fn handle_value(value: Value, conn: &mut ConnectionState) -> Option<Response> {
    let Value::Object(mut obj) = value else {
        return Some(invalid(Value::Null, "a request must be a JSON object"));
    };
    // Read the id first so that later errors can echo it.
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => {
            return Some(invalid(
                Value::Null,
                "id must be a string, a number or null",
            ));
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some(rpc::JSONRPC_VERSION) {
        return Some(invalid(reply_id, "\"jsonrpc\" must be \"2.0\""));
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return Some(invalid(reply_id, "\"method\" must be a string"));
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return id.map(|id| {
                Response::err(
                    id,
                    ErrorObject::new(
                        rpc::code::INVALID_PARAMS,
                        "params must be an object (by name)",
                    ),
                )
            });
        }
    };
    let outcome = methods::call(&method, params, conn).await;
    // A notification gets no response, not even an error (JSON-RPC 2.0 §4.1).
    let id = id?;
    Some(match outcome {
        Ok(result) => Response::ok(id, result),
        Err(error) => Response::err(id, error),
    })
}

fn invalid(id: Value, why: &str) -> Response {
    Response::err(
        id,
        ErrorObject::new(
            rpc::code::INVALID_REQUEST,
            format!("invalid request: {why}"),
        ),
    )
}
