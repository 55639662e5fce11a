//! Presence: which local users of a node are in a chat, and whether they
//! are available or away.
//!
//! Each node states its own users in one [`PresenceRecord`], signed with
//! its key (so no member can speak for another node's users) and numbered
//! by `(generation, version)` (so a receiver keeps the newest statement of
//! each node, and a restarted node's first record wins over its earlier
//! run's). A record always fits one datagram: at most
//! [`MAX_PRESENCE_USERS`] users, each field bounded, and the users that do
//! not fit the datagram are left out by the node that states them (and
//! counted there), never by a receiver.
//!
//! How records spread and when a node's users are dropped is the node's
//! job (`node::presence`); this module is the statement itself.

use serde::{Deserialize, Serialize};

use crate::id::NodeId;
use crate::message::{AuthError, MAX_NICK_BYTES, MAX_USER_BYTES};
use crate::sign::{Domain, NodeKey, PublicKey, Signature, Verifier};

/// Most users one node states presence for. More local users in a chat
/// than this on one machine is not a LAN messenger's case; the datagram
/// bound ([`crate::wire::MAX_BODY_BYTES`]) may admit fewer when their
/// fields are long.
pub const MAX_PRESENCE_USERS: usize = 32;

/// Longest status line ("in a meeting"), in bytes.
pub const MAX_STATUS_BYTES: usize = 128;

/// Whether a user in a chat is there.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Availability {
    /// At the keyboard (or not known to be away).
    Available,
    /// Away: said so, or idle (the chat client decides).
    Away,
}

impl Availability {
    /// Lower-case name, as in the RPC API.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Away => "away",
        }
    }
}

/// One local user of a node, as its node states it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UserPresence {
    /// The user's login name on that node (≤ [`MAX_USER_BYTES`], not empty).
    pub user: String,
    /// Their display name there (≤ [`MAX_NICK_BYTES`]), if they set one.
    pub nick: Option<String>,
    /// Available or away.
    pub availability: Availability,
    /// Their status line (≤ [`MAX_STATUS_BYTES`]), if any.
    pub status: Option<String>,
    /// Since when (ms since the Unix epoch, the stating node's clock) they
    /// are in this availability.
    pub since_ms: u64,
}

impl UserPresence {
    /// Whether every field is within its bound.
    pub fn is_within_bounds(&self) -> bool {
        !self.user.is_empty()
            && self.user.len() <= MAX_USER_BYTES
            && self.nick.as_ref().is_none_or(|n| n.len() <= MAX_NICK_BYTES)
            && self
                .status
                .as_ref()
                .is_none_or(|s| s.len() <= MAX_STATUS_BYTES)
    }

    /// Whether every field is well formed (what a node that states it
    /// checks before): a user name ([`crate::message::is_user_name`]), a
    /// display name in its normal form ([`crate::nick::normalize_nick`]),
    /// a status without unprintable characters.
    pub fn is_well_formed(&self) -> bool {
        crate::message::is_user_name(&self.user)
            && self
                .nick
                .as_ref()
                .is_none_or(|n| crate::nick::normalize_nick(n).is_ok_and(|norm| norm == *n))
            && self
                .status
                .as_ref()
                .is_none_or(|s| !s.chars().any(crate::nick::is_unprintable))
    }

    /// Whether `other` says something different of the same user (a change
    /// worth an event): the time alone is not one.
    pub fn differs_from(&self, other: &UserPresence) -> bool {
        self.nick != other.nick
            || self.availability != other.availability
            || self.status != other.status
    }
}

/// A node's statement of its users in a chat: what a [`crate::wire::Body::Presence`]
/// carries.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// The node whose users these are.
    pub node: NodeId,
    /// Which run of the node states them (a restart starts a new one).
    pub generation: u64,
    /// Numbers the statements of one run: higher is newer.
    pub version: u64,
    /// Its users in a chat, sorted by `user`, each once.
    pub users: Vec<UserPresence>,
    /// The node's public key (derives `node`).
    pub key: PublicKey,
    /// The node's signature of `node`, `generation`, `version` and `users`.
    pub sig: Signature,
}

/// Why a presence record was refused. [`PresenceRefusal::reason`] names
/// the counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PresenceRefusal {
    /// More than [`MAX_PRESENCE_USERS`] users, or a field over its bound.
    #[error("presence record over its bounds")]
    OutOfBounds,
    /// Users not sorted, or one listed twice.
    #[error("presence record users are not sorted and unique")]
    Unsorted,
    /// A user name that is none, a display name not in its normal form, or
    /// a status line with characters that could rewrite a terminal line.
    #[error("presence record with a malformed user, display name or status")]
    Malformed,
}

impl PresenceRefusal {
    /// Short, stable name used as the key of `Stats::dropped`.
    pub fn reason(self) -> &'static str {
        match self {
            PresenceRefusal::OutOfBounds => "presence_out_of_bounds",
            PresenceRefusal::Unsorted => "presence_unsorted",
            PresenceRefusal::Malformed => "presence_malformed",
        }
    }
}

impl PresenceRecord {
    /// The record of the node of `key`, signed by it. `users` must be
    /// sorted by user and within bounds (see [`PresenceRecord::check`]).
    pub fn signed(
        key: &NodeKey,
        generation: u64,
        version: u64,
        users: Vec<UserPresence>,
    ) -> PresenceRecord {
        let node = key.node_id();
        let sig = key.sign(
            Domain::Presence,
            &presence_bytes(&node, generation, version, &users),
        );
        PresenceRecord {
            node,
            generation,
            version,
            users,
            key: key.public(),
            sig,
        }
    }

