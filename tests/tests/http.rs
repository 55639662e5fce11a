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
use tokio_tungstenite::WebSocketStream;
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
        assert!(
            script
                .header(header::CONTENT_TYPE)
                .starts_with("text/javascript")
        );
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
            let cross = web
                .get_with(path, &[("origin", "http://evil.example")])
                .await;
            assert_eq!(cross.status, StatusCode::FORBIDDEN, "{path}: {cross:?}");
            assert_eq!(cross.code(), code::FORBIDDEN_ORIGIN);
        }
        let same = web.get_with("/status", &[("origin", &own)]).await;
        assert_eq!(same.status, StatusCode::OK, "{same:?}");
        let post = web
            .post_with(
                "/send",
                json!({"text": "x"}),
                &[("origin", "http://evil.example")],
            )
            .await;
        assert_eq!(post.status, StatusCode::FORBIDDEN, "{post:?}");

        // The WebSocket upgrade, from another site's page, and under a
        // rebound name.
        let evil_host = format!("evil.example:{port}");
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("host", evil_host.as_str()),
        ] {
            let mut request = format!("ws://{addr}/ws")
                .into_client_request()
                .expect("a request");
            request
                .headers_mut()
                .insert(name, value.parse().expect("a header value"));
            match tokio_tungstenite::connect_async(request).await {
                Err(tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
                }
                other => panic!("a WebSocket with {name}: {value} was not refused: {other:?}"),
            }
        }
        // The same upgrade with the gateway's own Origin is served.
        let mut own_socket = open_ws(addr, "", &[("origin", &own)]).await;
        assert_eq!(
            next_frame(&mut own_socket).await.expect("open")["kind"],
            "subscribed"
        );
    });
    assert_eq!(
        daemon.client().history().len(),
        0,
        "nothing was sent by the refused requests"
    );
    let http = daemon.status().http.expect("http");
    assert!(http.forbidden >= 9, "counted: {http:?}");
    assert_eq!(http.unauthorized, 0, "{http:?}");
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
            assert_eq!(
                refused.status,
                StatusCode::UNAUTHORIZED,
                "{path}: {refused:?}"
            );
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
        assert!(
            login.text.contains("http-equiv=\"refresh\""),
            "{}",
            login.text
        );
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
            assert_eq!(
                refused.status,
                StatusCode::UNAUTHORIZED,
                "{bad}: {refused:?}"
            );
            let login = web.get(&format!("/login?token={bad}")).await;
            assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{bad}");
            assert!(login.headers.get(header::SET_COOKIE).is_none());
        }
    });
    let http = daemon.status().http.expect("http");
    assert!(http.unauthorized >= 7, "counted: {http:?}");
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
        assert_eq!(
            refused.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            refused.text
        );
        assert_eq!(refused.code(), code::MESSAGE_TOO_LARGE);
        let status = web.get("/status").await.ok();
        assert_eq!(status["name"], "body");
    });
    assert_eq!(daemon.client().history().len(), 0);
}

/// Past 512 connections at once a client gets a 503 with a JSON error and
/// is closed; once one closes, requests are served again.
#[test]
fn connections_past_the_limit_get_503() {
    const LIMIT: usize = 512;
    let daemon = web_daemon("limit").spawn();
    let addr = http_addr(&daemon);
    let mut open: Vec<std::net::TcpStream> = (0..LIMIT)
        .map(|i| {
            std::net::TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("connection {i} of {LIMIT}: {e}"))
        })
        .collect();
    let fetch = || rossip_tests::plain_http::get(addr, "/status", &[]);
    let refused = fetch().expect("an answer past the limit");
    assert_eq!(refused.status, 503, "{}", refused.body);
    let error = refused.json().expect("JSON");
    assert_eq!(error["error"]["code"], code::BUSY, "{error}");

    open.truncate(LIMIT - 1);
    let served = wait_until(
        SETTLE_TIMEOUT,
        "a request served once a connection closed",
        || {
            let answer = fetch().ok()?;
            (answer.status == 200).then_some(answer.body)
        },
    );
    assert!(served.contains("\"name\":\"limit\""), "{served}");
    let http = daemon.status().http.expect("http");
    assert!(http.refused >= 1, "counted: {http:?}");
    // (The open connections are not counted here: on a slow machine the
    // header timeout may already have closed them, as they send nothing.)
    drop(open);
    wait_until(SETTLE_TIMEOUT, "the closed connections uncounted", || {
        let http = daemon.status().http.expect("http");
        (http.connections == 0)
            .then_some(())
            .ok_or_else(|| format!("{http:?}"))
    });
}

