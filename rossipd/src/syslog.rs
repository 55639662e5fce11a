//! `--syslog`: each log line becomes one datagram on the local syslog
//! socket (`/dev/log`, read by journald or rsyslog), in the traditional
//! local form `<PRI>rossipd[PID]: text`, facility daemon, with the line's
//! level as its severity.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The syslog socket, unless `ROSSIP_SYSLOG_SOCKET` names another.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// Environment variable naming another syslog socket (a test's, or a
/// syslog daemon listening elsewhere).
pub const SOCKET_ENV: &str = "ROSSIP_SYSLOG_SOCKET";

/// Facility `daemon` (RFC 5424 §6.2.1: 3), shifted into PRI.
const FACILITY_DAEMON: u8 = 3 << 3;

/// Longer lines are cut: rsyslog's default limit is 8 KiB, and a datagram
/// larger than the receiver's buffer would be lost whole.
const MAX_LINE: usize = 8 * 1024;

/// The syslog destination, shared by every log line's writer.
#[derive(Debug, Clone)]
pub struct Syslog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    socket: Mutex<UnixDatagram>,
    /// `rossipd[PID]: `; the pid is read once, after `--daemonize` forked
    /// (see [`Syslog::connect`]).
    tag: Mutex<String>,
    /// Lines syslog did not take (its socket gone or full), said in the
    /// next line that gets through.
    lost: AtomicU64,
}

/// The syslog socket: `ROSSIP_SYSLOG_SOCKET`, else `/dev/log`.
pub fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

/// Whether the syslog socket answers (a detached daemon without a log file
/// falls back to a file when it does not).
pub fn reachable() -> bool {
    Syslog::connect().is_ok()
}

impl Syslog {
    /// Connects to the syslog socket. An error names it: a machine without
    /// a syslog daemon has none.
    pub fn connect() -> anyhow::Result<Syslog> {
        let path = socket_path();
        let socket = UnixDatagram::unbound().context("cannot create a socket for syslog")?;
        socket.connect(&path).with_context(|| {
            format!(
                "cannot log to syslog: {} does not answer (is a syslog daemon running? \
                 --log-file writes to a file instead)",
                path.display()
            )
        })?;
        // A stalled syslog must not stall the daemon: a full socket loses
        // the line (counted) instead.
        socket
            .set_nonblocking(true)
            .context("cannot make the syslog socket non-blocking")?;
        Ok(Syslog {
            inner: Arc::new(Inner {
                path,
                socket: Mutex::new(socket),
                tag: Mutex::new(tag()),
                lost: AtomicU64::new(0),
            }),
        })
    }

    /// Reads the pid again: `--daemonize` forks after logging is set up.
    pub fn refresh_pid(&self) {
        *self
            .inner
            .tag
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = tag();
    }

    fn send(&self, severity: u8, text: &[u8]) {
        let text = trim_line(text);
        let mut datagram = Vec::with_capacity(text.len() + 32);
        let tag = self
            .inner
            .tag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let _ = write!(datagram, "<{}>{tag}", FACILITY_DAEMON | severity);
        let lost = self.inner.lost.load(Ordering::Relaxed);
        if lost > 0 {
            let _ = write!(datagram, "({lost} earlier log lines were lost) ");
        }
        datagram.extend_from_slice(&text[..text.len().min(MAX_LINE)]);
        let socket = self
            .inner
            .socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sent = socket.send(&datagram).or_else(|e| {
            use std::io::ErrorKind::{ConnectionRefused, NotConnected, NotFound};
            if matches!(e.kind(), ConnectionRefused | NotConnected | NotFound) {
                // syslog restarted: its socket is a new one at the same path.
                socket
                    .connect(&self.inner.path)
                    .and_then(|()| socket.send(&datagram))
            } else {
                // Full (WouldBlock) or too large: this line is lost, counted.
                Err(e)
            }
        });
        match sent {
            Ok(_) if lost > 0 => {
                self.inner.lost.fetch_sub(lost, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => {
                self.inner.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn tag() -> String {
    format!("rossipd[{}]: ", std::process::id())
}

/// The line without its trailing newline (syslog lines have none).
fn trim_line(text: &[u8]) -> &[u8] {
    let mut end = text.len();
    while end > 0 && matches!(text[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &text[..end]
}

/// RFC 5424 severities: error 3, warning 4, informational 6, debug 7.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One log line: gathered, then sent as one datagram when dropped.
#[derive(Debug)]
pub struct SyslogLine {
    syslog: Syslog,
    severity: u8,
    buffer: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.syslog.send(self.severity, &self.buffer);
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> Self::Writer {
        self.line(6)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.line(severity(meta.level()))
    }
}

impl Syslog {
    fn line(&self, severity: u8) -> SyslogLine {
        SyslogLine {
            syslog: self.clone(),
            severity,
            buffer: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_datagram_with_priority_and_tag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).expect("bind");
        let syslog = {
            let socket = UnixDatagram::unbound().expect("socket");
            socket.connect(&path).expect("connect");
            Syslog {
                inner: Arc::new(Inner {
                    path: path.clone(),
                    socket: Mutex::new(socket),
                    tag: Mutex::new(tag()),
                    lost: AtomicU64::new(0),
                }),
            }
        };
        {
            let mut line = syslog.line(severity(&Level::WARN));
            line.write_all(b"peer alice changed ").expect("write");
            line.write_all(b"its key\n").expect("write");
        }
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        assert_eq!(
            got,
            format!(
                "<28>rossipd[{}]: peer alice changed its key",
                std::process::id()
            )
        );
    }
}