    /// Checks that the key derives the node's id and the signature
    /// verifies (remembered in `verifier`, the checking node's memo).
    pub fn verify(&self, verifier: &mut Verifier) -> Result<(), AuthError> {
        if self.key.node_id() != self.node {
            return Err(AuthError::WrongKey);
        }
        let bytes = presence_bytes(&self.node, self.generation, self.version, &self.users);
        if verifier.verify(&self.key, Domain::Presence, &bytes, &self.sig) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }

    /// Checks the bounds and the order of the users.
    pub fn check(&self) -> Result<(), PresenceRefusal> {
        if self.users.len() > MAX_PRESENCE_USERS
            || !self.users.iter().all(UserPresence::is_within_bounds)
        {
            return Err(PresenceRefusal::OutOfBounds);
        }
        if !self.users.windows(2).all(|w| match w {
            [a, b] => a.user < b.user,
            _ => true,
        }) {
            return Err(PresenceRefusal::Unsorted);
        }
        if !self.users.iter().all(UserPresence::is_well_formed) {
            return Err(PresenceRefusal::Malformed);
        }
        Ok(())
    }

    /// Whether this record is newer than `other` (of the same node).
    pub fn is_newer_than(&self, other: &PresenceRecord) -> bool {
        (self.generation, self.version) > (other.generation, other.version)
    }

    /// The user `user`, if listed.
    pub fn user(&self, user: &str) -> Option<&UserPresence> {
        self.users
            .binary_search_by(|u| u.user.as_str().cmp(user))
            .ok()
            .and_then(|i| self.users.get(i))
    }
}

/// The signed bytes of a record.
fn presence_bytes(node: &NodeId, generation: u64, version: u64, users: &[UserPresence]) -> Vec<u8> {
    // Serializing ids, integers and strings cannot fail; an empty result
    // would only make the signature fail to verify.
    postcard::to_allocvec(&(node, generation, version, users)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, availability: Availability) -> UserPresence {
        UserPresence {
            user: name.into(),
            nick: None,
            availability,
            status: None,
            since_ms: 1,
        }
    }

    #[test]
    fn a_record_verifies_only_as_signed_by_its_node() {
        let key = NodeKey::for_testing(1);
        let record =
            PresenceRecord::signed(&key, 3, 7, vec![user("alice", Availability::Available)]);
        let mut verifier = Verifier::default();
        assert_eq!(record.verify(&mut verifier), Ok(()));

        let mut altered = record.clone();
        altered.users[0].availability = Availability::Away;
        assert_eq!(altered.verify(&mut verifier), Err(AuthError::BadSignature));

        // Another node's key cannot speak for this node.
        let other = NodeKey::for_testing(2);
        let mut forged = PresenceRecord::signed(&other, 3, 8, record.users.clone());
        forged.node = record.node;
        assert_eq!(forged.verify(&mut verifier), Err(AuthError::WrongKey));
        forged.key = record.key;
        assert_eq!(forged.verify(&mut verifier), Err(AuthError::BadSignature));
    }

    #[test]
    fn bounds_and_order_are_checked() {
        let key = NodeKey::for_testing(1);
        let ok = PresenceRecord::signed(
            &key,
            1,
            1,
            vec![
                user("alice", Availability::Available),
                user("bob", Availability::Away),
            ],
        );
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(
            ok.user("bob").map(|u| u.availability),
            Some(Availability::Away)
        );
        assert!(ok.user("carol").is_none());

        let mut unsorted = ok.clone();
        unsorted.users.reverse();
        assert_eq!(unsorted.check(), Err(PresenceRefusal::Unsorted));
        let mut twice = ok.clone();
        twice.users[1].user = "alice".into();
        assert_eq!(twice.check(), Err(PresenceRefusal::Unsorted));

        let mut long_status = ok.clone();
        long_status.users[0].status = Some("x".repeat(MAX_STATUS_BYTES + 1));
        assert_eq!(long_status.check(), Err(PresenceRefusal::OutOfBounds));
        for (user, nick, status) in [
            ("bad user", None, None),
            ("ann", Some(" Ann "), None),
            ("ann", Some("a@b"), None),
            ("ann", None, Some("evil\u{202e}txt")),
            ("ann", None, Some("line\nbreak")),
        ] {
            let mut malformed = ok.clone();
            malformed.users = vec![UserPresence {
                user: user.into(),
                nick: nick.map(str::to_owned),
                status: status.map(str::to_owned),
                ..ok.users[0].clone()
            }];
            assert_eq!(
                malformed.check(),
                Err(PresenceRefusal::Malformed),
                "{user:?} {nick:?} {status:?}"
            );
        }
        let mut too_many = ok;
        too_many.users = (0..=MAX_PRESENCE_USERS)
            .map(|i| user(&format!("u{i:03}"), Availability::Available))
            .collect();
        assert_eq!(too_many.check(), Err(PresenceRefusal::OutOfBounds));
    }

    #[test]
    fn newer_means_a_later_run_or_a_later_version() {
        let key = NodeKey::for_testing(1);
        let old = PresenceRecord::signed(&key, 1, 9, Vec::new());
        let next = PresenceRecord::signed(&key, 1, 10, Vec::new());
        let restarted = PresenceRecord::signed(&key, 2, 1, Vec::new());
        assert!(next.is_newer_than(&old));
        assert!(restarted.is_newer_than(&next));
        assert!(!old.is_newer_than(&old));
    }
}
