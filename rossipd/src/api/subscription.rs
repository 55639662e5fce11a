//! Subscriptions of one connection: what each wants and where it is. A
//! subscription holds no queue of its own: it is a position in this node's
//! delivery order (and, while it replays history in history order, a
//! position in that), and the connection reads on from it whenever it has
//! room to write (see `journal` in the driver). A subscriber that stops
//! reading costs its position and its connection's bounded output, nothing
//! more.

use std::collections::BTreeMap;

use rossip_proto::rpc::{EventBody, EventKind};

use super::follow::EventSink;

use crate::delivery::{Cursor, Delivered};
use crate::driver::journal::Viewer;
use crate::driver::journal::{ReadFilter, ReadFrom, ReadPage};
use crate::driver::{DirectStatusUpdate, PeerChange, PresenceUpdate};
use crate::views::{self, WallClock};

/// What one subscription wants.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Event kinds.
    pub kinds: Vec<EventKind>,
    /// Which messages.
    pub read: ReadFilter,
}

/// A subscription as `subscribe` starts it.
#[derive(Debug)]
pub struct SubscriptionStart {
    /// What it wants.
    pub filter: Filter,
    /// History to replay first, if any.
    pub replay: Option<ReadFrom>,
    /// The delivery live events follow (the replay covers up to it).
    pub position: u64,
    /// Its cursor, for the answer.
    pub cursor: Cursor,
}

/// One live subscription.
#[derive(Debug)]
struct Subscription {
    filter: Filter,
    /// History still to replay, then reads by number.
    replay: Option<ReadFrom>,
    /// The last delivery sent (or passed over).
    position: u64,
    store: crate::delivery::StoreId,
}

impl Subscription {
    fn wants_messages(&self) -> bool {
        self.filter.kinds.contains(&EventKind::Message)
    }

    fn wants_peers(&self) -> bool {
        self.filter.kinds.contains(&EventKind::Peer)
    }

    fn wants_presence(&self) -> bool {
        self.filter.kinds.contains(&EventKind::Presence)
    }

    fn wants_direct_statuses(&self) -> bool {
        self.filter.kinds.contains(&EventKind::DirectStatus)
    }

    /// Whether it is told what became of `update`'s message: only its
    /// sender's user (and root) are.
    fn wants_direct_status(&self, update: &DirectStatusUpdate) -> bool {
        self.wants_direct_statuses()
            && match &self.filter.read.viewer {
                Viewer::Everyone => true,
                Viewer::User(user) => *user == update.sender,
            }
    }
}

/// The subscriptions of one connection.
#[derive(Debug, Default)]
pub struct Subscriptions {
    live: BTreeMap<u64, Subscription>,
    next_id: u64,
    /// The subscription read last, so reads take turns.
    last_read: u64,
}

