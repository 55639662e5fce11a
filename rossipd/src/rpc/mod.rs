//! The JSON-RPC 2.0 server on the local socket: framing, the JSON-RPC
//! envelope, and one task per connection. What each method does is the
//! shared `api`, which the HTTP gateway serves too.

mod caller;
mod connection;
mod dispatch;
mod framing;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use rossip_proto::rpc::{self, ErrorObject, Response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::{Handle, SharedCounters};

/// Connections served at once (fewer if the open-files limit is lower; see
/// [`connection_limit`]). A client past the limit is told so in one JSON-RPC
/// error line (code [`rpc::code::BUSY`]) and disconnected, rather than left
/// waiting unseen in the kernel's accept queue behind idle connections; the
/// first refusal is logged as a warning, and so is the next one after the
/// connections dropped below the limit (at most once a minute).
pub const MAX_CONNECTIONS: usize = 4096;

/// File descriptors kept free of connections: the store, the gossip and
/// mDNS sockets, the lock file, and the refusals themselves.
pub const RESERVED_FDS: usize = 128;

/// Refused clients being told why at once; more are closed without a word
/// (a flood of connections must not turn into a flood of tasks).
const MAX_REFUSING: usize = 32;

/// How long a refused client has to read its error line and hang up.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Least time between two "connection limit reached" warnings.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What every connection shares.
#[derive(Debug)]
pub struct RpcContext {
    /// To the driver.
    pub driver: Handle,
    /// Shared counters.
    pub counters: Arc<SharedCounters>,
    /// The web gateway, for `web.link`; `None` when it is off.
    pub web: Option<Arc<crate::http::WebAccess>>,
}

/// Accepts connections until `cancel` fires.
pub async fn serve(
    listener: Listener,
    ctx: Arc<RpcContext>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let (limit, why) = connection_limit(open_files_limit());
    tracing::info!("serving at most {limit} RPC connections at once ({why})");
    let counters = ctx.counters.clone();
    counters
        .rpc_max_connections
        .store(u64::try_from(limit).unwrap_or(u64::MAX), Ordering::Relaxed);
    let permits = Arc::new(Semaphore::new(limit));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut saturation = Saturation::default();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and the like: back off briefly instead of spinning.
                tracing::warn!("cannot accept an RPC connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counters.rpc_refused.fetch_add(1, Ordering::Relaxed);
            saturation.refused(limit, &why);
            // Told why if there is room to tell; else dropped, closing it.
            if let Ok(slot) = refusing.clone().try_acquire_owned() {
                tasks.spawn(async move {
                    refuse(stream, limit).await;
                    drop(slot);
                });
            }
            continue;
        };
        saturation.served();
        let ctx = ctx.clone();
        let cancel = cancel.clone();
        counters.rpc_connections.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let counters = ctx.counters.clone();
            connection::serve(stream, ctx, cancel).await;
            counters.rpc_connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Whether the connection limit is being hit, for warnings that say so once
/// per episode rather than once per refused client.
#[derive(Debug, Default)]
struct Saturation {
    /// Refused since the last warning.
    refused: u64,
    /// Whether a connection was refused since one was last served.
    full: bool,
    /// When the last warning was logged.
    warned_at: Option<Instant>,
}

impl Saturation {
    fn refused(&mut self, limit: usize, why: &str) {
        self.refused = self.refused.saturating_add(1);
        let quiet = self
            .warned_at
            .is_some_and(|at| at.elapsed() < LIMIT_WARNING_INTERVAL);
        if !self.full && !quiet {
            tracing::warn!(
                limit,
                refused = self.refused,
                "{limit} RPC connections are open, the most rossipd serves at once ({why}); \
                 refusing new ones until some close"
            );
            self.refused = 0;
            self.warned_at = Some(Instant::now());
        }
        self.full = true;
    }

    fn served(&mut self) {
        self.full = false;
    }
}

/// Tells a client over the limit why it is being disconnected: one error
/// line, then the connection stays open (for [`REFUSAL_GRACE`] at most)
/// until the client hangs up, reading whatever it sent meanwhile. Closing at
/// once could make its request write fail, or reset the connection before
/// it read the line.
async fn refuse(stream: Stream, limit: usize) {
    let line = refusal_line(limit);
    let (mut recv, mut send) = tokio::io::split(stream);
    let told = async {
        send.write_all(line.as_bytes()).await?;
        send.flush().await?;
        let mut sink = [0u8; 4096];
        while recv.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(REFUSAL_GRACE, told).await {
        tracing::debug!("refused RPC client: {e}");
    }
}

/// The error line a client over the limit gets.
fn refusal_line(limit: usize) -> String {
    let response = Response::err(
        serde_json::Value::Null,
        ErrorObject::new(
            rpc::code::BUSY,
            format!(
                "rossipd serves at most {limit} connections at once and all are in use; \
                 try again later (idle `tail -f` clients hold connections too)"
            ),
        ),
    );
    let mut line = serde_json::to_string(&response).unwrap_or_default();
    line.push('\n');
    line
}

/// The connection limit for an open-files limit (`None`: unknown), and why
/// it is that, for the log.
fn connection_limit(open_files: Option<u64>) -> (usize, String) {
    match open_files.map(|n| usize::try_from(n).unwrap_or(usize::MAX)) {
        Some(files) if files.saturating_sub(RESERVED_FDS) < MAX_CONNECTIONS => {
            // A handful at least, so that rossipctl works even when starved.
            let limit = files.saturating_sub(RESERVED_FDS).max(8);
            (
                limit,
                format!(
                    "the open-files limit is {files}, {RESERVED_FDS} of them kept for the daemon; \
                     raise it (`ulimit -n`, systemd `LimitNOFILE=`) to serve up to {MAX_CONNECTIONS}"
                ),
            )
        }
        _ => (MAX_CONNECTIONS, "rossipd's MAX_CONNECTIONS".to_owned()),
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`
/// (no unsafe code needed); `None` where that file does not exist or says
/// "unlimited".
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 524288               files     \n\
Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn the_soft_open_files_limit_is_read() {
        assert_eq!(parse_open_files(LIMITS), Some(1024));
        assert_eq!(
            parse_open_files("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(parse_open_files(""), None);
    }

    #[test]
    fn the_limit_leaves_room_for_the_daemon_s_own_files() {
        assert_eq!(connection_limit(Some(1024)).0, 1024 - RESERVED_FDS);
        assert_eq!(connection_limit(Some(1_048_576)).0, MAX_CONNECTIONS);
        assert_eq!(connection_limit(None).0, MAX_CONNECTIONS);
        assert_eq!(connection_limit(Some(20)).0, 8, "a few even when starved");
        assert!(connection_limit(Some(1024)).1.contains("LimitNOFILE"));
    }

    #[test]
    fn the_refusal_is_one_json_rpc_error_line_with_a_null_id() {
        let line = refusal_line(4096);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).expect("JSON");
        assert_eq!(value["id"], serde_json::Value::Null);
        assert_eq!(value["error"]["code"], rpc::code::BUSY);
        let message = value["error"]["message"].as_str().expect("message");
        assert!(message.contains("4096 connections"), "{message}");
    }

    #[test]
    fn saturation_warns_once_per_episode() {
        let mut s = Saturation::default();
        s.refused(10, "test");
        assert!(s.full && s.warned_at.is_some());
        s.refused(10, "test");
        s.refused(10, "test");
        assert_eq!(s.refused, 2, "counted, not warned");
        s.served();
        s.refused(10, "test");
        assert_eq!(
            s.refused, 3,
            "within a minute of the last warning: still quiet"
        );
    }
}
