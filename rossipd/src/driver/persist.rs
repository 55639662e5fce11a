//! Persist before deliver: the driver's side of the durable history.

use std::time::{Duration, Instant};

use rossip_proto::{Event, Message};

use super::Driver;
use crate::store::{Batch, Pruned};
use crate::views;

/// Messages held back for the store after failed commits: at most this
/// many payload bytes (text, channel, name) ...
const MAX_UNSTORED_BYTES: usize = 64 * 1024 * 1024;

/// ... and at most this many messages.
const MAX_UNSTORED_MESSAGES: usize = 100_000;

/// A commit with nothing new but held-back messages is tried at most this
/// often: the driver flushes after every event, and a full disk stays full
/// for a while.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Failures after the first are logged at most this often (with a count).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Messages delivered while the store failed (a full disk, say). The node
/// counts them as seen, and the seen ranges every later commit writes say
/// so; so they go into every later commit too, until one succeeds. Without
/// this, a restart after the disk was freed would find them marked seen and
/// missing: never fetched again, lost on this node.
#[derive(Debug, Default)]
pub(super) struct Unstored {
    messages: std::collections::VecDeque<Message>,
    bytes: usize,
    /// Messages given up on since start (the bound was reached).
    dropped: u64,
    /// The last failed commit.
    failed_at: Option<Instant>,
    /// When a failure was last logged, and the failures since.
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl Unstored {
    /// Messages waiting for the store.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Messages given up on since start.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    fn push(&mut self, message: &Message) -> u64 {
        self.bytes += message.payload_len();
        self.messages.push_back(message.clone());
        let mut dropped = 0;
        while self.bytes > MAX_UNSTORED_BYTES || self.messages.len() > MAX_UNSTORED_MESSAGES {
            let Some(oldest) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= oldest.payload_len();
            dropped += 1;
        }
        self.dropped += dropped;
        dropped
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
        self.failed_at = None;
        self.logged_at = None;
        self.unlogged = 0;
    }

    /// Whether a failure now should be logged (else it is counted for the
    /// next line).
    fn log_now(&mut self, now: Instant) -> bool {
        let due = self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL);
        if due {
            self.logged_at = Some(now);
        } else {
            self.unlogged += 1;
        }
        due
    }
}

impl Driver {
    /// Commits the messages among `events` (after any held back by earlier
    /// failed commits), and the seen ranges of every origin they (or a
    /// `Lost` range) touched, in one transaction. A failure is logged and
    /// counted here, and the messages are held back for the next commit.
    pub(super) fn persist(&mut self, events: &[Event]) -> Result<(), rusqlite::Error> {
        let mut batch = Batch::default();
        let mut origins = std::collections::BTreeSet::new();
        for message in &self.unstored.messages {
            batch.messages.push(message);
            origins.insert(message.id.origin);
        }
        let retried = batch.messages.len();
        for event in events {
            match event {
                Event::Message(message) => {
                    batch.messages.push(message);
                    origins.insert(message.id.origin);
                }
                Event::Lost(lost) => {
                    // The node logs the loss itself; this notes it is recorded.
                    tracing::debug!(
                        origin_name = self
                            .node
                            .member(&lost.origin)
                            .map(|m| tracing::field::display(&m.name)),
                        origin = %lost.origin.short(),
                        first = lost.first,
                        last = lost.last,
                        "recording messages given up as seen"
                    );
                    origins.insert(lost.origin);
                }
                Event::Peer(_) | Event::Contacted { .. } | Event::Keyring(_) => {}
            }
        }
        let now = Instant::now();
        let nothing_new = !events
            .iter()
            .any(|e| matches!(e, Event::Message(_) | Event::Lost(_)));
        if retried > 0
            && nothing_new
            && self
                .unstored
                .failed_at
                .is_some_and(|at| now.duration_since(at) < RETRY_INTERVAL)
        {
            return Ok(());
        }
        batch.seen = origins
            .into_iter()
            .map(|origin| (origin, self.node.seen_ranges(&origin)))
            .collect();
        let committed = self.store.commit(&batch, views::unix_ms_now());
        let attempted = batch.messages.len();
        drop(batch);
        match &committed {
            Ok(()) if retried > 0 => {
                tracing::info!(
                    path = %self.store.path().display(),
                    "the history store works again: stored {retried} messages held back since it failed"
                );
                self.unstored.clear();
            }
            Ok(()) => {}
            Err(e) => {
                self.store_errors += 1;
                let mut dropped = 0;
                for event in events {
                    if let Event::Message(message) = event {
                        dropped += self.unstored.push(message);
                    }
                }
                self.unstored.failed_at = Some(now);
                if self.unstored.log_now(now) {
                    let earlier = std::mem::take(&mut self.unstored.unlogged);
                    tracing::error!(
                        path = %self.store.path().display(),
                        messages = attempted,
                        held_back = self.unstored.len(),
                        earlier_failures = earlier,
                        "cannot write the history store: {e}; the messages are held in memory and \
                         written with the next commit that succeeds"
                    );
                }
                if dropped > 0 {
                    tracing::error!(
                        dropped,
                        "the history store has failed for too long: {dropped} delivered messages \
                         are no longer held back for it (they stay in this run's history, and a \
                         restart loses them on this node)"
                    );
                }
            }
        }
        if self.store.prune_due() {
            self.prune_store();
        }
        committed
    }

