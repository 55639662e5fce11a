//! Node identities: every node has an Ed25519 key pair, its node id is
//! derived from the public key, and whatever a node says in its own name
//! is signed.
//!
//! - A [`Message`](crate::Message) carries its origin's public key and a
//!   signature over its content; a receiver checks that the key derives the
//!   origin's id and that the signature verifies, so a member holding the
//!   cluster key still cannot send as another node, and a relay cannot
//!   alter what it relays.
//! - An [`Identity`](crate::wire::Identity) (id, address, name, key) is
//!   signed by its node, so no one can announce another node's id at their
//!   own address, or under another name.
//! - A leave notice is signed, so no one can make a running node look gone.
//!
//! The checks run in the decoders that take these values from the network
//! ([`crate::wire::decode`], the reassembly of large messages, the SWIM
//! codec): a value that fails them is refused with the datagram, so no path
//! from the network can skip them. (Deserializing a value alone does not
//! check its signature: the check needs the node's [`Verifier`].) Signed
//! bytes start with a domain string per kind of statement, so a signature
//! over one kind never verifies as another.
//!
//! Verifying costs tens of microseconds; the same signed statement reaches
//! a node many times (every SWIM packet repeats identities), so each node
//! remembers what it verified in a small memo keyed by the signature, its
//! [`Verifier`]. The memo changes no result, only the time taken. It is
//! owned by the node, like everything else in this crate: two nodes in one
//! process (a simulation runs hundreds) share nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::NodeId;

/// Bytes of a public key.
pub const PUBLIC_KEY_BYTES: usize = 32;

/// Bytes of a signature.
pub const SIGNATURE_BYTES: usize = 64;

/// Bytes of the secret seed a key pair is made from (and stored as).
pub const SEED_BYTES: usize = 32;

/// What a signature vouches for: part of the signed bytes, so a signature
/// made for one kind of statement never verifies as another.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Domain {
    /// A chat message's content.
    Message,
    /// A chat message that names its author or recipient (see
    /// [`crate::message::Message::verify`]): a tag of its own, so that no
    /// signature over the shorter form can pass for one over this form.
    AttributedMessage,
    /// The root of a hash tree over a batch of one origin's messages (see
    /// [`crate::message::sign_batch`]): a leaf is a message's signed
    /// content under its own tag ([`Domain::Message`] or
    /// [`Domain::AttributedMessage`]), so a batch vouches for exactly what
    /// one signature per message would.
    MessageBatch,
    /// A node's identity: id, address, name and key.
    Identity,
    /// "This run of mine leaves."
    Leave,
    /// "These local users of mine are in a chat" (see [`crate::presence`]).
    Presence,
}

impl Domain {
    pub(crate) fn tag(self) -> &'static [u8] {
        match self {
            Domain::Message => b"rossip message v1\0",
            Domain::AttributedMessage => b"rossip message v2\0",
            Domain::MessageBatch => b"rossip message batch v1\0",
            Domain::Identity => b"rossip identity v1\0",
            Domain::Leave => b"rossip leave v1\0",
            Domain::Presence => b"rossip presence v1\0",
        }
    }
}

/// A node's public key. Its [`PublicKey::node_id`] is the node's id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_BYTES]);

impl PublicKey {
    /// The node id this key stands for: the first 16 bytes of
    /// SHA-256("rossip node id v1\0" ‖ key). Part of the wire format.
    pub fn node_id(&self) -> NodeId {
        let digest = Sha256::new()
            .chain_update(b"rossip node id v1\0")
            .chain_update(self.0)
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        NodeId(id)
    }

    /// The X25519 public key of this identity (the Edwards point in
    /// Montgomery form); `None` if the bytes are no valid Ed25519 key.
    pub(crate) fn x25519_public(&self) -> Option<[u8; 32]> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .ok()
            .map(|key| key.to_montgomery().to_bytes())
    }

    /// A short, human-comparable fingerprint: the first 16 hex digits of
    /// SHA-256 of the key, in groups of four (`3fa2:91c0:…`).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        let hex: Vec<String> = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        hex.chunks(2)
            .map(|pair| pair.concat())
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// An Ed25519 signature. Two halves, because serde derives arrays of at
/// most 32 elements; postcard writes the 64 bytes as they are either way.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Signature {
    r: [u8; 32],
    s: [u8; 32],
}

