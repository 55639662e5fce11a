//! What one connection follows, for either front end: its subscriptions
//! (positions in this node's delivery order, see `subscription`) and the
//! event sources they need (member changes, presence, outcomes of direct
//! messages). A connection waits on [`Follower::wait`] in its `select!`
//! only while it has room to write, then hands what came to
//! [`Follower::take`] with an [`EventSink`] of its own wire format: the
//! JSON-RPC connection writes `event` notification lines, the WebSocket
//! writes one frame an event. So both get the same bounded backlog: a
//! follower that stops reading stops its own reads, and one that falls out
//! of the history window or behind a broadcast gets a `lagged` event.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use rossip_proto::rpc::{
    self, ErrorObject, EventBody, EventKind, SubscribeResult, UnsubscribeResult,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::history::PAGE_BYTES;
use super::methods::MAX_SUBSCRIPTIONS_PER_CONNECTION;
use super::subscription::{SubscriptionStart, Subscriptions};
use crate::driver::journal::{ReadFrom, ReadPage};
use crate::driver::{
    CoreError, DirectStatusUpdate, Handle, PeerChange, PresenceUpdate, SharedCounters,
};

/// Messages per subscription read.
const EVENT_PAGE: usize = 256;

/// Where a front end writes events, in its own format.
pub trait EventSink {
    /// One event of subscription `subscription`.
    fn event(&mut self, subscription: u64, event: EventBody);
}

/// Something [`Follower::wait`] found ready, for [`Follower::take`].
#[derive(Debug)]
pub enum Ready {
    /// A page read for a subscription from a position (boxed: a page is
    /// by far the largest of these).
    Page(Box<(u64, ReadFrom, Result<ReadPage, CoreError>)>),
    /// A member change (or how many were missed).
    Peer(Result<Arc<PeerChange>, RecvError>),
    /// A presence change (or how many were missed).
    Presence(Result<Arc<PresenceUpdate>, RecvError>),
    /// What became of a direct message (or how many were missed).
    DirectStatus(Result<Arc<DirectStatusUpdate>, RecvError>),
    /// Something new was delivered (`Err`: the driver is gone).
    Delivered(Result<(), watch::error::RecvError>),
}

/// The subscriptions of one connection and the sources they read.
pub struct Follower {
    driver: Handle,
    counters: Arc<SharedCounters>,
    subscriptions: Subscriptions,
    /// The newest delivery on this node.
    newest: watch::Receiver<u64>,
    /// The page being read for a subscription, if any.
    fetch: Option<BoxFuture<'static, Ready>>,
    peer_changes: Option<broadcast::Receiver<Arc<PeerChange>>>,
    presence_changes: Option<broadcast::Receiver<Arc<PresenceUpdate>>>,
    direct_statuses: Option<broadcast::Receiver<Arc<DirectStatusUpdate>>>,
    /// The driver is still there: deliveries can still come.
    driver_alive: bool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("subscriptions", &self.subscriptions)
            .field("fetching", &self.fetch.is_some())
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// A follower with no subscription yet.
    pub fn new(driver: Handle, counters: Arc<SharedCounters>) -> Follower {
        let newest = driver.deliveries();
        Follower {
            driver,
            counters,
            subscriptions: Subscriptions::default(),
            newest,
            fetch: None,
            peer_changes: None,
            presence_changes: None,
            direct_statuses: None,
            driver_alive: true,
        }
    }

