//! Persist before deliver: the driver's side of the durable history.

use rossip_proto::Event;

use super::Driver;
use crate::store::{Batch, Pruned};
use crate::views;

impl Driver {
    /// Commits the messages among `events`, and the seen ranges of every
    /// origin they (or a `Lost` range) touched, in one transaction. A
    /// failure is logged and counted here.
    pub(super) fn persist(&mut self, events: &[Event]) -> Result<(), rusqlite::Error> {
        let mut batch = Batch::default();
        let mut origins = std::collections::BTreeSet::new();
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
        batch.seen = origins
            .into_iter()
            .map(|origin| (origin, self.node.seen_ranges(&origin)))
            .collect();
        let committed = self
            .store
            .commit(&batch, views::unix_ms_now())
            .inspect_err(|e| {
                self.store_errors += 1;
                tracing::error!(
                    path = %self.store.path().display(),
                    messages = batch.messages.len(),
                    "cannot write the history store: {e}"
                );
            });
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
