//! The datagram format between nodes.
//!
//! Every datagram is a fixed [`HEADER_LEN`]-byte header followed by a
//! postcard-encoded [`Body`]:
//!
//! ```text
//!  0      2        3       4            12                 28
//!  +------+--------+-------+------------+------------------+-------------+
//!  | "RS" | version| flags | cluster id | sender node id   | body ...    |
//!  +------+--------+-------+------------+------------------+-------------+
//! ```
//!
//! - `version` is [`VERSION`]; anything else is refused, so that a later
//!   format can change everything after the version byte.
//! - `flags` is 0 here. A datagram sealed with the cluster key has
//!   [`crate::seal::FLAG_SEALED`] and a different layout after the header
//!   (see [`crate::seal`]); [`decode`] reads only the opened datagram, and
//!   refuses unknown flags rather than misread them.
//! - `cluster id` is [`ClusterId::from_label`] of the cluster label (FNV-1a
//!   64, stable forever), so that separate clusters on one LAN ignore each
//!   other cheaply, before any body is decoded.
//! - `sender` is the sending node's id; it is what `last_seen` is keyed by.
//!
//! No datagram is larger than [`MAX_DATAGRAM_BYTES`]: [`encode`] refuses to
//! produce one and [`decode`] refuses to read one. Decoding is total: any
//! byte string yields a value or a [`DecodeError`], never a panic, and the
//! allocations it makes are bounded by the input's length.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, NodeId};
use crate::message::Message;
use crate::sign::{Domain, NodeKey, PublicKey, Signature};

/// Largest datagram rossip sends or accepts: below a 1,500-byte Ethernet MTU
/// with room for IP/UDP headers (and IPv6), so IP never fragments.
pub const MAX_DATAGRAM_BYTES: usize = 1400;

/// The first two bytes of every rossip datagram.
pub const MAGIC: [u8; 2] = *b"RS";

/// The wire format version this code speaks. Version 2 batches messages
/// in pushes and repairs and splits large messages into fragments; version
/// 3 adds a message's author and the direct-message recipient; version 4
/// a message's batch proof (one signature for a batch of an origin's
/// messages, see [`crate::message::sign_batch`]), carries identities in SWIM
/// packets by reference ([`SwimIdentity`]) and adds the identity pull
/// ([`Body::IdentityRequest`], [`Body::Identities`]).
pub const VERSION: u8 = 4;

/// Length of the fixed header: magic, version, flags, cluster id, sender id.
pub const HEADER_LEN: usize = 2 + 1 + 1 + 8 + 16;

/// Largest body that fits in one datagram, sealed or not: the seal's key
/// id, nonce and tag ([`crate::seal::SEAL_OVERHEAD`]) are always left
/// room for, so one budget serves clusters with and without a key.
pub const MAX_BODY_BYTES: usize = MAX_DATAGRAM_BYTES - HEADER_LEN - crate::seal::SEAL_OVERHEAD;

/// Largest message text, in bytes, any node accepts (the hard cap of the
/// configurable limit): a message this large is split into about 800
/// fragments. Larger texts belong in files, not chat.
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// Largest encoded message ([`Message`] in postcard): the largest text plus
/// the longest name, channel, user, display name and recipient, and every
/// varint at its largest (about 480 bytes besides the text; see the test
/// `the_largest_message_fits_the_fragment_limit`).
pub const MAX_ENCODED_MESSAGE_BYTES: usize = MAX_TEXT_BYTES + 512;

/// Bytes of an encoded message each fragment carries (the last carries the
/// rest). With the fragment's own fields and the header, a one-fragment
/// repair or push stays under [`MAX_DATAGRAM_BYTES`].
pub const FRAGMENT_DATA_BYTES: usize = 1200;

/// Most fragments a message can have.
pub const MAX_FRAGMENTS: usize = MAX_ENCODED_MESSAGE_BYTES.div_ceil(FRAGMENT_DATA_BYTES);

/// A cluster's identity on the wire: the FNV-1a 64 hash of its label.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ClusterId(pub u64);

impl ClusterId {
    /// The id of the cluster named `label`. This function is part of the
    /// wire format: it must never change.
    pub fn from_label(label: &str) -> Self {
        ClusterId(fnv1a_64(label.as_bytes()))
    }
}

/// FNV-1a, 64-bit variant (offset basis 0xcbf29ce484222325, prime
/// 0x100000001b3). Chosen because it is tiny, well specified and stable;
/// it is not meant to resist anyone choosing labels adversarially.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// The fixed part of every datagram.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// 0 in a plaintext or opened datagram ([`crate::seal::FLAG_SEALED`] on the wire when sealed).
    pub flags: u8,
    /// Which cluster the datagram belongs to.
    pub cluster: ClusterId,
    /// The node that sent it.
    pub sender: NodeId,
}

