//! The HTTP/WebSocket gateway (`--http ADDR`): the web chat page, embedded
//! in the binary, and a JSON front end over the same typed handlers as the
//! JSON-RPC server, on the daemon's runtime.
//!
//! Every request passes [`guard`] first (Host and Origin, then the login),
//! and learns whom it speaks for: on a loopback listener the kernel's owner
//! of the client's socket ([`peer_uid`]), else the user of its token
//! ([`token`]). Errors are the RPC error objects, with an HTTP status chosen
//! by [`status_of`] in one place.
//!
//! Bounded like the local socket: at most [`MAX_CONNECTIONS`] connections
//! (past it, a 503 and the connection closed), [`MAX_BODY_BYTES`] a
//! request body, [`IDLE_TIMEOUT`] without a byte either way.

mod api;
mod conn;
mod guard;
mod link;
mod peer_uid;
mod token;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use rossip_proto::rpc::{ErrorObject, code};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use conn::Counters;
use conn::{Limited, Peer};
pub use link::{WebAccess, web_link};
pub use token::SECRET_FILE;

use crate::api::speaker::Speaker;
use crate::driver::{Handle, SharedCounters};

/// The largest request body read (a message's text is at most 960 KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every request handler shares.
#[derive(Debug)]
pub struct Gateway {
    /// To the driver.
    driver: Handle,
    /// Shared counters (subscriber drops).
    counters: Arc<SharedCounters>,
    /// The node's name, for `user@node` (it cannot change while running).
    node_name: String,
    /// The listener's checks.
    guard: guard::Guard,
    /// Where WebSocket tasks are tracked, so that shutdown waits for them.
    tasks: TaskTracker,
    /// The daemon's shutdown.
    cancel: CancellationToken,
}

/// What the gateway is built from.
#[derive(Debug)]
pub struct GatewayParts {
    /// To the driver.
    pub driver: Handle,
    /// Shared counters.
    pub counters: Arc<SharedCounters>,
    /// The node's name.
    pub node_name: String,
    /// Where WebSocket tasks are tracked.
    pub tasks: TaskTracker,
    /// The daemon's shutdown.
    pub cancel: CancellationToken,
}

impl Gateway {
    /// The gateway of `access`'s listener.
    pub fn new(parts: GatewayParts, access: &WebAccess) -> Gateway {
        Gateway {
            driver: parts.driver,
            counters: parts.counters,
            node_name: parts.node_name,
            guard: access.guard(),
            tasks: parts.tasks,
            cancel: parts.cancel,
        }
    }
}

/// Binds the gateway's listener (at start, so that a taken port is a
/// refusal to start naming the address).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {addr} (--http)"))
}

/// Serves HTTP on `listener` until `cancel` fires; then lets requests in
/// progress finish (WebSockets close on `cancel` themselves). axum spawns a
/// task per connection and this future waits for them all, so tracking it
/// tracks them.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let listener = Limited::new(listener, tasks, gateway.counters.clone());
    let app = router(gateway).into_make_service_with_connect_info::<Peer>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::warn!("the HTTP gateway stopped: {e}");
    }
}

/// The routes, and the checks and headers around them.
fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/index.html", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/favicon.svg", get(page::favicon))
        .route("/login", get(login))
        .route("/ws", get(ws::upgrade))
        .merge(api::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(gateway.clone(), admit))
        .layer(middleware::from_fn(security_headers))
        .with_state(gateway)
}

/// The Host and Origin checks, then the login, for every request; the
/// speaker (whom the request speaks for) is added to the request for the
/// handlers of the API.
async fn admit(State(gateway): State<Arc<Gateway>>, mut request: Request, next: Next) -> Response {
    let guard = &gateway.guard;
    let counters = &gateway.counters.http;
    if let Err(e) = guard.check_host_and_origin(request.headers()) {
        tracing::debug!("HTTP request refused: {}", e.message);
        counters.forbidden.fetch_add(1, Ordering::Relaxed);
        return ApiError(e).into_response();
    }
    if guard::is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let speaker = match guard.token_user(request.headers()) {
        Err(e) => {
            counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return ApiError(e).into_response();
        }
        Ok(Some(user)) => Speaker { uid: None, user },
        Ok(None) => match request
            .extensions()
            .get::<axum::extract::ConnectInfo<Peer>>()
        {
            Some(peer) => peer.0.speaker().await,
            None => Speaker::default(),
        },
    };
    request.extensions_mut().insert(speaker);
    next.run(request).await
}

/// The content security policy: scripts and styles only from the gateway
/// itself (no inline script, so an injected `<script>` cannot run), nothing
/// embedded elsewhere, no forms posted away.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The headers every response carries; JSON is never cached (it holds
/// messages).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if json {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An error answered as `{"error": {code, message, data}}` with the status
/// [`status_of`] its code.
#[derive(Debug)]
pub struct ApiError(pub ErrorObject);

