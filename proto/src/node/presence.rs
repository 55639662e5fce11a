//! Presence on the node: this node's statement of its local users in a
//! chat (set by the driver, which owns who is connected), and the newest
//! statement of every other member.
//!
//! Spreading: a changed statement goes to every alive or suspect member at
//! once, the current one to each member that comes up (or restarts), and
//! again to all every [`super::ProtocolConfig::presence_refresh_interval`]
//! (which repairs a lost update). Only the stating node sends its record:
//! there is no relaying, so a member's users are known exactly as long as
//! the member is heard from directly. A receiver keeps the newest record
//! of each member (by generation, then version), and forgets it when the
//! member fails, leaves or restarts. Every change of a user (came, went,
//! availability, status or display name) is an [`Event::Presence`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::id::NodeId;
use crate::presence::{MAX_PRESENCE_USERS, PresenceRecord, UserPresence};
use crate::sign::Signature;
use crate::wire;

use super::timers::TimerKind;
use super::{Event, Node, PeerChange};

/// Most statements of non-members held for when they come up: a burst of
/// joins fits, and a stranger cannot make a node hold more.
pub const MAX_EARLY_STATEMENTS: usize = 64;

/// A user of some node came, went or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// The user's node (this node's own users included).
    pub node: NodeId,
    /// The user.
    pub user: String,
    /// What was known before; `None`: the user was not in a chat.
    pub previous: Option<UserPresence>,
    /// What is known now; `None`: the user left the chat (or their node
    /// failed, left or restarted).
    pub current: Option<UserPresence>,
}

/// What [`Node::set_presence`] stated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceStated {
    /// Users in the statement.
    pub stated: usize,
    /// Users left out, and why: over a field bound, past
    /// [`MAX_PRESENCE_USERS`], or past what one datagram holds. Also
    /// counted in [`super::Stats::dropped`] as `presence_user_left_out`.
    pub left_out: Vec<(String, LeftOut)>,
}

/// Why a user was left out of this node's presence statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOut {
    /// A field over its bound, or an empty user name.
    OutOfBounds,
    /// Listed twice (the first is kept).
    Duplicate,
    /// Past [`MAX_PRESENCE_USERS`] or what one datagram holds (the first
    /// users by name are kept).
    NoRoom,
}

/// This node's presence statement and the members'.
#[derive(Debug, Default)]
pub(super) struct PresenceTable {
    /// This node's signed statement (`None` before the first).
    own: Option<PresenceRecord>,
    /// Other members' newest statements.
    remote: BTreeMap<NodeId, PresenceRecord>,
    /// Statements of nodes not (yet) members here: a node that just saw
    /// this one come up may state its users before this node has heard
    /// of it. Taken when the node comes up; at most
    /// [`MAX_EARLY_STATEMENTS`], the newest arrivals kept.
    early: BTreeMap<NodeId, (u64, PresenceRecord)>,
    /// Arrival numbers of `early` entries.
    arrivals: u64,
    /// Whether the periodic refresh is scheduled (from the first statement
    /// on: a node that never stated anything sends nothing).
    refresh_scheduled: bool,
}

impl PresenceTable {
    fn own_users(&self) -> &[UserPresence] {
        self.own.as_ref().map(|r| &r.users[..]).unwrap_or_default()
    }
}

impl Node {
    /// States this node's users in a chat (the whole list, replacing the
    /// previous one): sorted, bounded to what one datagram holds, signed,
    /// and sent to every alive or suspect member if it changed. Emits an
    /// [`Event::Presence`] for every user that came, went or changed.
    /// Returns who was stated and who was left out (never silently).
    pub fn set_presence(&mut self, users: Vec<UserPresence>, now: Instant) -> PresenceStated {
        let (users, left_out) = self.fit_presence(users);
        for _ in &left_out {
            self.count_drop("presence_user_left_out");
        }
        let stated = PresenceStated {
            stated: users.len(),
            left_out,
        };
        if self.left {
            return stated;
        }
        let unchanged = self.own_presence_is(&users);
        if unchanged {
            return stated;
        }
        let version = self.presence.own.as_ref().map_or(1, |r| r.version + 1);
        let record = PresenceRecord::signed(&self.config.key, self.generation(), version, users);
        let previous = self.presence.own.replace(record.clone());
        self.presence_changes(
            self.config.id,
            previous.as_ref().map(|r| &r.users[..]).unwrap_or_default(),
            &record.users,
        );
        self.send_presence_to_members(record);
        if !self.presence.refresh_scheduled {
            self.presence.refresh_scheduled = true;
            self.timers.schedule(
                now + self.config.protocol.presence_refresh_interval,
                TimerKind::PresenceRefresh,
            );
        }
        stated
    }

