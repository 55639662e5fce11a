//! A real browser for the web chat's tests: headless Chromium, driven over WebDriver
//! (chromedriver) by `fantoccini`, running inside a host of a test LAN so that it reaches
//! that host's daemon at its LAN address or on its loopback, like a person at that machine.
//!
//! ```text
//! test process (root netns)          host netns (e.g. h1)
//!   fantoccini ── 127.0.0.1:X ─┐       chromedriver 127.0.0.1:P ── chromium ── daemon's --http
//!                NsForward     └─ unix socket ─ socat ─┘
//! ```
//!
//! The test stays synchronous like the rest of the harness: each [`Browser`] has a small
//! runtime of its own and every call blocks on one WebDriver command (bounded by
//! [`COMMAND_TIMEOUT`]). Reading the page goes through one script per read
//! (`querySelectorAll` then `textContent`), a snapshot that cannot go stale between two
//! commands as element handles can. WebDriver scripts are not subject to the page's CSP.
//!
//! Dropping a [`Browser`] ends its session and kills chromedriver and every process it
//! started (by PID), and removes the profile directory, also when the test fails; a failing
//! test gets a screenshot, the page's URL, title and text, and the end of the driver's log
//! (chromedriver's and Chromium's stderr, with the page's console messages).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
/// Key names for [`Browser::press_key`] and typing.
pub use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::netns::Host;
use crate::netns_forward::NsForward;
use crate::{bins, plain_http, sys, wait};

/// Debian's Chromium (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's chromedriver (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for: generous, since three daemons
/// and three browsers share two loaded cores.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one WebDriver command may take (a page load included) before the test fails
/// instead of hanging.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long chromedriver may take to answer `/status`, and Chromium to open a session.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long closing the session may take when the browser is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of the driver's log printed when a test fails.
const LOG_LINES_ON_FAILURE: usize = 80;

/// Characters of the page's text printed when a test fails.
const PAGE_TEXT_ON_FAILURE: usize = 3000;

/// chromedriver's port inside its host. Each browser of a test process takes the next
/// one, so that two browsers in one host never collide (namespaces differ between LANs,
/// so other tests' browsers do not matter).
static NEXT_DRIVER_PORT: AtomicU16 = AtomicU16::new(9515);

/// A page's viewport in CSS pixels (the browser's window is sized to give it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// A desktop window.
pub const DESKTOP: WindowSize = WindowSize {
    width: 1200,
    height: 800,
};

/// A phone's screen (an iPhone SE's CSS pixels).
pub const PHONE: WindowSize = WindowSize {
    width: 375,
    height: 667,
};