impl Signature {
    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_BYTES] {
        let mut out = [0u8; SIGNATURE_BYTES];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }

    /// From the 64 bytes.
    pub fn from_bytes(bytes: &[u8; SIGNATURE_BYTES]) -> Signature {
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Signature { r, s }
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature({:02x}{:02x}{:02x}{:02x}…)",
            self.r[0], self.r[1], self.r[2], self.r[3]
        )
    }
}

/// A node's key pair. The daemon keeps the seed in its state directory
/// (mode 0600); tests and simulations derive it from a number.
#[derive(Clone)]
pub struct NodeKey {
    signing: ed25519_dalek::SigningKey,
}

impl NodeKey {
    /// The key pair made from 32 secret random bytes.
    pub fn from_seed(seed: &[u8; SEED_BYTES]) -> NodeKey {
        NodeKey {
            signing: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// A deterministic key for tests and simulations: **not secret**.
    pub fn for_testing(n: u64) -> NodeKey {
        let digest = Sha256::new()
            .chain_update(b"rossip test key\0")
            .chain_update(n.to_be_bytes())
            .finalize();
        let mut seed = [0u8; SEED_BYTES];
        seed.copy_from_slice(&digest);
        NodeKey::from_seed(&seed)
    }

    /// The secret seed, to store.
    pub fn seed(&self) -> [u8; SEED_BYTES] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The node id this key stands for.
    pub fn node_id(&self) -> NodeId {
        self.public().node_id()
    }

    /// The X25519 secret of this identity (the clamped Ed25519 scalar, as
    /// libsodium's `crypto_sign_ed25519_sk_to_curve25519`): direct
    /// messages are boxed to it, so a node needs no second key pair.
    pub(crate) fn x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }

    /// Signs `bytes` as a statement of kind `domain`.
    pub(crate) fn sign(&self, domain: Domain, bytes: &[u8]) -> Signature {
        let signed = signed_bytes(domain, bytes);
        Signature::from_bytes(&self.signing.sign(&signed).to_bytes())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("NodeKey")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

fn signed_bytes(domain: Domain, bytes: &[u8]) -> Vec<u8> {
    let tag = domain.tag();
    let mut signed = Vec::with_capacity(tag.len() + bytes.len());
    signed.extend_from_slice(tag);
    signed.extend_from_slice(bytes);
    signed
}

/// A node's memo of verified statements and decompressed keys: what makes
/// the thousandth copy of an identity in SWIM gossip cost a lookup instead
/// of a signature check. Owned by one node (and lent to the decoders it
/// calls); bounded, and cleared at once when full, which keeps it trivially
/// bounded at the cost of one verification per miss.
#[derive(Default)]
pub struct Verifier {
    /// Keys kept decompressed: decompressing a point costs about as much as
    /// the rest of a verification, and a cluster has few keys.
    keys: BTreeMap<[u8; PUBLIC_KEY_BYTES], ed25519_dalek::VerifyingKey>,
    /// SHA-256 of (signature ‖ key ‖ signed bytes) of each statement
    /// verified: a hit is that exact statement, and an entry is 32 bytes
    /// (a simulation holds one memo per node).
    verified: BTreeSet<[u8; 32]>,
}

/// Keys kept decompressed (each ~200 bytes: ~800 KiB at most).
const KEY_CACHE_ENTRIES: usize = 4096;

/// Entries of the verification memo (each 32 bytes and the tree's share:
/// under 1 MiB).
const VERIFIED_CACHE_ENTRIES: usize = 16_384;

impl Verifier {
    /// Whether `sig` is `key`'s signature of `bytes` as a statement of
    /// kind `domain`. Keys of small order (which would "verify" forgeries)
    /// are refused, and signatures with a non-canonical `s` too (RFC 8032's
    /// check).
    pub(crate) fn verify(
        &mut self,
        key: &PublicKey,
        domain: Domain,
        bytes: &[u8],
        sig: &Signature,
    ) -> bool {
        let signed = signed_bytes(domain, bytes);
        let sig_bytes = sig.to_bytes();
        let memo_key: [u8; 32] = Sha256::new()
            .chain_update(sig_bytes)
            .chain_update(key.0)
            .chain_update(&signed)
            .finalize()
            .into();
        if self.verified.contains(&memo_key) {
            return true;
        }
        let Some(verifying) = self.verifying_key(key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&sig_bytes);
        // Not `verify_strict`: its only extra is refusing a small-order
        // `R`, which costs a point decompression per signature (a third of
        // the time) and guards against nothing here: weak keys are refused
        // once, below, and nothing in rossip depends on signatures being
        // unique.
        let ok = ed25519_dalek::Verifier::verify(&verifying, &signed, &signature).is_ok();
        if ok {
            if self.verified.len() >= VERIFIED_CACHE_ENTRIES {
                self.verified.clear();
            }
            self.verified.insert(memo_key);
        }
        ok
    }

    /// Statements remembered as verified.
    #[cfg(test)]
    pub(crate) fn memo_len(&self) -> usize {
        self.verified.len()
    }

    /// The decompressed form of `key`, from the memo if there. `None` for
    /// bytes that are not a point, or a point of small order.
    fn verifying_key(&mut self, key: &PublicKey) -> Option<ed25519_dalek::VerifyingKey> {
        if let Some(verifying) = self.keys.get(&key.0) {
            return Some(*verifying);
        }
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key.0).ok()?;
        if verifying.is_weak() {
            return None;
        }
        if self.keys.len() >= KEY_CACHE_ENTRIES {
            self.keys.clear();
        }
        self.keys.insert(key.0, verifying);
        Some(verifying)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("verified", &self.verified.len())
            .finish()
    }
}

/// The key pair of the node an identity belongs to, carried by that node's
/// own identity (see [`crate::wire::Identity::own`]) so that foca, which
/// renews the identity of a node declared failed while running without
/// access to the node, can sign the next generation. Never sent, and
/// ignored by comparisons and hashing: two copies of an identity are equal
/// whoever holds the key.
#[derive(Clone, Default)]
pub(crate) struct OwnKey(Option<Arc<NodeKey>>);

impl OwnKey {
    /// Carries `key`.
    pub(crate) fn new(key: &NodeKey) -> OwnKey {
        OwnKey(Some(Arc::new(key.clone())))
    }

    /// The key, for this node's own identity; `None` for others'.
    pub(crate) fn get(&self) -> Option<&NodeKey> {
        self.0.as_deref()
    }
}

impl PartialEq for OwnKey {
    fn eq(&self, _: &OwnKey) -> bool {
        true
    }
}

impl Eq for OwnKey {}

impl PartialOrd for OwnKey {
    fn partial_cmp(&self, other: &OwnKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OwnKey {
    fn cmp(&self, _: &OwnKey) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl std::hash::Hash for OwnKey {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl fmt::Debug for OwnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret; whether it is there is what matters.
        f.write_str(if self.0.is_some() { "own" } else { "-" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check by a node that never verified anything before.
    fn verify_once(key: &PublicKey, domain: Domain, bytes: &[u8], sig: &Signature) -> bool {
        Verifier::default().verify(key, domain, bytes, sig)
    }

    #[test]
    fn signatures_verify_only_for_their_key_domain_and_bytes() {
        let mut verifier = Verifier::default();
        let mut verify = |key: &PublicKey, domain, bytes: &[u8], sig: &Signature| {
            verifier.verify(key, domain, bytes, sig)
        };
        let a = NodeKey::for_testing(1);
        let b = NodeKey::for_testing(2);
        let sig = a.sign(Domain::Message, b"hello");
        assert!(verify(&a.public(), Domain::Message, b"hello", &sig));
        // Twice: the second answer comes from the memo and must agree.
        assert!(verify(&a.public(), Domain::Message, b"hello", &sig));
        assert!(!verify(&b.public(), Domain::Message, b"hello", &sig));
        assert!(!verify(&a.public(), Domain::Identity, b"hello", &sig));
        assert!(!verify(&a.public(), Domain::Message, b"hellO", &sig));
        let mut bytes = sig.to_bytes();
        bytes[5] ^= 1;
        assert!(!verify(
            &a.public(),
            Domain::Message,
            b"hello",
            &Signature::from_bytes(&bytes)
        ));
    }

    #[test]
    fn node_ids_derive_from_keys() {
        let a = NodeKey::for_testing(1);
        assert_eq!(a.node_id(), a.public().node_id());
        assert_ne!(a.node_id(), NodeKey::for_testing(2).node_id());
        let again = NodeKey::from_seed(&a.seed());
        assert_eq!(again.public(), a.public());
        assert_eq!(a.public().fingerprint().len(), 19);
    }

    #[test]
    fn a_weak_key_verifies_nothing() {
        // The identity point: every signature would "verify" under a
        // non-strict check.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let sig = Signature::from_bytes(&[0u8; 64]);
        assert!(!verify_once(&PublicKey(weak), Domain::Message, b"x", &sig));
    }
}