impl Subscriptions {
    /// How many there are.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Starts one; its id.
    pub fn add(&mut self, start: SubscriptionStart) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.live.insert(
            id,
            Subscription {
                filter: start.filter,
                replay: start.replay,
                position: start.position,
                store: start.cursor.store,
            },
        );
        id
    }

    /// Ends one; whether it existed.
    pub fn remove(&mut self, id: u64) -> bool {
        self.live.remove(&id).is_some()
    }

    /// Ends them all (the client closed its side).
    pub fn clear(&mut self) {
        self.live.clear();
    }

    /// Whether any wants member changes.
    pub fn want_peers(&self) -> bool {
        self.live.values().any(Subscription::wants_peers)
    }

    /// The next read to make, taking turns: a subscription that replays,
    /// or one behind `newest`.
    pub fn next_read(&mut self, newest: u64) -> Option<(u64, ReadFrom, ReadFilter)> {
        let after = self.last_read;
        let candidates = self
            .live
            .range(after + 1..)
            .chain(self.live.range(..=after));
        for (&id, sub) in candidates {
            if !sub.wants_messages() {
                continue;
            }
            let from = match &sub.replay {
                Some(from) => from.clone(),
                None if sub.position < newest => ReadFrom::After(sub.position),
                None => continue,
            };
            self.last_read = id;
            return Some((id, from, sub.filter.read.clone()));
        }
        None
    }

    /// Writes the events of `page`, read for subscription `id` from `from`,
    /// and moves it on. Returns how many deliveries it says were dropped.
    pub fn take_page(
        &mut self,
        id: u64,
        from: &ReadFrom,
        page: ReadPage,
        sink: &mut dyn EventSink,
    ) -> u64 {
        // Unsubscribed meanwhile, or read from a position it has left.
        let Some(sub) = self.live.get_mut(&id) else {
            return 0;
        };
        let current = sub.replay.clone().unwrap_or(ReadFrom::After(sub.position));
        if &current != from {
            return 0;
        }
        if page.dropped > 0 {
            // Where the stream goes on: before the page's first delivery,
            // or where the page ends if it has none.
            let resume = match (page.deliveries.first(), &page.next) {
                (Some(first), _) => first.cursor.seq.saturating_sub(1),
                (None, Some(ReadFrom::After(next))) => *next,
                (None, _) => sub.position,
            };
            push_line(
                sink,
                id,
                EventBody::Lagged {
                    dropped: page.dropped,
                    cursor: Some(
                        Cursor {
                            store: sub.store,
                            seq: resume,
                        }
                        .to_string(),
                    ),
                },
            );
        }
        for delivered in &page.deliveries {
            push_message(sink, id, delivered);
        }
        match (&sub.replay, page.next) {
            // A replay goes on, or ends and live reads begin.
            (Some(_), Some(next @ ReadFrom::Ordered { .. })) => sub.replay = Some(next),
            (Some(_), _) => sub.replay = None,
            (None, Some(ReadFrom::After(position))) => sub.position = position,
            (None, _) => {}
        }
        page.dropped
    }

    /// Whether any wants presence changes.
    pub fn want_presence(&self) -> bool {
        self.live.values().any(Subscription::wants_presence)
    }

    /// Writes a presence change to every subscription that wants them.
    pub fn take_presence_change(&self, update: &PresenceUpdate, sink: &mut dyn EventSink) {
        for (&id, sub) in &self.live {
            if sub.wants_presence() {
                push_line(sink, id, super::presence::presence_event(update));
            }
        }
    }

    /// Whether any wants the outcomes of direct messages.
    pub fn want_direct_statuses(&self) -> bool {
        self.live.values().any(Subscription::wants_direct_statuses)
    }

    /// Writes the outcome of a direct message to every subscription that
    /// wants it and may see it.
    pub fn take_direct_status(&self, update: &DirectStatusUpdate, sink: &mut dyn EventSink) {
        for (&id, sub) in &self.live {
            if sub.wants_direct_status(update) {
                push_line(sink, id, direct_status_event(update));
            }
        }
    }

    /// Tells every subscription that wants events of `kind` (presence
    /// changes, outcomes of direct messages: events with no place in the
    /// message stream, so no cursor) that `dropped` of them were missed.
    pub fn events_lagged(&self, kind: EventKind, dropped: u64, sink: &mut dyn EventSink) {
        for (&id, sub) in &self.live {
            if sub.filter.kinds.contains(&kind) {
                push_line(
                    sink,
                    id,
                    EventBody::Lagged {
                        dropped,
                        cursor: None,
                    },
                );
            }
        }
    }

    /// Writes a member change to every subscription that wants them.
    pub fn take_peer_change(
        &self,
        change: &PeerChange,
        clock: &WallClock,
        sink: &mut dyn EventSink,
    ) {
        for (&id, sub) in &self.live {
            if sub.wants_peers() {
                push_line(
                    sink,
                    id,
                    EventBody::Peer {
                        peer: views::peer_snapshot_view(&change.peer, clock),
                        previous: change.previous.map(views::state_name),
                    },
                );
            }
        }
    }

    /// Tells every subscription that wants member changes that `dropped`
    /// of them were missed. The cursor says where its messages go on,
    /// unless it still replays history (then there is no such point yet).
    pub fn peers_lagged(&self, dropped: u64, sink: &mut dyn EventSink) {
        for (&id, sub) in &self.live {
            if sub.wants_peers() {
                let cursor = sub.replay.is_none().then(|| {
                    Cursor {
                        store: sub.store,
                        seq: sub.position,
                    }
                    .to_string()
                });
                push_line(sink, id, EventBody::Lagged { dropped, cursor });
            }
        }
    }
}

fn push_message(sink: &mut dyn EventSink, id: u64, delivered: &Delivered) {
    push_line(
        sink,
        id,
        EventBody::Message {
            message: views::message_view(delivered),
        },
    );
}

/// The event telling what became of a direct message.
fn direct_status_event(update: &DirectStatusUpdate) -> EventBody {
    use rossip_proto::node::DirectOutcome;
    use rossip_proto::rpc::DirectStatusName;
    let (status, reason) = match update.outcome {
        DirectOutcome::Delivered => (DirectStatusName::Delivered, None),
        DirectOutcome::Expired => (
            DirectStatusName::Expired,
            Some("not acknowledged before it expired (--direct-expiry)".to_owned()),
        ),
    };
    EventBody::DirectStatus {
        id: update.id.to_string(),
        status,
        reason,
    }
}

fn push_line(sink: &mut dyn EventSink, id: u64, event: EventBody) {
    sink.event(id, event);
}