/// A headless Chromium in one host of a test LAN, with one WebDriver session.
#[derive(Debug)]
pub struct Browser {
    /// Names screenshots: `<test>-<name>.png`.
    test: String,
    /// Which browser this is in failure messages (e.g. the host's name).
    label: String,
    /// `None` once the session was closed (in `Drop`).
    client: Option<Client>,
    runtime: Runtime,
    driver: Child,
    driver_command: String,
    log_path: PathBuf,
    /// `None` once dropped (before `dir`, which holds its socket).
    forward: Option<NsForward>,
    /// The profile (`--user-data-dir`), `HOME` and the driver's log; removed last.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Whether this machine can run the browser tests; `Some(why)` when it cannot.
    pub fn missing() -> Option<String> {
        let mut absent: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|path| !Path::new(path).is_file())
            .collect();
        if sys::find_program("socat").is_none() {
            absent.push("socat");
        }
        (!absent.is_empty()).then(|| {
            format!(
                "{} not installed (Debian packages chromium, chromium-driver, socat)",
                absent.join(", ")
            )
        })
    }

    /// Starts chromedriver and Chromium inside `host`, opens a session, and sizes the
    /// window for a viewport of `size` (on `about:blank`). `test` names the screenshots,
    /// `label` this browser in messages. Panics (with the driver's log) if the browser does
    /// not come up within a minute.
    pub fn start(test: &str, label: &str, host: &Host, size: WindowSize) -> Browser {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rossip-browser-{label}-"))
            .tempdir()
            .expect("create the browser's temp dir");
        let port = NEXT_DRIVER_PORT.fetch_add(1, Ordering::Relaxed);
        // First, so that nothing is left running if it cannot start: connections made
        // before chromedriver listens are just closed.
        let forward = NsForward::start(
            host,
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        );
        let log_path = dir.path().join("driver.log");
        let log = File::create(&log_path).expect("create the driver's log file");
        let args = vec![
            format!("--port={port}").into(),
            // Chromium's stderr (crashes, the page's console messages) in the same log.
            "--enable-chrome-logs".into(),
        ];
        let (program, args) = sys::in_netns(Some(&host.ns), PathBuf::from(CHROMEDRIVER), args);
        let driver_command = sys::command_line(&program, &args);
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("create the browser's home");
        let driver = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().expect("clone the driver's log"),
            ))
            .stderr(Stdio::from(log))
            // Chromium keeps certificates and caches under HOME and XDG dirs: the test's own.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{driver_command}`: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        let mut browser = Browser {
            test: test.to_owned(),
            label: label.to_owned(),
            client: None,
            runtime,
            driver,
            driver_command,
            log_path,
            forward: Some(forward),
            dir,
        };
        browser.wait_driver_ready();
        browser.open_session(size);
        browser.resize(size);
        browser
    }

    /// Polls chromedriver's `/status` through the forward until it says it is ready.
    fn wait_driver_ready(&mut self) {
        let addr = self.forward_addr();
        let result = wait::try_wait_until(START_TIMEOUT, || {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited with {status}"));
            }
            let response = plain_http::get(addr, "/status", &[])?;
            let ready = response.json()?["value"]["ready"] == json!(true);
            if ready {
                Ok(())
            } else {
                Err(format!("not ready: {}", response.body))
            }
        });
        if let Err(last) = result {
            self.fail(&format!(
                "chromedriver did not come up within {START_TIMEOUT:?}: {}",
                last.unwrap_or_default()
            ));
        }
    }

    fn open_session(&mut self, size: WindowSize) {
        let user_data = self.dir.path().join("profile");
        let args = [
            "--headless=new".to_owned(),
            // Root cannot use Chromium's sandbox; the browser only ever sees the test's LAN.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            // Nothing but the test's own traffic: no updates, sync, or pings home.
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // The page's console messages (CSP reports, script errors) in the driver's log.
            "--enable-logging=stderr".to_owned(),
            "--v=0".to_owned(),
            format!("--user-data-dir={}", user_data.display()),
            format!("--window-size={},{}", size.width, size.height),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let url = format!("http://{}", self.forward_addr());
        let connect = async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
        };
        match self
            .runtime
            .block_on(async { tokio::time::timeout(START_TIMEOUT, connect).await })
        {
            Ok(Ok(client)) => self.client = Some(client),
            Ok(Err(e)) => self.fail(&format!("no WebDriver session: {e}")),
            Err(_) => self.fail(&format!("no WebDriver session within {START_TIMEOUT:?}")),
        }
    }

    fn forward_addr(&self) -> SocketAddr {
        self.forward
            .as_ref()
            .map(NsForward::addr)
            .expect("the forward lives as long as the browser")
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until the browser is dropped")
    }

    /// Runs one WebDriver command to its end, bounded by [`COMMAND_TIMEOUT`].
    fn run<T>(
        &self,
        what: &str,
        command: impl Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> Result<T, String> {
        self.run_within(COMMAND_TIMEOUT, what, command)
    }

    /// [`Browser::run`] with a deadline of its own.
    fn run_within<T>(
        &self,
        timeout: Duration,
        what: &str,
        command: impl Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> Result<T, String> {
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, command).await })
            .map_err(|_| format!("{}: {what}: no answer within {timeout:?}", self.label))?
            .map_err(|e| format!("{}: {what}: {e}", self.label))
    }

    /// Panics with `why` (the driver's log and the page follow from `Drop`).
    fn fail(&self, why: &str) -> ! {
        panic!("browser {} ({}): {why}", self.label, self.driver_command)
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        let client = self.client();
        self.run(&format!("open {url}"), client.goto(url))
            .unwrap_or_else(|e| self.fail(&e));
    }

    /// The page's URL now.
    pub fn url(&self) -> String {
        let client = self.client();
        self.run("read the URL", client.current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// The page's title now.
    pub fn title(&self) -> String {
        let client = self.client();
        self.run("read the title", client.title())
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// Runs `script` (a function body: `arguments[i]` are `args`, `return` gives the
    /// result) in the page. `Err` for a script error or a page being replaced.
    pub fn try_execute(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        let client = self.client();
        self.run("run a script", client.execute(script, args))
    }

    /// [`Browser::try_execute`], panicking on an error.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.try_execute(script, args)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// How many elements match `css` now.
    pub fn try_count(&self, css: &str) -> Result<usize, String> {
        let found = self.try_execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )?;
        found
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("a count that is not a number: {found}"))
    }

    /// [`Browser::try_count`], panicking on an error.
    pub fn count(&self, css: &str) -> usize {
        self.try_count(css).unwrap_or_else(|e| self.fail(&e))
    }

    /// The `textContent` of every element matching `css`, in document order.
    pub fn try_texts(&self, css: &str) -> Result<Vec<String>, String> {
        let found = self.try_execute(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);",
            vec![json!(css)],
        )?;
        serde_json::from_value(found).map_err(|e| format!("texts of {css}: {e}"))
    }

    /// [`Browser::try_texts`], panicking on an error.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.try_texts(css).unwrap_or_else(|e| self.fail(&e))
    }

    /// Attribute `name` of the first element matching `css` (`None`: no such element or
    /// attribute).
    pub fn try_attr(&self, css: &str, name: &str) -> Result<Option<String>, String> {
        let found = self.try_execute(
            "const e = document.querySelector(arguments[0]); \
             return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(css), json!(name)],
        )?;
        serde_json::from_value(found).map_err(|e| format!("attribute {name} of {css}: {e}"))
    }

    /// [`Browser::try_attr`], panicking on an error.
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.try_attr(css, name).unwrap_or_else(|e| self.fail(&e))
    }

    /// Polls `condition` (which reads the page through the `try_` methods) until it gives
    /// `Ok`, for at most [`WAIT_TIMEOUT`]; panics naming `what` and what it last saw.
    /// A script failing while the page is being replaced counts as "not yet".
    pub fn wait_until<T>(
        &self,
        what: &str,
        condition: impl FnMut(&Browser) -> Result<T, String>,
    ) -> T {
        self.wait_within(WAIT_TIMEOUT, what, condition)
    }

    /// [`Browser::wait_until`] with a deadline of its own, for what takes longer than a
    /// page update (a restarted daemon catching up with its peers).
    pub fn wait_within<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&Browser) -> Result<T, String>,
    ) -> T {
        match wait::try_wait_until(timeout, || condition(self)) {
            Ok(value) => value,
            Err(last) => self.fail(&format!(
                "timed out after {timeout:?} waiting for {what}; last seen: {}",
                last.as_deref().unwrap_or("(nothing)")
            )),
        }
    }

    /// Waits until at least one element matches `css`.
    pub fn wait_for(&self, css: &str) {
        self.wait_until(&format!("an element matching {css}"), |b| {
            match b.try_count(css)? {
                0 => Err(format!("none at {}", b.try_url_for_message())),
                _ => Ok(()),
            }
        });
    }

    fn try_url_for_message(&self) -> String {
        let client = self.client();
        self.run("read the URL", client.current_url())
            .map_or_else(|e| e, |u| u.to_string())
    }

    /// Types `text` into the element matching `css` (focusing it), as keystrokes.
    pub fn type_into(&self, css: &str, text: &str) {
        let client = self.client();
        let element = self
            .run(&format!("find {css}"), client.find(Locator::Css(css)))
            .unwrap_or_else(|e| self.fail(&e));
        self.run(&format!("type into {css}"), element.send_keys(text))
            .unwrap_or_else(|e| self.fail(&e));
    }

    /// Types `text` into the element matching `css` and presses Enter.
    pub fn type_line(&self, css: &str, text: &str) {
        let enter: char = Key::Enter.into();
        self.type_into(css, &format!("{text}{enter}"));
    }

    /// Presses `key` in whatever has the focus (Escape, arrows, …).
    pub fn press_key(&self, key: Key) {
        let client = self.client();
        let key: char = key.into();
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.run("press a key", client.perform_actions(actions))
            .unwrap_or_else(|e| self.fail(&e));
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        let client = self.client();
        let element = self
            .run(&format!("find {css}"), client.find(Locator::Css(css)))
            .unwrap_or_else(|e| self.fail(&e));
        self.run(&format!("click {css}"), element.click())
            .unwrap_or_else(|e| self.fail(&e));
    }

    /// Resizes the window so that the page's viewport (what a screenshot shows, what CSS
    /// media queries see) is `size`: headless Chromium's window is larger than its
    /// viewport by a frame it draws nothing in, so the window is sized, the viewport
    /// measured, and the window grown by the difference.
    pub fn resize(&self, size: WindowSize) {
        let client = self.client();
        let set = |width: u32, height: u32| {
            self.run("resize the window", client.set_window_size(width, height))
                .unwrap_or_else(|e| self.fail(&e));
        };
        set(size.width, size.height);
        let viewport = self.viewport();
        if viewport != size {
            let frame_width = size.width.saturating_sub(viewport.width);
            let frame_height = size.height.saturating_sub(viewport.height);
            set(size.width + frame_width, size.height + frame_height);
        }
        let viewport = self.viewport();
        assert_eq!(
            viewport, size,
            "browser {}: the viewport after resizing",
            self.label
        );
    }

    /// The page's viewport now (`innerWidth` × `innerHeight`).
    pub fn viewport(&self) -> WindowSize {
        let found = self.execute("return [window.innerWidth, window.innerHeight];", vec![]);
        let [width, height]: [u32; 2] = serde_json::from_value(found.clone())
            .unwrap_or_else(|e| self.fail(&format!("a viewport of {found}: {e}")));
        WindowSize { width, height }
    }

    /// The cookies the browser holds for the current page, as WebDriver sees them (those
    /// scripts cannot read included): `(name, http_only, same_site)` with the value left
    /// out, since it is a secret.
    pub fn cookies(&self) -> Vec<(String, bool, Option<String>)> {
        let client = self.client();
        self.run("read the cookies", client.get_all_cookies())
            .unwrap_or_else(|e| self.fail(&e))
            .into_iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    c.http_only().unwrap_or(false),
                    c.same_site().map(|s| s.to_string()),
                )
            })
            .collect()
    }

    /// The page's console messages so far (script errors, CSP violations, `console.*`),
    /// as Chromium logged them: `"text", source: URL (line)`.
    pub fn console(&self) -> Vec<String> {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(":CONSOLE").map(|(_, message)| message))
            .map(|message| {
                // `:LINE] "text", source: …`: the text from the quote on.
                message
                    .split_once("] ")
                    .map_or(message, |(_, text)| text)
                    .to_owned()
            })
            .collect()
    }

    /// The last `n` lines of the driver's log, without the noise of a machine that has no
    /// D-Bus (Chromium complains about it at every start).
    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()));
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.contains("dbus") && !line.contains("bluez"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Saves a screenshot of the window as `target/web-screenshots/<test>-<name>.png`,
    /// says where, and returns the path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        self.try_screenshot(name).unwrap_or_else(|e| self.fail(&e))
    }

    fn try_screenshot(&self, name: &str) -> Result<PathBuf, String> {
        let client = self.client();
        let png = self.run("take a screenshot", client.screenshot())?;
        self.save_screenshot(name, &png)
    }

    fn save_screenshot(&self, name: &str, png: &[u8]) -> Result<PathBuf, String> {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png).map_err(|e| format!("write {}: {e}", path.display()))?;
        sys::say(&format!("screenshot: {}", path.display()));
        Ok(path)
    }

    /// What a failure report shows of the page: URL, title, text, and a screenshot. Each
    /// read is bounded by [`CLOSE_TIMEOUT`], so a hung browser cannot hold up the report.
    fn describe_page(&self) -> String {
        let client = self.client();
        let url = self
            .run_within(CLOSE_TIMEOUT, "read the URL", client.current_url())
            .map_or_else(|e| e, |u| u.to_string());
        let title = self
            .run_within(CLOSE_TIMEOUT, "read the title", client.title())
            .unwrap_or_else(|e| e);
        let text = self
            .run_within(
                CLOSE_TIMEOUT,
                "read the page's text",
                client.execute(
                    "return document.body ? document.body.innerText : '(no body)';",
                    vec![],
                ),
            )
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| e);
        let text: String = text.chars().take(PAGE_TEXT_ON_FAILURE).collect();
        let shot = self
            .run_within(CLOSE_TIMEOUT, "take a screenshot", client.screenshot())
            .and_then(|png| self.save_screenshot(&format!("{}-failure", self.label), &png))
            .map_or_else(|e| e, |p| p.display().to_string());
        format!("url: {url}\ntitle: {title}\nscreenshot: {shot}\npage text:\n{text}")
    }
}