impl From<ErrorObject> for ApiError {
    fn from(e: ErrorObject) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let retry_after = (self.0.code == code::BUSY)
            .then(|| self.0.data.as_ref()?.get("retry_after_ms")?.as_u64())
            .flatten()
            .map(|ms| ms.div_ceil(1000).max(1));
        let body = serde_json::json!({ "error": self.0 });
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The HTTP status of an error: the one table from RPC codes to statuses
/// (README.md documents it).
pub fn status_of(error: &ErrorObject) -> StatusCode {
    match error.code {
        code::PARSE_ERROR
        | code::INVALID_REQUEST
        | code::INVALID_PARAMS
        | code::EMPTY_MESSAGE
        | code::INVALID_CHANNEL
        | code::INVALID_NICK
        | code::UNKNOWN_SUBSCRIPTION => StatusCode::BAD_REQUEST,
        code::MESSAGE_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        code::METHOD_NOT_FOUND | code::UNKNOWN_MESSAGE_ID | code::UNKNOWN_RECIPIENT => {
            StatusCode::NOT_FOUND
        }
        code::AMBIGUOUS_RECIPIENT | code::NOT_IN_CLUSTER => StatusCode::CONFLICT,
        code::DIRECT_REFUSED => {
            let reason = error
                .data
                .as_ref()
                .and_then(|d| d.get("reason"))
                .and_then(|r| r.as_str());
            match reason {
                Some("too_large") => StatusCode::PAYLOAD_TOO_LARGE,
                Some("queue_full") => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::CONFLICT,
            }
        }
        code::TOO_MANY_SUBSCRIPTIONS => StatusCode::TOO_MANY_REQUESTS,
        code::BUSY => StatusCode::SERVICE_UNAVAILABLE,
        code::FOREIGN_CURSOR => StatusCode::GONE,
        code::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
        code::FORBIDDEN_ORIGIN => StatusCode::FORBIDDEN,
        code::JOIN_FAILED => StatusCode::BAD_GATEWAY,
        code::NO_CLUSTER_KEY | code::KEYRING_REFUSED | code::HTTP_DISABLED => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError(ErrorObject::new(
        code::METHOD_NOT_FOUND,
        format!(
            "no such endpoint: {} {} (see README.md, \"Web chat and HTTP API\")",
            request.method(),
            request.uri().path()
        ),
    ))
}

/// `GET /login?token=T`.
#[derive(Debug, serde::Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// How long the login cookie lasts (30 days); the token itself lasts as
/// long as the secret.
const LOGIN_MAX_AGE_S: u64 = 30 * 24 * 3600;

/// The login link: a valid token is set as an HttpOnly, SameSite=Strict
/// cookie (scripts cannot read it, other sites cannot send it), and a page
/// that moves on to `/`. Not a redirect: a browser that followed the link
/// from another site would drop a Strict cookie on the redirect.
async fn login(State(gateway): State<Arc<Gateway>>, Query(query): Query<LoginQuery>) -> Response {
    let guard::Login::Token(key) = &gateway.guard.login else {
        // No login here: straight on to the page.
        return Html(page::LOGGED_IN).into_response();
    };
    match query
        .token
        .as_deref()
        .and_then(|t| key.verify(t).map(|_| t))
    {
        Some(token) => {
            let cookie = format!(
                "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={LOGIN_MAX_AGE_S}",
                guard::TOKEN_COOKIE
            );
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.insert(header::SET_COOKIE, value);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (headers, Html(page::LOGGED_IN)).into_response()
        }
        None => (StatusCode::UNAUTHORIZED, Html(page::LOGIN_REFUSED)).into_response(),
    }
}

/// The web chat's files, compiled in (no CDN, nothing to install).
mod page {
    use axum::http::header;
    use axum::response::{Html, IntoResponse};

    /// After a login: on to the page (a meta refresh, not a script: the
    /// CSP allows no inline script).
    pub const LOGGED_IN: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
        <meta http-equiv=\"refresh\" content=\"0;url=/\"><title>rossip</title></head>\
        <body><p>Logged in. <a href=\"/\">Open the chat</a>.</p></body></html>";

    /// A login link that is not (any longer) valid.
    pub const LOGIN_REFUSED: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
        <title>rossip: login refused</title></head><body><p>This login link is not valid \
        (any more). Run <code>rossipctl web</code> on the daemon's host, as your user, and \
        open the link it prints.</p></body></html>";

    const INDEX: &str = include_str!("../../web/index.html");
    const SCRIPT: &str = include_str!("../../web/app.js");
    const STYLE: &str = include_str!("../../web/style.css");
    const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
        <rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#2a6f97\"/>\
        <path d=\"M4 4h8v6H8l-3 3v-3H4z\" fill=\"#fff\"/></svg>";

    pub async fn index() -> Html<&'static str> {
        Html(INDEX)
    }

    pub async fn script() -> impl IntoResponse {
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            SCRIPT,
        )
    }

    pub async fn style() -> impl IntoResponse {
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
    }

    pub async fn favicon() -> impl IntoResponse {
        ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_status() {
        let status = |c: i64| status_of(&ErrorObject::new(c, "x"));
        assert_eq!(status(code::INVALID_PARAMS), StatusCode::BAD_REQUEST);
        assert_eq!(status(code::PARSE_ERROR), StatusCode::BAD_REQUEST);
        assert_eq!(status(code::INVALID_NICK), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(code::MESSAGE_TOO_LARGE),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(status(code::UNKNOWN_RECIPIENT), StatusCode::NOT_FOUND);
        assert_eq!(status(code::UNKNOWN_MESSAGE_ID), StatusCode::NOT_FOUND);
        assert_eq!(status(code::AMBIGUOUS_RECIPIENT), StatusCode::CONFLICT);
        assert_eq!(status(code::NOT_IN_CLUSTER), StatusCode::CONFLICT);
        assert_eq!(status(code::BUSY), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(code::FOREIGN_CURSOR), StatusCode::GONE);
        assert_eq!(status(code::UNAUTHORIZED), StatusCode::UNAUTHORIZED);
        assert_eq!(status(code::FORBIDDEN_ORIGIN), StatusCode::FORBIDDEN);
        assert_eq!(
            status(code::INTERNAL_ERROR),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let refused = |reason: &str| {
            status_of(&ErrorObject::with_data(
                code::DIRECT_REFUSED,
                "x",
                serde_json::json!({ "reason": reason }),
            ))
        };
        assert_eq!(refused("queue_full"), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused("too_large"), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