    /// Starts a subscription; what `subscribe` answers.
    pub fn add(&mut self, start: SubscriptionStart) -> Result<SubscribeResult, ErrorObject> {
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            return Err(ErrorObject::new(
                rpc::code::TOO_MANY_SUBSCRIPTIONS,
                format!("a connection may hold {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions"),
            ));
        }
        let cursor = start.cursor.to_string();
        let kinds = start.filter.kinds.clone();
        let subscription = self.subscriptions.add(start);
        if kinds.contains(&EventKind::Peer) && self.peer_changes.is_none() {
            self.peer_changes = Some(self.driver.peer_changes());
        }
        if kinds.contains(&EventKind::Presence) && self.presence_changes.is_none() {
            self.presence_changes = Some(self.driver.presence_changes());
        }
        if kinds.contains(&EventKind::DirectStatus) && self.direct_statuses.is_none() {
            self.direct_statuses = Some(self.driver.direct_statuses());
        }
        Ok(SubscribeResult {
            subscription,
            cursor: Some(cursor),
        })
    }

    /// Ends a subscription; what `unsubscribe` answers.
    pub fn remove(&mut self, subscription: u64) -> Result<UnsubscribeResult, ErrorObject> {
        if !self.subscriptions.remove(subscription) {
            return Err(ErrorObject::new(
                rpc::code::UNKNOWN_SUBSCRIPTION,
                format!("no subscription {subscription} on this connection"),
            ));
        }
        // A source nobody wants any more is let go (its backlog with it).
        if !self.subscriptions.want_peers() {
            self.peer_changes = None;
        }
        if !self.subscriptions.want_presence() {
            self.presence_changes = None;
        }
        if !self.subscriptions.want_direct_statuses() {
            self.direct_statuses = None;
        }
        Ok(UnsubscribeResult { unsubscribed: true })
    }

    /// Ends every subscription (the client closed its side, or the daemon
    /// stops).
    pub fn clear(&mut self) {
        self.subscriptions.clear();
        self.fetch = None;
        self.peer_changes = None;
        self.presence_changes = None;
        self.direct_statuses = None;
    }

    /// How many subscriptions there are.
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// Waits until something is ready for [`Follower::take`]; pends for
    /// ever while nothing is followed. Cancel-safe: a page being read is
    /// kept for the next call, and the sources are channels.
    pub async fn wait(&mut self) -> Ready {
        if self.fetch.is_none() {
            self.fetch = self.next_fetch();
        }
        let fetching = self.fetch.is_some();
        let waits_for_deliveries = self.driver_alive && !fetching && self.subscriptions.len() > 0;
        tokio::select! {
            biased;
            Some(ready) = async {
                match self.fetch.as_mut() {
                    Some(page) => Some(page.await),
                    None => None,
                }
            }, if fetching => {
                self.fetch = None;
                ready
            }
            Some(change) = recv(&mut self.peer_changes) => Ready::Peer(change),
            Some(update) = recv(&mut self.presence_changes) => Ready::Presence(update),
            Some(update) = recv(&mut self.direct_statuses) => Ready::DirectStatus(update),
            changed = self.newest.changed(), if waits_for_deliveries => Ready::Delivered(changed),
            else => std::future::pending().await,
        }
    }

    /// Writes what [`Follower::wait`] found to `sink`. `false`: the driver
    /// is gone, nothing more will come.
    pub fn take(&mut self, ready: Ready, sink: &mut dyn EventSink) -> bool {
        match ready {
            Ready::Page(read) => {
                let (id, from, page) = *read;
                let Ok(page) = page else { return false };
                let dropped = self.subscriptions.take_page(id, &from, page, sink);
                if dropped > 0 {
                    tracing::debug!(subscription = id, dropped, "subscriber fell behind history");
                }
            }
            Ready::Peer(Ok(change)) => {
                self.subscriptions
                    .take_peer_change(&change, self.driver.clock(), sink);
            }
            Ready::Peer(Err(RecvError::Lagged(n))) => {
                self.count_drops(n);
                self.subscriptions.peers_lagged(n, sink);
            }
            Ready::Peer(Err(RecvError::Closed)) => self.peer_changes = None,
            Ready::Presence(Ok(update)) => self.subscriptions.take_presence_change(&update, sink),
            Ready::Presence(Err(RecvError::Lagged(n))) => {
                self.count_drops(n);
                self.subscriptions
                    .events_lagged(EventKind::Presence, n, sink);
            }
            Ready::Presence(Err(RecvError::Closed)) => self.presence_changes = None,
            Ready::DirectStatus(Ok(update)) => self.subscriptions.take_direct_status(&update, sink),
            Ready::DirectStatus(Err(RecvError::Lagged(n))) => {
                self.count_drops(n);
                self.subscriptions
                    .events_lagged(EventKind::DirectStatus, n, sink);
            }
            Ready::DirectStatus(Err(RecvError::Closed)) => self.direct_statuses = None,
            Ready::Delivered(Ok(())) => {}
            Ready::Delivered(Err(_)) => {
                // The driver is gone: nothing more will come.
                self.driver_alive = false;
                self.subscriptions.clear();
            }
        }
        true
    }

    /// The next page to read for a subscription, taking turns.
    fn next_fetch(&mut self) -> Option<BoxFuture<'static, Ready>> {
        let newest = *self.newest.borrow_and_update();
        let (id, from, filter) = self.subscriptions.next_read(newest)?;
        let driver = self.driver.clone();
        Some(Box::pin(async move {
            let page = driver
                .read(from.clone(), filter, EVENT_PAGE, PAGE_BYTES)
                .await;
            Ready::Page(Box::new((id, from, page)))
        }))
    }

    fn count_drops(&self, n: u64) {
        self.counters
            .subscriber_drops
            .fetch_add(n, Ordering::Relaxed);
    }
}

/// The next item of an optional broadcast (`None`: not followed).
async fn recv<T: Clone>(
    receiver: &mut Option<broadcast::Receiver<T>>,
) -> Option<Result<T, RecvError>> {
    match receiver {
        Some(receiver) => Some(receiver.recv().await),
        None => None,
    }
}
