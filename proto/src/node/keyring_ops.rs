//! Cluster-wide key rotation: reading and changing the keyrings of every
//! member (`rossipctl keys list | install | use | remove`).
//!
//! The node that runs a command applies it to itself
//! ([`Node::apply_key_op`]), then sends it directly to every member that
//! has not left, failed ones included ([`Node::broadcast_key_op`]); each
//! applies it (whatever it thinks of the sender's membership), answers with an
//! ack, and reports the change as [`KeyringEvent::Changed`] so its daemon
//! persists the keyring. Queries ([`Node::query_keyrings`]) work the same
//! way with reports instead of acks. Answers surface as
//! [`KeyringEvent::Report`] and [`KeyringEvent::Ack`]; they are taken only
//! from members the request went to, once each, while the request is
//! outstanding (at most [`MAX_OUTSTANDING`], for [`OUTSTANDING_FOR`]).
//!
//! Trust: any holder of a cluster key may change every keyring, as in
//! Serf (the cluster key is the admin credential). Key material travels
//! only in sealed datagrams: a node without a keyring neither sends nor
//! accepts any of these bodies (they are dropped as
//! `keyring_without_key`).
//!
//! Zero-loss order, as documented for users: install the new key on all,
//! then use it on all, then remove the old one. Between steps nodes seal
//! under different keys, but every node opens every key it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::id::NodeId;
use crate::seal::{ClusterKey, KeyId, KeyringError};
use crate::wire::{Body, KeyOp};

use super::{Event, Node, PeerState, ProtocolConfig, truncate_at_char_boundary};

/// Longest error text an ack carries (bytes): a bound of the wire format,
/// what a receiver accepts.
pub const MAX_ACK_ERROR_BYTES: usize = 200;

/// Why a keyring change was refused on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyOpError {
    /// This node has no cluster key: gossip is plaintext here, and a
    /// running node cannot switch.
    #[error(
        "this node has no cluster key: start rossipd with --key-file to enable encryption; \
         a running unencrypted node cannot switch"
    )]
    NotEncrypted,
    /// The keyring refused.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// A keyring change that took effect (or already held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// The key was installed (`changed`: it was not held before).
    Installed {
        /// The key.
        id: KeyId,
        /// Whether the keyring changed.
        changed: bool,
    },
    /// The key is now the one datagrams are sealed with.
    Used {
        /// The key.
        id: KeyId,
        /// Whether the keyring changed (it was not the primary before).
        changed: bool,
    },
    /// The key is no longer held (`changed`: it was held before).
    Removed {
        /// The key.
        id: KeyId,
        /// Whether the keyring changed.
        changed: bool,
    },
}

impl KeyChange {
    /// Whether the keyring changed (what a daemon persists after).
    pub fn changed(&self) -> bool {
        match *self {
            KeyChange::Installed { changed, .. }
            | KeyChange::Used { changed, .. }
            | KeyChange::Removed { changed, .. } => changed,
        }
    }

    /// The key concerned.
    pub fn id(&self) -> KeyId {
        match *self {
            KeyChange::Installed { id, .. }
            | KeyChange::Used { id, .. }
            | KeyChange::Removed { id, .. } => id,
        }
    }

    /// `install`, `use` or `remove`, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            KeyChange::Installed { .. } => "install",
            KeyChange::Used { .. } => "use",
            KeyChange::Removed { .. } => "remove",
        }
    }
}

/// Keyring outputs for the application (inside [`Event::Keyring`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringEvent {
    /// A member answered [`Node::query_keyrings`].
    Report {
        /// The member.
        from: NodeId,
        /// Its name.
        name: String,
        /// The stamp of the query answered.
        reply_to: u64,
        /// The key it seals with.
        primary: KeyId,
        /// Every key it holds, the primary first.
        ids: Vec<KeyId>,
    },
    /// A member answered [`Node::broadcast_key_op`].
    Ack {
        /// The member.
        from: NodeId,
        /// Its name.
        name: String,
        /// The stamp of the command answered.
        reply_to: u64,
        /// Whether the change holds there now.
        ok: bool,
        /// Why not (empty when `ok`).
        error: String,
    },
    /// Another member changed this node's keyring: persist it.
    Changed {
        /// The member that sent the command.
        by: NodeId,
        /// Its name.
        by_name: String,
        /// What changed.
        change: KeyChange,
    },
}

/// A request sent to members: what to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringRequest {
    /// Echoed by every answer (`reply_to`).
    pub stamp: u64,
    /// The members it went to, with their names: the answers expected.
    pub targets: Vec<(NodeId, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Query,
    Command,
}

#[derive(Debug)]
struct Outstanding {
    kind: RequestKind,
    sent_at: Instant,
    /// Members that have not answered yet.
    waiting: BTreeSet<NodeId>,
}

