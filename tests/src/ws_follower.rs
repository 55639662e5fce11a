//! WebSocket clients of the HTTP gateway that follow messages, as the web
//! chat does (`GET /ws?events=message`), and stamp every message event with
//! the `Instant` it was read: the receiving side of `ws-fanout-bench`.
//!
//! Each follower is one task on the benchmark's tokio runtime. It connects,
//! waits for the gateway's first frame (`{"kind":"subscribed",…}`), then
//! reads frames until told to stop. Messages are recognised by their text
//! as in [`crate::delivery`]: the key `TAG/0.K` up to the first space, where
//! `K` is the message's index in the sender's run, so arrivals are kept in a
//! vector indexed by `K` (no map, no allocation per frame).
//!
//! A slow reader ([`Pace::Stalled`]) connects with a small receive buffer,
//! reads the subscribed frame and then nothing until [`Stage::CatchUp`]: the
//! gateway's writes to it back up (its kernel send queue, then its own
//! bounded backlog) while the other followers go on.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures::StreamExt;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::delivery::key_of;

/// The most message indexes a follower keeps arrivals for: a text with a
/// larger index is counted as foreign, not allocated for.
const MAX_INDEX: u64 = 50_000_000;

/// Where the run is; the benchmark moves it forward, followers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Followers connect and read; slow readers read nothing after the
    /// subscribed frame.
    Follow,
    /// Slow readers read again, to show what they get after their stall.
    CatchUp,
    /// Everyone stops and hands back what it recorded.
    Stop,
}

/// How a follower reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Reads every frame as soon as it comes.
    Prompt,
    /// Reads nothing between the subscribed frame and [`Stage::CatchUp`];
    /// its socket's receive buffer is asked to be `recv_buffer` bytes, so
    /// the stall reaches the gateway at once instead of filling megabytes
    /// of kernel buffers first.
    Stalled {
        /// `SO_RCVBUF` asked for (the kernel doubles it, within its bounds).
        recv_buffer: u32,
    },
}

/// What the benchmark watches while a follower runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Set once the subscribed frame arrived.
    pub subscribed: AtomicBool,
    /// Distinct messages of the run received.
    pub received: AtomicU64,
    /// Events the gateway said it dropped (`lagged`), summed.
    pub dropped: AtomicU64,
    /// Set when the follower ended on its own (an error, the socket closed).
    pub ended: AtomicBool,
    /// The local address of its TCP connection (to find the kernel's
    /// queues on it in `/proc/net/tcp`).
    pub local_addr: OnceLock<SocketAddr>,
}

/// What a follower recorded, handed back when it stops.
#[derive(Debug, Default)]
pub struct Record {
    /// First arrival of message `K`, at index `K`.
    pub arrivals: Vec<Option<Instant>>,
    /// Messages of the run that arrived again.
    pub duplicates: u64,
    /// Message events that are not the run's (another text).
    pub foreign: u64,
    /// `lagged` frames: (events dropped, whether a cursor came with it).
    pub lagged: Vec<(u64, bool)>,
    /// Why it ended before it was told to stop, if it did.
    pub error: Option<String>,
}

/// One follower: its progress, shared while it runs.
#[derive(Debug, Clone)]
pub struct Follower {
    /// Its progress counters.
    pub progress: Arc<Progress>,
}

/// Starts a follower on `runtime`: connects to `url` (`ws://ADDR/ws?…`,
/// which also gives the `Host` header; no `Origin`) at `addr`, and records
/// the messages whose keys are `TAG/0.K`. Returns its progress and the task
/// that hands back its [`Record`] once `stage` says [`Stage::Stop`].
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    url: String,
    addr: SocketAddr,
    tag: &str,
    pace: Pace,
    stage: watch::Receiver<Stage>,
) -> (Follower, tokio::task::JoinHandle<Record>) {
    let progress = Arc::new(Progress::default());
    let prefix = format!("{tag}/0.");
    let task = runtime.spawn(follow(
        url,
        addr,
        prefix,
        pace,
        stage,
        Arc::clone(&progress),
    ));
    (Follower { progress }, task)
}

/// The few fields of a frame a follower looks at; `text` is borrowed from
/// the frame unless it holds escapes.
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<MessageText<'a>>,
    #[serde(default)]
    dropped: Option<u64>,
    #[serde(default)]
    cursor: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct MessageText<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

async fn follow(
    url: String,
    addr: SocketAddr,
    prefix: String,
    pace: Pace,
    mut stage: watch::Receiver<Stage>,
    progress: Arc<Progress>,
) -> Record {
    let mut record = Record::default();
    if let Err(why) = read_frames(
        &url,
        addr,
        &prefix,
        pace,
        &mut stage,
        &progress,
        &mut record,
    )
    .await
    {
        record.error = Some(why);
        progress.ended.store(true, Ordering::Release);
        // Stay until told to stop, so the benchmark's join collects every
        // follower at the same point.
        let _ = stage.wait_for(|s| *s == Stage::Stop).await;
    }
    record
}