/// Who a node is, as membership knows it: also the identity `foca` gossips.
///
/// `generation` distinguishes runs of the same node id: a restarted node
/// comes back with a higher generation, which wins over its old identity
/// (that may still be remembered as failed or left).
///
/// The node signs its id, address, name, generation and key (see
/// [`crate::sign`]); an identity whose key does not derive its id, or whose
/// signature does not verify, is refused by every decoder of network input
/// ([`Identity::verify`]). The generation is signed
/// because it decides which of two identities of a node wins: otherwise
/// anyone could gossip a node's identity with a higher generation, marked
/// down, and keep it out. (A renewal, [`Identity::renewed`], re-signs.)
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Identity {
    /// The node's id (the membership key).
    pub id: NodeId,
    /// The address its gossip socket is reached at.
    pub addr: SocketAddr,
    /// Its human-readable name (≤ 64 bytes when produced by rossip).
    pub name: String,
    /// Which run of the node this is; higher wins.
    pub generation: u64,
    /// The node's public key (derives `id`).
    pub key: PublicKey,
    /// The node's signature of `id`, `addr`, `name` and `key`.
    pub sig: Signature,
    /// The node's key pair, in this process's own node's identity only (see
    /// [`Identity::own`]): what renews it. Not sent; not compared.
    #[serde(skip)]
    pub(crate) own_key: crate::sign::OwnKey,
}

impl Identity {
    /// The identity of the node of `key`, signed by it.
    pub fn signed(key: &NodeKey, addr: SocketAddr, name: String, generation: u64) -> Identity {
        let id = key.node_id();
        let public = key.public();
        let sig = key.sign(
            Domain::Identity,
            &identity_bytes(&id, &addr, &name, generation, &public),
        );
        Identity {
            id,
            addr,
            name,
            generation,
            key: public,
            sig,
            own_key: crate::sign::OwnKey::default(),
        }
    }

    /// A node's own identity: signed by `key`, which it also carries so the
    /// node can renew it ([`Identity::renewed`]). Only a node's identity of
    /// itself is made this way; copies decoded from the network never
    /// carry a key.
    pub(crate) fn own(key: &NodeKey, addr: SocketAddr, name: String, generation: u64) -> Identity {
        Identity {
            own_key: crate::sign::OwnKey::new(key),
            ..Identity::signed(key, addr, name, generation)
        }
    }

    /// The next generation of this identity, signed: only for the identity
    /// a node made of itself, which holds its key (`None` for identities
    /// decoded from the network, and at the last generation).
    pub fn renewed(&self) -> Option<Identity> {
        let generation = self.generation.checked_add(1)?;
        let key = self.own_key.get()?;
        Some(Identity::own(key, self.addr, self.name.clone(), generation))
    }

    /// Checks that the key derives the id and the signature verifies
    /// (remembered in `verifier`, the checking node's memo).
    pub fn verify(
        &self,
        verifier: &mut crate::sign::Verifier,
    ) -> Result<(), crate::message::AuthError> {
        if self.key.node_id() != self.id {
            return Err(crate::message::AuthError::WrongKey);
        }
        let bytes = identity_bytes(&self.id, &self.addr, &self.name, self.generation, &self.key);
        if verifier.verify(&self.key, Domain::Identity, &bytes, &self.sig) {
            Ok(())
        } else {
            Err(crate::message::AuthError::BadSignature)
        }
    }

    /// Test node 1 (`NodeKey::for_testing(1)`) at 10.0.0.1:7465 named `a`:
    /// the identity unit tests vary only by generation.
    #[cfg(test)]
    pub(crate) fn for_tests(generation: u64) -> Identity {
        Identity::signed(
            &NodeKey::for_testing(1),
            SocketAddr::from(([10, 0, 0, 1], 7465)),
            "a".into(),
            generation,
        )
    }
}

/// One run of a node, by reference: what a receiver needs to find the
/// signed [`Identity`] it already holds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RunRef {
    /// The node.
    pub id: NodeId,
    /// Its run.
    pub generation: u64,
}

impl Identity {
    /// The reference to this run.
    pub fn run(&self) -> RunRef {
        RunRef {
            id: self.id,
            generation: self.generation,
        }
    }
}

/// An identity as a SWIM packet carries it. A signed identity is ~130
/// bytes and SWIM names members in every packet (sender, receiver, probe
/// targets, every piggybacked update), so members are named by reference
/// where the receiver holds the identity; it is sent whole only where the
/// receiver may not (the sender's own to a member not known to hold it,
/// the members of a feed). A receiver that lacks a referenced identity
/// pulls it ([`Body::IdentityRequest`]): nothing is believed about a member
/// without its verified signed identity.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum SwimIdentity {
    /// The whole signed identity.
    Full(Identity),
    /// A run whose identity the receiver is expected to hold.
    Known(RunRef),
}

/// The bytes a leave notice signs: the leaving node's id and generation.
pub fn leave_bytes(id: &NodeId, generation: u64) -> Vec<u8> {
    // Serializing an id and an integer cannot fail; an empty result would
    // only make the signature fail to verify.
    postcard::to_allocvec(&(id, generation)).unwrap_or_default()
}

/// The signed bytes of an identity.
fn identity_bytes(
    id: &NodeId,
    addr: &SocketAddr,
    name: &str,
    generation: u64,
    key: &PublicKey,
) -> Vec<u8> {
    // Serializing an id, an address, a string, an integer and a byte array
    // cannot fail; an empty result would only make the signature fail to
    // verify.
    postcard::to_allocvec(&(id, addr, name, generation, key)).unwrap_or_default()
}