/// Where screenshots go: `target/web-screenshots` of this workspace.
pub fn screenshot_dir() -> PathBuf {
    let profile = bins::target_profile_dir();
    profile
        .parent()
        .map_or_else(|| profile.clone(), Path::to_path_buf)
        .join("web-screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() && self.client.is_some() {
            let page = self.describe_page();
            eprintln!(
                "----- browser {} ({}):\n{page}\n----- last {LOG_LINES_ON_FAILURE} lines of {}:\n{}\n----- end of browser {}",
                self.label,
                self.driver_command,
                self.log_path.display(),
                self.log_tail(LOG_LINES_ON_FAILURE),
                self.label
            );
        } else if std::thread::panicking() {
            eprintln!(
                "----- browser {} ({}), no session; last {LOG_LINES_ON_FAILURE} lines of {}:\n{}\n----- end of browser {}",
                self.label,
                self.driver_command,
                self.log_path.display(),
                self.log_tail(LOG_LINES_ON_FAILURE),
                self.label
            );
        }
        if let Some(client) = self.client.take() {
            // Ending the session makes chromedriver close Chromium cleanly; whatever is
            // left is killed below.
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await });
        }
        sys::kill_tree(&mut self.driver);
        drop(self.forward.take());
        // `dir` (profile, home, log) is removed after this, as the last field.
    }
}
