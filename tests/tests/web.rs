//! The web chat in a real browser: headless Chromium, driven over WebDriver, in the hosts of
//! a namespaced LAN, each opening its own host's daemon (`rossipd --http <LAN addr>:8080`,
//! so a login token is needed) through the link `rossipctl web` prints there, as a person
//! at that machine would. What is checked is what a person sees: the DOM contract of the
//! page (`rossipd/web/README.md`): `#conn[data-state]`, `#messages li.msg[data-id]` with
//! `.from`, `.verified` and `.text`, the windows in `#channels`.
//!
//! They need root, iproute2, socat, chromium and chromium-driver; without them they print
//! one line and pass, except with `CI=true`, where they must run. Screenshots go to
//! `target/web-screenshots/` (their paths are printed).

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use rossip_proto::rpc::{HistoryResult, MessageView};
use rossip_tests::browser::{Browser, DESKTOP, Key, PHONE, WindowSize};
use rossip_tests::ctl::rossipctl_in;
use rossip_tests::daemon::Daemon;
use rossip_tests::netns::Lan;
use rossip_tests::netns_forward::NsForward;
use rossip_tests::{cluster, plain_http, sys};
use serde::Deserialize;
use serde_json::json;

/// The gateway's port on every host.
const HTTP_PORT: u16 = 8080;

/// A message from another host reaching a page: gossip to that host's daemon, then its
/// WebSocket, on a machine that runs three daemons and three browsers on two cores.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon restarted under a page: its start, the page's next retry (at most 5 s apart)
/// and the messages sent meanwhile reaching it from its peers; generous for two cores.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(90);

/// The gateway's "no valid login token" code (HTTP 401).
const UNAUTHORIZED: i64 = -32018;

/// A LAN whose every host runs a daemon with the web gateway on its LAN address.
/// Field order is drop order: daemons (and their logs) go before the `Lan`.
struct WebLan {
    daemons: Vec<Daemon>,
    lan: Lan,
    test: &'static str,
}

impl WebLan {
    /// `hosts` hosts, each with `rossipd --http <its address>:8080`, all listing each other
    /// alive. `None` (after one line) when this machine cannot run the test; a panic under
    /// `CI=true`.
    fn start(test: &'static str, hosts: usize) -> Option<WebLan> {
        if let Some(why) = Browser::missing() {
            if sys::ci() {
                panic!("{test}: {why}, and CI=true requires this test");
            }
            sys::skipped(test, &why);
            return None;
        }
        let lan = Lan::new(test, hosts).ok()?;
        let mut daemons: Vec<Daemon> = lan
            .hosts()
            .iter()
            .map(|host| {
                Daemon::builder(&host.name)
                    .netns(&host.ns)
                    .args(["--http", &format!("{}:{HTTP_PORT}", host.addr)])
                    .spawn_unready()
            })
            .collect();
        for daemon in &mut daemons {
            daemon.wait_ready(rossip_tests::daemon::READY_TIMEOUT);
        }
        let nodes: Vec<(&str, &std::path::Path)> =
            daemons.iter().map(|d| (d.name(), d.socket())).collect();
        cluster::wait_all_alive(&nodes, cluster::MEMBERSHIP_TIMEOUT);
        Some(WebLan { daemons, lan, test })
    }

    /// `rossipctl ARGS…` on host `index`, against its daemon; panics unless it exits 0.
    /// Returns stdout, trimmed.
    fn ctl(&self, index: usize, args: &[&str]) -> String {
        rossipctl_in(
            Some(&self.lan.host(index).ns),
            self.daemons[index].socket(),
            args,
        )
        .assert_success()
        .stdout
        .trim()
        .to_owned()
    }

    /// `rossipctl send TEXT` on host `index`; the id it printed.
    fn send(&self, index: usize, text: &str) -> String {
        self.ctl(index, &["send", text])
    }

    /// The login link `rossipctl web` prints on host `index`.
    fn login_link(&self, index: usize) -> String {
        let link = self.ctl(index, &["web"]);
        let host = self.lan.host(index);
        assert!(
            link.starts_with(&format!("http://{}:{HTTP_PORT}/login?token=", host.addr)),
            "`rossipctl web` on {}: a login link to its LAN address, got {link:?}",
            host.name
        );
        link
    }

    /// The page's address on host `index` (without a login).
    fn page_url(&self, index: usize) -> String {
        format!("http://{}:{HTTP_PORT}/", self.lan.host(index).addr)
    }