/// A contact handshake: proves that the gossip port answers before a
/// discovered address becomes a member.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's identity.
    pub identity: Identity,
    /// `false` for a request, `true` for the answer to one.
    pub ack: bool,
    /// In a request: the sender's clock (microseconds on its own monotonic
    /// scale). In an answer: the request's stamp, echoed, so the requester
    /// measures the round trip without keeping state per request.
    pub stamp_us: u64,
}

/// An inclusive range of sequence numbers of one origin.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SeqRange {
    /// First sequence number in the range.
    pub first: u64,
    /// Last sequence number in the range (≥ `first`).
    pub last: u64,
}

/// What a node has seen of one origin's messages.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OriginDigest {
    /// The origin node.
    pub origin: NodeId,
    /// Sequence numbers seen, as sorted disjoint ranges. Anything outside
    /// them counts as missing (a truncated list costs only duplicates).
    pub seen: Vec<SeqRange>,
}

/// An anti-entropy summary: "this is what I have seen of every origin whose
/// id lies in `(after, through]`; send me what I lack".
///
/// The origin range makes a digest complete for a slice of the id space even
/// when all origins do not fit in one datagram: an origin inside the range
/// that the digest does not list is one the sender knows nothing of.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Digest {
    /// The sender's clock (microseconds, its own scale), for round trips.
    pub stamp_us: u64,
    /// `Some(stamp)` when this digest answers another digest; an answer is
    /// never answered with a digest again, which bounds the exchange.
    pub reply_to: Option<u64>,
    /// Exclusive lower bound of the origins covered (`None`: from the start).
    pub after: Option<NodeId>,
    /// Inclusive upper bound of the origins covered (`None`: to the end).
    pub through: Option<NodeId>,
    /// Origins in the range the sender has seen messages of.
    pub origins: Vec<OriginDigest>,
    /// Messages of those origins the sender holds some fragments of (so
    /// the answer carries only the missing ones).
    pub partial: Vec<PartialDigest>,
    /// Origins of any slice that sent messages lately, with the highest
    /// sequence number the sender has of each: a receiver that is behind
    /// one of them pulls it at once, rather than when its slice comes up.
    pub heads: Vec<Head>,
}

/// The newest message a node has of one origin.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Head {
    /// The origin.
    pub origin: NodeId,
    /// Its highest sequence number seen.
    pub seq: u64,
}

/// A piece of a message too large for one datagram: bytes
/// `index * FRAGMENT_DATA_BYTES ..` of the message's postcard encoding.
/// Every fragment but the last carries exactly [`FRAGMENT_DATA_BYTES`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Fragment {
    /// The message this is a piece of.
    pub id: MessageId,
    /// Length of the whole encoded message.
    pub total: u32,
    /// Which piece (0-based).
    pub index: u16,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Fragment {
    /// How many fragments a message of `total` encoded bytes has.
    pub fn count_for(total: usize) -> usize {
        total.div_ceil(FRAGMENT_DATA_BYTES).max(1)
    }
}

/// One item of a push or repair: a message that fits in a datagram with
/// others, or one fragment of a large one.
// Most items are whole messages, and boxing them would add an allocation
// to each for the sake of the rarer fragments.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Payload {
    /// A whole message.
    Whole(Message),
    /// One piece of a message.
    Piece(Fragment),
}

impl Payload {
    /// The id of the message carried.
    pub fn id(&self) -> MessageId {
        match self {
            Payload::Whole(message) => message.id,
            Payload::Piece(fragment) => fragment.id,
        }
    }
}

/// An eager push: new messages (or pieces) from their origin or a relay.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Push {
    /// Whether a receiver that did not have an item passes it on. An origin
    /// that pushes to every member at once (a small cluster) says `false`.
    pub relay: bool,
    /// What is pushed, in the origin's order.
    pub items: Vec<Payload>,
}

/// What a node holds of a message it has only some fragments of.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PartialDigest {
    /// The message.
    pub id: MessageId,
    /// Bit `i` (byte `i / 8`, bit `i % 8`) set: fragment `i` is held.
    pub have: Vec<u8>,
}

/// Sequence numbers of one origin a node has seen but no longer holds:
/// the answer to a digest that lacks them, so the asker stops asking.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GoneRange {
    /// The origin.
    pub origin: NodeId,
    /// First sequence number.
    pub first: u64,
    /// Last sequence number.
    pub last: u64,
}