    /// Every user in a chat on every node this node knows of (itself
    /// included), ordered by node id, then user.
    pub fn presence(&self) -> Vec<(NodeId, &UserPresence)> {
        let own = self.config.id;
        let mut all: Vec<(NodeId, &UserPresence)> = self
            .presence
            .own_users()
            .iter()
            .map(|u| (own, u))
            .chain(
                self.presence
                    .remote
                    .iter()
                    .flat_map(|(node, r)| r.users.iter().map(move |u| (*node, u))),
            )
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.user.cmp(&b.1.user)));
        all
    }

    /// A member's presence statement arrived.
    pub(super) fn on_presence(&mut self, record: PresenceRecord) {
        if let Err(refusal) = record.check() {
            self.count_drop(refusal.reason());
            return;
        }
        // Only members' users are listed: they are dropped again when the
        // member goes, which a stranger's would never be.
        let member_key = self
            .members
            .get(&record.node)
            .filter(|m| m.state.is_active())
            .map(|m| (m.key, m.generation));
        match member_key {
            Some((key, generation)) if key == record.key && record.generation >= generation => {}
            Some(_) => {
                self.count_drop("presence_stale");
                return;
            }
            None => {
                self.hold_early_presence(record);
                return;
            }
        }
        self.take_presence(record);
    }

    /// Keeps a non-member's statement (signed: only its node made it) for
    /// when it comes up, within [`MAX_EARLY_STATEMENTS`].
    fn hold_early_presence(&mut self, record: PresenceRecord) {
        let table = &mut self.presence;
        if table
            .early
            .get(&record.node)
            .is_some_and(|(_, held)| !record.is_newer_than(held))
        {
            return;
        }
        table.arrivals += 1;
        table.early.insert(record.node, (table.arrivals, record));
        if table.early.len() > MAX_EARLY_STATEMENTS
            && let Some(oldest) = table
                .early
                .iter()
                .min_by_key(|(_, (arrival, _))| *arrival)
                .map(|(node, _)| *node)
        {
            table.early.remove(&oldest);
            self.count_drop("presence_from_non_member");
        }
    }

    /// Takes a member's statement if it is newer than the one held.
    fn take_presence(&mut self, record: PresenceRecord) {
        if let Some(held) = self.presence.remote.get(&record.node)
            && !record.is_newer_than(held)
        {
            return;
        }
        let node = record.node;
        let previous = self.presence.remote.insert(node, record);
        let current = self.presence.remote.get(&node).map(|r| r.users.clone());
        self.presence_changes(
            node,
            previous.as_ref().map(|r| &r.users[..]).unwrap_or_default(),
            current.as_deref().unwrap_or_default(),
        );
    }

    /// A member changed: its users are forgotten when it is no longer
    /// alive or suspect, or restarted (its new run states its own).
    pub(super) fn presence_follow_member(&mut self, change: &PeerChange) {
        let member = &change.member;
        if let Some((_, early)) = self.presence.early.remove(&member.id)
            && member.state.is_active()
            && early.key == member.key
            && early.generation >= member.generation
        {
            self.take_presence(early);
        }
        let stale = self
            .presence
            .remote
            .get(&member.id)
            .is_some_and(|r| !member.state.is_active() || r.generation < member.generation);
        if stale && let Some(record) = self.presence.remote.remove(&member.id) {
            self.presence_changes(member.id, &record.users, &[]);
        }
    }

    /// A member came up (or restarted): it gets this node's statement.
    pub(super) fn presence_greet(&mut self, addr: SocketAddr) {
        if let Some(record) = self.presence.own.clone() {
            self.send(addr, &wire::Body::Presence(record));
        }
    }

    /// This node renewed its identity (it was declared failed while
    /// running, e.g. cut off by a partition): members forgot its users with
    /// its old run, so it states them again under `generation` at once (a
    /// member that has not seen the new run yet holds the statement until
    /// it does).
    pub(super) fn presence_restate(&mut self, generation: u64) {
        let Some(record) = self.presence.own.take() else {
            return;
        };
        let renewed = PresenceRecord::signed(
            &self.config.key,
            generation.max(record.generation),
            record.version + 1,
            record.users,
        );
        self.presence.own = Some(renewed.clone());
        self.send_presence_to_members(renewed);
    }

    /// The periodic refresh: the statement again to every alive or suspect
    /// member (reschedules itself).
    pub(super) fn on_presence_refresh(&mut self, now: Instant) {
        self.timers.schedule(
            now + self.config.protocol.presence_refresh_interval,
            TimerKind::PresenceRefresh,
        );
        let Some(record) = self.presence.own.clone() else {
            return;
        };
        if record.generation < self.generation() {
            // Missed a renewal: restate under the current run.
            self.presence_restate(self.generation());
        } else {
            self.send_presence_to_members(record);
        }
    }

    /// Sends `record` to every alive or suspect member.
    fn send_presence_to_members(&mut self, record: PresenceRecord) {
        let targets: Vec<SocketAddr> = self
            .members
            .active_targets(&[])
            .into_iter()
            .map(|(_, addr)| addr)
            .collect();
        self.send_many(&targets, &wire::Body::Presence(record));
    }

    /// Whether `users` is what this node states already (times aside).
    fn own_presence_is(&self, users: &[UserPresence]) -> bool {
        let own = self.presence.own_users();
        self.presence.own.is_some()
            && own.len() == users.len()
            && own
                .iter()
                .zip(users)
                .all(|(a, b)| a.user == b.user && !a.differs_from(b))
    }

    /// Sorts `users`, and keeps those within bounds that fit one record.
    fn fit_presence(
        &self,
        mut users: Vec<UserPresence>,
    ) -> (Vec<UserPresence>, Vec<(String, LeftOut)>) {
        users.sort_by(|a, b| a.user.cmp(&b.user));
        let mut kept: Vec<UserPresence> = Vec::with_capacity(users.len());
        let mut left_out = Vec::new();
        for user in users {
            if !user.is_within_bounds() {
                left_out.push((user.user, LeftOut::OutOfBounds));
            } else if kept.last().is_some_and(|k| k.user == user.user) {
                left_out.push((user.user, LeftOut::Duplicate));
            } else {
                kept.push(user);
            }
        }
        while kept.len() > MAX_PRESENCE_USERS || !self.presence_fits(&kept) {
            match kept.pop() {
                Some(user) => left_out.push((user.user, LeftOut::NoRoom)),
                None => break,
            }
        }
        (kept, left_out)
    }

    /// Whether a record of `users` fits one datagram (the signature's
    /// bytes do not change its size).
    fn presence_fits(&self, users: &[UserPresence]) -> bool {
        let record = PresenceRecord {
            node: self.config.id,
            generation: u64::MAX,
            version: u64::MAX,
            users: users.to_vec(),
            key: self.config.key.public(),
            sig: Signature::from_bytes(&[0; 64]),
        };
        postcard::to_allocvec(&wire::Body::Presence(record))
            .is_ok_and(|bytes| bytes.len() <= wire::MAX_BODY_BYTES)
    }

    /// Emits an event for every user that differs between `before` and
    /// `after` (both sorted by user) of `node`.
    fn presence_changes(&mut self, node: NodeId, before: &[UserPresence], after: &[UserPresence]) {
        let mut users: BTreeMap<&str, (Option<&UserPresence>, Option<&UserPresence>)> =
            BTreeMap::new();
        for user in before {
            users.entry(&user.user).or_default().0 = Some(user);
        }
        for user in after {
            users.entry(&user.user).or_default().1 = Some(user);
        }
        for (user, (previous, current)) in users {
            let changed = match (previous, current) {
                (Some(p), Some(c)) => p.differs_from(c),
                (None, None) => false,
                _ => true,
            };
            if changed {
                self.events.push_back(Event::Presence(PresenceChange {
                    node,
                    user: user.to_owned(),
                    previous: previous.cloned(),
                    current: current.cloned(),
                }));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // an arbitrary origin of time
mod tests {
    use super::*;
    use crate::presence::{Availability, MAX_STATUS_BYTES};

    fn node() -> Node {
        let config = super::super::NodeConfig::new(
            crate::sign::NodeKey::for_testing(1),
            "a",
            "rossip",
            SocketAddr::from(([10, 0, 0, 1], 7465)),
        );
        Node::new(config, Instant::now())
    }

    fn user(name: &str, availability: Availability, status: Option<&str>) -> UserPresence {
        UserPresence {
            user: name.into(),
            nick: None,
            availability,
            status: status.map(Into::into),
            since_ms: 5,
        }
    }

    fn presence_events(node: &mut Node) -> Vec<PresenceChange> {
        std::iter::from_fn(|| node.poll_event())
            .filter_map(|e| match e {
                Event::Presence(change) => Some(change),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn own_changes_are_events_and_repeats_are_not() {
        let mut a = node();
        let now = Instant::now();
        let stated = a.set_presence(vec![user("bob", Availability::Available, None)], now);
        assert_eq!(stated.stated, 1);
        let events = presence_events(&mut a);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].user, "bob");
        assert!(events[0].previous.is_none());

        // The same again (another time stamp) is no change.
        let mut again = user("bob", Availability::Available, None);
        again.since_ms = 99;
        a.set_presence(vec![again], now);
        assert!(presence_events(&mut a).is_empty());

        a.set_presence(vec![user("bob", Availability::Away, Some("lunch"))], now);
        let events = presence_events(&mut a);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].current.as_ref().map(|u| u.availability),
            Some(Availability::Away)
        );
        assert_eq!(a.presence().len(), 1);

        a.set_presence(Vec::new(), now);
        let events = presence_events(&mut a);
        assert_eq!(events.len(), 1);
        assert!(events[0].current.is_none());
        assert!(a.presence().is_empty());
    }

    #[test]
    fn what_does_not_fit_is_left_out_and_said() {
        let mut a = node();
        let long = "s".repeat(MAX_STATUS_BYTES);
        let mut users: Vec<UserPresence> = (0..40)
            .map(|i| {
                let mut u = user(&format!("user{i:02}"), Availability::Away, Some(&long));
                u.nick = Some("n".repeat(crate::message::MAX_NICK_BYTES));
                u
            })
            .collect();
        users.push(user("user00", Availability::Available, None));
        users.push(user("", Availability::Available, None));
        let stated = a.set_presence(users, Instant::now());
        assert!(stated.stated >= 1 && stated.stated < MAX_PRESENCE_USERS);
        assert_eq!(stated.stated + stated.left_out.len(), 42);
        assert!(
            stated
                .left_out
                .iter()
                .any(|(_, why)| *why == LeftOut::Duplicate)
        );
        assert!(
            stated
                .left_out
                .iter()
                .any(|(_, why)| *why == LeftOut::OutOfBounds)
        );
        assert!(
            stated
                .left_out
                .iter()
                .any(|(_, why)| *why == LeftOut::NoRoom)
        );
        assert_eq!(
            a.stats().dropped.get("presence_user_left_out").copied(),
            Some(42 - stated.stated as u64)
        );
        // What was stated fits one datagram.
        let record = a.presence.own.clone().expect("stated");
        let header = wire::Header {
            flags: 0,
            cluster: wire::ClusterId::from_label("rossip"),
            sender: a.id(),
        };
        assert!(wire::encode(&header, &wire::Body::Presence(record)).is_ok());
    }
}
