//! The gateway's connections: at most [`MAX_CONNECTIONS`] at once (a
//! listener wrapper holding a semaphore permit per connection, answering
//! 503 past it), each closed after [`IDLE_TIMEOUT`] without a byte either
//! way, and each knowing its two addresses so that the kernel can say who
//! is on the other end (looked up once per connection, when first needed).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rossip_proto::rpc::{ErrorObject, HttpView, code};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;

use super::peer_uid;
use crate::api::speaker::Speaker;
use crate::driver::SharedCounters;

/// HTTP connections (WebSockets included) served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// A connection with no byte read or written for this long is closed. A
/// WebSocket stays busy through its pings ([`super::ws`]'s interval is
/// well below this).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Refused connections being told why at once; more are closed unanswered.
const MAX_REFUSING: usize = 32;

/// How long a refused client has to read its 503.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// The gateway's counters, which `status` shows.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections refused because [`MAX_CONNECTIONS`] were open.
    pub refused: AtomicU64,
    /// Requests refused for their Host or Origin.
    pub forbidden: AtomicU64,
    /// Requests refused for want of a valid login token.
    pub unauthorized: AtomicU64,
}

impl Counters {
    /// `view` with the counts as they are now.
    pub fn add_to(&self, view: HttpView) -> HttpView {
        HttpView {
            connections: self.connections.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            forbidden: self.forbidden.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            ..view
        }
    }
}

/// The listener, limited.
#[derive(Debug)]
pub struct Limited {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    tasks: TaskTracker,
    counters: Arc<SharedCounters>,
}

impl Limited {
    /// `inner`, serving at most [`MAX_CONNECTIONS`] at once; refusals are
    /// written by tasks of `tasks`.
    pub fn new(inner: TcpListener, tasks: TaskTracker, counters: Arc<SharedCounters>) -> Limited {
        Limited {
            inner,
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            tasks,
            counters,
        }
    }
}

impl Listener for Limited {
    type Io = Connection;
    type Addr = Peer;

    async fn accept(&mut self) -> (Connection, Peer) {
        loop {
            let (stream, client) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: back off briefly instead of spinning.
                    tracing::warn!("cannot accept an HTTP connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                tracing::debug!("HTTP connection from {client} refused: {MAX_CONNECTIONS} open");
                self.counters.http.refused.fetch_add(1, Ordering::Relaxed);
                if let Ok(slot) = self.refusing.clone().try_acquire_owned() {
                    self.tasks.spawn(async move {
                        refuse(stream).await;
                        drop(slot);
                    });
                }
                continue;
            };
            let Ok(server) = stream.local_addr() else {
                continue; // Already gone.
            };
            let peer = Peer {
                client,
                server,
                speaker: Arc::new(OnceCell::new()),
            };
            return (Connection::new(stream, permit, self.counters.clone()), peer);
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        let addr = self.inner.local_addr()?;
        Ok(Peer {
            client: addr,
            server: addr,
            speaker: Arc::new(OnceCell::new()),
        })
    }
}

/// Tells a client over the limit, in a 503 with a JSON error, then closes.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({
        "error": ErrorObject::new(
            code::BUSY,
            format!(
                "rossipd serves at most {MAX_CONNECTIONS} HTTP connections at once and all are \
                 in use; try again later"
            ),
        )
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\ncache-control: no-store\r\nretry-after: 1\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let told = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent meanwhile: closing with unread data
        // would reset the connection before it read the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(REFUSAL_GRACE, told).await {
        tracing::debug!("refused HTTP client: {e}");
    }
}

/// One connection's two ends, and who is on the other end once asked
/// (every request of a keep-alive connection has the same client).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub client: SocketAddr,
    /// Our end of the connection.
    pub server: SocketAddr,
    speaker: Arc<OnceCell<Speaker>>,
}

impl Peer {
    /// The user owning the client's socket (the kernel's socket tables; a
    /// client not found is the unknown speaker, whose sends are refused).
    pub async fn speaker(&self) -> Speaker {
        self.speaker
            .get_or_init(|| async {
                let uid = peer_uid::lookup(self.client, self.server).await;
                if uid.is_none() {
                    tracing::debug!("no owner found for the HTTP client {}", self.client);
                }
                Speaker::of_uid(uid).await
            })
            .await
            .clone()
    }
}

impl Connected<IncomingStream<'_, Limited>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Limited>) -> Peer {
        stream.remote_addr().clone()
    }
}

/// A connection: the stream, its permit, and its idle timer; counted open
/// while it exists.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    counters: Arc<SharedCounters>,
    /// When a byte was last read or written.
    active_at: Instant,
    /// Fires at `active_at + IDLE_TIMEOUT` or earlier (then it is re-armed).
    idle: Pin<Box<Sleep>>,
}

impl Connection {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        counters: Arc<SharedCounters>,
    ) -> Connection {
        counters.http.connections.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        Connection {
            stream,
            _permit: permit,
            counters,
            active_at: now,
            idle: Box::pin(tokio::time::sleep_until(now + IDLE_TIMEOUT)),
        }
    }

    /// While the stream has nothing: `Ready` with an error once the
    /// connection has been idle too long, else `Pending` (the timer armed).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.idle.as_mut().poll(cx));
            let deadline = self.active_at + IDLE_TIMEOUT;
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP connection idle too long",
                ));
            }
            self.idle.as_mut().reset(deadline);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counters
            .http
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.active_at = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.active_at = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.active_at = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
