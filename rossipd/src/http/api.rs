//! The JSON endpoints: each maps a request onto the API's typed handler of
//! the RPC method of the same name, and its result or error back. No rule
//! is decided here (who may read what, how `after` and `since` combine):
//! the API decides for both front ends.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::header::{self, HeaderMap};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream;
use rossip_proto::rpc::{
    self, ErrorObject, HistoryParams, NickParams, PeersParams, SendParams, Since, code,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ApiError, Gateway, MAX_BODY_BYTES};
use crate::api::history::{HistoryStream, PAGE_BYTES};
use crate::api::speaker::Speaker;
use crate::api::{chat, methods, presence};

/// The endpoints, beside the page and the WebSocket.
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/channels", get(channels))
        .route("/who", get(who))
        .route("/me", get(me))
        .route("/messages", get(messages))
        .route("/send", post(send))
        .route("/nick", post(nick))
}

type Answer<T> = Result<Json<T>, ApiError>;

async fn status(State(gateway): State<Arc<Gateway>>, uri: Uri) -> Answer<rpc::StatusResult> {
    let NoQuery {} = query(&uri)?;
    Ok(Json(
        gateway.driver.status().await.map_err(ErrorObject::from)?,
    ))
}

async fn peers(State(gateway): State<Arc<Gateway>>, uri: Uri) -> Answer<rpc::PeersResult> {
    let params: PeersParams = query(&uri)?;
    Ok(Json(methods::peers(params, &gateway.driver).await?))
}

async fn channels(State(gateway): State<Arc<Gateway>>, uri: Uri) -> Answer<rpc::ChannelsResult> {
    let NoQuery {} = query(&uri)?;
    Ok(Json(chat::channels(&gateway.driver).await?))
}

async fn who(State(gateway): State<Arc<Gateway>>, uri: Uri) -> Answer<rpc::WhoResult> {
    let NoQuery {} = query(&uri)?;
    Ok(Json(presence::who(&gateway.driver).await?))
}

/// `GET /me`: whom this browser's requests speak for.
#[derive(Debug, serde::Serialize)]
struct MeResult {
    /// The local user; empty when rossipd cannot tell.
    user: String,
    /// `user@node_name`, as messages show it.
    from: String,
    /// This node's id.
    node: String,
    /// This node's name.
    node_name: String,
    /// The user's display name, if any.
    nick: Option<String>,
}

async fn me(
    State(gateway): State<Arc<Gateway>>,
    Extension(speaker): Extension<Speaker>,
    uri: Uri,
) -> Answer<MeResult> {
    let NoQuery {} = query(&uri)?;
    let status = gateway.driver.status().await.map_err(ErrorObject::from)?;
    // `nick` shows the display name when asked for neither change; a
    // user rossipd cannot tell has none.
    let nick = if speaker.user.is_empty() {
        None
    } else {
        chat::nick(NickParams::default(), &gateway.driver, &speaker)
            .await?
            .nick
    };
    Ok(Json(MeResult {
        from: rpc::user_at_node(&speaker.user, &status.name),
        user: speaker.user,
        node: status.id,
        node_name: status.name,
        nick,
    }))
}

/// `GET /messages`' query: `history`'s params, as text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    n: Option<usize>,
    since: Option<String>,
    after: Option<String>,
    channel: Option<String>,
}

/// `since` from a query string: Unix milliseconds when it is a number, else
/// a message id (in JSON the type tells them apart).
pub fn since_of(text: String) -> Since {
    match text.parse() {
        Ok(ms) => Since::Time(ms),
        Err(_) => Since::Id(text),
    }
}

/// `GET /messages`: `history`, written a page at a time as the client
/// reads (a whole window never sits in memory).
async fn messages(
    State(gateway): State<Arc<Gateway>>,
    Extension(speaker): Extension<Speaker>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let q: MessagesQuery = query(&uri)?;
    let params = HistoryParams {
        n: q.n,
        since: q.since.map(since_of),
        after: q.after,
        channel: q.channel,
    };
    let read = methods::history(params, &gateway.driver, &speaker).await?;
    let pages = stream::unfold(
        Some((read, gateway.driver.clone(), true)),
        |state| async move {
            let (mut read, driver, first) = state?;
            let mut text = String::new();
            if first {
                text.push_str(HistoryStream::opening());
            }
            let Some((from, filter, limit)) = read.next_request() else {
                text.push_str(&read.closing());
                return Some((Ok(text), None));
            };
            match driver.read(from, filter, limit, PAGE_BYTES).await {
                Ok(page) => {
                    read.take_page(page, &mut text);
                    Some((Ok(text), Some((read, driver, false))))
                }
                // The daemon stops: the answer breaks off (the client sees
                // a truncated body, not a complete wrong one).
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(pages),
    )
        .into_response())
}

/// `POST /send`'s body: `send`'s params, with `msg` as another name of
/// `text`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    text: Option<String>,
    msg: Option<String>,
    channel: Option<String>,
    to: Option<String>,
}

async fn send(
    State(gateway): State<Arc<Gateway>>,
    Extension(speaker): Extension<Speaker>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer<serde_json::Value> {
    let body: SendBody = json_body(&headers, body)?;
    let text = match (body.text, body.msg) {
        (Some(text), None) | (None, Some(text)) => text,
        (Some(_), Some(_)) => return Err(invalid_params("give `text` or `msg`, not both")),
        (None, None) => return Err(invalid_params("missing field `text`")),
    };
    let params = SendParams {
        text,
        channel: body.channel,
        to: body.to,
    };
    let pending = methods::submit_send(params, &gateway.driver, &speaker).await?;
    Ok(Json(pending.result().await?))
}

async fn nick(
    State(gateway): State<Arc<Gateway>>,
    Extension(speaker): Extension<Speaker>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer<rpc::NickResult> {
    let params: NickParams = json_body(&headers, body)?;
    Ok(Json(chat::nick(params, &gateway.driver, &speaker).await?))
}

/// Endpoints that take no query parameters refuse unknown ones, as the
/// methods refuse unknown params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// The query string as `T`; -32602 naming what is wrong.
pub fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    axum::extract::Query::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| invalid_params(&format!("invalid query: {}", e.body_text())))
}

/// A JSON body as `T`. It must say it is JSON: a form of another site could
/// post a body, but not with this content type (without a CORS preflight,
/// which the gateway does not grant).
fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError(ErrorObject::new(
            code::INVALID_REQUEST,
            "send the body as JSON, with Content-Type: application/json",
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(ErrorObject::with_data(
                code::MESSAGE_TOO_LARGE,
                format!("the request body is over {MAX_BODY_BYTES} bytes"),
                serde_json::json!({ "max_bytes": MAX_BODY_BYTES }),
            ))
        } else {
            ApiError(ErrorObject::new(
                code::INVALID_REQUEST,
                format!("cannot read the request body: {}", e.body_text()),
            ))
        }
    })?;
    // A syntax error is the parse error; well-formed JSON that does not
    // fit is -32602, as on the local socket.
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError(ErrorObject::new(
            code::PARSE_ERROR,
            format!("parse error: {e}"),
        ))
    })?;
    Ok(methods::parse(value)?)
}

fn invalid_params(message: &str) -> ApiError {
    ApiError(ErrorObject::new(code::INVALID_PARAMS, message))
}