/// How long the gateway lets a request head take (`HEADER_READ_TIMEOUT`
/// in rossipd/src/http/conn.rs).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The start of a request whose head is never finished.
fn partial_head(addr: SocketAddr) -> String {
    format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ")
}

/// Whether the server closed `stream`: a read waits up to `wait` and sees
/// the end (or a reset), not a timeout. What the server may have written
/// before closing is read and ignored.
fn closed_by_server(stream: &mut std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read as _;
    stream.set_read_timeout(Some(wait)).expect("a read timeout");
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A client trickling its request head a byte every 2 s (which resets an
/// idle timer each time) is closed once the head has taken longer than
/// the header timeout.
#[test]
fn a_request_head_trickled_a_byte_at_a_time_is_cut_off() {
    use std::io::Write as _;

    let daemon = web_daemon("slowloris").spawn();
    let addr = http_addr(&daemon);
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let started = std::time::Instant::now();
    stream
        .write_all(partial_head(addr).as_bytes())
        .expect("the start of a head");
    // Generous for a loaded machine, still far below the 120 s idle timer
    // that each byte would reset.
    let deadline = HEADER_READ_TIMEOUT + Duration::from_secs(30);
    loop {
        if closed_by_server(&mut stream, Duration::from_secs(2)) {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "a trickled head still open after {:?}",
            started.elapsed()
        );
        if stream.write_all(b"x").is_err() {
            break; // Closed while this waited.
        }
    }
    assert!(
        started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );
    // The daemon serves on.
    let rt = runtime();
    rt.block_on(Web::new(addr).get("/status")).ok();
}

/// Connections that each hold every slot with an unfinished head (and a
/// byte now and then) lock nobody out for longer than the header timeout.
#[test]
fn a_flood_of_unfinished_heads_does_not_lock_out_a_client() {
    use std::io::Write as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const LIMIT: usize = 512;
    let daemon = web_daemon("flood").spawn();
    let addr = http_addr(&daemon);
    let head = partial_head(addr);
    let flood: Vec<std::net::TcpStream> = (0..LIMIT)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("connection {i} of {LIMIT}: {e}"));
            // A refused one (answered 503 and closed) fails here or later:
            // no matter, the rest still fill the slots.
            let _ = stream.write_all(head.as_bytes());
            stream
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut flood = flood;
            while !stop.load(Ordering::Relaxed) {
                for stream in &mut flood {
                    let _ = stream.write_all(b"x");
                }
                // Not a wait for a condition: the pace of the attack.
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };
    let fetch = || rossip_tests::plain_http::get(addr, "/status", &[]);
    let served = wait_until(
        HEADER_READ_TIMEOUT + SETTLE_TIMEOUT,
        "a request served while the flood goes on",
        || {
            let answer = fetch()?;
            (answer.status == 200)
                .then(|| answer.body.clone())
                .ok_or_else(|| format!("status {}: {}", answer.status, answer.body))
        },
    );
    assert!(served.contains("\"name\":\"flood\""), "{served}");
    stop.store(true, Ordering::Relaxed);
    trickler.join().expect("the trickler");
}

/// A connection in the middle of sending its head does not hold up the
/// daemon's stop: it is closed at once, not waited for.
#[test]
fn sigterm_does_not_wait_for_an_unfinished_head() {
    use std::io::Write as _;

    let mut daemon = web_daemon("halfhead").spawn();
    let addr = http_addr(&daemon);
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(partial_head(addr).as_bytes())
        .expect("the start of a head");
    wait_until(SETTLE_TIMEOUT, "the connection counted", || {
        let http = daemon.status().http.expect("http");
        (http.connections >= 1)
            .then_some(())
            .ok_or_else(|| format!("{http:?}"))
    });
    daemon.stop_with_sigterm(SETTLE_TIMEOUT);
    let log = daemon.log();
    assert!(
        !log.contains("did not close within"),
        "the shutdown waited for the unfinished head:\n{log}"
    );
    drop(stream);
}

/// The user name of this test's uid, as rossipd finds it (NSS), via the
/// RPC `nick` of a fresh connection (which shows the caller's user).
fn my_user(daemon: &Daemon) -> String {
    let me = daemon
        .client()
        .call("nick", json!({}))
        .expect("nick answers");
    me["user"].as_str().expect("a user").to_owned()
}

/// Every JSON endpoint answers as its RPC method does; a loopback request
/// speaks for the kernel's owner of its socket.
#[test]
fn the_json_endpoints_answer_as_the_rpc_methods() {
    let daemon = web_daemon("alpha").spawn();
    let web = Web::new(http_addr(&daemon));
    let user = my_user(&daemon);
    runtime().block_on(async {
        let status = web.get("/status").await.ok();
        assert_eq!(status["name"], "alpha");
        assert_eq!(status["http"]["login"], false);
        let me = web.get("/me").await.ok();
        assert_eq!(me["user"], user.as_str(), "{me}");
        assert_eq!(me["from"], format!("{user}@alpha"), "{me}");
        assert_eq!(me["node_name"], "alpha");
        assert_eq!(me["node"], status["id"]);
        assert!(me["nick"].is_null(), "{me}");

        let sent = web
            .post("/send", json!({"text": "hello from the web"}))
            .await
            .ok();
        assert!(sent["id"].is_string(), "{sent}");
        let also = web
            .post("/send", json!({"msg": "on a channel", "channel": "ops"}))
            .await
            .ok();
        assert!(also["id"].is_string(), "{also}");

        let history = web.get("/messages?n=10").await.ok();
        let messages = history["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 2, "{history}");
        assert_eq!(messages[0]["text"], "hello from the web");
        assert_eq!(
            messages[0]["user"],
            user.as_str(),
            "sent as the kernel says"
        );
        assert_eq!(messages[0]["channel"], "general");
        assert_eq!(messages[1]["channel"], "ops");
        assert!(history["cursor"].is_string());
        let ops = web.get("/messages?channel=ops").await.ok();
        assert_eq!(ops["messages"].as_array().expect("messages").len(), 1);
        let after = messages[0]["cursor"].as_str().expect("a cursor");
        let rest = web.get(&format!("/messages?after={after}")).await.ok();
        let rest = rest["messages"].as_array().expect("messages");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0]["text"], "on a channel");

        let channels = web.get("/channels").await.ok();
        let names: Vec<&str> = channels["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(
            names.contains(&"general") && names.contains(&"ops"),
            "{channels}"
        );
        let peers = web.get("/peers?all=true").await.ok();
        assert!(peers["peers"].is_array(), "{peers}");
        let who = web.get("/who").await.ok();
        assert!(who["users"].is_array(), "{who}");

        let nick = web.post("/nick", json!({"nick": "Web Ann"})).await.ok();
        assert_eq!(nick, json!({"user": user, "nick": "Web Ann"}));
        let me = web.get("/me").await.ok();
        assert_eq!(me["nick"], "Web Ann");
        let cleared = web.post("/nick", json!({"clear": true})).await.ok();
        assert!(cleared["nick"].is_null(), "{cleared}");
    });
    // The RPC side sees the same messages, from the same user.
    let history = daemon.client().history();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|m| m.user == user), "{history:?}");
}