    /// A browser in host `index` (named like the host in messages), logged in through
    /// `rossipctl web`'s link, showing the chat connected.
    fn open_chat(&self, index: usize, size: WindowSize) -> Browser {
        let host = self.lan.host(index);
        let browser = Browser::start(self.test, &host.name, host, size);
        browser.goto(&self.login_link(index));
        wait_connected(&browser);
        browser
    }

    /// `user@node` of the page's user, once `#me` shows it.
    fn me(browser: &Browser) -> String {
        browser.wait_until("#me to show user@node", |b| {
            let me = b.try_texts("#me")?.concat();
            if me.contains('@') {
                Ok(me.trim().to_owned())
            } else {
                Err(format!("#me is {me:?}"))
            }
        })
    }

    /// Host `index`'s daemon's history (every channel), oldest first.
    fn history(&self, index: usize) -> Vec<MessageView> {
        self.daemons[index]
            .client()
            .call_ok::<HistoryResult>("history", json!({"n": 1000}))
            .messages
    }
}

/// A message as the page shows it.
#[derive(Debug, Clone, Deserialize)]
struct Shown {
    id: String,
    cursor: String,
    from: String,
    verified: String,
    text: String,
}

/// The messages of the shown window, in page order.
fn shown(browser: &Browser) -> Result<Vec<Shown>, String> {
    let found = browser.try_execute(
        "const text = (li, css) => { const e = li.querySelector(css); return e ? e.textContent : ''; };
         return Array.from(document.querySelectorAll('#messages li.msg'), li => ({
             id: li.dataset.id || '', cursor: li.dataset.cursor || '',
             from: text(li, '.from'), verified: text(li, '.verified'), text: text(li, '.text'),
         }));",
        vec![],
    )?;
    serde_json::from_value(found).map_err(|e| format!("messages on the page: {e}"))
}

/// Waits until the shown window has a message with `text`, and returns it.
fn wait_shown(browser: &Browser, text: &str) -> Shown {
    browser.wait_within(DELIVERY_TIMEOUT, &format!("{text:?} on the page"), |b| {
        let messages = shown(b)?;
        messages
            .iter()
            .find(|m| m.text == text)
            .cloned()
            .ok_or_else(|| format!("{} messages: {:?}", messages.len(), texts_of(&messages)))
    })
}

fn texts_of(messages: &[Shown]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

/// Waits until `#conn` says `connected`.
fn wait_connected(browser: &Browser) {
    browser.wait_for("#conn[data-state=connected]");
}

/// Whether the sidebar is shown inside the viewport (a collapsed one is moved off it,
/// or not rendered).
fn sidebar_on_screen(browser: &Browser) -> bool {
    wait_still(browser);
    browser.execute(
        "const e = document.querySelector('#sidebar');
         if (!e) return false;
         const r = e.getBoundingClientRect();
         const style = getComputedStyle(e);
         return r.width > 0 && r.right > 0 && r.left < window.innerWidth
             && style.visibility !== 'hidden' && style.display !== 'none';",
        vec![],
    ) == json!(true)
}

/// Waits until no CSS transition or animation runs (the phone's sidebar sliding in), so a
/// screenshot shows where things end up.
fn wait_still(browser: &Browser) {
    browser.wait_until("the page to stop moving", |b| {
        let running = b.try_execute("return document.getAnimations().length;", vec![])?;
        if running == json!(0) {
            Ok(())
        } else {
            Err(format!("{running} animations running"))
        }
    });
}

/// Panics if the page logged a CSP violation or an uncaught script error: the page must
/// work under its own policy.
fn assert_clean_console(browser: &Browser) {
    let bad: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|line| line.contains("Content Security Policy") || line.contains("Uncaught"))
        .collect();
    assert!(
        bad.is_empty(),
        "the page logged errors:\n{}",
        bad.join("\n")
    );
}

