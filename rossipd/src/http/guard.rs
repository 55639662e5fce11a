//! Who may use the gateway: the checks every request passes before a
//! handler runs.
//!
//! - Host: on a loopback listener the `Host` header must name the listener
//!   (`127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT`). A web page of
//!   another site whose name was made to resolve to 127.0.0.1 (DNS
//!   rebinding) sends its own name, and is refused.
//! - Origin: when a browser sends one, it must be `http://` + the Host
//!   header: a page of another origin may not drive the API (its requests
//!   would carry the user's cookie, or come from the user's own uid).
//! - Login: in token mode, a token in the `rossip_token` cookie or an
//!   `Authorization: Bearer` header, for everything but the static page
//!   ([`is_public`]), which must load to explain how to log in.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use rossip_proto::rpc::{ErrorObject, code};

use super::token::TokenKey;

/// The cookie the login link sets.
pub const TOKEN_COOKIE: &str = "rossip_token";

/// The paths served to anyone who passes the Host and Origin checks: the
/// page and what it loads, and the login link.
pub fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/index.html" | "/app.js" | "/style.css" | "/favicon.svg" | "/login"
    )
}

/// How a request's user is known.
#[derive(Debug, Clone)]
pub enum Login {
    /// By the kernel: the uid owning the client's loopback socket.
    PeerUid,
    /// By a token this key minted.
    Token(TokenKey),
}

/// The checks of one listener.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The listener's address; its port is what Host must carry on loopback.
    listen: SocketAddr,
    /// How users are known.
    pub login: Login,
}

impl Guard {
    /// The checks of a listener bound to `listen`.
    pub fn new(listen: SocketAddr, login: Login) -> Guard {
        Guard { listen, login }
    }

    /// Refuses a request whose Host or Origin is not this gateway's (403,
    /// [`code::FORBIDDEN_ORIGIN`]).
    pub fn check_host_and_origin(&self, headers: &HeaderMap) -> Result<(), ErrorObject> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        if self.listen.ip().is_loopback() {
            let port = self.listen.port();
            let allowed = [
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ];
            if !host.is_some_and(|host| allowed.iter().any(|a| a.eq_ignore_ascii_case(host))) {
                return Err(forbidden(format!(
                    "Host {} is not this gateway's; open http://127.0.0.1:{port}/",
                    host.unwrap_or("(none)")
                )));
            }
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let same = host.is_some_and(|host| {
                origin
                    .strip_prefix("http://")
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
            });
            if !same {
                return Err(forbidden(format!(
                    "requests from the web origin {origin:?} are refused: only this gateway's own \
                     page may use it"
                )));
            }
        }
        Ok(())
    }

    /// In token mode, the user a request's token logs in; `Ok(None)` when
    /// users are known by their uid instead. A missing or wrong token is
    /// 401 ([`code::UNAUTHORIZED`]).
    pub fn token_user(&self, headers: &HeaderMap) -> Result<Option<String>, ErrorObject> {
        let Login::Token(key) = &self.login else {
            return Ok(None);
        };
        let Some(token) = presented_token(headers) else {
            return Err(unauthorized("this gateway needs a login"));
        };
        key.verify(token)
            .map(Some)
            .ok_or_else(|| unauthorized("the login token is not valid (any more)"))
    }
}

/// The token of a request: a Bearer header, else the cookie.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer.or_else(|| {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == TOKEN_COOKIE).then(|| value.trim_matches('"'))
            })
    })
}

fn forbidden(message: String) -> ErrorObject {
    ErrorObject::new(code::FORBIDDEN_ORIGIN, message)
}

/// The 401 answer: what to do about it included.
pub fn unauthorized(why: &str) -> ErrorObject {
    ErrorObject::new(
        code::UNAUTHORIZED,
        format!(
            "{why}: run `rossipctl web` on the daemon's host as your user and open the link it \
             prints"
        ),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn loopback() -> Guard {
        Guard::new("127.0.0.1:7466".parse().expect("addr"), Login::PeerUid)
    }

    fn lan(key: &TokenKey) -> Guard {
        Guard::new(
            "0.0.0.0:7466".parse().expect("addr"),
            Login::Token(key.clone()),
        )
    }

    #[test]
    fn loopback_hosts_must_name_the_listener() {
        let g = loopback();
        for host in [
            "127.0.0.1:7466",
            "localhost:7466",
            "LocalHost:7466",
            "[::1]:7466",
        ] {
            assert!(
                g.check_host_and_origin(&headers(&[("host", host)])).is_ok(),
                "{host}"
            );
        }
        for host in [
            "evil.example:7466",
            "127.0.0.1:7467",
            "127.0.0.1",
            "localhost",
        ] {
            let e = g
                .check_host_and_origin(&headers(&[("host", host)]))
                .expect_err(host);
            assert_eq!(e.code, code::FORBIDDEN_ORIGIN);
        }
        assert!(g.check_host_and_origin(&headers(&[])).is_err(), "no Host");
    }

    #[test]
    fn an_origin_must_be_the_host_itself() {
        let g = loopback();
        let ok = headers(&[
            ("host", "127.0.0.1:7466"),
            ("origin", "http://127.0.0.1:7466"),
        ]);
        assert!(g.check_host_and_origin(&ok).is_ok());
        for origin in [
            "http://evil.example",
            "http://localhost:7466",
            "https://127.0.0.1:7466",
            "null",
        ] {
            let h = headers(&[("host", "127.0.0.1:7466"), ("origin", origin)]);
            assert!(g.check_host_and_origin(&h).is_err(), "{origin}");
        }
        // Off loopback any Host goes (a name or an address of the host), but
        // the Origin must still match it.
        let key = TokenKey::from_secret([1; 32]);
        let h = headers(&[
            ("host", "alpha.lan:7466"),
            ("origin", "http://alpha.lan:7466"),
        ]);
        assert!(lan(&key).check_host_and_origin(&h).is_ok());
        let h = headers(&[
            ("host", "alpha.lan:7466"),
            ("origin", "http://evil.example"),
        ]);
        assert!(lan(&key).check_host_and_origin(&h).is_err());
    }

    #[test]
    fn a_token_comes_from_the_bearer_header_or_the_cookie() {
        let key = TokenKey::from_secret([1; 32]);
        let token = key.token_for("ann");
        let g = lan(&key);
        let bearer = format!("Bearer {token}");
        let cookie = format!("theme=dark; {TOKEN_COOKIE}={token}");
        for h in [
            headers(&[("authorization", &bearer)]),
            headers(&[("cookie", &cookie)]),
        ] {
            assert_eq!(g.token_user(&h).expect("accepted").as_deref(), Some("ann"));
        }
        let e = g.token_user(&headers(&[])).expect_err("no token");
        assert_eq!(e.code, code::UNAUTHORIZED);
        assert!(e.message.contains("rossipctl web"), "{}", e.message);
        let wrong = TokenKey::from_secret([2; 32]).token_for("ann");
        let e = g
            .token_user(&headers(&[("cookie", &format!("{TOKEN_COOKIE}={wrong}"))]))
            .expect_err("wrong token");
        assert_eq!(e.code, code::UNAUTHORIZED);
        assert_eq!(
            loopback().token_user(&headers(&[])).expect("no login"),
            None
        );
    }

    #[test]
    fn the_page_is_public_and_the_api_is_not() {
        for path in ["/", "/app.js", "/style.css", "/favicon.svg", "/login"] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/status", "/send", "/ws", "/messages", "/app.js/x"] {
            assert!(!is_public(path), "{path}");
        }
    }
}
