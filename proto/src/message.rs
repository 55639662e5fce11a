//! Chat messages and the hybrid logical clock that orders them.

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, NodeId};
use crate::merkle;
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
/// origin's id) and the origin's signature, of this message alone or of a
/// batch of its messages that includes it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Auth {
    /// The origin's public key.
    pub key: PublicKey,
    /// The origin's signature: of the rest of the message when `batch` is
    /// `None`, else of the root of the batch's hash tree.
    pub sig: Signature,
    /// Where the message sits in the batch its origin signed at once
    /// ([`sign_batch`]); `None`: signed alone.
    pub batch: Option<BatchProof>,
}

/// Most hashes a [`BatchProof`] may hold: a batch of up to 65,536
/// messages. Checked before any hashing, so a hostile proof costs nothing.
pub const MAX_BATCH_PROOF_HASHES: usize = 16;

/// Most messages [`sign_batch`] puts under one signature (the tree depth
/// [`MAX_BATCH_PROOF_HASHES`] allows).
pub const MAX_BATCH_MESSAGES: usize = 1 << MAX_BATCH_PROOF_HASHES;

/// A message's place in a batch its origin signed with one signature: the
/// batch's size, the message's position, and the sibling hashes from the
/// message's leaf up to the root of the batch's hash tree (an RFC 9162
/// inclusion proof, see `merkle`). With it a message is checked alone,
/// wherever it goes: relayed, stored, served from history.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BatchProof {
    /// Position of the message in the batch (0-based).
    pub index: u32,
    /// Messages in the batch.
    pub count: u32,
    /// Sibling hashes, the leaf's first.
    pub path: Vec<[u8; 32]>,
}

impl BatchProof {
    /// The bytes a store keeps (postcard).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing integers and byte arrays cannot fail; an empty result
        // would only make the message fail to verify when served.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// From [`BatchProof::to_bytes`]; `None` for bytes that are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<BatchProof> {
        match postcard::take_from_bytes::<BatchProof>(bytes) {
            Ok((proof, [])) => Some(proof),
            _ => None,
        }
    }

    /// The root of the batch a message whose signed content is `content`
    /// (under the tag of `domain`) belongs to, if the proof is well formed.
    fn root(&self, domain: Domain, content: &[u8]) -> Option<merkle::Hash> {
        if self.path.len() > MAX_BATCH_PROOF_HASHES {
            return None;
        }
        let leaf = merkle::leaf_hash(&[domain.tag(), content]);
        merkle::root_from_path(self.index, self.count, leaf, &self.path)
    }
}

/// The bytes the signature of a batch covers: its size and its root.
fn batch_statement(count: u32, root: &merkle::Hash) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + root.len());
    bytes.extend_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(root);
    bytes
}

/// Signs `messages`, all of the node of `key` and made with
/// [`Message::unsigned`], with as few signatures as possible: one alone
/// is signed as [`Message::signed`] signs; more share one signature per
/// [`MAX_BATCH_MESSAGES`], over the root of a hash tree of their signed
/// contents, and each carries its [`BatchProof`].
///
/// Signing costs tens of microseconds and so does every receiver's check
/// of a signature; a burst of messages from one origin (a busy sender, a
/// script) costs one of each per batch instead of per message, while each
/// message stays attributable to its origin alone.
pub fn sign_batch(key: &NodeKey, messages: &mut [Message]) {
    for batch in messages.chunks_mut(MAX_BATCH_MESSAGES) {
        if let [message] = batch {
            let (domain, content) = message.signed_content();
            message.auth.sig = key.sign(domain, &content);
            message.auth.batch = None;
            continue;
        }
        let leaves: Vec<merkle::Hash> = batch
            .iter()
            .map(|message| {
                let (domain, content) = message.signed_content();
                merkle::leaf_hash(&[domain.tag(), &content])
            })
            .collect();
        let (root, paths) = merkle::build(&leaves);
        // A chunk is at most MAX_BATCH_MESSAGES (2^16) long.
        let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let sig = key.sign(Domain::MessageBatch, &batch_statement(count, &root));
        for ((index, message), path) in (0u32..).zip(batch.iter_mut()).zip(paths) {
            message.auth.sig = sig;
            message.auth.batch = Some(BatchProof { index, count, path });
        }
    }
}