/// Errors keep their RPC code, with the HTTP status of the table.
#[test]
fn errors_keep_their_code_with_an_http_status() {
    let daemon = web_daemon("errors").spawn();
    let other = web_daemon("other").spawn();
    let web = Web::new(http_addr(&daemon));
    other.client().send("elsewhere");
    let elsewhere = other.client().history().remove(0);
    runtime().block_on(async {
        let cases: Vec<(Answer, StatusCode, i64)> = vec![
            (
                web.post("/send", json!({"text": ""})).await,
                StatusCode::BAD_REQUEST,
                code::EMPTY_MESSAGE,
            ),
            (
                web.post("/send", json!({"text": "x", "channel": "no spaces"}))
                    .await,
                StatusCode::BAD_REQUEST,
                code::INVALID_CHANNEL,
            ),
            (
                web.post("/send", json!({"text": "x", "bogus": 1})).await,
                StatusCode::BAD_REQUEST,
                code::INVALID_PARAMS,
            ),
            (
                web.post("/send", json!({"text": "x", "to": "nobody-here"}))
                    .await,
                StatusCode::NOT_FOUND,
                code::UNKNOWN_RECIPIENT,
            ),
            (
                web.post("/send", json!({"text": "x".repeat(70 * 1024)}))
                    .await,
                StatusCode::PAYLOAD_TOO_LARGE,
                code::MESSAGE_TOO_LARGE,
            ),
            (
                web.get("/messages?after=not-a-cursor").await,
                StatusCode::BAD_REQUEST,
                code::INVALID_PARAMS,
            ),
            (
                web.get(&format!("/messages?after={}", elsewhere.cursor))
                    .await,
                StatusCode::GONE,
                code::FOREIGN_CURSOR,
            ),
            (
                web.get(&format!("/messages?since={}", elsewhere.id)).await,
                StatusCode::NOT_FOUND,
                code::UNKNOWN_MESSAGE_ID,
            ),
            (
                web.post("/nick", json!({"nick": "a@b"})).await,
                StatusCode::BAD_REQUEST,
                code::INVALID_NICK,
            ),
        ];
        for (answer, status, code) in cases {
            assert_eq!((answer.status, answer.code()), (status, code), "{answer:?}");
            assert!(answer.json["error"]["message"].is_string(), "{answer:?}");
            assert_eq!(answer.header(header::CACHE_CONTROL), "no-store");
        }
        let not_json = web
            .send(
                web.client
                    .post(format!("{}/send", web.base))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body("{not json"),
            )
            .await;
        assert_eq!(not_json.status, StatusCode::BAD_REQUEST, "{not_json:?}");
        assert_eq!(not_json.code(), code::PARSE_ERROR);
        let form = web
            .send(
                web.client
                    .post(format!("{}/send", web.base))
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(r#"{"text":"a form post"}"#),
            )
            .await;
        assert_eq!(form.status, StatusCode::BAD_REQUEST, "{form:?}");
        assert_eq!(form.code(), code::INVALID_REQUEST);
        let wrong_method = web.get("/send").await;
        assert_eq!(
            wrong_method.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{wrong_method:?}"
        );
    });
    assert_eq!(daemon.client().history().len(), 0, "nothing was sent");
}

/// A request from another local user speaks for that user: the kernel's
/// owner of the client socket (curl run as uid 65534 through setpriv).
/// Needs root, curl and setpriv; without them it says so and passes.
#[test]
fn a_request_of_another_user_speaks_for_that_user() {
    if rossip_tests::sys::effective_uid() != Some(0) {
        rossip_tests::sys::skipped(
            "a_request_of_another_user_speaks_for_that_user",
            "needs root",
        );
        return;
    }
    let (Some(curl), Some(setpriv)) = (
        rossip_tests::sys::find_program("curl"),
        rossip_tests::sys::find_program("setpriv"),
    ) else {
        rossip_tests::sys::skipped(
            "a_request_of_another_user_speaks_for_that_user",
            "needs curl and setpriv",
        );
        return;
    };
    let daemon = web_daemon("users").spawn();
    let addr = http_addr(&daemon);
    let run = |args: &[&str]| -> Value {
        let mut full = vec![
            "--reuid=65534".to_owned(),
            "--regid=65534".to_owned(),
            "--clear-groups".to_owned(),
            curl.display().to_string(),
            "--silent".to_owned(),
            "--noproxy".to_owned(),
            "*".to_owned(),
            "--max-time".to_owned(),
            "30".to_owned(),
        ];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let out = rossip_tests::sys::run(&setpriv, &full).expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    };
    let me = run(&[&format!("http://{addr}/me")]);
    let nobody = me["user"].as_str().expect("a user").to_owned();
    assert_ne!(nobody, my_user(&daemon), "{me}");
    assert!(nobody == "nobody" || nobody == "uid65534", "{me}");
    let sent = run(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"text":"from nobody"}"#,
        &format!("http://{addr}/send"),
    ]);
    assert!(sent["id"].is_string(), "{sent}");
    let history = daemon.client().history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].user, nobody);
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws?QUERY` with headers.
async fn open_ws(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Socket {
    let mut request = format!("ws://{addr}/ws?{query}")
        .into_client_request()
        .expect("a request");
    for (name, value) in headers {
        request.headers_mut().insert(
            header::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    let (socket, _) =
        tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .expect("the upgrade in time")
            .expect("the upgrade");
    socket
}

/// The next JSON text frame (pings and pongs skipped); `None` when the
/// socket closed.
async fn next_frame<S>(socket: &mut WebSocketStream<S>) -> Option<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(REQUEST_TIMEOUT, socket.next())
            .await
            .expect("a frame in time");
        match frame {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(&text).expect("a JSON frame"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next `message` event's message.
async fn next_message<S>(socket: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = next_frame(socket).await.expect("the socket stays open");
        if frame["kind"] == "message" {
            return frame["message"].clone();
        }
    }
}

/// The WebSocket says who it is, then streams messages as RPC events;
/// `n` replays history first; a presence frame puts its user in `who`
/// for as long as the socket is open.
#[test]
fn the_websocket_streams_events_and_registers_presence() {
    let daemon = web_daemon("wsnode").spawn();
    let addr = http_addr(&daemon);
    let web = Web::new(addr);
    let user = my_user(&daemon);
    daemon.client().send("before the socket");
    runtime().block_on(async {
        let mut socket = open_ws(addr, "n=10&events=message,presence", &[]).await;
        let first = next_frame(&mut socket).await.expect("a first frame");
        assert_eq!(first["kind"], "subscribed", "{first}");
        assert_eq!(first["user"], user.as_str());
        assert_eq!(first["from"], format!("{user}@wsnode"));
        assert!(first["cursor"].is_string(), "{first}");
        let replayed = next_message(&mut socket).await;
        assert_eq!(replayed["text"], "before the socket");

        web.post("/send", json!({"text": "live"})).await.ok();
        let live = next_message(&mut socket).await;
        assert_eq!(live["text"], "live");
        assert_eq!(live["user"], user.as_str());
        assert!(live["cursor"].is_string());

        // Presence for the socket's life.
        socket
            .send(Message::Text(
                json!({"kind": "presence", "state": "away", "status": "lunch"})
                    .to_string()
                    .into(),
            ))
            .await
            .expect("send the presence frame");
        let event = loop {
            let frame = next_frame(&mut socket).await.expect("open");
            if frame["kind"] == "presence" {
                break frame;
            }
        };
        assert_eq!(event["presence"]["user"], user.as_str(), "{event}");
        assert_eq!(event["presence"]["state"], "away", "{event}");
        let who = web.get("/who").await.ok();
        let listed =
            who["users"].as_array().expect("users").iter().any(|u| {
                u["user"] == user.as_str() && u["state"] == "away" && u["status"] == "lunch"
            });
        assert!(listed, "{who}");

        // A bad frame is an error frame, and the socket goes on.
        socket
            .send(Message::Text(
                json!({"kind": "presence", "state": "gone"})
                    .to_string()
                    .into(),
            ))
            .await
            .expect("send");
        let error = next_frame(&mut socket).await.expect("open");
        assert_eq!(error["kind"], "error", "{error}");
        assert_eq!(error["error"]["code"], code::INVALID_PARAMS);

        socket.close(None).await.expect("close");
        drop(socket);
    });
    // The user leaves the chat with the socket.
    let web = Web::new(addr);
    let rt = runtime();
    wait_until(SETTLE_TIMEOUT, "the user gone from who", || {
        let who = rt.block_on(web.get("/who")).ok();
        let users = who["users"].as_array().cloned().unwrap_or_default();
        users
            .iter()
            .all(|u| u["user"] != user.as_str())
            .then_some(())
            .ok_or_else(|| who.to_string())
    });
}

/// A follower that remembers the last message's cursor and reconnects with
/// `?after=` it misses nothing and sees nothing twice, also across a
/// restart of rossipd; a cursor of another store closes the socket with
/// -32012.
#[test]
fn the_websocket_resumes_after_a_cursor_across_a_restart() {
    let mut daemon = web_daemon("resume").spawn();
    let addr = http_addr(&daemon);
    let rt = runtime();
    let mut seen: Vec<String> = Vec::new();
    let cursor = rt.block_on(async {
        let mut socket = open_ws(addr, "", &[]).await;
        assert_eq!(
            next_frame(&mut socket).await.expect("open")["kind"],
            "subscribed"
        );
        let web = Web::new(addr);
        for i in 0..3 {
            web.post("/send", json!({"text": format!("first {i}")}))
                .await
                .ok();
        }
        let mut cursor = String::new();
        for _ in 0..3 {
            let message = next_message(&mut socket).await;
            seen.push(message["text"].as_str().expect("text").to_owned());
            cursor = message["cursor"].as_str().expect("a cursor").to_owned();
        }
        cursor
    });
    // Sent while nobody follows, and across a restart (a new port: the
    // address is asked again).
    daemon.client().send("while away 0");
    daemon.stop_with_sigterm(Duration::from_secs(30));
    daemon.restart();
    let addr = http_addr(&daemon);
    daemon.client().send("while away 1");
    rt.block_on(async {
        let mut socket = open_ws(addr, &format!("after={cursor}"), &[]).await;
        assert_eq!(
            next_frame(&mut socket).await.expect("open")["kind"],
            "subscribed"
        );
        Web::new(addr)
            .post("/send", json!({"text": "after"}))
            .await
            .ok();
        for _ in 0..3 {
            let message = next_message(&mut socket).await;
            seen.push(message["text"].as_str().expect("text").to_owned());
        }
    });
    assert_eq!(
        seen,
        [
            "first 0",
            "first 1",
            "first 2",
            "while away 0",
            "while away 1",
            "after"
        ],
        "no gap, no duplicate"
    );

    let other = web_daemon("elsewhere").spawn();
    other.client().send("x");
    let foreign = other.client().history()[0].cursor.clone();
    rt.block_on(async {
        let mut socket = open_ws(addr, &format!("after={foreign}"), &[]).await;
        let error = next_frame(&mut socket).await.expect("an error frame");
        assert_eq!(error["kind"], "error", "{error}");
        assert_eq!(error["error"]["code"], code::FOREIGN_CURSOR, "{error}");
        assert!(
            next_frame(&mut socket).await.is_none(),
            "then the socket closes"
        );
    });
}

/// A frame over 64 KiB closes that socket only: another socket of the same
/// gateway keeps its events, and the daemon goes on.
#[test]
fn an_oversized_frame_closes_only_its_socket() {
    let daemon = web_daemon("frames").spawn();
    let addr = http_addr(&daemon);
    runtime().block_on(async {
        let mut big = open_ws(addr, "", &[]).await;
        let mut other = open_ws(addr, "", &[]).await;
        assert_eq!(
            next_frame(&mut big).await.expect("open")["kind"],
            "subscribed"
        );
        assert_eq!(
            next_frame(&mut other).await.expect("open")["kind"],
            "subscribed"
        );
        let oversized = format!(
            "{{\"kind\":\"presence\",\"status\":\"{}\"}}",
            "x".repeat(70 * 1024)
        );
        // The write may fail once the server closed; the close is what counts.
        let _ = big.send(Message::Text(oversized.into())).await;
        assert!(
            next_frame(&mut big).await.is_none(),
            "the oversized socket closes"
        );

        Web::new(addr)
            .post("/send", json!({"text": "still here"}))
            .await
            .ok();
        assert_eq!(next_message(&mut other).await["text"], "still here");
    });
    assert_eq!(daemon.status().name, "frames");
}

/// A browser that stops reading holds only its position, as an RPC
/// subscriber does: once the history window moved past it, reading on
/// starts with a `lagged` frame (how many were lost, and the cursor the
/// stream goes on after), then the rest, up to the newest message.
#[test]
fn a_websocket_that_stops_reading_gets_lagged() {
    // Messages near the size limit fill the socket buffers (the client's
    // is kept small; the daemon's may grow to a few MB) in a few hundred
    // sends; a window of 20 is soon passed.
    const SENDS: usize = 200;
    let daemon = web_daemon("lazy")
        .log_level("info")
        .args(["--history", "20"])
        .spawn();
    let addr = http_addr(&daemon);
    let rt = runtime();
    let mut socket = rt.block_on(async {
        let tcp = tokio::net::TcpSocket::new_v4().expect("a socket");
        tcp.set_recv_buffer_size(64 * 1024)
            .expect("a small receive buffer");
        let stream = tcp.connect(addr).await.expect("connect");
        let request = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("a request");
        let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("the upgrade");
        assert_eq!(
            next_frame(&mut socket).await.expect("open")["kind"],
            "subscribed"
        );
        socket
    });
    // The socket is not read while this sends.
    let text = "z".repeat(60 * 1024);
    let mut sender = daemon.client();
    let accepted = sender
        .send_pipelined(
            (0..SENDS).map(|i| format!("{i:04} {text}")),
            16,
            SETTLE_TIMEOUT,
        )
        .expect("the sends are accepted");
    assert_eq!(accepted, SENDS);
    // Behind as it is, the socket still reads what the browser sends (its
    // pongs, its presence): a slow browser is not taken for a dead one.
    rt.block_on(async {
        socket
            .send(Message::Text(
                json!({"kind": "presence", "state": "away", "status": "slow"})
                    .to_string()
                    .into(),
            ))
            .await
            .expect("send the presence frame");
    });
    let web = Web::new(addr);
    wait_until(SETTLE_TIMEOUT, "the presence of the lagging socket", || {
        let who = rt.block_on(web.get("/who")).ok();
        let away = who["users"]
            .as_array()
            .is_some_and(|users| users.iter().any(|u| u["status"] == "slow"));
        away.then_some(()).ok_or_else(|| who.to_string())
    });
    sender.send("the end");
    // Lagged frames (one when reading resumes, maybe others while the
    // buffers filled), then messages, up to the last.
    let (dropped, lagged, messages) = rt.block_on(async {
        let (mut dropped, mut lagged, mut messages) = (0u64, 0usize, 0u64);
        loop {
            let frame = next_frame(&mut socket)
                .await
                .expect("the socket stays open");
            match frame["kind"].as_str() {
                Some("lagged") => {
                    assert!(frame["cursor"].is_string(), "{frame}");
                    dropped += frame["dropped"].as_u64().expect("dropped");
                    lagged += 1;
                }
                Some("message") if frame["message"]["text"] == "the end" => break,
                Some("message") => messages += 1,
                _ => panic!("unexpected frame {frame}"),
            }
        }
        (dropped, lagged, messages)
    });
    assert!(
        lagged > 0 && dropped > 0,
        "no lagged frame; {messages} messages read"
    );
    assert_eq!(
        messages + dropped,
        SENDS as u64,
        "every message read or counted as dropped ({lagged} lagged frames)"
    );
    assert!(daemon.status().subscriber_drops >= dropped);
}