/// The requests this node waits for answers to.
#[derive(Debug)]
pub(super) struct KeyringRequests {
    outstanding: BTreeMap<u64, Outstanding>,
    last_stamp: u64,
    /// [`ProtocolConfig::keyring_max_outstanding`].
    max_outstanding: usize,
    /// [`ProtocolConfig::keyring_outstanding_for`].
    outstanding_for: Duration,
}

impl KeyringRequests {
    /// None outstanding, within the bounds of `protocol`.
    pub(super) fn new(protocol: &ProtocolConfig) -> Self {
        KeyringRequests {
            outstanding: BTreeMap::new(),
            last_stamp: 0,
            max_outstanding: protocol.keyring_max_outstanding,
            outstanding_for: protocol.keyring_outstanding_for,
        }
    }

    fn expire(&mut self, now: Instant) {
        let outstanding_for = self.outstanding_for;
        self.outstanding
            .retain(|_, o| now.saturating_duration_since(o.sent_at) < outstanding_for);
        while self.outstanding.len() >= self.max_outstanding.max(1) {
            // Stamps grow, so the first is the oldest.
            self.outstanding.pop_first();
        }
    }

    /// Takes an answer of `kind` from `from` to `stamp` if it was expected.
    fn take(&mut self, kind: RequestKind, stamp: u64, from: NodeId, now: Instant) -> bool {
        let outstanding_for = self.outstanding_for;
        self.outstanding
            .retain(|_, o| now.saturating_duration_since(o.sent_at) < outstanding_for);
        self.outstanding
            .get_mut(&stamp)
            .is_some_and(|o| o.kind == kind && o.waiting.remove(&from))
    }
}

