//! A long-running child process (e.g. `rossipctl tail -f`, a `socat`
//! receiver) whose stdout and stderr lines are collected by threads as they
//! come. Killed by PID when dropped; prints its output if the test fails.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::{sys, wait};

/// A child process with its output collected line by line.
#[derive(Debug)]
pub struct Background {
    command: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Set once stdout is closed and all of it is in `stdout`, so a wait for
    /// a line can give up as soon as no more can come.
    stdout_ended: Arc<AtomicBool>,
}

impl Background {
    /// Starts `program args…` with stdin closed; panics if it cannot start.
    pub fn spawn<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> Background {
        let command = sys::command_line(&program, args);
        let mut child = Command::new(&program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("ROSSIP_SOCKET")
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{command}`: {e}"));
        let (stdout, stdout_ended) = collect_lines(child.stdout.take());
        let (stderr, _) = collect_lines(child.stderr.take());
        Background {
            command,
            child,
            stdout,
            stderr,
            stdout_ended,
        }
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Non-empty stdout lines parsed as JSON values of type `T` (e.g. the
    /// MessageViews of `rossipctl --json tail`); panics on a line that does
    /// not parse, naming the command.
    pub fn json_lines<T: DeserializeOwned>(&self) -> Vec<T> {
        parse_json_lines(&self.command, self.lines().iter().map(String::as_str))
    }

    /// Polls until a stdout line satisfies `wanted` and returns the first
    /// such line. Panics, naming `what`, after `timeout`, or as soon as
    /// stdout ends without one; `Drop` then prints everything it printed.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let found = wait::try_wait_until(timeout, || {
            // Read the flag first: lines collected before it was set are all there.
            let ended = self.stdout_ended.load(Ordering::Acquire);
            let lines = self.lines();
            match lines.iter().find(|l| wanted(l)) {
                Some(line) => Ok(Some(line.clone())),
                None if ended => Ok(None),
                None => Err(format!("{} lines, none matching", lines.len())),
            }
        });
        match found {
            Ok(Some(line)) => line,
            Ok(None) => {
                let status = self.exited();
                panic!(
                    "`{}` closed its stdout without printing {what} (exit status: {status:?})",
                    self.command
                )
            }
            Err(_) => panic!(
                "`{}` printed no line with {what} within {timeout:?}",
                self.command
            ),
        }
    }

    /// Like [`Background::wait_for_line`], for the first line that is a JSON
    /// value satisfying `wanted` (lines that are not JSON never match).
    pub fn wait_for_json(
        &mut self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let line = self.wait_for_line(timeout, what, |line| {
            serde_json::from_str(line).is_ok_and(|v| wanted(&v))
        });
        serde_json::from_str(&line).expect("the matched line parsed as JSON a moment ago")
    }

    /// The exit status if it has exited, without blocking.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- `{}`\n----- stdout:\n{}\n----- stderr:\n{}\n----- end",
                self.command,
                self.lines().join("\n"),
                self.stderr_lines().join("\n")
            );
        }
    }
}

/// Non-empty `lines` parsed as JSON values of type `T`; panics on a line
/// that does not parse, naming `command` (what printed them).
pub fn parse_json_lines<'a, T: DeserializeOwned>(
    command: &str,
    lines: impl IntoIterator<Item = &'a str>,
) -> Vec<T> {
    lines
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("`{command}` printed a line that does not parse as expected ({e}): {l}")
            })
        })
        .collect()
}

/// Collects `pipe`'s lines on a thread; the flag is set once the pipe ended
/// and every line is collected.
fn collect_lines<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> (Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let ended = Arc::new(AtomicBool::new(false));
    match pipe {
        Some(pipe) => {
            let sink = Arc::clone(&lines);
            let done = Arc::clone(&ended);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
                done.store(true, Ordering::Release);
            });
        }
        None => ended.store(true, Ordering::Release),
    }
    (lines, ended)
}
