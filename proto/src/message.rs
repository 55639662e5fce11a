//! Chat messages and the hybrid logical clock that orders them.

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, NodeId};
use crate::sign::{self, Domain, NodeKey, PublicKey, Signature};

/// The channel a message goes to when `send` names none.
pub const DEFAULT_CHANNEL: &str = "general";

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 64;

/// Longest node name, in bytes. Names travel in every membership update, so
/// they are kept short.
pub const MAX_NAME_BYTES: usize = 64;

/// Longest user name a message may carry, in bytes (POSIX login names are
/// at most 32 bytes on Linux; other systems allow a little more).
pub const MAX_USER_BYTES: usize = 64;

/// Longest display name (`/nick`), in bytes.
pub const MAX_NICK_BYTES: usize = 64;

/// A hybrid logical clock reading: wall-clock milliseconds, plus a counter
/// that orders events within one millisecond and keeps one origin's messages
/// in order even if its wall clock steps backwards.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the physical component).
    pub ms: u64,
    /// Tie-breaker within one millisecond.
    pub logical: u32,
}

impl Hlc {
    /// The next local reading: never below `self`, never below the wall clock.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        if wall_ms > self.ms {
            self.ms = wall_ms;
            self.logical = 0;
        } else {
            self.logical = self.logical.saturating_add(1);
        }
        *self
    }

    /// Merge a reading seen from another node, so that later local readings
    /// sort after everything this node has seen.
    pub fn observe(&mut self, seen: Hlc) {
        if seen > *self {
            *self = seen;
        }
    }
}

/// One chat message, as gossiped and stored.
///
/// A message is taken from the network only if its signature verifies and
/// its key derives its origin's id ([`Message::verify`], run by every
/// decoder of network input, see [`crate::sign`]): whatever a node holds
/// was sent by the node its id names, unaltered.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Message {
    /// Unique id: origin + sequence.
    pub id: MessageId,
    /// The origin's name when it sent the message (names are not unique).
    pub origin_name: String,
    /// When the origin accepted it; orders history.
    pub ts: Hlc,
    /// Channel, [`DEFAULT_CHANNEL`] unless the sender chose one.
    pub channel: String,
    /// The text, UTF-8. Untrusted: sanitize before printing to a terminal.
    pub text: String,
    /// Who at the origin sent it (covered by the signature).
    pub author: Author,
    /// The one recipient of a direct message; `None` for a channel message,
    /// which every node gets. A direct message never enters gossip: it
    /// travels sealed to its recipient and exists only there and at its
    /// origin.
    pub to: Option<Recipient>,
    /// The origin's public key and signature.
    pub auth: Auth,
}

/// The person behind a message, as the origin node vouches for it.
///
/// `user` comes from the origin's operating system (the peer credentials of
/// the local socket the message was sent on), never from the sender's
/// parameters, so a local script cannot speak as another local user. It is
/// empty when the origin could not tell (the daemon's own messages, an OS
/// without peer credentials). Shown as `user@node`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Author {
    /// The local user name at the origin; empty if unknown.
    pub user: String,
    /// A display name the user chose, shown beside `user@node`, never
    /// instead of it (anyone can choose any display name).
    pub nick: Option<String>,
}

impl Author {
    /// No user known and no display name: a message signed in the form
    /// that predates authors.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_empty() && self.nick.is_none()
    }

    /// Whether both names keep the rules every node applies (a message from
    /// the network that breaks them is refused): the user a valid
    /// [`is_user_name`] (or empty), the display name what
    /// [`crate::nick::normalize_nick`] would have made of it.
    pub fn is_valid(&self) -> bool {
        (self.user.is_empty() || is_user_name(&self.user))
            && self
                .nick
                .as_deref()
                .is_none_or(|nick| crate::nick::normalize_nick(nick).as_deref() == Ok(nick))
    }
}

/// Whether `name` can be shown as the user of `user@node`: 1 to
/// [`MAX_USER_BYTES`] bytes with no white space and no control or invisible
/// formatting character. Directory users may contain `@`
/// (`ann@example.com`), so that is allowed.
pub fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_BYTES
        && !name
            .chars()
            .any(|c| c.is_whitespace() || crate::nick::is_unprintable(c))
}

