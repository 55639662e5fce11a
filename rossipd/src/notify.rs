//! systemd's notification protocol (`Type=notify`, `sd_notify(3)`): READY=1
//! once the daemon serves, STATUS= with the live peer count, WATCHDOG=1
//! while the driver loop answers, STOPPING=1 when shutdown starts.
//!
//! Hand-written instead of a crate: the protocol is one datagram of
//! `KEY=VALUE` lines to the `AF_UNIX` socket named by `NOTIFY_SOCKET` (a path,
//! or an abstract name written with a leading `@`). Without that variable
//! every call here does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::{Handle, WeakHandle};

/// How often the peer count is read for STATUS= when no watchdog asks for
/// more: changes reach `systemctl status` within this time, and a busy
/// cluster cannot make the daemon send more than one STATUS= per interval.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long the driver may take to answer the `status` that proves it is
/// alive before this round's watchdog ping is skipped.
const DRIVER_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
    /// Half of `WATCHDOG_USEC` (as `sd_watchdog_enabled(3)` advises), when
    /// the watchdog is on for this process.
    watchdog_interval: Option<Duration>,
    /// STOPPING=1 is sent once, whichever shutdown path comes first.
    stopping_sent: AtomicBool,
}

impl Notifier {
    /// The notifier for this process, or `None` when `NOTIFY_SOCKET` is
    /// unset (not started by systemd) or unusable (then a warning says why).
    pub fn from_env() -> Option<Arc<Self>> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy().into_owned();
        match Self::connect(&name) {
            Ok(socket_and_target) => {
                let (socket, target) = socket_and_target;
                Some(Arc::new(Self {
                    socket,
                    target,
                    watchdog_interval: watchdog_interval(
                        std::env::var("WATCHDOG_USEC").ok().as_deref(),
                        std::env::var("WATCHDOG_PID").ok().as_deref(),
                        std::process::id(),
                    ),
                    stopping_sent: AtomicBool::new(false),
                }))
            }
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={name} is unusable, not notifying systemd: {e}");
                None
            }
        }
    }

    fn connect(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
        let target = if let Some(abstract_name) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        } else {
            SocketAddr::from_pathname(name)?
        };
        let socket = UnixDatagram::unbound()?;
        // Never block the runtime: a full manager queue loses one message,
        // and the next round sends a fresh one.
        socket.set_nonblocking(true)?;
        Ok((socket, target))
    }

    /// Sends one notification (lines of `KEY=VALUE`); whether it left.
    /// Failures are logged.
    fn send(&self, state: &str) -> bool {
        match self.socket.send_to_addr(state.as_bytes(), &self.target) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("cannot notify systemd ({state:?}): {e}");
                false
            }
        }
    }

    /// Tells systemd that shutdown has started (once).
    pub fn stopping(&self) {
        if !self.stopping_sent.swap(true, Ordering::Relaxed) {
            let _ = self.send("STOPPING=1\nSTATUS=shutting down");
        }
    }

    /// Starts the task that asks the driver for its status, sends READY=1 on
    /// the first answer (the sockets and discovery are up by then, and the
    /// driver serves requests), then STATUS= when the alive-peer count
    /// changes and WATCHDOG=1 after each answer. A driver that stops
    /// answering stops the pings, so systemd restarts a hung daemon.
    pub fn spawn_monitor(
        self: &Arc<Self>,
        driver: &Handle,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) {
        // Weak, so the monitor does not keep the driver's queue open: the
        // driver still ends when every real client of it is gone.
        let commands = driver.downgrade();
        let notifier = Arc::clone(self);
        tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = notifier.monitor(commands) => {}
            }
        });
    }

    async fn monitor(&self, commands: WeakHandle) {
        let period = self
            .watchdog_interval
            .map_or(STATUS_INTERVAL, |w| w.min(STATUS_INTERVAL));
        let mut last_alive: Option<u64> = None;
        let mut ready_sent = false;
        let mut first = true;
        loop {
            // A pause after each round rather than a fixed-rate interval: a
            // slow answer (the first one waits for the driver to start) must
            // not be followed by a burst of catch-up pings.
            if !first {
                tokio::time::sleep(period).await;
            }
            first = false;
            let Some(sender) = commands.upgrade() else {
                return;
            };
            let alive = Self::alive_peers(&sender).await;
            drop(sender);
            let Some(alive) = alive else {
                tracing::warn!("the driver did not answer status; skipping the watchdog ping");
                continue;
            };
            // Each round says again what did not get through: a datagram
            // lost to a full manager queue must not lose READY=1 for good
            // (systemd would time the start out).
            let mut state = String::new();
            if !ready_sent {
                state.push_str("READY=1\n");
            }
            if last_alive != Some(alive) {
                let noun = if alive == 1 { "peer" } else { "peers" };
                state.push_str(&format!("STATUS={alive} {noun} alive\n"));
            }
            if self.watchdog_interval.is_some() {
                state.push_str("WATCHDOG=1\n");
            }
            if !state.is_empty() && self.send(state.trim_end()) {
                ready_sent = true;
                last_alive = Some(alive);
            }
        }
    }

    /// The driver's count of alive peers, or `None` if it did not answer.
    async fn alive_peers(driver: &Handle) -> Option<u64> {
        driver
            .status_within(DRIVER_ANSWER_TIMEOUT)
            .await
            .map(|status| status.peers.alive)
    }
}

/// Half the watchdog timeout from `WATCHDOG_USEC`, if it is set, positive,
/// and meant for this process (`WATCHDOG_PID` unset or equal to `pid`).
fn watchdog_interval(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(for_pid) = watchdog_pid
        && for_pid.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_process() {
        assert_eq!(
            watchdog_interval(Some("1000000"), None, 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn abstract_and_path_names_are_accepted() {
        assert!(Notifier::connect("@rossip-test-notify").is_ok());
        assert!(Notifier::connect("/run/systemd/notify").is_ok());
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).expect("bind the notify socket");
        let (socket, target) =
            Notifier::connect(path.to_str().expect("utf-8 temp path")).expect("connect");
        let notifier = Notifier {
            socket,
            target,
            watchdog_interval: None,
            stopping_sent: AtomicBool::new(false),
        };
        notifier.stopping();
        notifier.stopping();
        receiver
            .set_nonblocking(true)
            .expect("non-blocking receiver");
        let mut buf = [0u8; 256];
        let len = receiver.recv(&mut buf).expect("one notification");
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=shutting down");
        assert!(receiver.recv(&mut buf).is_err(), "STOPPING=1 is sent once");
    }
}