impl Node {
    /// Changes this node's keyring. Installing a key already held and
    /// removing one not held succeed without change (so a command can be
    /// repeated); using an unknown key and removing the primary are
    /// refused.
    pub fn apply_key_op(&mut self, op: &KeyOp) -> Result<KeyChange, KeyOpError> {
        let sealer = self.sealer.as_mut().ok_or(KeyOpError::NotEncrypted)?;
        let ring = sealer.keyring_mut();
        let change = match op {
            KeyOp::Install(bytes) => {
                let key = ClusterKey::new(bytes);
                let id = key.id();
                KeyChange::Installed {
                    id,
                    changed: ring.install(key)?,
                }
            }
            KeyOp::Use(id) => {
                let id = KeyId(*id);
                let changed = ring.primary_id() != id;
                ring.use_key(id)?;
                KeyChange::Used { id, changed }
            }
            KeyOp::Remove(id) => {
                let id = KeyId(*id);
                match ring.remove(id) {
                    Ok(()) => KeyChange::Removed { id, changed: true },
                    Err(KeyringError::Unknown(_)) => KeyChange::Removed { id, changed: false },
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(change)
    }

    /// The keyring (`None` without encryption): what a daemon persists.
    pub fn keyring(&self) -> Option<&crate::seal::Keyring> {
        self.sealer.as_ref().map(|s| s.keyring())
    }

    /// Sends `op` to every member that has not left, failed ones included;
    /// their acks come as [`KeyringEvent::Ack`]. Apply it here first with
    /// [`Node::apply_key_op`] (so this node can still read the others).
    ///
    /// Failed members are asked too: one wrongly declared failed that
    /// missed a `use` would keep sealing with the old key and be cut off by
    /// the `remove`; one really down does not answer, which the caller
    /// reports (it comes back with its old keyring).
    pub fn broadcast_key_op(
        &mut self,
        op: KeyOp,
        now: Instant,
    ) -> Result<KeyringRequest, KeyOpError> {
        self.keyring_request(RequestKind::Command, now, |stamp_us| Body::KeyringCommand {
            stamp_us,
            op,
        })
    }

    /// Asks every member that has not left (as [`Node::broadcast_key_op`])
    /// which keys it holds; the answers come as [`KeyringEvent::Report`].
    pub fn query_keyrings(&mut self, now: Instant) -> Result<KeyringRequest, KeyOpError> {
        self.keyring_request(RequestKind::Query, now, |stamp_us| Body::KeyringQuery {
            stamp_us,
        })
    }

    fn keyring_request(
        &mut self,
        kind: RequestKind,
        now: Instant,
        body: impl FnOnce(u64) -> Body,
    ) -> Result<KeyringRequest, KeyOpError> {
        if self.sealer.is_none() {
            return Err(KeyOpError::NotEncrypted);
        }
        let now_us = self.stamp_us(now);
        let requests = &mut self.keyring_requests;
        requests.expire(now);
        // Unique even for two requests in one microsecond.
        let stamp = now_us.max(requests.last_stamp.saturating_add(1));
        requests.last_stamp = stamp;
        let targets: Vec<(NodeId, String, std::net::SocketAddr)> = self
            .members
            .iter()
            .filter(|m| m.state != PeerState::Left)
            .map(|m| (m.id, m.name.clone(), m.addr))
            .collect();
        self.keyring_requests.outstanding.insert(
            stamp,
            Outstanding {
                kind,
                sent_at: now,
                waiting: targets.iter().map(|(id, ..)| *id).collect(),
            },
        );
        let dsts: Vec<std::net::SocketAddr> = targets.iter().map(|(.., addr)| *addr).collect();
        self.send_many(&dsts, &body(stamp));
        Ok(KeyringRequest {
            stamp,
            targets: targets
                .into_iter()
                .map(|(id, name, _)| (id, name))
                .collect(),
        })
    }

    /// Handles a keyring body from `sender` at `from` (the dispatch of
    /// `handle_datagram`).
    ///
    /// Requests are answered whatever this node thinks of the sender's
    /// membership: the cluster key is the credential, and a rotation must
    /// work while membership is unsettled (a member wrongly declared
    /// failed would otherwise be cut off by the next `remove`). Answers go
    /// to the address the request came from.
    pub(super) fn on_keyring_body(
        &mut self,
        sender: NodeId,
        from: std::net::SocketAddr,
        body: Body,
        now: Instant,
    ) {
        // Only sealed datagrams get here at a node with a key; a node
        // without one takes none of these (key material is never plain).
        if self.sealer.is_none() {
            self.count_drop("keyring_without_key");
            return;
        }
        let to = from;
        match body {
            Body::KeyringQuery { stamp_us } => {
                let ids = self.key_ids();
                let answer = Body::KeyringReport {
                    reply_to: stamp_us,
                    primary: ids.first().map_or(0, |id| id.0),
                    ids: ids.iter().map(|id| id.0).collect(),
                };
                self.send(to, &answer);
            }
            Body::KeyringCommand { stamp_us, op } => self.on_key_command(sender, to, stamp_us, &op),
            // Answers count only from the address the member signed in its
            // identity: the header's sender id alone is not authenticated
            // (any key holder could answer for a node that is down).
            Body::KeyringReport { .. } | Body::KeyringAck { .. }
                if self.members.addr_of(sender) != Some(from) =>
            {
                self.count_drop("keyring_answer_from_elsewhere");
            }
            Body::KeyringReport {
                reply_to,
                primary,
                ids,
            } => {
                if !self
                    .keyring_requests
                    .take(RequestKind::Query, reply_to, sender, now)
                {
                    self.count_drop("keyring_unsolicited");
                    return;
                }
                let name = self.member_name(sender);
                self.events.push_back(Event::Keyring(KeyringEvent::Report {
                    from: sender,
                    name,
                    reply_to,
                    primary: KeyId(primary),
                    ids: ids
                        .into_iter()
                        .take(crate::seal::MAX_KEYS)
                        .map(KeyId)
                        .collect(),
                }));
            }
            Body::KeyringAck {
                reply_to,
                ok,
                mut error,
            } => {
                if !self
                    .keyring_requests
                    .take(RequestKind::Command, reply_to, sender, now)
                {
                    self.count_drop("keyring_unsolicited");
                    return;
                }
                truncate_at_char_boundary(&mut error, MAX_ACK_ERROR_BYTES);
                let name = self.member_name(sender);
                self.events.push_back(Event::Keyring(KeyringEvent::Ack {
                    from: sender,
                    name,
                    reply_to,
                    ok,
                    error,
                }));
            }
            _ => {}
        }
    }

    fn on_key_command(
        &mut self,
        sender: NodeId,
        to: std::net::SocketAddr,
        stamp_us: u64,
        op: &KeyOp,
    ) {
        let by_name = self.member_name(sender);
        let outcome = self.apply_key_op(op);
        let (ok, mut error) = match &outcome {
            Ok(change) => {
                tracing::debug!(
                    by = self.members.get(&sender).map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                    by_id = %sender.short(),
                    op = change.verb(),
                    key = %change.id(),
                    changed = change.changed(),
                    "keyring changed by a member"
                );
                (true, String::new())
            }
            Err(e) => {
                tracing::warn!(
                    by = self.members.get(&sender).map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                    by_id = %sender.short(),
                    ?op,
                    "keyring change refused: {e}"
                );
                (false, e.to_string())
            }
        };
        truncate_at_char_boundary(&mut error, MAX_ACK_ERROR_BYTES);
        if let Ok(change) = outcome
            && change.changed()
        {
            self.events.push_back(Event::Keyring(KeyringEvent::Changed {
                by: sender,
                by_name,
                change,
            }));
        }
        // Sealed with the keyring as it is now: after a `use`, under the
        // new key, which the sender holds (it installed it everywhere
        // first, itself included).
        self.send(
            to,
            &Body::KeyringAck {
                reply_to: stamp_us,
                ok,
                error,
            },
        );
    }

    fn member_name(&self, id: NodeId) -> String {
        self.members
            .get(&id)
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::node::NodeConfig;
    use crate::seal::{KEY_BYTES, Keyring};
    use crate::testing::Sim;

    fn keyed_config(index: usize, key: u8) -> NodeConfig {
        let mut config = NodeConfig::new(
            Sim::key(index),
            format!("n{index}"),
            "rossip",
            SocketAddr::from(([10, 0, 0, 1], 7465)),
        );
        config.keyring = Some(Keyring::new(ClusterKey::new(&[key; KEY_BYTES]), Vec::new()));
        config
    }

    #[test]
    fn local_ops_follow_the_keyring_rules() {
        let now = Instant::now();
        let mut node = Node::new(keyed_config(0, 1), now);
        let old = ClusterKey::new(&[1; KEY_BYTES]).id();
        let new = ClusterKey::new(&[2; KEY_BYTES]).id();
        let install = KeyOp::Install([2; KEY_BYTES]);
        assert_eq!(
            node.apply_key_op(&install),
            Ok(KeyChange::Installed {
                id: new,
                changed: true
            })
        );
        assert!(
            !node.apply_key_op(&install).expect("again").changed(),
            "installing twice changes nothing"
        );
        assert_eq!(
            node.apply_key_op(&KeyOp::Remove(old.0)),
            Err(KeyOpError::Keyring(KeyringError::Primary(old)))
        );
        assert_eq!(
            node.apply_key_op(&KeyOp::Use(7)),
            Err(KeyOpError::Keyring(KeyringError::Unknown(KeyId(7))))
        );
        assert!(
            node.apply_key_op(&KeyOp::Use(new.0))
                .expect("use")
                .changed()
        );
        assert_eq!(node.key_ids(), vec![new, old]);
        assert!(
            node.apply_key_op(&KeyOp::Remove(old.0))
                .expect("remove")
                .changed()
        );
        assert!(
            !node
                .apply_key_op(&KeyOp::Remove(old.0))
                .expect("removing an absent key")
                .changed()
        );
        assert_eq!(node.key_ids(), vec![new]);
        assert_eq!(
            node.keyring().map(|r| r.primary().id()),
            Some(new),
            "the keyring the daemon persists"
        );
    }

    #[test]
    fn a_node_without_a_key_neither_changes_nor_sends_keyrings() {
        let now = Instant::now();
        let mut config = keyed_config(0, 1);
        config.keyring = None;
        let mut node = Node::new(config, now);
        assert_eq!(
            node.apply_key_op(&KeyOp::Install([2; KEY_BYTES])),
            Err(KeyOpError::NotEncrypted)
        );
        assert_eq!(
            node.broadcast_key_op(KeyOp::Use(1), now),
            Err(KeyOpError::NotEncrypted)
        );
        assert_eq!(node.query_keyrings(now), Err(KeyOpError::NotEncrypted));
        assert!(node.poll_transmit().is_none());
        node.on_keyring_body(
            Sim::id(1),
            Sim::addr(1),
            Body::KeyringCommand {
                stamp_us: 1,
                op: KeyOp::Install([2; KEY_BYTES]),
            },
            now,
        );
        assert_eq!(node.stats().dropped.get("keyring_without_key"), Some(&1));
        assert!(node.keyring().is_none());
    }

    #[test]
    fn requests_are_bounded_and_expire() {
        let now = Instant::now();
        let protocol = ProtocolConfig::default();
        let mut requests = KeyringRequests::new(&protocol);
        for stamp in 0..40u64 {
            requests.expire(now);
            requests.outstanding.insert(
                stamp,
                Outstanding {
                    kind: RequestKind::Query,
                    sent_at: now,
                    waiting: [Sim::id(1)].into(),
                },
            );
        }
        assert!(requests.outstanding.len() <= protocol.keyring_max_outstanding);
        assert!(
            !requests.take(RequestKind::Query, 0, Sim::id(1), now),
            "evicted"
        );
        assert!(
            !requests.take(RequestKind::Command, 39, Sim::id(1), now),
            "a report is no ack"
        );
        assert!(
            !requests.take(RequestKind::Query, 39, Sim::id(2), now),
            "not asked"
        );
        assert!(requests.take(RequestKind::Query, 39, Sim::id(1), now));
        assert!(
            !requests.take(RequestKind::Query, 39, Sim::id(1), now),
            "only once"
        );
        let later = now + protocol.keyring_outstanding_for;
        assert!(
            !requests.take(RequestKind::Query, 38, Sim::id(1), later),
            "expired"
        );
    }
}
