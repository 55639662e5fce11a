//! Back-pressure on senders faster than the history window allows.
//!
//! The node refuses a publish that would evict a message younger than its
//! [`rossip_proto::node::ProtocolConfig::min_retention`]
//! ([`PublishError::Busy`]): members
//! that lost a datagram may still be pulling it. Rather than fail such a
//! `send`, the driver holds it (and every send after it, to keep their
//! order) and retries when the oldest message is old enough. The client's
//! answer is simply late; a pipelining client stops getting answers and so
//! slows down. A send held longer than [`MAX_SEND_WAIT`], or one that finds
//! [`MAX_DEFERRED_SENDS`] already waiting, is refused with the `BUSY` code:
//! refused visibly, never accepted and then dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rossip_proto::PublishError;
use rossip_proto::message::Draft;

use super::{CoreError, Driver, SendReply};

/// Sends held at most, over all clients.
pub const MAX_DEFERRED_SENDS: usize = 4096;

/// Longest a send is held before it is refused.
pub const MAX_SEND_WAIT: Duration = Duration::from_secs(10);

/// A `send` waiting for room in the history window.
#[derive(Debug)]
pub(super) struct DeferredSend {
    draft: Draft,
    reply: SendReply,
    since: Instant,
}

/// The held sends and when to try again.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    queue: VecDeque<DeferredSend>,
    retry_at: Option<Instant>,
    /// Sends refused after waiting or for lack of room (for `status`).
    pub(super) refused: u64,
    /// Sends that had to wait.
    pub(super) held: u64,
}

impl Deferred {
    /// When the driver should call [`Driver::retry_deferred`].
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.queue.is_empty())
    }

    /// Sends waiting now.
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// The error for a send that could not get into the window.
fn busy(why: String, retry_after: Duration) -> CoreError {
    CoreError::Busy { why, retry_after }
}

impl Driver {
    /// A `send` command: published now, or held behind earlier held ones.
    pub(super) fn on_send(&mut self, draft: Draft, reply: SendReply, now: Instant) {
        // Stamped now: a held send carries the name its user had when sending.
        let draft = self.with_nick(draft);
        if self.deferred.queue.is_empty() {
            match self.publish(&draft, now) {
                // Answered by the flush that commits it.
                Ok(id) => self.pending_sends.push((reply, id)),
                Err(Err(e)) => {
                    let _ = reply.send(Err(e));
                }
                Err(Ok(retry_after)) => self.hold(draft, reply, now, retry_after),
            }
            return;
        }
        self.hold(draft, reply, now, Duration::ZERO);
    }

    fn hold(&mut self, draft: Draft, reply: SendReply, now: Instant, retry_after: Duration) {
        if self.deferred.queue.len() >= MAX_DEFERRED_SENDS {
            self.deferred.refused += 1;
            let _ = reply.send(Err(busy(
                format!(
                    "{MAX_DEFERRED_SENDS} sends are already waiting for room in the history \
                     window; retry later"
                ),
                self.node.protocol().min_retention,
            )));
            return;
        }
        if self.deferred.queue.is_empty() {
            tracing::info!(
                ?retry_after,
                "history window full of recent messages: holding sends (back-pressure)"
            );
            self.deferred.retry_at = Some(now + retry_after);
        }
        self.deferred.held += 1;
        self.deferred.queue.push_back(DeferredSend {
            draft,
            reply,
            since: now,
        });
    }

    /// Publishes held sends, oldest first, while the window has room;
    /// refuses those held too long.
    pub(super) fn retry_deferred(&mut self, now: Instant) {
        while let Some(send) = self.deferred.queue.pop_front() {
            if send.reply.is_closed() {
                // The client went away before its send was accepted: nothing
                // was promised, nothing is published.
                continue;
            }
            let waited = now.saturating_duration_since(send.since);
            match self.publish(&send.draft, now) {
                Ok(id) => self.pending_sends.push((send.reply, id)),
                Err(Err(e)) => {
                    let _ = send.reply.send(Err(e));
                }
                Err(Ok(_)) if waited >= MAX_SEND_WAIT => {
                    self.deferred.refused += 1;
                    let _ = send.reply.send(Err(busy(
                        format!(
                            "the history window stayed full of messages younger than {:?} for \
                             {waited:?}; retry later",
                            self.node.protocol().min_retention
                        ),
                        self.node.protocol().min_retention,
                    )));
                }
                Err(Ok(retry_after)) => {
                    // Come back when the window may have room, but no later
                    // than this send's deadline.
                    let deadline = send.since + MAX_SEND_WAIT;
                    self.deferred.queue.push_front(send);
                    self.deferred.retry_at = Some((now + retry_after).min(deadline).max(now));
                    return;
                }
            }
        }
        self.deferred.retry_at = None;
    }
}

/// `Ok(retry_after)` for a Busy refusal (hold the send), `Err` for the
/// others (answer with it).
pub(super) fn classify(e: PublishError) -> Result<Duration, CoreError> {
    match e {
        PublishError::Busy { retry_after } => Ok(retry_after),
        other => Err(CoreError::Publish(other)),
    }
}