/// Three hosts: a line typed in the page on h1 shows on h2's page from `user@h1`, verified;
/// a line sent with `rossipctl` on h3 shows on both pages; the page also fits a phone.
#[test]
fn three_browsers_on_three_hosts_chat_through_their_daemons() {
    let Some(web) = WebLan::start("three_browsers_on_three_hosts_chat", 3) else {
        return;
    };
    let a = web.open_chat(0, DESKTOP);
    let b = web.open_chat(1, DESKTOP);
    let me_a = WebLan::me(&a);
    assert!(me_a.ends_with("@h1"), "#me on h1: {me_a:?}");
    assert!(WebLan::me(&b).ends_with("@h2"));

    let typed = "hello from the browser on h1";
    a.type_line("#input", typed);
    let on_b = wait_shown(&b, typed);
    assert!(
        on_b.from.starts_with(&me_a),
        ".from on h2's page: {:?}, expected {me_a}",
        on_b.from
    );
    assert_eq!(on_b.verified.trim(), "✓", "verified mark: {on_b:?}");
    assert!(!on_b.id.is_empty() && !on_b.cursor.is_empty(), "{on_b:?}");
    let on_a = wait_shown(&a, typed);
    assert_eq!(on_a.id, on_b.id, "one message, one id on both pages");
    assert_eq!(
        a.wait_until("the input emptied after sending", |b| {
            let value = b.try_execute("return document.querySelector('#input').value;", vec![])?;
            if value == json!("") {
                Ok(value)
            } else {
                Err(format!("input holds {value}"))
            }
        }),
        json!("")
    );

    let from_c = "hello from rossipctl on h3";
    let id = web.send(2, from_c);
    for page in [&a, &b] {
        let shown = wait_shown(page, from_c);
        assert_eq!(shown.id, id);
        assert!(shown.from.contains("@h3"), "{shown:?}");
        assert_eq!(shown.verified.trim(), "✓", "{shown:?}");
    }
    // Each once, though h1's own line came back over the stream after the send.
    for page in [&a, &b] {
        let messages = shown(page).unwrap_or_else(|e| panic!("{e}"));
        for text in [typed, from_c] {
            let copies = messages.iter().filter(|m| m.text == text).count();
            assert_eq!(copies, 1, "{text:?} on the page: {:?}", texts_of(&messages));
        }
    }
    a.screenshot("h1-desktop");
    b.screenshot("h2-desktop");

    // A phone on h3: the same conversation, the sidebar behind #menu.
    let c = web.open_chat(2, PHONE);
    wait_shown(&c, typed);
    wait_shown(&c, from_c);
    c.screenshot("h3-phone");
    let overflow = c.execute(
        "return document.documentElement.scrollWidth - window.innerWidth;",
        vec![],
    );
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "the page is wider than a phone's screen by {overflow} px"
    );
    assert!(
        !sidebar_on_screen(&c),
        "the sidebar takes room on a phone before #menu is pressed"
    );
    c.click("#menu");
    c.wait_for("body.menu-open");
    wait_still(&c);
    assert!(sidebar_on_screen(&c), "#menu did not bring the sidebar");
    c.screenshot("h3-phone-menu");
    c.press_key(Key::Escape);
    c.wait_until("Esc to close the menu", |b| {
        match b.try_count("body.menu-open")? {
            0 => Ok(()),
            _ => Err("body.menu-open".to_owned()),
        }
    });
    for page in [&a, &b, &c] {
        assert_clean_console(page);
    }
}

/// Markup in a message is text: an `<img onerror>` and a `<script>` from another host, and
/// a display name with markup, show literally, create no element, and run nothing.
#[test]
fn markup_in_messages_is_shown_as_text_and_never_runs() {
    let Some(web) = WebLan::start("markup_in_messages_is_text", 2) else {
        return;
    };
    let a = web.open_chat(0, DESKTOP);
    let title = a.title();
    let image = r#"<img src=x onerror="document.title='pwned'">"#;
    let script = "<script>document.title='pwned by script'</script><b>bold?</b>";
    // The display name is the sender's to choose as well.
    // (At most 32 characters.)
    let nick = "<svg onload=document.title=1>";
    web.ctl(1, &["nick", nick]);
    web.send(1, image);
    web.send(1, script);
    // A later line: once it shows, both before it had every chance to run.
    web.send(1, "after the markup");
    let last = wait_shown(&a, "after the markup");
    assert!(
        last.from.contains(nick),
        "the display name shown as text: {last:?}"
    );
    for payload in [image, script] {
        let shown = wait_shown(&a, payload);
        assert_eq!(shown.text, payload);
    }
    for tag in ["img", "script", "b", "svg"] {
        assert_eq!(
            a.count(&format!("#messages {tag}, #sidebar {tag}, #top {tag}")),
            0,
            "a <{tag}> element in the page"
        );
    }
    let now = a.title();
    assert_eq!(
        title_without_count(&now),
        title_without_count(&title),
        "the title changed to {now:?}"
    );
    a.screenshot("markup");
    assert_clean_console(&a);
}

/// A title without the unread count the page may put in front of it: "(2) rossip".
fn title_without_count(title: &str) -> &str {
    title
        .strip_prefix('(')
        .and_then(|rest| rest.split_once(") "))
        .filter(|(count, _)| count.chars().all(|c| c.is_ascii_digit()))
        .map_or(title, |(_, rest)| rest)
}

