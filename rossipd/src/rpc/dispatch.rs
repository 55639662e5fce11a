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

/// A `send` handed to the driver whose answer is still to come.
#[derive(Debug)]
pub struct PendingSend {
    /// The request's id.
    pub id: Value,
    /// The driver's answer.
    pub answer: methods::SendAnswer,
}

impl PendingSend {
    /// The response, once the answer came.
    pub fn response(id: Value, answer: Option<Result<rpc::MessageView, ErrorObject>>) -> Response {
        match methods::send_outcome(answer) {
            Ok(result) => Response::ok(id, result),
            Err(error) => Response::err(id, error),
        }
    }
}

/// If `line` is one well-formed `send` request with an id (the request a
/// fast sender repeats), hands it to the driver and returns it pending;
/// else `None`, and the line goes through [`handle_line`] (which also gives
/// every malformed request its proper error). Pipelining only sends keeps
/// every other method's semantics: a connection finishes its pending sends
/// before it handles anything else.
pub async fn try_pipeline(
    line: &[u8],
    conn: &mut ConnectionState,
) -> Option<Result<PendingSend, Response>> {
    #[derive(serde::Deserialize)]
    struct SendRequest {
        jsonrpc: String,
        method: String,
        id: Value,
        params: serde_json::Map<String, Value>,
    }
    let request: SendRequest = serde_json::from_slice(line).ok()?;
    let id_ok = matches!(request.id, Value::String(_) | Value::Number(_));
    if request.jsonrpc != rpc::JSONRPC_VERSION || request.method != rpc::method::SEND || !id_ok {
        return None;
    }
    // Params by name only (serde would also take a struct from an array);
    // anything wrong goes the slow way, which explains it.
    let params: rpc::SendParams = serde_json::from_value(Value::Object(request.params)).ok()?;
    conn.caller.log_call(&request.method);
    Some(match methods::submit_send(params, conn).await {
        Ok(answer) => Ok(PendingSend {
            id: request.id,
            answer,
        }),
        Err(error) => Err(Response::err(request.id, error)),
    })
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
    // Here every method is known by name, so new ones (`keys.*`) are
    // covered without touching their handlers.
    conn.caller.log_call(&method);
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
