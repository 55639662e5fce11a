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
        let mut backlog: VecDeque<String> = VecDeque::new();
        let mut backlog_bytes = 0usize;
        let mut dropped: u64 = 0;
        loop {
            let event = tokio::select! {
                () = self.cancel.cancelled() => return,
                permit = self.out.reserve(), if !backlog.is_empty() || dropped > 0 => {
                    let Ok(permit) = permit else { return };
                    match backlog.pop_front() {
                        Some(line) => {
                            backlog_bytes -= line.len();
                            permit.send(line);
                        }
                        None => {
                            permit.send(self.encode(EventBody::Lagged { dropped }));
                            dropped = 0;
                        }
                    }
                    continue;
                }
                e = self.live.recv() => e,
            };
            match event {
                Ok(event) if self.filter.wants(&event) => {
                    // After a drop, nothing more until the notice is out.
                    if dropped > 0 {
                        self.count_drop(&mut dropped, 1);
                        continue;
                    }
                    let line = self.encode((*event).clone());
                    if backlog.is_empty() {
                        match self.out.try_send(line) {
                            Ok(()) => continue,
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                            Err(mpsc::error::TrySendError::Full(line)) => {
                                backlog_bytes += line.len();
                                backlog.push_back(line);
                            }
                        }
                    } else if backlog.len() < MAX_BACKLOG_LINES
                        && backlog_bytes + line.len() <= MAX_BACKLOG_BYTES
                    {
                        backlog_bytes += line.len();
                        backlog.push_back(line);
                    } else {
                        self.count_drop(&mut dropped, 1);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => self.count_drop(&mut dropped, n),
                Err(broadcast::error::RecvError::Closed) => return,
            }
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
