//! The HTTP/WebSocket gateway (`rossipd --http`) against real daemons on
//! loopback: the page and its headers, every JSON endpoint and its errors
//! (the RPC code kept, with its HTTP status), the Host/Origin refusal, the
//! token login (`--http-login token`, `rossipctl web`), who a loopback
//! request speaks for, the WebSocket's events and resume across a restart,
//! and the limits.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use rossip_proto::rpc::code;
use rossip_tests::ctl::rossipctl;
use rossip_tests::daemon::{Daemon, DaemonBuilder};
use rossip_tests::wait::wait_until;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};

/// How long one HTTP request or WebSocket frame may take: generous for a
/// loaded 2-core machine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a condition polled across requests may take to hold.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A loopback daemon with the gateway on an ephemeral loopback port.
fn web_daemon(name: &str) -> DaemonBuilder {
    Daemon::builder(name)
        .loopback()
        .args(["--http", "127.0.0.1:0"])
}

/// The gateway's address, from `status`.
fn http_addr(daemon: &Daemon) -> SocketAddr {
    let http = daemon
        .status()
        .http
        .unwrap_or_else(|| panic!("{} reports no http in status", daemon.name()));
    http.addr.parse().expect("an IP:PORT")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// An answer: status, headers, and the body as JSON (`Value::Null` if it
/// is not JSON) and as text.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    /// The error code of an error answer.
    fn code(&self) -> i64 {
        self.json["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error answer: {self:?}"))
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    /// The body, which must be a success.
    fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        self.json
    }
}

/// A client of one gateway.
struct Web {
    base: String,
    client: reqwest::Client,
}

impl Web {
    fn new(addr: SocketAddr) -> Web {
        Web {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client"),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the request is answered");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("the body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_with(path, body, &[]).await
    }

    async fn post_with(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }
}

/// The page loads without a login, with the security headers; an unknown
/// path is a JSON 404.
#[test]
fn the_page_is_served_with_its_security_headers() {
    let daemon = web_daemon("page").spawn();
    let web = Web::new(http_addr(&daemon));
    runtime().block_on(async {
        let page = web.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
        assert!(page.text.contains("/app.js"), "{}", page.text);
        let csp = page.header(header::CONTENT_SECURITY_POLICY);
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "CSP {csp:?} lacks {part:?}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(page.header(header::REFERRER_POLICY), "no-referrer");

        let script = web.get("/app.js").await;
        assert_eq!(script.status, StatusCode::OK);
        assert!(script.header(header::CONTENT_TYPE).starts_with("text/javascript"));
        let style = web.get("/style.css").await;
        assert!(style.header(header::CONTENT_TYPE).starts_with("text/css"));
        let icon = web.get("/favicon.svg").await;
        assert_eq!(icon.header(header::CONTENT_TYPE), "image/svg+xml");

        let missing = web.get("/no/such/thing").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
        assert_eq!(missing.code(), code::METHOD_NOT_FOUND);
        assert_eq!(missing.header(header::CACHE_CONTROL), "no-store");
        assert_eq!(missing.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    });
}

/// On loopback only the gateway's own Host goes, and an Origin must be
/// that Host: a DNS-rebinding page or another site gets 403 (-32019), on
/// the page, the API and the WebSocket upgrade alike.
#[test]
fn a_foreign_host_or_origin_is_refused() {
    let daemon = web_daemon("origin").spawn();
    let addr = http_addr(&daemon);
    let port = addr.port();
    let web = Web::new(addr);
    runtime().block_on(async {
        for host in [format!("localhost:{port}"), format!("[::1]:{port}")] {
            let ok = web.get_with("/", &[("host", &host)]).await;
            assert_eq!(ok.status, StatusCode::OK, "Host {host}: {ok:?}");
        }
        let own = format!("http://127.0.0.1:{port}");
        for path in ["/", "/status", "/ws"] {
            let rebound = web
                .get_with(path, &[("host", &format!("evil.example:{port}"))])
                .await;
            assert_eq!(rebound.status, StatusCode::FORBIDDEN, "{path}: {rebound:?}");
            assert_eq!(rebound.code(), code::FORBIDDEN_ORIGIN);
            let cross = web.get_with(path, &[("origin", "http://evil.example")]).await;
            assert_eq!(cross.status, StatusCode::FORBIDDEN, "{path}: {cross:?}");
            assert_eq!(cross.code(), code::FORBIDDEN_ORIGIN);
        }
        let same = web.get_with("/status", &[("origin", &own)]).await;
        assert_eq!(same.status, StatusCode::OK, "{same:?}");
        let post = web
            .post_with("/send", json!({"text": "x"}), &[("origin", "http://evil.example")])
            .await;
        assert_eq!(post.status, StatusCode::FORBIDDEN, "{post:?}");

        // The WebSocket upgrade, from another site's page.
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "origin",
            "http://evil.example".parse().expect("a header value"),
        );
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN);
            }
            other => panic!("a cross-site WebSocket was not refused: {other:?}"),
        }
    });
    assert_eq!(
        daemon.client().history().len(),
        0,
        "nothing was sent by the refused requests"
    );
}

