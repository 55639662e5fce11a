//! `GET /ws`: the WebSocket of events. One task per socket with one
//! `select!` over what the browser sends, what the socket follows (an API
//! [`Follower`] with one subscription, started from the query by the same
//! handler as RPC `subscribe`) and what is still to be written; the same
//! bounded backlog as an RPC connection (the follower is only waited on
//! while less than [`OUT_HIGH_WATER`] bytes are unwritten), so a browser
//! that stops reading gets `lagged`, never unbounded memory. The browser is
//! read meanwhile (its pongs and presence frames), so a slow one is not
//! taken for dead; one that answers no ping for [`SILENCE_LIMIT`] is closed.
//!
//! Frames are text, one JSON object each: first `subscribed`, then the RPC
//! event bodies. The browser may send `{"kind":"presence",…}` frames, which
//! register its user's presence for the life of the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use rossip_proto::rpc::{
    self, ErrorObject, EventBody, EventKind, PresenceSetParams, SubscribeParams, code,
};
use serde::Deserialize;
use tokio::time::Instant;

use super::{ApiError, Gateway, api};
use crate::api::follow::{EventSink, Follower};
use crate::api::presence::{self, PresenceRegistration};
use crate::api::speaker::Speaker;
use crate::api::{encode, methods};

/// The largest frame or message a browser may send (its presence frames
/// are tiny); a larger one closes its socket.
pub const MAX_INCOMING_BYTES: usize = 64 * 1024;

/// The socket's read buffer. tungstenite allocates it up front and zeroes
/// all of it on every read attempt, and the socket's `select!` makes one
/// each time it wakes (for every batch of events it writes): the 128 KiB
/// default cost a 128 KiB memset per batch per socket (a fifth of the
/// daemon's CPU with 100 sockets following 1,000 messages/s) and 128 KiB
/// of memory per socket. The page sends only small presence frames; a
/// larger one (up to [`MAX_INCOMING_BYTES`]) still fits: the buffer grows.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Bytes of frames held for a browser before the socket stops producing
/// more (as `OUT_HIGH_WATER` of an RPC connection).
pub const OUT_HIGH_WATER: usize = 64 * 1024;

/// How far past [`OUT_HIGH_WATER`] the socket still reads the browser:
/// room for the replies (error frames, each about one incoming frame's
/// size at most) to what it reads.
const REPLY_ROOM: usize = 2 * MAX_INCOMING_BYTES;

/// How often the socket is pinged: keeps it alive through the gateway's
/// idle timeout and proxies, and finds browsers that went away.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// A socket from which nothing (not even a pong) came for this long is
/// closed.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// How long closing may take when the daemon stops or the socket fails.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// `/ws`'s query: `subscribe`'s params, as text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WsQuery {
    n: Option<usize>,
    since: Option<String>,
    after: Option<String>,
    channel: Option<String>,
    /// Comma-separated event kinds (`message,peer`).
    events: Option<String>,
}

/// The upgrade. The subscription starts on the socket, so that its errors
/// (a foreign cursor) reach the page as an error frame.
pub async fn upgrade(
    State(gateway): State<Arc<Gateway>>,
    Extension(speaker): Extension<Speaker>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => {
            return ApiError(ErrorObject::new(
                code::INVALID_REQUEST,
                format!("/ws is a WebSocket: {}", e.body_text()),
            ))
            .into_response();
        }
    };
    let params = subscribe_params(&uri);
    // axum runs the socket in a task of its own (hyper hands the upgraded
    // connection over only after this response is written); tracking its
    // future keeps the daemon's shutdown waiting for it, as for any task.
    let tasks = gateway.tasks.clone();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_INCOMING_BYTES)
        .max_frame_size(MAX_INCOMING_BYTES)
        .on_upgrade(move |socket| tasks.track_future(serve(socket, gateway, speaker, params)))
}

