//! Presence on this daemon: which local users are in a chat. A chat client
//! registers its connection's user with `presence.set` (available or away,
//! a status line); the registration lasts as long as the connection. The
//! registrations of one user merge (available if any of them is), and the
//! merged list is what the node states to the cluster
//! ([`rossip_proto::Node::set_presence`]). The node reports every change,
//! this node's users and the members' alike, as events, which go to
//! `presence` subscribers here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rossip_proto::NodeId;
use rossip_proto::node::PresenceChange;
use rossip_proto::presence::{Availability, UserPresence};

use super::Driver;
use crate::views;

/// Names one registration: one RPC connection's (see
/// [`PresenceSession::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PresenceSession(u64);

impl PresenceSession {
    /// A session id no other connection of this process has.
    pub fn next() -> PresenceSession {
        // Process-wide only so that each connection can name itself before
        // it first talks to the driver; the driver owns all the state.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        PresenceSession(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// What a connection asks with `presence.set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRequest {
    /// The connection.
    pub session: PresenceSession,
    /// Its user (from peer credentials).
    pub user: String,
    /// The availability to set; `None`: unchanged (available at first).
    pub availability: Option<Availability>,
    /// The status line to set (`Some(None)` clears it); `None`: unchanged.
    pub status: Option<Option<String>>,
}

/// A user's presence on this node after a `presence.set`, merged over the
/// user's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPresence {
    /// The user.
    pub user: String,
    /// Available if any of their connections is.
    pub availability: Availability,
    /// The status line in effect.
    pub status: Option<String>,
}

/// One user in a chat somewhere, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    /// Their node.
    pub node: NodeId,
    /// Its name (as it announces it).
    pub node_name: String,
    /// Whether the node is this one.
    pub local: bool,
    /// What the node states of them.
    pub presence: UserPresence,
}

/// A presence change for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUpdate {
    /// The user after the change; when they left, the last known state.
    pub entry: PresenceEntry,
    /// `Some(ms)` when the user is no longer in a chat: since when.
    pub offline_since: Option<u64>,
    /// Their availability before; `None`: they were not in a chat.
    pub previous: Option<Availability>,
}

/// One connection's registration.
#[derive(Debug, Clone)]
struct Registration {
    user: String,
    availability: Availability,
    status: Option<String>,
    /// When (in the order of changes, across registrations) this
    /// connection last set or cleared its status (0: never): the newest
    /// wins when a user's connections disagree.
    status_changed: u64,
}

/// The registrations, and the merged presence of each local user.
#[derive(Debug, Default)]
pub(super) struct LocalPresenceTable {
    registrations: BTreeMap<PresenceSession, Registration>,
    /// Per user: merged availability and status, and since when (ms) in
    /// that availability.
    merged: BTreeMap<String, (Availability, Option<String>, u64)>,
    changes: u64,
}

impl LocalPresenceTable {
    /// Applies a `presence.set`; returns the user's merged presence.
    fn set(&mut self, request: PresenceRequest, wall_ms: u64) -> LocalPresence {
        self.changes += 1;
        let registration = self
            .registrations
            .entry(request.session)
            .or_insert_with(|| Registration {
                user: request.user.clone(),
                availability: Availability::Available,
                status: None,
                status_changed: 0,
            });
        // A connection speaks for one user: its credentials do not change.
        registration.user.clone_from(&request.user);
        if let Some(availability) = request.availability {
            registration.availability = availability;
        }
        if let Some(status) = request.status {
            registration.status = status;
            registration.status_changed = self.changes;
        }
        self.merge(&request.user, wall_ms);
        let (availability, status, _) = self.merged.get(&request.user).cloned().unwrap_or((
            Availability::Available,
            None,
            wall_ms,
        ));
        LocalPresence {
            user: request.user,
            availability,
            status,
        }
    }

    /// Ends a connection's registration; whether it had one.
    fn end(&mut self, session: PresenceSession, wall_ms: u64) -> bool {
        match self.registrations.remove(&session) {
            Some(registration) => {
                self.merge(&registration.user, wall_ms);
                true
            }
            None => false,
        }
    }

    /// Recomputes `user`'s merged presence from their registrations.
    fn merge(&mut self, user: &str, wall_ms: u64) {
        let mine: Vec<&Registration> = self
            .registrations
            .values()
            .filter(|r| r.user == user)
            .collect();
        if mine.is_empty() {
            self.merged.remove(user);
            return;
        }
        let availability = if mine
            .iter()
            .any(|r| r.availability == Availability::Available)
        {
            Availability::Available
        } else {
            Availability::Away
        };
        let status = mine
            .iter()
            .filter(|r| r.availability == availability)
            .max_by_key(|r| r.status_changed)
            .and_then(|r| r.status.clone());
        let since = match self.merged.get(user) {
            Some((before, _, since)) if *before == availability => *since,
            _ => wall_ms,
        };
        self.merged
            .insert(user.to_owned(), (availability, status, since));
    }
}

