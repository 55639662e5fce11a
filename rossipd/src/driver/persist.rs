//! Persist before deliver: the driver's side of the durable history.

use std::time::Instant;

use rossip_proto::Event;

use super::Driver;
use crate::store::{Batch, Pruned};
use crate::views;

/// Why a flush's messages are not in the store (yet).
#[derive(Debug)]
pub(super) enum PersistError {
    /// The commit failed.
    Store(rusqlite::Error),
    /// An earlier commit failed moments ago (this error); the store is not
    /// tried again yet.
    Deferred(String),
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::Store(e) => write!(f, "{e}"),
            PersistError::Deferred(e) => write!(f, "{e}; retrying shortly"),
        }
    }
}

impl Driver {
    /// Commits the messages among `events` (after any held back by earlier
    /// failed commits), and the seen ranges of every origin they (or a
    /// `Lost` range) touched, in one transaction. A failure is logged and
    /// counted here, and what it left out is held for the next attempt
    /// (see `unstored`). On success, returns the messages held back by
    /// earlier failures, now stored, to be shown to followers.
    pub(super) fn persist(
        &mut self,
        numbered: &[(u64, &rossip_proto::Message)],
        events: &[Event],
    ) -> Result<Vec<(u64, rossip_proto::Message)>, PersistError> {
        let now = Instant::now();
        if let Some(error) = self.unstored.deferred(now) {
            let error = error.to_owned();
            let dropped = self.unstored.hold(numbered, events);
            self.log_dropped(dropped);
            return Err(PersistError::Deferred(error));
        }
        let mut batch = Batch::default();
        let mut origins = self.unstored.origins.clone();
        for (number, message) in &self.unstored.messages {
            batch.messages.push((*number, message));
        }
        let retried = batch.messages.len();
        for &(number, message) in numbered {
            batch.messages.push((number, message));
            // Direct messages are outside every seen set.
            if message.to.is_none() {
                origins.insert(message.id.origin);
            }
        }
        for event in events {
            match event {
                Event::Message(_) => {}
                Event::Lost(lost) => {
                    // The node logs the loss itself; this notes it is recorded.
                    tracing::debug!(
                        origin_name = self
                            .node
                            .member(&lost.origin)
                            .map(|m| tracing::field::display(rossip_proto::log_text::LogText(&m.name))),
                        origin = %lost.origin.short(),
                        first = lost.first,
                        last = lost.last,
                        "recording messages given up as seen"
                    );
                    origins.insert(lost.origin);
                }
                Event::Peer(_)
                | Event::Contacted { .. }
                | Event::Keyring(_)
                | Event::IdentityInUse(_)
                | Event::Presence(_) => {}
                Event::DirectStatus(_) => {}
            }
        }
        batch.seen = origins
            .into_iter()
            .map(|origin| {
                let seen = self
                    .unstored
                    .unclaim(&origin, self.node.seen_ranges(&origin));
                (origin, seen)
            })
            .collect();
        let committed = self.store.commit(&batch, views::unix_ms_now());
        let attempted = batch.messages.len();
        drop(batch);
        let mut released = Vec::new();
        match &committed {
            Ok(()) => {
                if !self.unstored.is_empty() {
                    tracing::info!(
                        path = %self.store.path().display(),
                        held_back = retried,
                        "the history store works again: what a failed commit left out is stored \
                         and shown to subscribers"
                    );
                    released = self.unstored.stored();
                }
            }
            Err(e) => {
                self.store_errors += 1;
                let dropped = self.unstored.hold(numbered, events);
                if let Some(earlier) = self.unstored.failed(e.to_string(), now) {
                    tracing::error!(
                        path = %self.store.path().display(),
                        messages = attempted,
                        held_back = self.unstored.len(),
                        earlier_failures = earlier,
                        "cannot write the history store: {e}; the messages are held in memory and \
                         written with the next commit that succeeds"
                    );
                }
                self.log_dropped(dropped);
            }
        }
        if self.store.prune_due() {
            self.prune_store();
        }
        committed.map(|()| released).map_err(PersistError::Store)
    }

    fn log_dropped(&self, dropped: u64) {
        if dropped > 0 {
            tracing::error!(
                dropped,
                "the history store has failed for too long: {dropped} delivered messages are no \
                 longer held back for it (they stay in this run's history; after a restart this \
                 node asks its peers for them again, and gets them while a peer still holds them)"
            );
        }
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
                // Direct messages take no number of the gossip sequence.
                Event::Message(message) if message.id.origin == own && message.to.is_none() => {
                    Some(message.id.seq)
                }
                _ => None,
            })
            .max();
        let Some(seq) = highest else { return };
        if self.unstored.deferred(Instant::now()).is_some() {
            // The store failed moments ago: not tried (nor logged) once per
            // send. The next run starts after the reservation instead.
            if let Err(e) = self.state.mark_sequence_unsafe() {
                tracing::error!("cannot record that sequence numbers are unsafe: {e:#}");
            }
            return;
        }
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