/// The kinds of datagram.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Body {
    /// Contact handshake (request or answer).
    Hello(Hello),
    /// A SWIM packet, opaque here: `foca`'s own encoding.
    Swim(Vec<u8>),
    /// Eager push of messages.
    Push(Push),
    /// The sender leaves the cluster gracefully.
    Leave {
        /// The generation that leaves (a later run is not affected).
        generation: u64,
        /// The sender's signature of (its id, `generation`): no one else
        /// can make it look gone (see [`leave_bytes`]).
        sig: Signature,
    },
    /// Anti-entropy summary.
    Digest(Digest),
    /// Messages (or pieces) sent because a digest showed the receiver lacks
    /// them.
    Repair(Vec<Payload>),
    /// "I suspect you": sent by the member whose probe of the receiver
    /// failed, so the receiver refutes at once (a higher incarnation)
    /// instead of waiting for the suspicion to reach it by gossip.
    Suspected {
        /// The receiver's generation the suspicion is about (a later run is
        /// not affected).
        generation: u64,
        /// foca's incarnation of the receiver that is suspected.
        incarnation: u16,
    },
    /// `id` (not the sender) left gracefully: forwarded by a member that got
    /// the leave notice, so nodes that lost both direct copies still show
    /// `left` rather than `failed`.
    Left {
        /// The node that left.
        id: NodeId,
        /// Its generation that left.
        generation: u64,
        /// The leaver's own signature, from its [`Body::Leave`].
        sig: Signature,
    },
    /// Messages the receiver's digest lacked that the sender has seen but
    /// no longer holds (they left its history window).
    Gone(Vec<GoneRange>),
    /// Membership anti-entropy request: "these are the runs of nodes whose
    /// id lies in `(after, through]` that I know; send me the members you
    /// know there that I lack" (see `node::member_sync`). Complete for its
    /// slice: a node in the range without a fingerprint is one the sender
    /// does not know.
    MemberDigest {
        /// The sender's clock (microseconds, its own scale), echoed by the
        /// answer.
        stamp_us: u64,
        /// Exclusive lower bound of the ids covered (`None`: from the start).
        after: Option<NodeId>,
        /// Inclusive upper bound of the ids covered (`None`: to the end).
        through: Option<NodeId>,
        /// `node::member_fingerprint` of (id, generation) of every node the
        /// sender knows in the slice (itself included, any state), in any
        /// order.
        fingerprints: Vec<[u8; 4]>,
    },
    /// The answer to a [`Body::MemberDigest`] (alive and suspect members of
    /// the slice whose run the digest did not list) or to a
    /// [`Body::MemberSummary`] (no identities).
    MemberSync {
        /// The request's `stamp_us`, echoed.
        reply_to: u64,
        /// To a digest: whether every such member fit in this datagram. To a
        /// summary: whether it matched the answerer's own.
        complete: bool,
        /// Their identities.
        identities: Vec<Identity>,
    },
    /// The cheap form of [`Body::MemberDigest`], for a stable view: a
    /// summary of the runs of the alive and suspect nodes the sender knows
    /// (itself included). If the receiver's summary differs, the sender
    /// pulls the digest slices.
    MemberSummary {
        /// The sender's clock (microseconds, its own scale), echoed by the
        /// answer.
        stamp_us: u64,
        /// How many nodes.
        count: u64,
        /// The wrapping sum of their `node::member_hash`es.
        sum: u64,
    },
    /// "Which cluster keys do you hold?" (`rossipctl keys list`): answered
    /// with a [`Body::KeyringReport`]. Only between key holders.
    KeyringQuery {
        /// The sender's stamp, echoed by the answer.
        stamp_us: u64,
    },
    /// The answer to a [`Body::KeyringQuery`]: key ids only, never keys.
    KeyringReport {
        /// The query's stamp.
        reply_to: u64,
        /// The id of the key the sender seals with.
        primary: u32,
        /// Every key id it holds, the primary first.
        ids: Vec<u32>,
    },
    /// A keyring change (`rossipctl keys install|use|remove`), answered
    /// with a [`Body::KeyringAck`]. Carries key material, so it is only
    /// ever sent and accepted sealed: any holder of a cluster key may
    /// change the keyring (the cluster key is the admin credential).
    KeyringCommand {
        /// The sender's stamp, echoed by the answer.
        stamp_us: u64,
        /// What to change.
        op: KeyOp,
    },
    /// The answer to a [`Body::KeyringCommand`].
    KeyringAck {
        /// The command's stamp.
        reply_to: u64,
        /// Whether the change holds now on the sender.
        ok: bool,
        /// Why not (short; empty when `ok`).
        error: String,
    },
    /// The sender's statement of its local users in a chat (see
    /// [`crate::presence`]), pushed when it changes, to a member that comes
    /// up, and periodically.
    Presence(crate::presence::PresenceRecord),
    /// A direct message, or its acknowledgement, sealed end to end from
    /// the sender to the one node it is for (see [`crate::direct`]).
    Direct(crate::direct::SealedDirect),
    /// "Send me these identities": SWIM packets from the receiver named
    /// runs the sender does not hold (see [`SwimIdentity`]). Answered with
    /// [`Body::Identities`], only to members.
    IdentityRequest(Vec<RunRef>),
    /// The answer to a [`Body::IdentityRequest`]: the signed identities the
    /// sender holds of the nodes asked for.
    Identities(Vec<Identity>),
    /// The answer to direct pushes (`relay: false`) of the receiver's own
    /// messages: which of them the sender holds, so the receiver sends
    /// again only what was lost (see `node::acks`). A node that does not
    /// know this body drops it as malformed; its peers then only
    /// retransmit to it a few times.
    Ack(Ack),
}