impl Driver {
    /// `presence.set` from a connection.
    pub(super) fn on_presence_set(
        &mut self,
        request: PresenceRequest,
        now: Instant,
    ) -> LocalPresence {
        let merged = self.local_presence.set(request, views::unix_ms_now());
        self.state_presence(now);
        merged
    }

    /// A connection that registered closed.
    pub(super) fn on_presence_end(&mut self, session: PresenceSession, now: Instant) {
        if self.local_presence.end(session, views::unix_ms_now()) {
            self.state_presence(now);
        }
    }

    /// Hands the merged local users to the node, which states them to the
    /// cluster if they changed. Also to be called when a local user's
    /// display name changes ([`Driver::nick_of`]).
    pub(super) fn state_presence(&mut self, now: Instant) {
        let users: Vec<UserPresence> = self
            .local_presence
            .merged
            .iter()
            .map(|(user, (availability, status, since))| UserPresence {
                user: user.clone(),
                nick: self.nick_of(user),
                availability: *availability,
                status: status.clone(),
                since_ms: *since,
            })
            .collect();
        let stated = self.node.set_presence(users, now);
        for (user, why) in &stated.left_out {
            tracing::warn!(
                user = %rossip_proto::log_text::LogText(user),
                reason = ?why,
                stated = stated.stated,
                "a local user's presence does not fit this node's presence record; left out"
            );
        }
    }

    /// The display name of local `user`, for presence: the one place
    /// presence learns nicks from (it must return at most
    /// [`rossip_proto::message::MAX_NICK_BYTES`], or the user is left out of
    /// the node's statement).
    fn nick_of(&self, user: &str) -> Option<String> {
        self.nicks.get(user).map(str::to_owned)
    }

    /// Everyone in a chat on every node this node knows, sorted by node
    /// name, node id, then user.
    pub(super) fn who(&self) -> Vec<PresenceEntry> {
        let mut entries: Vec<PresenceEntry> = self
            .node
            .presence()
            .into_iter()
            .map(|(node, presence)| self.presence_entry(node, presence.clone()))
            .collect();
        entries.sort_by(|a, b| {
            (&a.node_name, a.node, &a.presence.user).cmp(&(&b.node_name, b.node, &b.presence.user))
        });
        entries
    }

    fn presence_entry(&self, node: NodeId, presence: UserPresence) -> PresenceEntry {
        let local = node == self.node.id();
        let node_name = if local {
            self.node.name().to_owned()
        } else {
            self.node
                .member(&node)
                .map(|m| m.name.clone())
                .unwrap_or_default()
        };
        PresenceEntry {
            node,
            node_name,
            local,
            presence,
        }
    }

    /// A user came, went or changed: logged, and told to subscribers.
    pub(super) fn on_presence_change(&mut self, change: PresenceChange) {
        let previous = change.previous.as_ref().map(|p| p.availability);
        let (presence, offline_since) = match (change.current, change.previous) {
            (Some(current), _) => (current, None),
            (None, Some(previous)) => (previous, Some(views::unix_ms_now())),
            (None, None) => return,
        };
        let entry = self.presence_entry(change.node, presence);
        tracing::debug!(
            user = %rossip_proto::log_text::LogText(&entry.presence.user),
            node = %rossip_proto::log_text::LogText(&entry.node_name),
            state = if offline_since.is_some() { "offline" } else { entry.presence.availability.as_str() },
            "presence changed"
        );
        // No receivers is fine: nobody is subscribed.
        let _ = self.presence_changes.send(Arc::new(PresenceUpdate {
            entry,
            offline_since,
            previous,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(session: u64, user: &str, availability: Option<Availability>) -> PresenceRequest {
        PresenceRequest {
            session: PresenceSession(session),
            user: user.into(),
            availability,
            status: None,
        }
    }

    #[test]
    fn a_users_connections_merge_available_if_any_is() {
        let mut table = LocalPresenceTable::default();
        let first = table.set(request(1, "ann", None), 10);
        assert_eq!(first.availability, Availability::Available);
        let mut away = request(2, "ann", Some(Availability::Away));
        away.status = Some(Some("lunch".into()));
        assert_eq!(table.set(away, 20).availability, Availability::Available);
        let now = table.set(request(1, "ann", Some(Availability::Away)), 30);
        assert_eq!(now.availability, Availability::Away);
        assert_eq!(now.status.as_deref(), Some("lunch"));
        assert_eq!(table.merged.get("ann").map(|m| m.2), Some(30));

        // Another user is apart.
        table.set(request(3, "bo", None), 40);
        assert_eq!(table.merged.len(), 2);

        assert!(table.end(PresenceSession(1), 50));
        assert!(!table.end(PresenceSession(1), 50));
        assert_eq!(
            table.merged.get("ann").map(|m| m.0),
            Some(Availability::Away)
        );
        // Unchanged availability keeps its since.
        assert_eq!(table.merged.get("ann").map(|m| m.2), Some(30));
        assert!(table.end(PresenceSession(2), 60));
        assert!(!table.merged.contains_key("ann"));
    }
}