#[cfg(test)]
impl Auth {
    /// An all-zero key and signature, for unit tests of values that are
    /// never decoded (decoding refuses it).
    pub(crate) fn for_tests() -> Auth {
        Auth {
            key: PublicKey([0; 32]),
            sig: Signature::from_bytes(&[0; 64]),
            batch: None,
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
    /// The batch proof cannot belong to any batch (an index outside it, a
    /// path of the wrong length).
    #[error("the message's batch proof is malformed")]
    BadBatchProof,
}

impl Message {
    /// A message from the node of `key`, signed by it.
    pub fn signed(key: &NodeKey, seq: u64, origin_name: String, ts: Hlc, draft: Draft) -> Message {
        let mut message = Message::unsigned(key, seq, origin_name, ts, draft);
        sign_batch(key, std::slice::from_mut(&mut message));
        message
    }

    /// A message from the node of `key`, to be signed with others of its
    /// by [`sign_batch`]; until then its signature is all zeros, which
    /// verifies for nothing.
    pub fn unsigned(
        key: &NodeKey,
        seq: u64,
        origin_name: String,
        ts: Hlc,
        draft: Draft,
    ) -> Message {
        Message {
            id: MessageId {
                origin: key.node_id(),
                seq,
            },
            origin_name,
            ts,
            channel: draft.channel,
            text: draft.text,
            author: draft.author,
            to: draft.to,
            auth: Auth {
                key: key.public(),
                sig: Signature::from_bytes(&[0; 64]),
                batch: None,
            },
        }
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

    /// Checks that the key is the origin's and the signature verifies, of
    /// the message alone or of the batch its proof places it in. What was
    /// verified is remembered in `verifier`, the checking node's memo: the
    /// other messages of a batch cost a few hashes each, not a signature
    /// check.
    pub fn verify(&self, verifier: &mut sign::Verifier) -> Result<(), AuthError> {
        if self.auth.key.node_id() != self.id.origin {
            return Err(AuthError::WrongKey);
        }
        let (domain, content) = self.signed_content();
        let verified = match &self.auth.batch {
            None => verifier.verify(&self.auth.key, domain, &content, &self.auth.sig),
            Some(proof) => {
                let root = proof
                    .root(domain, &content)
                    .ok_or(AuthError::BadBatchProof)?;
                verifier.verify(
                    &self.auth.key,
                    Domain::MessageBatch,
                    &batch_statement(proof.count, &root),
                    &self.auth.sig,
                )
            }
        };
        if verified {
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

    /// `n` messages of node 1, signed as one batch.
    fn batch(n: usize) -> Vec<Message> {
        batch_of(n, "message")
    }

    /// `n` messages of node 1 with texts `"{text} {seq}"`, signed as one
    /// batch.
    fn batch_of(n: usize, text: &str) -> Vec<Message> {
        let key = NodeKey::for_testing(1);
        let mut messages: Vec<Message> = (1..=n as u64)
            .map(|seq| {
                let mut draft = Draft::channel("general", format!("{text} {seq}"));
                if seq % 2 == 0 {
                    draft.author.user = "alice".into();
                }
                Message::unsigned(&key, seq, "alpha".into(), Hlc::default(), draft)
            })
            .collect();
        sign_batch(&key, &mut messages);
        messages
    }

    #[test]
    fn every_message_of_a_batch_verifies_alone() {
        for n in [1, 2, 3, 7, 8, 64, 65] {
            let messages = batch(n);
            for message in &messages {
                // A node that saw no other message of the batch.
                assert_eq!(
                    message.verify(&mut sign::Verifier::default()),
                    Ok(()),
                    "n={n} {}",
                    message.id
                );
                assert_eq!(message.auth.batch.is_some(), n > 1, "n={n}");
            }
            // One signature (two when the batch is split in chunks).
            let sigs: std::collections::BTreeSet<_> = messages.iter().map(|m| m.auth.sig).collect();
            assert_eq!(sigs.len(), n.div_ceil(MAX_BATCH_MESSAGES), "n={n}");
        }
    }

    #[test]
    fn a_batch_costs_one_signature_check() {
        let mut verifier = sign::Verifier::default();
        for message in batch(40) {
            assert_eq!(message.verify(&mut verifier), Ok(()));
        }
        assert_eq!(verifier.memo_len(), 1, "the root was checked once");
    }

    #[test]
    fn tampered_batch_messages_and_proofs_are_refused() {
        let messages = batch(13);
        // The same origin's other batch, of other messages with the same ids.
        let other = batch_of(12, "other");
        let target = &messages[5];
        let proof = target.auth.batch.clone().expect("in a batch");
        let check = |m: &Message| m.verify(&mut sign::Verifier::default());
        let refused = |m: &Message| {
            matches!(
                check(m),
                Err(AuthError::BadSignature | AuthError::BadBatchProof)
            )
        };

        // The content altered: text, author, time.
        let mut forged = target.clone();
        forged.text.push('!');
        assert_eq!(check(&forged), Err(AuthError::BadSignature));
        let mut forged = messages[1].clone();
        forged.author.user = "root".into();
        assert_eq!(check(&forged), Err(AuthError::BadSignature));
        let mut forged = target.clone();
        forged.ts.ms += 1;
        assert_eq!(check(&forged), Err(AuthError::BadSignature));

        // A sibling hash altered, the position or the size changed.
        for i in 0..proof.path.len() {
            let mut forged = target.clone();
            if let Some(batch) = forged.auth.batch.as_mut() {
                batch.path[i][31] ^= 0x80;
            }
            assert_eq!(check(&forged), Err(AuthError::BadSignature), "hash {i}");
        }
        for (index, count) in [(4, 13), (6, 13), (5, 12), (5, 14), (13, 13), (5, 5)] {
            let mut forged = target.clone();
            forged.auth.batch = Some(BatchProof {
                index,
                count,
                path: proof.path.clone(),
            });
            assert!(refused(&forged), "index {index} of {count}");
        }

        // The path cut short, made longer, or longer than any batch.
        let mut forged = target.clone();
        forged.auth.batch = Some(BatchProof {
            path: proof.path[1..].to_vec(),
            ..proof.clone()
        });
        assert_eq!(check(&forged), Err(AuthError::BadBatchProof));
        let mut forged = target.clone();
        let mut longer = proof.path.clone();
        longer.push([7; 32]);
        forged.auth.batch = Some(BatchProof {
            path: longer,
            ..proof.clone()
        });
        assert_eq!(check(&forged), Err(AuthError::BadBatchProof));
        let mut forged = target.clone();
        forged.auth.batch = Some(BatchProof {
            index: 0,
            count: u32::MAX,
            path: vec![[1; 32]; MAX_BATCH_PROOF_HASHES + 1],
        });
        assert_eq!(check(&forged), Err(AuthError::BadBatchProof));

        // Another message's proof, or another batch's signature and proof.
        let mut forged = target.clone();
        forged.auth.batch = messages[6].auth.batch.clone();
        assert_eq!(check(&forged), Err(AuthError::BadSignature));
        let mut forged = target.clone();
        forged.auth = other[5].auth.clone();
        assert_eq!(check(&forged), Err(AuthError::BadSignature));

        // The batch's signature passed off as one of the message alone, and
        // a lone message's signature as a batch of one.
        let mut forged = target.clone();
        forged.auth.batch = None;
        assert_eq!(check(&forged), Err(AuthError::BadSignature));
        let mut alone = batch(1).remove(0);
        alone.auth.batch = Some(BatchProof {
            index: 0,
            count: 1,
            path: Vec::new(),
        });
        assert_eq!(check(&alone), Err(AuthError::BadSignature));

        // Another node's key with the batch: not the origin's.
        let mut forged = target.clone();
        forged.auth.key = NodeKey::for_testing(2).public();
        assert_eq!(check(&forged), Err(AuthError::WrongKey));

        // A batch signed by node 2 but claiming node 1's messages: the
        // message ids name node 1, whose key must sign.
        let mallory = NodeKey::for_testing(2);
        let mut stolen: Vec<Message> = messages.clone();
        for m in &mut stolen {
            m.auth.key = mallory.public();
        }
        sign_batch(&mallory, &mut stolen);
        assert!(stolen.iter().all(|m| check(m) == Err(AuthError::WrongKey)));
    }

    #[test]
    fn batch_proofs_round_trip_through_bytes() {
        let messages = batch(9);
        for message in &messages {
            let proof = message.auth.batch.as_ref().expect("in a batch");
            assert_eq!(
                BatchProof::from_bytes(&proof.to_bytes()).as_ref(),
                Some(proof)
            );
        }
        assert_eq!(BatchProof::from_bytes(&[1, 2]), None);
        let mut trailing = messages[0]
            .auth
            .batch
            .as_ref()
            .map(BatchProof::to_bytes)
            .unwrap_or_default();
        trailing.push(0);
        assert_eq!(BatchProof::from_bytes(&trailing), None);
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
