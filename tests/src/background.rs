//! A long-running child process (e.g. `rossipctl tail -f`, a `socat`
//! receiver) whose stdout and stderr lines are collected by threads as they
//! come. Killed by PID when dropped; prints its output if the test fails.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;

use crate::sys;

/// A child process with its output collected line by line.
#[derive(Debug)]
pub struct Background {
    command: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
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
        let stdout = collect_lines(child.stdout.take());
        let stderr = collect_lines(child.stderr.take());
        Background {
            command,
            child,
            stdout,
            stderr,
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
        self.lines()
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "`{}` printed a line that does not parse ({e}): {l}",
                        self.command
                    )
                })
            })
            .collect()
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

fn collect_lines<R: Read + Send + 'static>(pipe: Option<R>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(pipe) = pipe {
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
    }
    lines
}
