//! `--daemonize`: run in the background without systemd. The `daemonize`
//! crate forks twice and calls setsid before anything starts a thread (the
//! async runtime does not exist yet); a pipe then carries the daemon's word
//! back to the command that started it, so that `rossipd --daemonize`
//! returns only once the daemon serves its socket, and fails with the
//! daemon's own error if it could not start (a port in use, a pid file
//! another rossipd holds).

use std::fs::File;
use std::io::{BufRead as _, BufReader, PipeWriter, Write as _};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use daemonize::{Daemonize, Outcome};

/// How long the starting command waits for the daemon's word. Starting
/// takes well under a second; a daemon still silent after this is said to
/// be, not killed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the daemon reports to the command that started it.
#[derive(Debug)]
pub struct Detached {
    pipe: Option<PipeWriter>,
}

impl Detached {
    /// The daemon serves its socket: the starting command exits 0.
    pub fn ready(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = writeln!(pipe, "ready {}", std::process::id());
        }
    }

    /// The daemon could not start: the starting command prints `error` and
    /// exits 1. Nothing happens once `ready` was sent.
    pub fn failed(&mut self, error: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = writeln!(pipe, "error {}", error.replace('\n', " "));
        }
    }
}

/// Detaches. In the starting command this does not return: it waits for
/// the daemon's word and exits with it. In the daemon it returns the handle
/// to report with. `stderr`: where the daemon's stderr goes (the log file),
/// else /dev/null.
pub fn detach(stderr: Option<File>) -> Result<Detached, ExitCode> {
    let (reader, writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => {
            eprintln!("rossipd: error: cannot create a pipe to detach with: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let mut daemon = Daemonize::new()
        // Paths were made absolute before this; "/" keeps no mount busy.
        .working_directory("/")
        // Every file rossipd creates gets its mode explicitly.
        .umask(0o077);
    if let Some(stderr) = stderr {
        daemon = daemon.stderr(stderr);
    }
    match daemon.execute() {
        Outcome::Parent(Ok(_)) => {
            drop(writer);
            Err(wait_for_word(reader))
        }
        Outcome::Parent(Err(e)) => {
            eprintln!("rossipd: error: cannot detach: {e}");
            Err(ExitCode::FAILURE)
        }
        Outcome::Child(Ok(_)) => {
            drop(reader);
            Ok(Detached { pipe: Some(writer) })
        }
        Outcome::Child(Err(e)) => {
            let mut detached = Detached { pipe: Some(writer) };
            detached.failed(&format!("cannot detach: {e}"));
            // The daemon half of a failed detach: nothing more to do here.
            Err(ExitCode::FAILURE)
        }
    }
}

/// The starting command's side: one line from the daemon, or the end of
/// the pipe if the daemon died before saying anything.
fn wait_for_word(reader: std::io::PipeReader) -> ExitCode {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(reader).read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(line)) => {
            if line.starts_with("ready ") {
                ExitCode::SUCCESS
            } else if let Some(error) = line.strip_prefix("error ") {
                eprintln!("rossipd: error: {}", error.trim_end());
                ExitCode::FAILURE
            } else {
                eprintln!("rossipd: error: the daemon exited while starting (see its log for why)");
                ExitCode::FAILURE
            }
        }
        Ok(Err(e)) => {
            eprintln!("rossipd: error: cannot read the daemon's start-up report: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "rossipd: the daemon has not reported ready after {} s; it is still starting or \
                 stuck (see its log)",
                READY_TIMEOUT.as_secs()
            );
            ExitCode::FAILURE
        }
    }
}