/// `--http-login token`: nothing but the page without the token; the
/// link `rossipctl web` prints sets it as an HttpOnly, SameSite=Strict
/// cookie; the cookie and a Bearer header both work; a wrong token is 401.
#[test]
fn token_login_guards_every_request() {
    let daemon = web_daemon("token").args(["--http-login", "token"]).spawn();
    let addr = http_addr(&daemon);
    assert!(daemon.status().http.expect("http").login);
    let secret = daemon.state_dir().join("http-secret");
    assert_eq!(rossip_tests::sys::mode(&secret) & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&secret).expect("the secret").len(), 32);

    let out = rossipctl(daemon.socket(), &["--json", "web"]);
    out.assert_success();
    let link = &out.json_lines()[0];
    assert_eq!(link["login"], true, "{link}");
    let url = link["url"].as_str().expect("a url");
    let prefix = format!("http://{addr}/login?token=");
    let token = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} does not start with {prefix}"));
    let human = rossipctl(daemon.socket(), &["web"]);
    human.assert_success();
    assert_eq!(human.stdout.trim(), url);
    assert!(human.stderr.contains("do not share"), "{}", human.stderr);

    let web = Web::new(addr);
    runtime().block_on(async {
        let page = web.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "the page explains the login");
        for path in ["/status", "/me", "/ws"] {
            let refused = web.get(path).await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}: {refused:?}");
            assert_eq!(refused.code(), code::UNAUTHORIZED);
            assert!(refused.text.contains("rossipctl web"), "{}", refused.text);
        }
        let send = web.post("/send", json!({"text": "no token"})).await;
        assert_eq!(send.status, StatusCode::UNAUTHORIZED);

        let login = web.get(&format!("/login?token={token}")).await;
        assert_eq!(login.status, StatusCode::OK, "{login:?}");
        let cookie = login.header(header::SET_COOKIE).to_owned();
        for part in ["rossip_token=", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(part), "cookie {cookie:?} lacks {part}");
        }
        assert!(login.text.contains("http-equiv=\"refresh\""), "{}", login.text);
        assert!(!login.text.contains("<script"), "{}", login.text);
        let pair = cookie.split(';').next().expect("name=value");
        assert_eq!(pair, format!("rossip_token={token}"));

        let with_cookie = web.get_with("/status", &[("cookie", pair)]).await;
        assert_eq!(with_cookie.status, StatusCode::OK, "{with_cookie:?}");
        let bearer = format!("Bearer {token}");
        let with_bearer = web.get_with("/status", &[("authorization", &bearer)]).await;
        assert_eq!(with_bearer.status, StatusCode::OK, "{with_bearer:?}");

        // A token for another user, made with another secret; and one
        // digit changed.
        let mut altered = token.to_owned();
        let last = altered.pop().expect("a digit");
        altered.push(if last == '0' { '1' } else { '0' });
        for bad in [altered.as_str(), "YWxpY2U.00", "garbage"] {
            let refused = web
                .get_with("/status", &[("authorization", &format!("Bearer {bad}"))])
                .await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{bad}: {refused:?}");
            let login = web.get(&format!("/login?token={bad}")).await;
            assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{bad}");
            assert!(login.headers.get(header::SET_COOKIE).is_none());
        }
    });
}

/// `rossipctl web` on a loopback gateway prints the page's address; without
/// `--http` it fails with -32017 and says how to turn it on.
#[test]
fn rossipctl_web_prints_the_address_or_says_it_is_off() {
    let daemon = web_daemon("link").spawn();
    let addr = http_addr(&daemon);
    assert!(!daemon.status().http.expect("http").login);
    let out = rossipctl(daemon.socket(), &["web"]);
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("http://{addr}/"));
    assert!(
        !daemon.state_dir().join("http-secret").exists(),
        "no secret is made when no token is needed"
    );

    let plain = Daemon::builder("nohttp").loopback().spawn();
    assert!(plain.status().http.is_none());
    let off = rossipctl(plain.socket(), &["web"]);
    assert_eq!(off.code, Some(1), "{off:?}");
    assert!(off.stderr.contains("--http"), "{}", off.stderr);
    let error = plain
        .client()
        .call("web.link", json!({}))
        .expect_err("web.link fails");
    assert_eq!(error.code, code::HTTP_DISABLED);
}

/// A request body over 1 MiB is refused with 413 and the daemon goes on.
#[test]
fn a_body_over_the_limit_is_413_and_the_daemon_goes_on() {
    let daemon = web_daemon("body").spawn();
    let web = Web::new(http_addr(&daemon));
    runtime().block_on(async {
        let huge = json!({ "text": "x".repeat(1024 * 1024 + 10) });
        let refused = web.post("/send", huge).await;
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", refused.text);
        assert_eq!(refused.code(), code::MESSAGE_TOO_LARGE);
        let status = web.get("/status").await.ok();
        assert_eq!(status["name"], "body");
    });
    assert_eq!(daemon.client().history().len(), 0);
}
