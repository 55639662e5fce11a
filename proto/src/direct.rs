//! End-to-end sealing of direct messages and their acknowledgements.
//!
//! A direct message is NaCl's `crypto_box` (X25519, then XSalsa20-Poly1305;
//! RustCrypto's `crypto_box` crate) from its origin to its recipient. The
//! X25519 keys are the nodes' Ed25519 identity keys in Montgomery form
//! (as libsodium's `crypto_sign_ed25519_*_to_curve25519`), so there is no
//! second key to distribute or pin: a node's id derives from its Ed25519
//! key, the envelope names the sender's key, and the recipient checks that
//! the key derives the id in the datagram's header before it opens anything.
//! The recipient's key is the one its signed identity announced to every
//! member.
//!
//! What is boxed is a [`DirectPlain`] behind a domain tag: either the whole
//! signed [`Message`] (with `to` set, so the recipient holds a message that
//! verifies like any other) or an acknowledgement of one message id. A box
//! authenticates the *pair* of nodes (either of the two could have made
//! it), so a receiver also checks the direction: a message's origin must be
//! the sender and its recipient this node; an acknowledgement must name a
//! message of this node. A box reflected back to its maker fails these
//! checks; one taken to a third node fails to open.
//!
//! Nonces are 24 random bytes from the node's injected RNG (the daemon
//! seeds it from the OS at every start): random nonces of this size do not
//! collide in practice. Sealing adds [`SEAL_OVERHEAD`] bytes.

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, NodeId};
use crate::message::Message;
use crate::sign::{NodeKey, PublicKey};
use crypto_box::aead::Aead;
use crypto_box::aead::generic_array::GenericArray;

/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 24;

/// Bytes a box adds to its plaintext (the Poly1305 tag).
pub const TAG_BYTES: usize = 16;

/// Bytes of a sealed envelope beyond its plaintext: the sender's key, the
/// nonce, the tag, and the length prefixes of postcard.
pub const SEAL_OVERHEAD: usize = 32 + NONCE_BYTES + TAG_BYTES + 3;

/// What the plaintext starts with: a box made for something else never
/// parses as one of these.
const DOMAIN: &[u8] = b"rossip direct v1\0";

/// A sealed direct message or acknowledgement, as it travels.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SealedDirect {
    /// The sender's Ed25519 identity key: it must derive the sender's id.
    pub sender_key: PublicKey,
    /// The box's nonce.
    pub nonce: [u8; NONCE_BYTES],
    /// The boxed [`DirectPlain`].
    pub ciphertext: Vec<u8>,
}

/// What a [`SealedDirect`] holds.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum DirectPlain {
    /// A direct message, signed by its origin (the sender).
    Message(Box<Message>),
    /// "I (the sender) got your message `id`": only the recipient (or
    /// the origin itself) can make this box.
    Ack(MessageId),
}

/// Why a sealed envelope is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DirectOpenError {
    /// The envelope's key does not derive the datagram's sender.
    #[error("the envelope's key is not the sender's")]
    WrongKey,
    /// A key that is no valid Ed25519 point.
    #[error("the envelope's key is invalid")]
    InvalidKey,
    /// The box does not open: not for this node, or altered.
    #[error("the box does not open")]
    BadBox,
    /// Opened, but not a direct message of this version.
    #[error("the plaintext is malformed")]
    Malformed,
}

impl DirectOpenError {
    /// The drop counter this refusal is counted in.
    pub fn reason(self) -> &'static str {
        match self {
            DirectOpenError::WrongKey => "direct_wrong_key",
            DirectOpenError::InvalidKey => "direct_invalid_key",
            DirectOpenError::BadBox => "direct_bad_box",
            DirectOpenError::Malformed => "direct_malformed",
        }
    }
}

fn salsa_box(own: &NodeKey, other: &PublicKey) -> Option<crypto_box::SalsaBox> {
    let public = crypto_box::PublicKey::from_bytes(other.x25519_public()?);
    let secret = crypto_box::SecretKey::from_bytes(own.x25519_secret());
    Some(crypto_box::SalsaBox::new(&public, &secret))
}

