//! Forwarding live events to one subscriber, with bounded buffering.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rossip_proto::rpc::{EventBody, EventKind, MessageView, Notification};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::driver::SharedCounters;

/// Most event lines one subscription holds back while its connection's
/// queue is full.
pub const MAX_BACKLOG_LINES: usize = 8192;

/// Most bytes of event lines one subscription holds back (large messages
/// reach this before the line count).
pub const MAX_BACKLOG_BYTES: usize = 8 * 1024 * 1024;

/// Live events a forwarder takes per wake-up without awaiting.
const DRAIN_BATCH: usize = 1024;

/// Event lines held back for one subscriber, and events dropped since the
/// last `lagged` notice.
#[derive(Debug, Default)]
struct Backlog {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: u64,
}

impl Backlog {
    fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
    }

    fn pop(&mut self) -> Option<String> {
        let line = self.lines.pop_front()?;
        self.bytes -= line.len();
        Some(line)
    }

    fn unpop(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_front(line);
    }
}

/// What one subscription wants.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Event kinds.
    pub kinds: Vec<EventKind>,
    /// Only messages of this channel.
    pub channel: Option<String>,
}

impl Filter {
    fn wants(&self, event: &EventBody) -> bool {
        match event {
            EventBody::Message { message } => {
                self.kinds.contains(&EventKind::Message)
                    && self.channel.as_deref().is_none_or(|c| c == message.channel)
            }
            EventBody::Peer { .. } => self.kinds.contains(&EventKind::Peer),
            EventBody::Lagged { .. } => true,
        }
    }
}

/// Everything a forwarder needs.
#[derive(Debug)]
pub struct Forwarder {
    /// Subscription id.
    pub id: u64,
    /// What to pass on.
    pub filter: Filter,
    /// History to send before live events.
    pub replay: Vec<MessageView>,
    /// Live events.
    pub live: broadcast::Receiver<Arc<EventBody>>,
    /// The connection's outbound queue.
    pub out: mpsc::Sender<String>,
    /// Daemon-wide drop counter.
    pub counters: Arc<SharedCounters>,
    /// Opens once the `subscribe` response is queued.
    pub gate: oneshot::Receiver<()>,
    /// Stops this forwarder (unsubscribe or connection end).
    pub cancel: CancellationToken,
}

impl Forwarder {
    /// Runs until cancelled or the connection's queue closes.
    pub async fn run(mut self) {
        // Wait for the subscribe response to be queued; an error means the
        // connection went away first.
        let opened = tokio::select! {
            () = self.cancel.cancelled() => false,
            r = &mut self.gate => r.is_ok(),
        };
        if !opened {
            return;
        }
        // Replay is part of what the client asked for: wait for room rather
        // than drop it. It is bounded by the history size.
        for message in std::mem::take(&mut self.replay) {
            let line = self.encode(EventBody::Message { message });
            let sent = tokio::select! {
                () = self.cancel.cancelled() => return,
                r = self.out.send(line) => r.is_ok(),
            };
            if !sent {
                return;
            }
        }
        // Lines waiting for room in the connection's queue: a subscriber
        // that reads a little slower than the burst gets it all; one that
        // falls further behind loses events, counted at once and reported
        // with a `lagged` notice in their place.
        let mut queue = Backlog::default();
        loop {
            let event = tokio::select! {
                () = self.cancel.cancelled() => return,
                permit = self.out.reserve(), if !queue.lines.is_empty() || queue.dropped > 0 => {
                    let Ok(permit) = permit else { return };
                    match queue.pop() {
                        Some(line) => permit.send(line),
                        None => {
                            permit.send(self.encode(EventBody::Lagged { dropped: queue.dropped }));
                            queue.dropped = 0;
                        }
                    }
                    // Then as much more as fits without waiting.
                    while let Some(line) = queue.pop() {
                        if let Err(e) = self.out.try_send(line) {
                            match e {
                                mpsc::error::TrySendError::Full(line) => {
                                    queue.unpop(line);
                                    break;
                                }
                                mpsc::error::TrySendError::Closed(_) => return,
                            }
                        }
                    }
                    continue;
                }
                e = self.live.recv() => e,
            };
            if !self.take(event, &mut queue) {
                return;
            }
            // Drain what else is ready in one go: waking once per event
            // would let a busy driver outrun this forwarder (tokio's
            // cooperative budget allows only so many awaits per turn).
            for _ in 0..DRAIN_BATCH {
                match self.live.try_recv() {
                    Ok(event) => {
                        if !self.take(Ok(event), &mut queue) {
                            return;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        self.count_drop(&mut queue.dropped, n);
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => return,
                }
            }
        }
    }

    /// Handles one live event: queued, sent, or dropped and counted.
    /// `false`: the connection is gone.
    fn take(
        &self,
        event: Result<Arc<EventBody>, broadcast::error::RecvError>,
        queue: &mut Backlog,
    ) -> bool {
        match event {
            Ok(event) if self.filter.wants(&event) => {
                // After a drop, nothing more until the notice is out.
                if queue.dropped > 0 {
                    self.count_drop(&mut queue.dropped, 1);
                    return true;
                }
                let line = self.encode((*event).clone());
                if queue.lines.is_empty() {
                    match self.out.try_send(line) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                        Err(mpsc::error::TrySendError::Full(line)) => queue.push(line),
                    }
                } else if queue.lines.len() < MAX_BACKLOG_LINES
                    && queue.bytes + line.len() <= MAX_BACKLOG_BYTES
                {
                    queue.push(line);
                } else {
                    self.count_drop(&mut queue.dropped, 1);
                }
                true
            }
            Ok(_) => true,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.count_drop(&mut queue.dropped, n);
                true
            }
            Err(broadcast::error::RecvError::Closed) => false,
        }
    }

    fn count_drop(&self, dropped: &mut u64, n: u64) {
        if *dropped == 0 {
            tracing::debug!(
                subscription = self.id,
                "subscriber is not keeping up; dropping events"
            );
        }
        *dropped = dropped.saturating_add(n);
        self.counters
            .subscriber_drops
            .fetch_add(n, Ordering::Relaxed);
    }

    fn encode(&self, event: EventBody) -> String {
        serde_json::to_string(&Notification::event(self.id, event)).unwrap_or_default()
    }
}