async fn read_frames(
    url: &str,
    addr: SocketAddr,
    prefix: &str,
    pace: Pace,
    stage: &mut watch::Receiver<Stage>,
    progress: &Progress,
    record: &mut Record,
) -> Result<(), String> {
    let stream = connect(addr, pace)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    if let Ok(local) = stream.local_addr() {
        let _ = progress.local_addr.set(local);
    }
    // Many small frames: without NODELAY an answer (pong, close) could wait
    // for a delayed ACK; the measured direction is the gateway's anyway.
    let _ = stream.set_nodelay(true);
    let (mut socket, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| format!("WebSocket handshake with {url}: {e}"))?;
    let first = match socket.next().await {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(other)) => return Err(format!("first frame is not text: {other:?}")),
        Some(Err(e)) => return Err(format!("reading the first frame: {e}")),
        None => return Err("closed before the first frame".to_owned()),
    };
    match serde_json::from_str::<Frame<'_>>(&first) {
        Ok(frame) if frame.kind == "subscribed" => {}
        _ => {
            return Err(format!(
                "first frame is not `subscribed`: {}",
                first.as_str()
            ));
        }
    }
    progress.subscribed.store(true, Ordering::Release);
    if let Pace::Stalled { .. } = pace
        && stage.wait_for(|s| *s >= Stage::CatchUp).await.is_err()
    {
        return Ok(());
    }
    loop {
        let frame = tokio::select! {
            biased;
            frame = socket.next() => frame,
            _ = stage.wait_for(|s| *s == Stage::Stop) => return Ok(()),
        };
        let at = Instant::now();
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => return Err("a binary frame".to_owned()),
            Some(Ok(Message::Close(close))) => {
                return Err(format!("closed by the gateway: {close:?}"));
            }
            Some(Err(e)) => return Err(format!("reading frames: {e}")),
            None => return Err("the connection ended".to_owned()),
        };
        let frame: Frame<'_> = serde_json::from_str(&text)
            .map_err(|e| format!("a frame that is not an event ({e}): {}", text.as_str()))?;
        match (frame.kind.as_ref(), frame.message) {
            ("message", Some(message)) => {
                record_message(&message.text, prefix, at, progress, record)
            }
            ("lagged", _) => {
                let dropped = frame.dropped.unwrap_or(0);
                progress.dropped.fetch_add(dropped, Ordering::AcqRel);
                record.lagged.push((dropped, frame.cursor.is_some()));
            }
            ("error", _) => return Err(format!("error frame: {}", text.as_str())),
            // Only message events were asked for; anything else is counted
            // with the foreign messages.
            _ => record.foreign += 1,
        }
    }
}

/// Counts the message with `text` at `at` if it is the run's.
fn record_message(text: &str, prefix: &str, at: Instant, progress: &Progress, record: &mut Record) {
    let index = key_of(text)
        .strip_prefix(prefix)
        .and_then(|k| k.parse::<u64>().ok())
        .filter(|k| *k < MAX_INDEX);
    let Some(index) = index else {
        record.foreign += 1;
        return;
    };
    let index = index as usize;
    if record.arrivals.len() <= index {
        record.arrivals.resize(index + 1, None);
    }
    match &mut record.arrivals[index] {
        Some(_) => record.duplicates += 1,
        slot @ None => {
            *slot = Some(at);
            progress.received.fetch_add(1, Ordering::AcqRel);
        }
    }
}

async fn connect(addr: SocketAddr, pace: Pace) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Pace::Stalled { recv_buffer } = pace {
        // Before connecting, so the window the gateway sees starts small.
        socket.set_recv_buffer_size(recv_buffer)?;
    }
    socket.connect(addr).await
}

/// Bytes queued in the kernel on the TCP connection from `local` to
/// `remote`, as seen from `local`'s end: (send queue, receive queue), from
/// `/proc/net/tcp` (IPv4) or `/proc/net/tcp6`. `None` when not found.
pub fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let table = match local {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let (want_local, want_remote) = (proc_addr(local)?, proc_addr(remote)?);
    text.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let (l, r, _state, queues) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if !l.eq_ignore_ascii_case(&want_local) || !r.eq_ignore_ascii_case(&want_remote) {
            return None;
        }
        let (tx, rx) = queues.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// An address as `/proc/net/tcp` writes it: the address's 32-bit words in
/// host byte order, in hex, then `:PORT` in hex.
fn proc_addr(addr: SocketAddr) -> Option<String> {
    let words: Vec<u32> = match addr {
        SocketAddr::V4(a) => vec![u32::from_ne_bytes(a.ip().octets())],
        SocketAddr::V6(a) => a
            .ip()
            .octets()
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    let hex: String = words.iter().map(|w| format!("{w:08X}")).collect();
    Some(format!("{hex}:{:04X}", addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        if cfg!(target_endian = "little") {
            assert_eq!(proc_addr(addr).as_deref(), Some("0100007F:1F90"));
        }
    }

    #[test]
    fn messages_are_recorded_once_by_index() {
        let progress = Progress::default();
        let mut record = Record::default();
        let now = Instant::now();
        record_message("ws1/0.3 xxx", "ws1/0.", now, &progress, &mut record);
        record_message("ws1/0.3 xxx", "ws1/0.", now, &progress, &mut record);
        record_message("other/0.1 xxx", "ws1/0.", now, &progress, &mut record);
        assert_eq!(record.arrivals.len(), 4);
        assert!(record.arrivals[3].is_some());
        assert_eq!(record.duplicates, 1);
        assert_eq!(record.foreign, 1);
        assert_eq!(progress.received.load(Ordering::Relaxed), 1);
    }
}