/// The daemon under an open page stops and starts again: the page says it is reconnecting,
/// then shows every message sent meanwhile on the other hosts exactly once, in the
/// daemon's order, none missing.
#[test]
fn a_daemon_restart_under_the_page_loses_and_repeats_nothing() {
    let Some(mut web) = WebLan::start("restart_under_the_page", 3) else {
        return;
    };
    let a = web.open_chat(0, DESKTOP);
    let mut sent = vec![web.send(1, "before the restart, from h2")];
    wait_shown(&a, "before the restart, from h2");

    // The page must carry on by itself, not be reloaded: a mark left in it now is still
    // there at the end.
    a.execute("window.rossipTestMark = 'the same page';", vec![]);
    web.daemons[0].stop_with_sigterm(cluster::MEMBERSHIP_TIMEOUT);
    a.wait_until("#conn to say reconnecting", |b| {
        match b.try_attr("#conn", "data-state")?.as_deref() {
            Some("reconnecting") => Ok(()),
            other => Err(format!("#conn is {other:?}")),
        }
    });
    for round in 0..3 {
        sent.push(web.send(1, &format!("while h1 is down, from h2, {round}")));
        sent.push(web.send(2, &format!("while h1 is down, from h3, {round}")));
    }
    web.daemons[0].restart();
    wait_connected(&a);
    sent.push(web.send(2, "after the restart, from h3"));
    sent.push(web.send(1, "after the restart, from h2"));

    a.wait_within(CATCH_UP_TIMEOUT, "every message on the page", |b| {
        let messages = shown(b)?;
        let missing: Vec<&String> = sent
            .iter()
            .filter(|id| !messages.iter().any(|m| &m.id == *id))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} missing ({missing:?}); shown: {:?}",
                missing.len(),
                texts_of(&messages)
            ))
        }
    });
    // One more line, sent after all those were shown: a late copy of any of them would
    // have come before it.
    sent.push(web.send(2, "the last line, from h3"));
    wait_shown(&a, "the last line, from h3");
    let messages = shown(&a).unwrap_or_else(|e| panic!("{e}"));
    let shown_ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &shown_ids {
        *copies.entry(id).or_default() += 1;
    }
    let repeated: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "shown more than once: {repeated:?}");
    for id in &sent {
        let selector = format!("#messages li.msg[data-id=\"{id}\"]");
        assert_eq!(a.count(&selector), 1, "{selector}");
    }
    // The page's order is h1's delivery order: the first line, then what `history
    // {after: its cursor}` lists.
    let first = &messages[0];
    assert_eq!(
        first.id, sent[0],
        "the page starts with the line before the restart"
    );
    let delivered: Vec<String> = std::iter::once(first.id.clone())
        .chain(
            web.daemons[0]
                .client()
                .call_ok::<HistoryResult>("history", json!({"after": first.cursor, "n": 1000}))
                .messages
                .into_iter()
                .map(|m| m.id),
        )
        .filter(|id| shown_ids.contains(id))
        .collect();
    assert_eq!(shown_ids, delivered, "page order vs h1's delivery order");
    assert_eq!(
        a.execute("return window.rossipTestMark || null;", vec![]),
        json!("the same page"),
        "the page was reloaded"
    );
    a.screenshot("after-restart");
    // Failed requests while the daemon was away are logged too; they are not errors.
    assert_clean_console(&a);
}

/// `/msg` from the page on h1 to the user on h2: h2's page shows it in a direct-message
/// window; h3's page never shows it.
#[test]
fn a_direct_message_from_the_page_reaches_only_its_recipient() {
    let Some(web) = WebLan::start("direct_message_from_the_page", 3) else {
        return;
    };
    let a = web.open_chat(0, DESKTOP);
    let b = web.open_chat(1, DESKTOP);
    let c = web.open_chat(2, DESKTOP);
    let me_a = WebLan::me(&a);
    let me_b = WebLan::me(&b);

    let secret = "a secret for h2 only";
    a.type_line("#input", &format!("/msg {me_b} {secret}"));
    let dm_window = format!("#channels li[data-window=\"@{me_a}\"]");
    b.wait_for(&dm_window);
    b.click(&dm_window);
    let on_b = wait_shown(&b, secret);
    assert!(on_b.from.starts_with(&me_a), "{on_b:?}");
    assert_eq!(on_b.verified.trim(), "✓", "{on_b:?}");
    b.screenshot("dm-on-h2");
    // The sender's page keeps it in the window of its recipient.
    let sent_window = format!("#channels li[data-window=\"@{me_b}\"]");
    a.wait_for(&sent_window);
    a.click(&sent_window);
    let on_a = wait_shown(&a, secret);
    assert_eq!(on_a.id, on_b.id);

    // A public line sent after the secret: once h3's page shows it, h3 had its chance.
    let public = "a public line after the secret";
    a.type_line("#input", "/join general");
    a.type_line("#input", public);
    wait_shown(&c, public);
    let windows = c.texts("#channels li[data-window]");
    assert_eq!(
        c.count(&format!("#channels li[data-window=\"@{me_a}\"]")),
        0,
        "h3's page opened a window for h1's direct message: {windows:?}"
    );
    let everything_on_c = c.execute("return document.body.textContent;", vec![]);
    assert!(
        !everything_on_c
            .as_str()
            .unwrap_or_default()
            .contains(secret),
        "h3's page shows the secret"
    );
    assert!(
        web.history(2).iter().all(|m| m.text != secret),
        "h3's daemon holds the secret"
    );
    for page in [&a, &b, &c] {
        assert_clean_console(page);
    }
}