/// Which of the receiver's own messages the sender of an [`Body::Ack`]
/// holds.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Ack {
    /// The highest few ranges of the receiver's sequence numbers the
    /// sender has seen, lowest first. A range left out (an old gap) only
    /// costs a retransmission, never a loss.
    pub seen: Vec<SeqRange>,
    /// Pieces of the receiver's large messages the sender holds while the
    /// message is incomplete (a complete one is in `seen`).
    pub pieces: Vec<PieceAck>,
}

/// One fragment of a message, acknowledged (see [`Ack::pieces`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct PieceAck {
    /// The message's sequence number (its origin is the ack's receiver).
    pub seq: u64,
    /// The fragment's index.
    pub index: u16,
}

/// A keyring change (see [`Body::KeyringCommand`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    /// Add a key (accepted, not yet sealed with): its 32 bytes.
    Install([u8; 32]),
    /// Seal with the installed key of this id.
    Use(u32),
    /// Remove the key of this id (refused for the sealing key).
    Remove(u32),
}

impl std::fmt::Debug for KeyOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself: datagrams are logged at debug level.
        match self {
            KeyOp::Install(bytes) => {
                write!(f, "Install({})", crate::seal::ClusterKey::new(bytes).id())
            }
            KeyOp::Use(id) => write!(f, "Use({id:08x})"),
            KeyOp::Remove(id) => write!(f, "Remove({id:08x})"),
        }
    }
}

/// Why a datagram was refused. [`DecodeError::reason`] names the counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header.
    #[error("datagram of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort(usize),
    /// Not a rossip datagram.
    #[error("datagram does not start with the rossip magic")]
    BadMagic,
    /// A rossip datagram of a version this code does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// Flags this code does not understand.
    #[error("unsupported header flags {0:#04x}")]
    UnsupportedFlags(u8),
    /// Sealed with a cluster key, at a node that has none.
    #[error("datagram is sealed with a cluster key and this node has none")]
    Sealed,
    /// Another cluster's datagram.
    #[error("datagram belongs to another cluster")]
    WrongCluster,
    /// Larger than [`MAX_DATAGRAM_BYTES`].
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM_BYTES}")]
    Oversized(usize),
    /// The body does not decode (or has trailing bytes).
    #[error("malformed datagram body")]
    Malformed,
    /// A signed value in it (a message, an identity) has a signature that
    /// does not verify, or a key that is not its node's.
    #[error("a signature in the datagram does not verify")]
    BadSignature,
}

impl DecodeError {
    /// Short, stable name used as the key of `Stats::dropped`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooShort(_) => "too_short",
            DecodeError::BadMagic => "bad_magic",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::UnsupportedFlags(_) => "unsupported_flags",
            DecodeError::Sealed => "sealed_without_key",
            DecodeError::WrongCluster => "wrong_cluster",
            DecodeError::Oversized(_) => "oversized",
            DecodeError::Malformed => "malformed",
            DecodeError::BadSignature => "bad_signature",
        }
    }
}

/// Why a datagram could not be produced.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoded datagram would exceed [`MAX_DATAGRAM_BYTES`].
    #[error("datagram of {0} bytes would exceed {MAX_DATAGRAM_BYTES}")]
    TooLarge(usize),
    /// The body could not be serialized.
    #[error("body could not be serialized")]
    Serialize,
    /// Sealing failed (the nonce counter ran out; never in practice).
    #[error("datagram could not be sealed")]
    Seal,
}

impl EncodeError {
    /// Short, stable name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            EncodeError::TooLarge(_) => "encode_too_large",
            EncodeError::Serialize => "encode_failed",
            EncodeError::Seal => "seal_failed",
        }
    }
}

