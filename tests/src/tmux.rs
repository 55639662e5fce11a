//! A real terminal for terminal programs (`rossipctl chat`): a tmux server of the test's
//! own (its own socket name, no config file), one window of a given size running one
//! command, typed into with `send-keys` and read with `capture-pane`. The server is
//! killed, by its socket, when the value is dropped, also when the test fails (the last
//! screen is printed then).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{sys, wait};

/// A tmux server with one window.
#[derive(Debug)]
pub struct Tmux {
    /// The `-L` socket name: unique per test process and session.
    socket: String,
    /// The command the window runs, for failure messages.
    command: String,
}

/// Tells sessions of one test process apart.
static NEXT: AtomicU32 = AtomicU32::new(0);

impl Tmux {
    /// Whether tmux is installed; None with the reason when it is not.
    pub fn missing() -> Option<String> {
        sys::find_program("tmux")
            .is_none()
            .then(|| "tmux is not installed".to_owned())
    }

    /// Starts a tmux server named after `test` with one `width`×`height` window running
    /// `command` (through `sh -c`).
    pub fn start(test: &str, width: u16, height: u16, command: &str) -> Tmux {
        let socket = format!(
            "rossip-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux {
            socket,
            command: command.to_owned(),
        };
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ])
        .unwrap_or_else(|e| panic!("start tmux running `{command}`: {e}"));
        // A window keeps its own size, not its clients' (there are none).
        let _ = tmux.run(&["set-option", "-g", "window-size", "manual"]);
        tmux
    }

    /// Types `text` literally (no key names).
    pub fn type_text(&self, text: &str) {
        self.run_ok(&["send-keys", "-l", text]);
    }

    /// Presses keys by tmux name (`Enter`, `C-c`, `PageUp`, …).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.run_ok(&args);
    }

    /// Types `line` and presses Enter.
    pub fn enter_line(&self, line: &str) {
        self.type_text(line);
        self.keys(&["Enter"]);
    }

    /// The screen, one string per row (trailing blanks trimmed by tmux).
    pub fn screen(&self) -> Vec<String> {
        match self.run(&["capture-pane", "-p"]) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// A tmux format of the pane (`#{alternate_on}`, `#{pane_width}`, …).
    pub fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", format])
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// Resizes the window.
    pub fn resize(&self, width: u16, height: u16) {
        self.run_ok(&[
            "resize-window",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
    }

    /// Polls the screen until `wanted` holds for it, and returns it; panics after
    /// `timeout` naming `what` and showing the last screen.
    pub fn wait_screen(
        &self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        wait::wait_until(timeout, what, || {
            let screen = self.screen();
            if wanted(&screen) {
                Ok(screen)
            } else {
                Err(format!("screen:\n{}", screen.join("\n")))
            }
        })
    }

    fn run_ok(&self, args: &[&str]) {
        if let Err(e) = self.run(args) {
            panic!("tmux {}: {e}", args.join(" "));
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .map_err(|e| format!("cannot run tmux: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- tmux screen of `{}`:\n{}\n----- end",
                self.command,
                self.screen().join("\n")
            );
        }
        let _ = self.run(&["kill-server"]);
        // tmux leaves its socket file behind: $TMUX_TMPDIR (or /tmp)/tmux-UID/NAME.
        if let Some(uid) = sys::effective_uid() {
            let dir = std::env::var_os("TMUX_TMPDIR")
                .filter(|d| !d.is_empty())
                .map_or_else(
                    || std::path::PathBuf::from("/tmp"),
                    std::path::PathBuf::from,
                );
            let _ = std::fs::remove_file(dir.join(format!("tmux-{uid}")).join(&self.socket));
        }
    }
}