/// Without the login cookie the JSON endpoints answer 401 and the page asks for a login;
/// the link of `rossipctl web` sets a cookie scripts cannot read, and the page connects.
#[test]
fn without_a_login_the_api_refuses_and_the_page_asks_for_one() {
    let Some(web) = WebLan::start("without_a_login", 1) else {
        return;
    };
    let host = web.lan.host(0);
    let gateway = NsForward::start(
        host,
        SocketAddr::V4(SocketAddrV4::new(host.addr, HTTP_PORT)),
    );
    for path in ["/status", "/peers", "/channels", "/who", "/me", "/messages"] {
        let answer = plain_http::get(gateway.addr(), path, &[])
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(answer.status, 401, "GET {path}: {answer:?}");
        let body = answer.json().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(
            body["error"]["code"],
            json!(UNAUTHORIZED),
            "GET {path}: {body}"
        );
    }
    let upgrade = plain_http::get(
        gateway.addr(),
        "/ws",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .expect("GET /ws");
    assert_eq!(
        upgrade.status, 401,
        "a WebSocket without a login: {upgrade:?}"
    );
    let answer = plain_http::request(
        gateway.addr(),
        "POST",
        "/send",
        &[("Content-Type", "application/json")],
        Some(r#"{"text":"no login, no message"}"#),
    )
    .expect("POST /send");
    assert_eq!(answer.status, 401, "POST /send: {answer:?}");
    let bogus = plain_http::get(gateway.addr(), "/login?token=bogus.0000", &[]).expect("login");
    assert_eq!(bogus.status, 401, "a bogus token: {bogus:?}");
    assert!(
        bogus.body.contains("rossipctl web"),
        "the 401 page says what to do: {}",
        bogus.body
    );
    // The page itself is served, and explains.
    let page = plain_http::get(gateway.addr(), "/", &[]).expect("GET /");
    assert_eq!(page.status, 200, "GET /: {page:?}");

    let browser = Browser::start(web.test, &host.name, host, DESKTOP);
    browser.goto(&web.page_url(0));
    browser.wait_for("#conn[data-state=login]");
    browser.wait_until("the login notice shown", |b| {
        let hidden = b.try_execute(
            "const e = document.querySelector('#login'); return e ? e.hidden : null;",
            vec![],
        )?;
        if hidden == json!(false) {
            Ok(())
        } else {
            Err(format!("#login hidden: {hidden}"))
        }
    });
    browser.screenshot("login-needed");

    // The link logs in: an HttpOnly, SameSite=Strict cookie, invisible to scripts.
    let link = web.login_link(0);
    browser.goto(&link);
    wait_connected(&browser);
    let cookies = browser.cookies();
    let token_cookie = cookies
        .iter()
        .find(|(name, _, _)| name == "rossip_token")
        .unwrap_or_else(|| panic!("no rossip_token cookie: {cookies:?}"));
    assert!(token_cookie.1, "the cookie is HttpOnly: {cookies:?}");
    assert_eq!(token_cookie.2.as_deref(), Some("Strict"), "{cookies:?}");
    let visible = browser.execute("return document.cookie;", vec![]);
    assert!(
        !visible
            .as_str()
            .unwrap_or_default()
            .contains("rossip_token"),
        "scripts read the token: {visible}"
    );
    // The token also works as a bearer token, for scripts.
    let token = link
        .split_once("token=")
        .map(|(_, t)| t.to_owned())
        .unwrap_or_default();
    let me = plain_http::get(
        gateway.addr(),
        "/me",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .expect("GET /me with a bearer token");
    assert_eq!(me.status, 200, "{me:?}");
    let me = me.json().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(me["node_name"], json!("h1"), "{me}");
    assert_clean_console(&browser);
}
