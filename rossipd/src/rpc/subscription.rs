//! Forwarding live events to one subscriber, with bounded buffering.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// Most bytes of event lines held back by all subscriptions together. The
/// per-subscription bounds alone would let memory grow with the number of
/// subscribers that stop reading (100 of them held ~900 MiB); past this,
/// events for subscribers with a backlog are dropped and counted (they get
/// a `lagged` notice), whoever they are.
pub const MAX_TOTAL_BACKLOG_BYTES: usize = 64 * 1024 * 1024;

/// Live events a forwarder takes per wake-up without awaiting.
const DRAIN_BATCH: usize = 1024;

/// The bytes of held-back event lines of every subscription, against
/// [`MAX_TOTAL_BACKLOG_BYTES`]. One per daemon, shared by its connections.
#[derive(Debug, Default)]
pub struct BacklogBudget {
    used: AtomicUsize,
    /// Whether the "budget exhausted" warning is out (until usage falls
    /// back under half the budget), so that it is logged once an episode.
    warned: AtomicBool,
}

impl BacklogBudget {
    /// Takes `n` bytes if they fit.
    fn try_take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n)
                    .filter(|&total| total <= MAX_TOTAL_BACKLOG_BYTES)
            })
            .is_ok();
        if !taken && !self.warned.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "subscribers that do not keep up hold {} MiB of events, the most rossipd keeps for all \
                 of them; dropping their events (they get a `lagged` notice)",
                MAX_TOTAL_BACKLOG_BYTES / (1024 * 1024)
            );
        }
        taken
    }

    /// Takes `n` bytes even past the budget: a line taken out to be sent
    /// that found no room after all goes back (at most one line over per
    /// subscription, and only on a multi-threaded runtime).
    fn force_take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    fn give_back(&self, n: usize) {
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        if before.saturating_sub(n) < MAX_TOTAL_BACKLOG_BYTES / 2 {
            self.warned.store(false, Ordering::Release);
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Event lines held back for one subscriber, and events dropped since the
/// last `lagged` notice. Its bytes count against the daemon's budget
/// until sent or dropped with it.
#[derive(Debug)]
struct Backlog {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: u64,
    budget: Arc<BacklogBudget>,
}

impl Backlog {
    fn new(budget: Arc<BacklogBudget>) -> Backlog {
        Backlog {
            lines: VecDeque::new(),
            bytes: 0,
            dropped: 0,
            budget,
        }
    }

    /// Holds `line` back if this subscription's bounds and the daemon's
    /// budget allow (a first line always passes the former, so a message
    /// larger than the per-subscription byte bound still gets through);
    /// else hands it back.
    fn push(&mut self, line: String) -> Result<(), String> {
        let fits_here = self.lines.is_empty()
            || (self.lines.len() < MAX_BACKLOG_LINES
                && self.bytes + line.len() <= MAX_BACKLOG_BYTES);
        if !fits_here || !self.budget.try_take(line.len()) {
            return Err(line);
        }
        self.bytes += line.len();
        self.lines.push_back(line);
        Ok(())
    }

    fn pop(&mut self) -> Option<String> {
        let line = self.lines.pop_front()?;
        self.bytes -= line.len();
        self.budget.give_back(line.len());
        Some(line)
    }

    fn unpop(&mut self, line: String) {
        self.budget.force_take(line.len());
        self.bytes += line.len();
        self.lines.push_front(line);
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
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
    /// The daemon's budget for held-back lines.
    pub budget: Arc<BacklogBudget>,
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
        let mut queue = Backlog::new(self.budget.clone());
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
                let line = if queue.lines.is_empty() {
                    match self.out.try_send(line) {
                        Ok(()) => return true,
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                        Err(mpsc::error::TrySendError::Full(line)) => line,
                    }
                } else {
                    line
                };
                if queue.push(line).is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlogs_share_one_budget_and_give_it_back() {
        let budget = Arc::new(BacklogBudget::default());
        let mut a = Backlog::new(budget.clone());
        let mut b = Backlog::new(budget.clone());
        let big = "x".repeat(MAX_BACKLOG_BYTES / 2);
        let mut held = 0;
        // Many backlogs, each within its own bounds, meet the shared one.
        let mut others: Vec<Backlog> = Vec::new();
        loop {
            let mut backlog = Backlog::new(budget.clone());
            if backlog.push(big.clone()).is_err() {
                break;
            }
            held += big.len();
            others.push(backlog);
        }
        assert_eq!(budget.used(), held);
        assert!(held <= MAX_TOTAL_BACKLOG_BYTES);
        assert!(held + big.len() > MAX_TOTAL_BACKLOG_BYTES, "filled up");
        assert!(a.push(big.clone()).is_err(), "the budget is spent");
        assert!(a.push("small".to_owned()).is_ok() || MAX_TOTAL_BACKLOG_BYTES - held < 5);
        drop(others);
        assert_eq!(
            budget.used(),
            a.bytes,
            "dropped backlogs give their bytes back"
        );
        assert!(b.push(big.clone()).is_ok());
        let line = b.pop().expect("a line");
        assert_eq!(budget.used(), a.bytes);
        b.unpop(line);
        assert_eq!(budget.used(), a.bytes + big.len());
        drop(b);
        while a.pop().is_some() {}
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn one_backlog_keeps_its_own_bounds() {
        let budget = Arc::new(BacklogBudget::default());
        let mut backlog = Backlog::new(budget);
        // A first line larger than the byte bound still passes.
        let huge = "x".repeat(MAX_BACKLOG_BYTES + 1);
        assert!(backlog.push(huge).is_ok());
        assert!(backlog.push("next".to_owned()).is_err());
        while backlog.pop().is_some() {}
        for i in 0..MAX_BACKLOG_LINES {
            assert!(backlog.push(i.to_string()).is_ok(), "line {i}");
        }
        assert!(backlog.push("one too many".to_owned()).is_err());
    }
}