/// Encodes a datagram, refusing to produce more than [`MAX_DATAGRAM_BYTES`].
pub fn encode(header: &Header, body: &Body) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.flags);
    out.extend_from_slice(&header.cluster.0.to_be_bytes());
    out.extend_from_slice(&header.sender.0);
    let out = postcard::to_extend(body, out).map_err(|_| EncodeError::Serialize)?;
    if out.len() > MAX_DATAGRAM_BYTES {
        return Err(EncodeError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Checks and parses the fixed header; `expected` is this node's cluster.
/// Returns the header and the body bytes.
pub fn decode_header(bytes: &[u8], expected: ClusterId) -> Result<(Header, &[u8]), DecodeError> {
    if bytes.len() > MAX_DATAGRAM_BYTES {
        return Err(DecodeError::Oversized(bytes.len()));
    }
    let Some((head, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        // A foreign protocol's short packet is more usefully "bad magic".
        if bytes.len() >= 2 && bytes.get(..2) != Some(&MAGIC[..]) {
            return Err(DecodeError::BadMagic);
        }
        return Err(DecodeError::TooShort(bytes.len()));
    };
    let [
        m0,
        m1,
        version,
        flags,
        c0,
        c1,
        c2,
        c3,
        c4,
        c5,
        c6,
        c7,
        sender @ ..,
    ] = *head;
    if [m0, m1] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // The cluster first: another cluster's datagram is that, sealed or not.
    let cluster = ClusterId(u64::from_be_bytes([c0, c1, c2, c3, c4, c5, c6, c7]));
    if cluster != expected {
        return Err(DecodeError::WrongCluster);
    }
    if flags == crate::seal::FLAG_SEALED {
        return Err(DecodeError::Sealed);
    }
    if flags != 0 {
        return Err(DecodeError::UnsupportedFlags(flags));
    }
    let header = Header {
        flags,
        cluster,
        sender: NodeId(sender),
    };
    Ok((header, body))
}

/// How soon a received datagram should be handled, told from its header and
/// the first byte of its body alone (no decoding, no signature check), so
/// that a driver can read its socket's queue ahead and handle membership
/// datagrams before the bulk data queued in front of them: a probe's
/// answer that waits behind seconds of messages on a saturated host looks
/// like a dead peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Failure detection and membership (hellos, SWIM, suspicion nudges,
    /// leave notices): handle at once.
    Membership,
    /// Messages, repairs, digests and the rest: may wait behind membership.
    Bulk,
    /// Sealed (the body is not readable before it is opened), or not a
    /// datagram of this format: handle in arrival order, as everything
    /// else would be.
    Unknown,
}

/// See [`Urgency`]. Postcard writes a [`Body`]'s variant index first, as a
/// varint, one byte for the first 128 variants.
pub fn urgency(bytes: &[u8]) -> Urgency {
    let Some((head, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Urgency::Unknown;
    };
    let [m0, m1, version, flags, ..] = *head;
    if [m0, m1] != MAGIC || version != VERSION || flags != 0 {
        return Urgency::Unknown;
    }
    match body.first() {
        // Hello, Swim, Leave, Suspected, Left (the order of `Body`).
        Some(0 | 1 | 3 | 6 | 7) => Urgency::Membership,
        Some(tag) if *tag < 0x80 => Urgency::Bulk,
        _ => Urgency::Unknown,
    }
}

/// Decodes a whole datagram of cluster `expected`, and checks every signed
/// value in it (messages, identities) with `verifier`, the receiving node's
/// memo: a datagram with one that fails is refused whole.
pub fn decode(
    bytes: &[u8],
    expected: ClusterId,
    verifier: &mut crate::sign::Verifier,
) -> Result<(Header, Body), DecodeError> {
    let (header, body) = decode_header(bytes, expected)?;
    let (body, rest) =
        postcard::take_from_bytes::<Body>(body).map_err(|_| DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed);
    }
    verify_signed(&body, verifier).map_err(|_| DecodeError::BadSignature)?;
    Ok((header, body))
}

/// Checks the signatures of the messages and identities `body` carries.
/// (SWIM payloads are checked by the SWIM codec as it decodes them; leave
/// notices by the node, against the key of the member that leaves.)
fn verify_signed(
    body: &Body,
    verifier: &mut crate::sign::Verifier,
) -> Result<(), crate::message::AuthError> {
    match body {
        Body::Hello(hello) => hello.identity.verify(verifier),
        Body::Push(Push { items, .. }) | Body::Repair(items) => {
            items.iter().try_for_each(|item| match item {
                Payload::Whole(message) => message.verify(verifier),
                // A piece is checked as part of its message, once complete.
                Payload::Piece(_) => Ok(()),
            })
        }
        Body::MemberSync { identities, .. } | Body::Identities(identities) => identities
            .iter()
            .try_for_each(|identity| identity.verify(verifier)),
        Body::Presence(record) => record.verify(verifier),
        Body::Swim(_)
        | Body::Leave { .. }
        | Body::Left { .. }
        | Body::Digest(_)
        | Body::Suspected { .. }
        | Body::Gone(_)
        | Body::MemberDigest { .. }
        | Body::MemberSummary { .. }
        | Body::KeyringQuery { .. }
        | Body::KeyringReport { .. }
        | Body::KeyringCommand { .. }
        | Body::KeyringAck { .. }
        | Body::IdentityRequest(_)
        | Body::Ack(_)
        // Opened and checked by the node it is for, the only one that can.
        | Body::Direct(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urgency_is_told_from_the_body_tag_without_decoding() {
        let header = Header {
            flags: 0,
            cluster: ClusterId::from_label("urgency"),
            sender: NodeId([3; 16]),
        };
        let of = |body: &Body| urgency(&encode(&header, body).expect("encodes"));
        assert_eq!(of(&Body::Swim(vec![1, 2, 3])), Urgency::Membership);
        assert_eq!(
            of(&Body::Suspected {
                generation: 1,
                incarnation: 2
            }),
            Urgency::Membership
        );
        assert_eq!(of(&Body::Repair(Vec::new())), Urgency::Bulk);
        assert_eq!(of(&Body::Gone(Vec::new())), Urgency::Bulk);
        assert_eq!(urgency(b"RS"), Urgency::Unknown);
        let mut sealed = encode(&header, &Body::Swim(vec![1])).expect("encodes");
        sealed[3] = crate::seal::FLAG_SEALED;
        assert_eq!(urgency(&sealed), Urgency::Unknown);
    }

    use super::*;
    use crate::id::MessageId;
    use crate::message::{Hlc, MAX_CHANNEL_BYTES, MAX_NAME_BYTES};

    fn header() -> Header {
        Header {
            flags: 0,
            cluster: ClusterId::from_label("rossip"),
            sender: NodeId([9; 16]),
        }
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn round_trips_every_body_kind() {
        let key = NodeKey::for_testing(1);
        let identity = Identity::signed(
            &key,
            "10.0.0.1:7465".parse().expect("addr"),
            "alpha".into(),
            3,
        );
        let message = Message::signed(
            &key,
            7,
            "alpha".into(),
            Hlc {
                ms: 1_700_000_000_000,
                logical: 2,
            },
            crate::message::Draft::channel("general", "hello"),
        );
        let bodies = [
            Body::Hello(Hello {
                identity,
                ack: true,
                stamp_us: 12,
            }),
            Body::Swim(vec![1, 2, 3]),
            Body::Push(Push {
                relay: true,
                items: vec![
                    Payload::Whole(message.clone()),
                    Payload::Piece(Fragment {
                        id: message.id,
                        total: 3000,
                        index: 2,
                        data: vec![7; 440],
                    }),
                ],
            }),
            Body::Leave {
                generation: 3,
                sig: key.sign(Domain::Leave, &leave_bytes(&key.node_id(), 3)),
            },
            Body::Suspected {
                generation: 3,
                incarnation: 9,
            },
            Body::Left {
                id: NodeId([3; 16]),
                generation: 2,
                sig: Signature::from_bytes(&[3; 64]),
            },
            Body::Digest(Digest {
                stamp_us: 5,
                reply_to: Some(4),
                after: None,
                through: Some(NodeId([2; 16])),
                origins: vec![OriginDigest {
                    origin: NodeId([1; 16]),
                    seen: vec![SeqRange { first: 1, last: 7 }],
                }],
                partial: vec![PartialDigest {
                    id: message.id,
                    have: vec![0b101],
                }],
                heads: vec![Head {
                    origin: NodeId([4; 16]),
                    seq: 99,
                }],
            }),
            Body::Gone(vec![GoneRange {
                origin: NodeId([1; 16]),
                first: 1,
                last: 4,
            }]),
            Body::Repair(vec![Payload::Whole(message)]),
            Body::MemberDigest {
                stamp_us: 8,
                after: Some(NodeId([1; 16])),
                through: None,
                fingerprints: vec![[1, 2, 3, 4], [0xff; 4]],
            },
            Body::MemberSync {
                reply_to: 8,
                complete: false,
                identities: vec![Identity::for_tests(4)],
            },
            Body::MemberSummary {
                stamp_us: 9,
                count: 1000,
                sum: u64::MAX,
            },
            Body::KeyringQuery { stamp_us: 10 },
            Body::KeyringReport {
                reply_to: 10,
                primary: 7,
                ids: vec![7, 8],
            },
            Body::KeyringCommand {
                stamp_us: 11,
                op: KeyOp::Install([0xab; 32]),
            },
            Body::KeyringCommand {
                stamp_us: 12,
                op: KeyOp::Remove(8),
            },
            Body::KeyringAck {
                reply_to: 11,
                ok: false,
                error: "key 00000008 is not installed".into(),
            },
            Body::Presence(crate::presence::PresenceRecord::signed(
                &key,
                3,
                2,
                vec![crate::presence::UserPresence {
                    user: "alice".into(),
                    nick: Some("Al".into()),
                    availability: crate::presence::Availability::Away,
                    status: Some("lunch".into()),
                    since_ms: 1_700_000_000_000,
                }],
            )),
        ];
        for body in bodies {
            let bytes = encode(&header(), &body).expect("encode");
            let (h, b) = decode(
                &bytes,
                header().cluster,
                &mut crate::sign::Verifier::default(),
            )
            .expect("decode");
            assert_eq!(h, header());
            assert_eq!(b, body);
        }
    }

    #[test]
    fn header_checks_have_reasons() {
        let leave = Body::Leave {
            generation: 1,
            sig: Signature::from_bytes(&[0; 64]),
        };
        let bytes = encode(&header(), &leave).expect("encode");
        let cluster = header().cluster;

        assert_eq!(
            decode(&bytes[..10], cluster, &mut crate::sign::Verifier::default()),
            Err(DecodeError::TooShort(10))
        );
        assert_eq!(
            decode(
                b"GET / HTTP/1.1",
                cluster,
                &mut crate::sign::Verifier::default()
            ),
            Err(DecodeError::BadMagic)
        );

        let mut v = bytes.clone();
        v[2] = 9;
        assert_eq!(
            decode(&v, cluster, &mut crate::sign::Verifier::default()),
            Err(DecodeError::UnsupportedVersion(9))
        );

        let mut f = bytes.clone();
        f[3] = 1;
        assert_eq!(
            decode(&f, cluster, &mut crate::sign::Verifier::default()),
            Err(DecodeError::Sealed)
        );
        f[3] = 2;
        assert_eq!(
            decode(&f, cluster, &mut crate::sign::Verifier::default()),
            Err(DecodeError::UnsupportedFlags(2))
        );

        assert_eq!(
            decode(
                &bytes,
                ClusterId::from_label("other"),
                &mut crate::sign::Verifier::default()
            ),
            Err(DecodeError::WrongCluster)
        );

        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            decode(&trailing, cluster, &mut crate::sign::Verifier::default()),
            Err(DecodeError::Malformed)
        );

        let big = vec![0u8; MAX_DATAGRAM_BYTES + 1];
        assert_eq!(
            decode(&big, cluster, &mut crate::sign::Verifier::default()),
            Err(DecodeError::Oversized(MAX_DATAGRAM_BYTES + 1))
        );
        assert_eq!(DecodeError::WrongCluster.reason(), "wrong_cluster");
    }

    #[test]
    fn a_full_fragment_fits_one_datagram_with_room_to_spare() {
        let fragment = Fragment {
            id: MessageId {
                origin: NodeId([0xff; 16]),
                seq: u64::MAX,
            },
            total: u32::MAX,
            index: u16::MAX,
            data: vec![0xff; FRAGMENT_DATA_BYTES],
        };
        let push = Body::Push(Push {
            relay: true,
            items: vec![Payload::Piece(fragment.clone())],
        });
        for body in [push, Body::Repair(vec![Payload::Piece(fragment)])] {
            let bytes = encode(&header(), &body).expect("a fragment must fit");
            assert!(
                bytes.len() + 40 <= MAX_DATAGRAM_BYTES,
                "{} bytes leave too little slack",
                bytes.len()
            );
        }
        // The largest message has few enough fragments for a u16 index.
        assert!(MAX_FRAGMENTS < usize::from(u16::MAX));
        let _ = (MAX_NAME_BYTES, MAX_CHANNEL_BYTES, Hlc::default());
    }

    #[test]
    fn a_push_with_a_tampered_batch_proof_is_refused_whole() {
        let key = NodeKey::for_testing(1);
        let mut messages: Vec<Message> = (1..=5)
            .map(|seq| {
                Message::unsigned(
                    &key,
                    seq,
                    "alpha".into(),
                    Hlc::default(),
                    crate::message::Draft::channel("general", format!("m{seq}")),
                )
            })
            .collect();
        crate::message::sign_batch(&key, &mut messages);
        let push = |items: Vec<Message>| {
            let body = Body::Push(Push {
                relay: false,
                items: items.into_iter().map(Payload::Whole).collect(),
            });
            encode(&header(), &body).expect("encode")
        };
        let decode_fresh = |bytes: &[u8]| {
            decode(
                bytes,
                header().cluster,
                &mut crate::sign::Verifier::default(),
            )
        };
        assert!(decode_fresh(&push(messages.clone())).is_ok());

        // One good message and one whose proof was altered: the datagram
        // goes, the good one with it (as for a bad signature).
        let mut tampered = messages[3].clone();
        if let Some(proof) = tampered.auth.batch.as_mut() {
            proof.path[0][0] ^= 1;
        }
        assert_eq!(
            decode_fresh(&push(vec![messages[0].clone(), tampered])).map(|_| ()),
            Err(DecodeError::BadSignature)
        );
        let mut misplaced = messages[2].clone();
        if let Some(proof) = misplaced.auth.batch.as_mut() {
            proof.index = 9;
        }
        assert_eq!(
            decode_fresh(&push(vec![misplaced])).map(|_| ()),
            Err(DecodeError::BadSignature)
        );
        // A verified root does not vouch for a message it does not cover.
        let mut verifier = crate::sign::Verifier::default();
        assert!(decode(&push(messages.clone()), header().cluster, &mut verifier).is_ok());
        let mut altered = messages[1].clone();
        altered.text = "not what was signed".into();
        assert_eq!(
            decode(&push(vec![altered]), header().cluster, &mut verifier).map(|_| ()),
            Err(DecodeError::BadSignature)
        );
    }

    #[test]
    fn encode_refuses_oversized_datagrams() {
        let body = Body::Swim(vec![0; MAX_DATAGRAM_BYTES]);
        assert!(matches!(
            encode(&header(), &body),
            Err(EncodeError::TooLarge(_))
        ));
    }

    #[test]
    fn the_largest_message_fits_the_fragment_limit() {
        use crate::message::{Author, MAX_NICK_BYTES, MAX_USER_BYTES, Recipient};
        let mut message = Message::signed(
            &NodeKey::for_testing(1),
            u64::MAX,
            "n".repeat(MAX_NAME_BYTES),
            Hlc {
                ms: u64::MAX,
                logical: u32::MAX,
            },
            crate::message::Draft {
                channel: "c".repeat(MAX_CHANNEL_BYTES),
                text: "x".repeat(MAX_TEXT_BYTES),
                author: Author {
                    user: "u".repeat(MAX_USER_BYTES),
                    nick: Some("é".repeat(MAX_NICK_BYTES / 2)),
                },
                to: Some(Recipient {
                    node: NodeId([0xff; 16]),
                    user: Some("u".repeat(MAX_USER_BYTES)),
                }),
            },
        );
        message.id.seq = u64::MAX;
        let encoded = postcard::to_allocvec(&message).expect("encodes");
        assert!(
            encoded.len() <= MAX_ENCODED_MESSAGE_BYTES,
            "{} > {MAX_ENCODED_MESSAGE_BYTES}",
            encoded.len()
        );
    }
}