/// The query as `subscribe` params.
fn subscribe_params(uri: &Uri) -> Result<SubscribeParams, ErrorObject> {
    let q: WsQuery = api::query(uri).map_err(|e| e.0)?;
    let events = q
        .events
        .map(|list| {
            list.split(',')
                .filter(|kind| !kind.is_empty())
                .map(|kind| {
                    serde_json::from_value::<EventKind>(serde_json::Value::from(kind)).map_err(
                        |_| {
                            ErrorObject::new(
                                code::INVALID_PARAMS,
                                format!(
                                    "events: unknown kind {kind:?} (message, peer, presence, \
                                     direct_status)"
                                ),
                            )
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(SubscribeParams {
        events,
        n: q.n,
        since: q.since.map(api::since_of),
        after: q.after,
        channel: q.channel,
    })
}

/// The first frame: where the stream starts and whom the socket speaks for.
#[derive(Debug, serde::Serialize)]
struct Subscribed<'a> {
    kind: &'static str,
    cursor: Option<String>,
    user: &'a str,
    from: String,
}

/// A frame the browser sends.
#[derive(Debug, Deserialize)]
struct ClientFrame {
    kind: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Serves one socket until the browser closes it, it fails, or the daemon
/// stops.
async fn serve(
    socket: WebSocket,
    gateway: Arc<Gateway>,
    speaker: Speaker,
    params: Result<SubscribeParams, ErrorObject>,
) {
    let (sink, stream) = socket.split();
    let mut socket = Socket {
        out: Outbox::default(),
        sink,
        presence: PresenceRegistration::new(gateway.driver.clone()),
        follower: Follower::new(gateway.driver.clone(), gateway.counters.clone()),
    };
    let started = match params {
        Ok(params) => methods::subscribe(params, &gateway.driver, &speaker).await,
        Err(e) => Err(e),
    };
    let subscribed = started.and_then(|start| socket.follower.add(start));
    match subscribed {
        Ok(subscribed) => {
            socket.out.text(encode(&Subscribed {
                kind: "subscribed",
                cursor: subscribed.cursor,
                user: &speaker.user,
                from: rpc::user_at_node(&speaker.user, &gateway.node_name),
            }));
            socket.run(stream, &gateway, &speaker).await;
        }
        Err(e) => {
            socket.out.error(&e);
            socket.out.close(close_code::POLICY, "subscription refused");
            socket.finish().await;
        }
    }
    // The presence registration ends with `socket` (its drop).
}

/// One socket's state.
struct Socket {
    out: Outbox,
    sink: SplitSink<WebSocket, Message>,
    /// The user's presence while the socket is open; its drop ends it.
    presence: PresenceRegistration,
    follower: Follower,
}

impl Socket {
    async fn run(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        gateway: &Gateway,
        speaker: &Speaker,
    ) {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut heard_at = Instant::now();
        loop {
            // Past the high-water mark the follower waits (and a reader
            // that stays behind gets `lagged`), but the browser is still
            // read: its pongs show it is alive, and its frames are small.
            let follows = self.out.bytes < OUT_HIGH_WATER && self.follower.len() > 0;
            let reads = self.out.bytes < OUT_HIGH_WATER + REPLY_ROOM;
            tokio::select! {
                biased;
                written = std::future::poll_fn(|cx| self.out.pump(&mut self.sink, cx)), if self.out.is_pending() => {
                    if let Err(e) = written {
                        tracing::debug!("WebSocket write failed: {e}");
                        return;
                    }
                }
                frame = stream.next(), if reads => {
                    heard_at = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => self.take_frame(&text, gateway, speaker).await,
                        Some(Ok(Message::Binary(_))) => self.out.error(&ErrorObject::new(
                            code::INVALID_REQUEST,
                            "send text frames of JSON",
                        )),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Err(e)) => {
                            // A frame over the limit, or a broken stream.
                            tracing::debug!("WebSocket read failed: {e}");
                            self.out.close(close_code::SIZE, "frame too large or malformed");
                            break;
                        }
                    }
                }
                ready = self.follower.wait(), if follows => {
                    if !self.follower.take(ready, &mut self.out) {
                        break;
                    }
                }
                _ = ping.tick() => {
                    if heard_at.elapsed() > SILENCE_LIMIT {
                        tracing::debug!("WebSocket silent for {} s: closed", SILENCE_LIMIT.as_secs());
                        self.follower.clear();
                        self.out.close(close_code::AWAY, "no answer to pings");
                        break;
                    }
                    self.out.push(Message::Ping(Default::default()), 0);
                }
                () = gateway.cancel.cancelled() => {
                    self.follower.clear();
                    self.out.close(close_code::AWAY, "rossipd is stopping");
                    break;
                }
            }
        }
        self.finish().await;
    }

    /// A frame from the browser: a presence change, or an error frame back
    /// (the socket goes on).
    async fn take_frame(&mut self, text: &str, gateway: &Gateway, speaker: &Speaker) {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.out.error(&ErrorObject::new(
                    code::PARSE_ERROR,
                    format!("parse error: {e}"),
                ));
                return;
            }
        };
        if frame.kind != "presence" {
            self.out.error(&ErrorObject::new(
                code::INVALID_REQUEST,
                format!(
                    "unknown frame kind {:?} (the page sends only \"presence\")",
                    frame.kind
                ),
            ));
            return;
        }
        let set = async {
            let params: PresenceSetParams = methods::parse(serde_json::Value::Object(frame.rest))?;
            // Registered before the driver hears of it, as on the local
            // socket: the drop ends whatever the driver made of it.
            self.presence.registered = true;
            presence::set(params, &gateway.driver, speaker, self.presence.session).await
        };
        if let Err(e) = set.await {
            self.out.error(&e);
        }
    }

    /// Writes what is owed (a close frame last, if any), briefly.
    async fn finish(&mut self) {
        let flushed = std::future::poll_fn(|cx| self.out.pump(&mut self.sink, cx));
        if let Ok(Err(e)) = tokio::time::timeout(CLOSE_GRACE, flushed).await {
            tracing::debug!("WebSocket final write failed: {e}");
        }
    }
}

/// Frames to write, and how many bytes of text they hold.
#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<(Message, usize)>,
    bytes: usize,
    /// Frames were handed to the sink and not yet flushed.
    unflushed: bool,
}

impl Outbox {
    fn push(&mut self, frame: Message, bytes: usize) {
        self.bytes += bytes;
        self.frames.push_back((frame, bytes));
    }

    fn text(&mut self, text: String) {
        let bytes = text.len();
        self.push(Message::Text(Utf8Bytes::from(text)), bytes);
    }

    /// `{"kind":"error","error":{…}}`.
    fn error(&mut self, error: &ErrorObject) {
        self.text(encode(
            &serde_json::json!({ "kind": "error", "error": error }),
        ));
    }

    fn close(&mut self, code: u16, reason: &'static str) {
        self.push(
            Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })),
            0,
        );
    }

    fn is_pending(&self) -> bool {
        !self.frames.is_empty() || self.unflushed
    }

    /// Hands frames to the sink as it takes them, then flushes: `Ready`
    /// once everything is written. Cancel-safe: a frame leaves the queue
    /// only when the sink took it.
    fn pump(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), axum::Error>> {
        while !self.frames.is_empty() {
            ready!(sink.poll_ready_unpin(cx))?;
            let Some((frame, bytes)) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= bytes;
            sink.start_send_unpin(frame)?;
            self.unflushed = true;
        }
        ready!(sink.poll_flush_unpin(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }
}

/// Events as frames, one JSON object each (the RPC event body).
impl EventSink for Outbox {
    fn event(&mut self, _subscription: u64, event: EventBody) {
        self.text(encode(&event));
    }
}