/// The addressee of a direct message: a node, and optionally one user there.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Recipient {
    /// The recipient node; only it can open the message.
    pub node: NodeId,
    /// The user there it is for; `None`: whoever reads that node's messages.
    pub user: Option<String>,
}

/// What a sender chooses for a message; the node adds id, time, name and
/// signature ([`Message::signed`]).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Draft {
    /// The channel ([`DEFAULT_CHANNEL`] if the caller named none).
    pub channel: String,
    /// The text.
    pub text: String,
    /// Who sends it.
    pub author: Author,
    /// The recipient of a direct message; `None` for a channel message.
    pub to: Option<Recipient>,
}

impl Draft {
    /// A channel message with no author: what scripts and tests send.
    pub fn channel(channel: impl Into<String>, text: impl Into<String>) -> Draft {
        Draft {
            channel: channel.into(),
            text: text.into(),
            ..Draft::default()
        }
    }
}

/// Who vouches for a message: its origin's public key (which derives the
/// origin's id) and the origin's signature of the message.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Auth {
    /// The origin's public key.
    pub key: PublicKey,
    /// The origin's signature of the rest of the message.
    pub sig: Signature,
}

#[cfg(test)]
impl Auth {
    /// An all-zero key and signature, for unit tests of values that are
    /// never decoded (decoding refuses it).
    pub(crate) fn for_tests() -> Auth {
        Auth {
            key: PublicKey([0; 32]),
            sig: Signature::from_bytes(&[0; 64]),
        }
    }
}

/// Why a message's signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The key does not derive the origin's id: someone else's key.
    #[error("the message's key is not its origin's")]
    WrongKey,
    /// The signature does not verify: forged or altered.
    #[error("the message's signature does not verify")]
    BadSignature,
}

impl Message {
    /// A message from the node of `key`, signed by it.
    pub fn signed(key: &NodeKey, seq: u64, origin_name: String, ts: Hlc, draft: Draft) -> Message {
        let id = MessageId {
            origin: key.node_id(),
            seq,
        };
        let mut message = Message {
            id,
            origin_name,
            ts,
            channel: draft.channel,
            text: draft.text,
            author: draft.author,
            to: draft.to,
            auth: Auth {
                key: key.public(),
                sig: Signature::from_bytes(&[0; 64]),
            },
        };
        let (domain, content) = message.signed_content();
        message.auth.sig = key.sign(domain, &content);
        message
    }

    /// The bytes the signature covers, under the tag of their form: a
    /// message with neither author nor recipient keeps the form that
    /// predates them, so messages stored before then still verify.
    fn signed_content(&self) -> (Domain, Vec<u8>) {
        let common = (
            &self.id,
            &self.origin_name,
            self.ts,
            &self.channel,
            &self.text,
            &self.auth.key,
        );
        // Serializing plain strings, integers and byte arrays cannot fail;
        // an empty result would only make every signature fail to verify.
        if self.author.is_anonymous() && self.to.is_none() {
            let bytes = postcard::to_allocvec(&common).unwrap_or_default();
            (Domain::Message, bytes)
        } else {
            let bytes =
                postcard::to_allocvec(&(common, &self.author, &self.to)).unwrap_or_default();
            (Domain::AttributedMessage, bytes)
        }
    }

    /// Checks that the key is the origin's and the signature verifies
    /// (remembered in `verifier`, the checking node's memo).
    pub fn verify(&self, verifier: &mut sign::Verifier) -> Result<(), AuthError> {
        if self.auth.key.node_id() != self.id.origin {
            return Err(AuthError::WrongKey);
        }
        let (domain, content) = self.signed_content();
        if verifier.verify(&self.auth.key, domain, &content, &self.auth.sig) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }

    /// The key that orders history identically on every node.
    pub fn order_key(&self) -> OrderKey {
        OrderKey {
            ts: self.ts,
            origin: self.id.origin,
            seq: self.id.seq,
        }
    }

    /// Bytes of payload this message carries (text, channel, names), the
    /// figure limits are checked against.
    pub fn payload_len(&self) -> usize {
        self.text.len()
            + self.channel.len()
            + self.origin_name.len()
            + self.author.user.len()
            + self.author.nick.as_ref().map_or(0, String::len)
            + self
                .to
                .as_ref()
                .map_or(0, |to| 16 + to.user.as_ref().map_or(0, String::len))
    }

