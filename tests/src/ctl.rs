//! Running `rossipctl`: once to completion ([`rossipctl`]), or as a
//! long-lived `tail -f` whose output is collected in the background
//! ([`spawn_rossipctl`]).

use std::ffi::{OsStr, OsString};
use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::background::{Background, parse_json_lines};
use crate::{bins, sys, wait};

/// How long a one-shot `rossipctl` may run before the test fails.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished `rossipctl` run produced.
#[derive(Debug, Clone)]
pub struct CtlOutput {
    /// The command line, for failure messages.
    pub command: String,
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CtlOutput {
    /// Panics with everything it printed unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout as one JSON value per line; panics on a line that is not JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        parse_json_lines(&self.command, self.stdout.lines())
    }
}

/// The program and arguments that run `rossipctl --socket SOCKET ARGS…`,
/// inside `netns` when given.
fn command_parts(netns: Option<&str>, socket: &Path, args: &[&str]) -> (OsString, Vec<OsString>) {
    let mut ctl_args: Vec<OsString> = vec!["--socket".into(), socket.into()];
    ctl_args.extend(args.iter().map(OsString::from));
    sys::in_netns(netns, bins::rossipctl(), ctl_args)
}

fn base_command(program: &OsString, args: &[OsString]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("ROSSIP_SOCKET");
    cmd
}

/// Runs `rossipctl --socket SOCKET ARGS…` to completion.
pub fn rossipctl(socket: &Path, args: &[&str]) -> CtlOutput {
    rossipctl_in(None, socket, args)
}

/// Runs `rossipctl --socket SOCKET ARGS…`, inside `netns` when given; panics
/// if it runs longer than [`CTL_TIMEOUT`].
pub fn rossipctl_in(netns: Option<&str>, socket: &Path, args: &[&str]) -> CtlOutput {
    let (program, full) = command_parts(netns, socket, args);
    run_to_completion(
        base_command(&program, &full),
        sys::command_line(&program, &full),
    )
}

/// Runs `rossipctl ARGS…` without `--socket`, so that it looks for the daemon itself, with
/// each of `env` set (`Some`) or removed (`None`); panics if it runs longer than
/// [`CTL_TIMEOUT`].
pub fn rossipctl_searching(env: &[(&str, Option<&OsStr>)], args: &[&str]) -> CtlOutput {
    let program = OsString::from(bins::rossipctl());
    let full: Vec<OsString> = args.iter().map(OsString::from).collect();
    let mut cmd = base_command(&program, &full);
    let mut shown = Vec::new();
    for (key, value) in env {
        match value {
            Some(value) => {
                cmd.env(key, value);
                shown.push(format!("{key}={}", value.to_string_lossy()));
            }
            None => {
                cmd.env_remove(key);
                shown.push(format!("-u {key}"));
            }
        }
    }
    let command = format!(
        "env {} {}",
        shown.join(" "),
        sys::command_line(&program, &full)
    );
    run_to_completion(cmd, command)
}

/// Runs `cmd` (described by `command`) to completion, reading its output as it comes.
fn run_to_completion(mut cmd: Command, command: String) -> CtlOutput {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{command}`: {e}"));
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let stdout = read_all_in_background(child.stdout.take());
    let stderr = read_all_in_background(child.stderr.take());
    let status = match wait::try_wait_until(CTL_TIMEOUT, || {
        child.try_wait().expect("poll rossipctl's exit status")
    }) {
        Ok(status) => status,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{command}` did not finish within {CTL_TIMEOUT:?}");
        }
    };
    CtlOutput {
        command,
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn read_all_in_background<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Starts a long-running `rossipctl --socket SOCKET ARGS…` (e.g. `tail -f`),
/// inside `netns` if given, collecting its output as it comes.
pub fn spawn_rossipctl(netns: Option<&str>, socket: &Path, args: &[&str]) -> Background {
    let (program, full) = command_parts(netns, socket, args);
    Background::spawn(&program, &full)
}

/// How long a follower may take to notice that its stdout's reader left. Far more than the
/// moment it takes; the deadline only keeps a broken build from hanging the test.
const EXIT_AFTER_CLOSE: Duration = Duration::from_secs(20);

/// Runs `rossipctl --socket SOCKET ARGS…` with stdout a pipe, reads its first line, closes
/// the pipe, and asserts that it exits 0, quietly, within [`EXIT_AFTER_CLOSE`] while the
/// daemon sends it nothing more. Returns the line.
pub fn first_line_then_closed_stdout(socket: &Path, args: &[&str]) -> String {
    let mut child = Command::new(bins::rossipctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("ROSSIP_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rossipctl");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read the first line");
    drop(stdout);
    let status = wait::try_wait_until(EXIT_AFTER_CLOSE, || {
        child.try_wait().expect("poll rossipctl's exit status")
    });
    let mut stderr = String::new();
    let status = match status {
        Ok(status) => status,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`rossipctl {args:?}` still ran {EXIT_AFTER_CLOSE:?} after its stdout closed");
        }
    };
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(
        status.code(),
        Some(0),
        "`rossipctl {args:?}`: stderr: {stderr}"
    );
    assert!(
        stderr.is_empty(),
        "`rossipctl {args:?}`: a quiet exit, got: {stderr}"
    );
    line
}