    /// Records the highest sequence number of this node's messages among
    /// `events` before they are sent. A failure is logged, counted, and
    /// marks the sequence unsafe (the next run starts after the
    /// reservation instead).
    pub(super) fn record_own_seq(&mut self, events: &[Event]) {
        let own = self.node.id();
        let highest = events
            .iter()
            .filter_map(|event| match event {
                Event::Message(message) if message.id.origin == own => Some(message.id.seq),
                _ => None,
            })
            .max();
        let Some(seq) = highest else { return };
        match self.store.record_own_seq(seq) {
            Ok(()) => {
                // This run started after the reservation, so a recorded
                // number of it is past anything an earlier run sent.
                if self.state.sequence_unsafe()
                    && let Err(e) = self.state.clear_sequence_unsafe()
                {
                    tracing::warn!("{e:#}");
                }
            }
            Err(e) => {
                self.store_errors += 1;
                tracing::error!(
                    path = %self.store.path().display(),
                    "cannot record the sequence number about to be sent: {e}"
                );
                if let Err(e) = self.state.mark_sequence_unsafe() {
                    tracing::error!("cannot record that sequence numbers are unsafe: {e:#}");
                }
            }
        }
    }

    /// Applies the store's retention window; a failure is logged and
    /// counted (the next prune retries).
    pub(super) fn prune_store(&mut self) {
        match self.store.prune(views::unix_ms_now()) {
            Ok(pruned) if pruned != Pruned::default() => {
                tracing::debug!(?pruned, "pruned the history store");
            }
            Ok(_) => {}
            Err(e) => {
                self.store_errors += 1;
                tracing::error!(
                    path = %self.store.path().display(),
                    "cannot prune the history store: {e}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::message::Hlc;
    use rossip_proto::sign::NodeKey;

    fn message(seq: u64, text_bytes: usize) -> Message {
        Message::signed(
            &NodeKey::for_testing(1),
            seq,
            "a".into(),
            Hlc {
                ms: seq,
                logical: 0,
            },
            "general".into(),
            "x".repeat(text_bytes),
        )
    }

    #[test]
    fn held_back_messages_are_bounded_oldest_first_and_counted() {
        let mut unstored = Unstored::default();
        let size = 4 * 1024 * 1024;
        let fits = MAX_UNSTORED_BYTES / (size + "general".len() + 1);
        for seq in 1..=fits as u64 {
            assert_eq!(unstored.push(&message(seq, size)), 0, "seq {seq} fits");
        }
        assert_eq!(unstored.push(&message(fits as u64 + 1, size)), 1);
        assert_eq!(unstored.len(), fits);
        assert_eq!(unstored.dropped(), 1);
        assert_eq!(
            unstored.messages.front().map(|m| m.id.seq),
            Some(2),
            "the oldest is given up first"
        );
        unstored.clear();
        assert_eq!((unstored.len(), unstored.bytes), (0, 0));
        assert_eq!(
            unstored.dropped(),
            1,
            "the count of given-up messages stays"
        );
    }

    #[test]
    fn failures_after_the_first_are_logged_at_most_every_interval() {
        let mut unstored = Unstored::default();
        let start = Instant::now();
        assert!(unstored.log_now(start));
        assert!(!unstored.log_now(start + Duration::from_secs(1)));
        assert!(!unstored.log_now(start + Duration::from_secs(9)));
        assert_eq!(unstored.unlogged, 2);
        assert!(unstored.log_now(start + LOG_INTERVAL));
    }
}