/// Boxes `plain` from `sender` to `recipient` under `nonce` (which must
/// never be used twice with the same pair: draw it at random). `None` if
/// the recipient's key is invalid.
pub fn seal(
    sender: &NodeKey,
    recipient: &PublicKey,
    nonce: [u8; NONCE_BYTES],
    plain: &DirectPlain,
) -> Option<SealedDirect> {
    let mut bytes = DOMAIN.to_vec();
    bytes = postcard::to_extend(plain, bytes).ok()?;
    let ciphertext = salsa_box(sender, recipient)?
        .encrypt(GenericArray::from_slice(&nonce), bytes.as_slice())
        .ok()?;
    Some(SealedDirect {
        sender_key: sender.public(),
        nonce,
        ciphertext,
    })
}

/// Opens `sealed`, which the datagram header says `sender` sent, with this
/// node's key `own`.
pub fn open(
    own: &NodeKey,
    sender: NodeId,
    sealed: &SealedDirect,
) -> Result<DirectPlain, DirectOpenError> {
    if sealed.sender_key.node_id() != sender {
        return Err(DirectOpenError::WrongKey);
    }
    let opened = salsa_box(own, &sealed.sender_key)
        .ok_or(DirectOpenError::InvalidKey)?
        .decrypt(
            GenericArray::from_slice(&sealed.nonce),
            sealed.ciphertext.as_slice(),
        )
        .map_err(|_| DirectOpenError::BadBox)?;
    let body = opened
        .strip_prefix(DOMAIN)
        .ok_or(DirectOpenError::Malformed)?;
    let (plain, rest) =
        postcard::take_from_bytes::<DirectPlain>(body).map_err(|_| DirectOpenError::Malformed)?;
    if !rest.is_empty() {
        return Err(DirectOpenError::Malformed);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Draft, Hlc, Recipient};

    fn dm(from: &NodeKey, to: &NodeKey, text: &str) -> Message {
        let mut draft = Draft::channel("general", text);
        draft.to = Some(Recipient {
            node: to.node_id(),
            user: None,
        });
        Message::signed(from, 1 << 63, "a".into(), Hlc::default(), draft)
    }

    #[test]
    fn only_the_recipient_opens_and_the_text_is_not_in_the_clear() {
        let (a, b, c) = (
            NodeKey::for_testing(1),
            NodeKey::for_testing(2),
            NodeKey::for_testing(3),
        );
        let message = dm(&a, &b, "secret-text-123");
        let plain = DirectPlain::Message(Box::new(message.clone()));
        let sealed = seal(&a, &b.public(), [7; NONCE_BYTES], &plain).expect("valid keys");
        assert!(
            !sealed
                .ciphertext
                .windows(15)
                .any(|w| w == b"secret-text-123"),
            "the text is encrypted"
        );
        assert_eq!(open(&b, a.node_id(), &sealed), Ok(plain));
        assert_eq!(
            open(&c, a.node_id(), &sealed),
            Err(DirectOpenError::BadBox),
            "a third node cannot open it"
        );
        assert_eq!(
            open(&b, c.node_id(), &sealed),
            Err(DirectOpenError::WrongKey),
            "the key must be the header's sender's"
        );
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert_eq!(
            open(&b, a.node_id(), &altered),
            Err(DirectOpenError::BadBox)
        );
        // C cannot re-box A's message as its own: its key derives C.
        let mut forged = sealed;
        forged.sender_key = c.public();
        assert_eq!(
            open(&b, a.node_id(), &forged),
            Err(DirectOpenError::WrongKey)
        );
    }

    #[test]
    fn acks_open_for_the_origin() {
        let (a, b) = (NodeKey::for_testing(1), NodeKey::for_testing(2));
        let id = dm(&a, &b, "x").id;
        let sealed =
            seal(&b, &a.public(), [1; NONCE_BYTES], &DirectPlain::Ack(id)).expect("valid keys");
        assert_eq!(open(&a, b.node_id(), &sealed), Ok(DirectPlain::Ack(id)));
    }
}
