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
//! Bounded like the local socket: at most [`MAX_CONNECTIONS`](conn::MAX_CONNECTIONS) connections
//! (past it, a 503 and the connection closed), [`MAX_BODY_BYTES`] a
//! request body, [`IDLE_TIMEOUT`](conn::IDLE_TIMEOUT) without a byte either way, a request head
//! within [`HEADER_READ_TIMEOUT`](conn::HEADER_READ_TIMEOUT) and [`MAX_HEAD_BYTES`](conn::MAX_HEAD_BYTES).

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

/// Serves HTTP on `listener` until `cancel` fires, one task of `tasks` per
/// connection ([`conn::serve_connection`]); requests in progress then
/// finish, idle connections close (WebSockets close on `cancel`
/// themselves).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let mut listener = Limited::new(listener, tasks.clone(), gateway.counters.clone());
    let app = router(gateway);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = cancel.cancelled() => return,
        };
        tasks.spawn(conn::serve_connection(
            io,
            peer,
            app.clone(),
            cancel.clone(),
        ));
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
    if let Err(e) = guard.check_host_and_origin(request.uri(), request.headers()) {
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

/// `GET /login?token=T[&switch=1]`.
#[derive(Debug, serde::Deserialize)]
struct LoginQuery {
    token: Option<String>,
    /// Replace a login of another user (set by the confirmation page).
    switch: Option<String>,
}

/// How long the login cookie lasts (30 days); the token itself lasts as
/// long as the secret.
const LOGIN_MAX_AGE_S: u64 = 30 * 24 * 3600;

/// The login link: a valid token is set as an HttpOnly, SameSite=Strict
/// cookie (scripts cannot read it, other sites cannot send it), and a page
/// that moves on to `/`. Not a redirect: a browser that followed the link
/// from another site would drop a Strict cookie on the redirect.
async fn login(
    State(gateway): State<Arc<Gateway>>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    login_answer(&gateway.guard, query, &headers)
}

/// The answer to `/login`: the cookie set, a confirmation asked, or the
/// link refused.
fn login_answer(guard: &guard::Guard, query: LoginQuery, headers: &HeaderMap) -> Response {
    let guard::Login::Token(key) = &guard.login else {
        // No login here: straight on to the page.
        return Html(page::LOGGED_IN).into_response();
    };
    let Some((token, user)) = query
        .token
        .as_deref()
        .and_then(|t| key.verify(t).map(|user| (t, user)))
    else {
        return (StatusCode::UNAUTHORIZED, Html(page::LOGIN_REFUSED)).into_response();
    };
    let mut answer = HeaderMap::new();
    answer.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A link of another user must not silently replace the login in this
    // browser (a page could log the user in as someone else, and read what
    // they then send): ask first. This sees the current login only on a
    // same-site navigation: a SameSite=Strict cookie is not sent when the
    // link is followed from another site, so there the link logs in as
    // before (the page shows whose login it is).
    let current = guard.token_user(headers).ok().flatten();
    let switching = query.switch.is_some();
    if let Some(current) = current.filter(|current| *current != user && !switching) {
        let page = page::confirm_switch(&current, &user, token);
        return (answer, Html(page)).into_response();
    }
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={LOGIN_MAX_AGE_S}",
        guard::TOKEN_COOKIE
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        answer.insert(header::SET_COOKIE, value);
    }
    (answer, Html(page::LOGGED_IN)).into_response()
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

    /// Asks before a login link of `user` replaces the login of `current`:
    /// plain links, no script.
    pub fn confirm_switch(current: &str, user: &str, token: &str) -> String {
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>rossip: switch user?</title>\
             </head><body><p>This browser is logged in as <b>{current}</b>; the link logs in as \
             <b>{user}</b>.</p><p><a href=\"/login?token={token}&amp;switch=1\">Log in as {user}</a> \
             or <a href=\"/\">stay {current}</a>.</p></body></html>",
            current = escape(current),
            user = escape(user),
            token = escape(token),
        )
    }

    /// `text` safe in HTML text and attribute values.
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    }

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
    fn a_login_link_of_another_user_asks_before_replacing_the_login() {
        let key = token::TokenKey::from_secret([7; 32]);
        let guard = guard::Guard::new(
            "0.0.0.0:7466".parse().expect("addr"),
            guard::Login::Token(key.clone()),
        );
        let (ann, bob) = (key.token_for("ann"), key.token_for("bob"));
        let cookie = |token: &str| {
            let mut headers = HeaderMap::new();
            let value = format!("{}={token}", guard::TOKEN_COOKIE);
            headers.insert(
                header::COOKIE,
                HeaderValue::from_str(&value).expect("value"),
            );
            headers
        };
        let query = |token: &str, switch: bool| LoginQuery {
            token: Some(token.to_owned()),
            switch: switch.then(|| "1".to_owned()),
        };
        let sets_cookie = |r: &Response| r.headers().contains_key(header::SET_COOKIE);

        // No login yet, or the same user again: logged in at once.
        let fresh = login_answer(&guard, query(&bob, false), &HeaderMap::new());
        assert_eq!(fresh.status(), StatusCode::OK);
        assert!(sets_cookie(&fresh));
        let again = login_answer(&guard, query(&ann, false), &cookie(&ann));
        assert!(sets_cookie(&again));
        // Another user's link: a page asks, the cookie stays.
        let asked = login_answer(&guard, query(&bob, false), &cookie(&ann));
        assert_eq!(asked.status(), StatusCode::OK);
        assert!(!sets_cookie(&asked), "{:?}", asked.headers());
        // ... and its link switches.
        let switched = login_answer(&guard, query(&bob, true), &cookie(&ann));
        assert!(sets_cookie(&switched));
        let set = switched.headers()[header::SET_COOKIE]
            .to_str()
            .expect("text");
        assert!(
            set.starts_with(&format!("{}={bob};", guard::TOKEN_COOKIE)),
            "{set}"
        );
        // An invalid link is refused whatever the cookie.
        let refused = login_answer(&guard, query("x.y", true), &cookie(&ann));
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_switch_page_links_on_without_script() {
        let page = page::confirm_switch("ann", "<bob>", "Ym9i.00");
        assert!(
            page.contains("href=\"/login?token=Ym9i.00&amp;switch=1\""),
            "{page}"
        );
        assert!(page.contains("href=\"/\""), "{page}");
        assert!(
            page.contains("&lt;bob&gt;") && !page.contains("<bob>"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
    }

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
