//! What the rest of the daemon knows of the gateway: where it listens,
//! whether it needs a login, and the link `rossipctl web` prints
//! (`web.link`), minted for the caller's own user.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use rossip_proto::rpc::{ErrorObject, HttpView, WebLinkResult, code};

use super::guard::{Guard, Login};
use super::token::TokenKey;
use crate::api::speaker::Speaker;
use crate::config::HttpLogin;

/// The gateway as `status` and `web.link` see it.
#[derive(Debug, Clone)]
pub struct WebAccess {
    /// The bound address.
    listen: SocketAddr,
    /// The address links name: the listener's, or for a wildcard bind
    /// (`0.0.0.0`, `::`) the node's advertised one.
    link_addr: SocketAddr,
    /// How users are known.
    login: Login,
}

impl WebAccess {
    /// The gateway bound to `listen`: a token is needed off loopback, or
    /// always with `--http-login token`; its secret is read (or created) in
    /// `state_dir` then. `advertise` names the node on a wildcard bind.
    pub fn open(
        listen: SocketAddr,
        login: HttpLogin,
        state_dir: &Path,
        advertise: IpAddr,
    ) -> anyhow::Result<WebAccess> {
        let needs_token = login == HttpLogin::Token || !listen.ip().is_loopback();
        let login = if needs_token {
            Login::Token(TokenKey::load_or_create(state_dir)?)
        } else {
            Login::PeerUid
        };
        let host = if listen.ip().is_unspecified() {
            advertise
        } else {
            listen.ip()
        };
        Ok(WebAccess {
            listen,
            link_addr: SocketAddr::new(host, listen.port()),
            login,
        })
    }

    /// The bound address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The listener's checks.
    pub fn guard(&self) -> Guard {
        Guard::new(self.listen, self.login.clone())
    }

    /// The gateway in `status` (its counters are added from
    /// [`super::Counters`]).
    pub fn view(&self) -> HttpView {
        HttpView {
            addr: self.listen.to_string(),
            login: matches!(self.login, Login::Token(_)),
            connections: 0,
            refused: 0,
            forbidden: 0,
            unauthorized: 0,
        }
    }

    /// The `web.link` answer for `speaker`: the page, or a login link with
    /// the speaker's token. A caller whose user is not known gets no token
    /// (-32013, as a `send` of theirs would).
    pub fn link(&self, speaker: &Speaker) -> Result<WebLinkResult, ErrorObject> {
        let base = format!("http://{}", self.link_addr);
        match &self.login {
            Login::PeerUid => Ok(WebLinkResult {
                url: format!("{base}/"),
                login: false,
            }),
            Login::Token(key) => {
                if speaker.user.is_empty() {
                    return Err(ErrorObject::new(
                        code::INVALID_NICK,
                        "rossipd cannot tell which user is calling, so it cannot make a login \
                         link for you",
                    ));
                }
                Ok(WebLinkResult {
                    url: format!("{base}/login?token={}", key.token_for(&speaker.user)),
                    login: true,
                })
            }
        }
    }
}

/// `web.link`: the link for `speaker`, or -32017 when the gateway is off
/// (`access` is `None`).
pub fn web_link(
    access: Option<&WebAccess>,
    speaker: &Speaker,
) -> Result<WebLinkResult, ErrorObject> {
    match access {
        Some(access) => access.link(speaker),
        None => Err(ErrorObject::new(
            code::HTTP_DISABLED,
            "the web chat is off: start rossipd with --http ADDR (e.g. --http 127.0.0.1:7466)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Speaker {
        Speaker {
            uid: Some(1000),
            user: "ann".into(),
        }
    }

    #[test]
    fn a_loopback_link_is_the_page_itself() {
        let dir = tempfile::tempdir().expect("temp dir");
        let web = WebAccess::open(
            "127.0.0.1:7466".parse().expect("addr"),
            HttpLogin::Auto,
            dir.path(),
            "192.0.2.7".parse().expect("ip"),
        )
        .expect("open");
        let link = web.link(&ann()).expect("link");
        assert_eq!(link.url, "http://127.0.0.1:7466/");
        assert!(!link.login && !web.view().login);
        assert!(
            !dir.path().join(super::super::token::SECRET_FILE).exists(),
            "no secret without tokens"
        );
    }

    #[test]
    fn a_lan_link_logs_the_caller_in_at_the_advertised_address() {
        let dir = tempfile::tempdir().expect("temp dir");
        let web = WebAccess::open(
            "0.0.0.0:7466".parse().expect("addr"),
            HttpLogin::Auto,
            dir.path(),
            "192.0.2.7".parse().expect("ip"),
        )
        .expect("open");
        let link = web.link(&ann()).expect("link");
        assert!(link.login && web.view().login);
        let token = link
            .url
            .strip_prefix("http://192.0.2.7:7466/login?token=")
            .expect(&link.url);
        let Login::Token(key) = &web.login else {
            panic!("token mode")
        };
        assert_eq!(key.verify(token).as_deref(), Some("ann"));
        let e = web.link(&Speaker::default()).expect_err("unknown user");
        assert_eq!(e.code, code::INVALID_NICK);
    }

    #[test]
    fn token_login_applies_on_loopback_too_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let web = WebAccess::open(
            "[::1]:7466".parse().expect("addr"),
            HttpLogin::Token,
            dir.path(),
            "192.0.2.7".parse().expect("ip"),
        )
        .expect("open");
        let link = web.link(&ann()).expect("link");
        assert!(
            link.url.starts_with("http://[::1]:7466/login?token="),
            "{}",
            link.url
        );
    }
}