    /// Whether the author keeps the name rules ([`Author::is_valid`]): a
    /// check on input from the network and from local callers alike.
    pub fn author_is_valid(&self) -> bool {
        self.author.is_valid()
    }
}

/// Total order of messages: (timestamp, origin, sequence).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct OrderKey {
    /// The origin's HLC reading.
    pub ts: Hlc,
    /// Breaks ties between origins.
    pub origin: NodeId,
    /// Breaks ties within an origin.
    pub seq: u64,
}

/// Why a channel name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Empty.
    #[error("channel name is empty")]
    Empty,
    /// Over [`MAX_CHANNEL_BYTES`].
    #[error("channel name is {0} bytes; the limit is {MAX_CHANNEL_BYTES}")]
    TooLong(usize),
    /// Channel names are for humans and shell scripts: letters, digits, `-_.`.
    #[error("channel name may contain only letters, digits, '-', '_' and '.', found {0:?}")]
    BadChar(char),
}

/// Checks a channel name: 1–64 bytes of ASCII letters, digits, `-`, `_`, `.`.
pub fn validate_channel(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_BYTES {
        return Err(ChannelError::TooLong(name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ChannelError::BadChar(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_ticks_monotonically_even_when_wall_clock_steps_back() {
        let mut clock = Hlc::default();
        let a = clock.tick(1_000);
        let b = clock.tick(900);
        let c = clock.tick(1_000);
        let d = clock.tick(1_001);
        assert!(a < b && b < c && c < d, "{a:?} {b:?} {c:?} {d:?}");
    }

    #[test]
    fn hlc_observe_moves_past_remote_readings() {
        let mut clock = Hlc::default();
        clock.observe(Hlc {
            ms: 5_000,
            logical: 3,
        });
        let next = clock.tick(1_000);
        assert!(
            next > Hlc {
                ms: 5_000,
                logical: 3
            }
        );
    }

    fn signed(draft: Draft) -> Message {
        Message::signed(
            &NodeKey::for_testing(1),
            1,
            "alpha".into(),
            Hlc::default(),
            draft,
        )
    }

    #[test]
    fn the_signature_covers_author_and_recipient() {
        let mut verifier = sign::Verifier::default();
        let plain = signed(Draft::channel("general", "hi"));
        assert_eq!(plain.verify(&mut verifier), Ok(()));
        let mut draft = Draft::channel("general", "hi");
        draft.author.user = "alice".into();
        draft.author.nick = Some("Al".into());
        let attributed = signed(draft);
        assert_eq!(attributed.verify(&mut verifier), Ok(()));

        // Another user, another display name, a recipient added, or the
        // author stripped (falling back to the older form): all refused.
        let mut forged = attributed.clone();
        forged.author.user = "root".into();
        assert_eq!(forged.verify(&mut verifier), Err(AuthError::BadSignature));
        let mut forged = attributed.clone();
        forged.author.nick = None;
        assert_eq!(forged.verify(&mut verifier), Err(AuthError::BadSignature));
        let mut forged = attributed.clone();
        forged.author = Author::default();
        assert_eq!(forged.verify(&mut verifier), Err(AuthError::BadSignature));
        let mut forged = plain.clone();
        forged.to = Some(Recipient {
            node: NodeId([7; 16]),
            user: None,
        });
        assert_eq!(forged.verify(&mut verifier), Err(AuthError::BadSignature));
        let mut forged = plain;
        forged.author.user = "mallory".into();
        assert_eq!(forged.verify(&mut verifier), Err(AuthError::BadSignature));
    }

    #[test]
    fn channel_names_are_checked() {
        assert_eq!(validate_channel("ops-alerts.v2"), Ok(()));
        assert_eq!(validate_channel(""), Err(ChannelError::Empty));
        assert_eq!(validate_channel("a b"), Err(ChannelError::BadChar(' ')));
        assert!(matches!(
            validate_channel(&"x".repeat(65)),
            Err(ChannelError::TooLong(65))
        ));
    }
}
