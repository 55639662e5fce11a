//! The cluster key: with one, every datagram is sealed with
//! XChaCha20-Poly1305, and nothing unsealed or sealed under an unknown key
//! is accepted.
//!
//! A sealed datagram keeps the plaintext header's fields, with
//! [`FLAG_SEALED`] set, and adds the key id and a nonce before the sealed
//! body:
//!
//! ```text
//!  0      2        3       4            12                 28       32         56
//!  +------+--------+-------+------------+------------------+--------+----------+---------------------+
//!  | "RS" | version| flags | cluster id | sender node id   | key id | nonce    | body + 16-byte tag  |
//!  +------+--------+-------+------------+------------------+--------+----------+---------------------+
//! ```
//!
//! Everything before the sealed body is associated data: authenticated, not
//! secret (a receiver must read the key id and the cluster before it can
//! open anything). The nonce is a random 16-byte prefix chosen per run and
//! a 64-bit counter, so it never repeats under one key. The key id is a
//! value derived from the key by the cipher itself (the first four bytes
//! of the sealing of a fixed text under a zero nonce): it names the key
//! without revealing anything of it.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use crate::wire::{self, ClusterId, HEADER_LEN, MAGIC, VERSION};

/// Bytes of a cluster key.
pub const KEY_BYTES: usize = 32;

/// The header flag of a sealed datagram.
pub const FLAG_SEALED: u8 = 0x01;

/// Bytes a seal adds: key id, nonce and tag.
pub const SEAL_OVERHEAD: usize = KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES;

const KEY_ID_BYTES: usize = 4;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Where the sealed body starts.
const SEALED_BODY_AT: usize = HEADER_LEN + KEY_ID_BYTES + NONCE_BYTES;

/// A key's public name: carried in every sealed datagram, shown by status
/// and mDNS. Derived from the key by the cipher, so it reveals nothing of
/// the key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 64 hexadecimal digits.
    #[error("a key is 64 hexadecimal digits (32 bytes); found {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("a key is 64 hexadecimal digits; found {0:?}")]
    NotHex(char),
}

/// One cluster key.
#[derive(Clone)]
pub struct ClusterKey {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("ClusterKey").field("id", &self.id).finish()
    }
}

impl ClusterKey {
    /// The key of these 32 bytes.
    pub fn new(bytes: &[u8; KEY_BYTES]) -> ClusterKey {
        let cipher = XChaCha20Poly1305::new(bytes.into());
        let zero = XNonce::default();
        let probe = cipher
            .encrypt(&zero, b"rossip key id v1".as_slice())
            .unwrap_or_default();
        let mut id = [0u8; KEY_ID_BYTES];
        for (slot, byte) in id.iter_mut().zip(probe) {
            *slot = byte;
        }
        ClusterKey {
            id: KeyId(u32::from_be_bytes(id)),
            cipher,
        }
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<ClusterKey, KeyError> {
        let text = text.trim();
        if text.len() != KEY_BYTES * 2 {
            return Err(KeyError::Length(text.chars().count()));
        }
        let mut bytes = [0u8; KEY_BYTES];
        let mut digits = text.chars();
        for byte in &mut bytes {
            let mut value = 0u8;
            for _ in 0..2 {
                let c = digits.next().ok_or(KeyError::Length(text.len()))?;
                let digit = c.to_digit(16).ok_or(KeyError::NotHex(c))?;
                value = value * 16 + u8::try_from(digit).unwrap_or(0);
            }
            *byte = value;
        }
        Ok(ClusterKey::new(&bytes))
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// The keys a node holds: the one it seals with, and others it still
/// opens (during a rotation).
#[derive(Clone, Debug)]
pub struct Keyring {
    primary: ClusterKey,
    others: Vec<ClusterKey>,
}

impl Keyring {
    /// Seals with `primary`; opens with it and with `others`.
    pub fn new(primary: ClusterKey, others: Vec<ClusterKey>) -> Keyring {
        Keyring { primary, others }
    }

    /// The id of the key datagrams are sealed with.
    pub fn primary_id(&self) -> KeyId {
        self.primary.id
    }

    /// Every key's id, the primary's first.
    pub fn ids(&self) -> Vec<KeyId> {
        std::iter::once(&self.primary)
            .chain(&self.others)
            .map(|k| k.id)
            .collect()
    }

    fn find(&self, id: KeyId) -> Option<&ClusterKey> {
        std::iter::once(&self.primary)
            .chain(&self.others)
            .find(|k| k.id == id)
    }
}

/// Why a datagram was not opened; [`OpenError::reason`] names the drop
/// counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// A plaintext datagram at a node with a key.
    #[error("plaintext datagram refused: this node requires the cluster key")]
    Unsealed,
    /// Sealed under a key this node does not hold.
    #[error("datagram sealed under unknown key {0}")]
    UnknownKey(KeyId),
    /// The tag did not verify (tampered, truncated, or forged).
    #[error("datagram failed authentication")]
    BadSeal,
    /// Not even a header: handed to the wire decoder for its reason.
    #[error("not a sealed rossip datagram")]
    NotSealed,
}

impl OpenError {
    /// Short, stable name used as the key of the drop counters.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::Unsealed => "unsealed_refused",
            OpenError::UnknownKey(_) => "unknown_key",
            OpenError::BadSeal => "bad_seal",
            OpenError::NotSealed => "not_sealed",
        }
    }
}

/// Seals and opens datagrams with a keyring.
#[derive(Debug)]
pub struct Sealer {
    keyring: Keyring,
    prefix: [u8; 16],
    counter: u64,
}

impl Sealer {
    /// A sealer whose nonces start with `prefix` (random, once per run).
    pub fn new(keyring: Keyring, prefix: [u8; 16]) -> Sealer {
        Sealer {
            keyring,
            prefix,
            counter: 0,
        }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals a plaintext datagram (as [`wire::encode`] made it).
    pub fn seal(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        let (head, body) = plain.split_at_checked(HEADER_LEN)?;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.checked_add(1)?;
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(head);
        *out.get_mut(3)? = FLAG_SEALED;
        out.extend_from_slice(&self.keyring.primary.id.0.to_be_bytes());
        out.extend_from_slice(&nonce);
        let sealed = self
            .keyring
            .primary
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: &out,
                },
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Opens a sealed datagram of cluster `cluster` into the plaintext
    /// datagram [`wire::decode`] reads.
    pub fn open(&self, sealed: &[u8], cluster: ClusterId) -> Result<Vec<u8>, OpenError> {
        let head = sealed.get(..HEADER_LEN).ok_or(OpenError::NotSealed)?;
        if head.get(..2) != Some(&MAGIC[..]) || head.get(2) != Some(&VERSION) {
            return Err(OpenError::NotSealed);
        }
        // Another cluster's datagram: let the wire decoder name it.
        if head.get(4..12) != Some(&cluster.0.to_be_bytes()[..]) {
            return Err(OpenError::NotSealed);
        }
        match head.get(3) {
            Some(&FLAG_SEALED) => {}
            Some(&0) => return Err(OpenError::Unsealed),
            _ => return Err(OpenError::NotSealed),
        }
        let Some((aad, body)) = sealed.split_at_checked(SEALED_BODY_AT) else {
            return Err(OpenError::BadSeal);
        };
        let id_bytes: [u8; KEY_ID_BYTES] = aad
            .get(HEADER_LEN..HEADER_LEN + KEY_ID_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or(OpenError::NotSealed)?;
        let id = KeyId(u32::from_be_bytes(id_bytes));
        let key = self.keyring.find(id).ok_or(OpenError::UnknownKey(id))?;
        let nonce: [u8; NONCE_BYTES] = aad
            .get(HEADER_LEN + KEY_ID_BYTES..)
            .and_then(|b| b.try_into().ok())
            .ok_or(OpenError::NotSealed)?;
        let plain_body = key
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: body, aad })
            .map_err(|_| OpenError::BadSeal)?;
        let mut plain = Vec::with_capacity(HEADER_LEN + plain_body.len());
        plain.extend_from_slice(aad.get(..HEADER_LEN).ok_or(OpenError::NotSealed)?);
        if let Some(flags) = plain.get_mut(3) {
            *flags = 0;
        }
        plain.extend_from_slice(&plain_body);
        if plain.len() > wire::MAX_DATAGRAM_BYTES {
            return Err(OpenError::BadSeal);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::wire::{Body, Header};

    fn plain(body: &Body) -> Vec<u8> {
        let header = Header {
            flags: 0,
            cluster: ClusterId::from_label("rossip"),
            sender: NodeId([5; 16]),
        };
        wire::encode(&header, body).expect("encode")
    }

    fn keyring(byte: u8) -> Keyring {
        Keyring::new(ClusterKey::new(&[byte; KEY_BYTES]), Vec::new())
    }

    #[test]
    fn sealed_datagrams_open_and_never_repeat_a_nonce() {
        let cluster = ClusterId::from_label("rossip");
        let mut sealer = Sealer::new(keyring(1), [9; 16]);
        let datagram = plain(&Body::Leave { generation: 7 });
        let a = sealer.seal(&datagram).expect("seal");
        let b = sealer.seal(&datagram).expect("seal");
        assert_eq!(a.len(), datagram.len() + SEAL_OVERHEAD);
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(sealer.open(&a, cluster), Ok(datagram.clone()));
        assert_eq!(sealer.open(&b, cluster), Ok(datagram));
    }

    #[test]
    fn tampering_unknown_keys_and_plaintext_are_refused() {
        let cluster = ClusterId::from_label("rossip");
        let mut sealer = Sealer::new(keyring(1), [9; 16]);
        let datagram = plain(&Body::Leave { generation: 7 });
        let sealed = sealer.seal(&datagram).expect("seal");
        for at in [13, 30, 40, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x40;
            assert_eq!(
                sealer.open(&bad, cluster),
                Err(if at == 30 {
                    OpenError::UnknownKey(KeyId(sealer.keyring().primary_id().0 ^ (0x40 << 8)))
                } else {
                    OpenError::BadSeal
                }),
                "byte {at} flipped"
            );
        }
        assert_eq!(sealer.open(&datagram, cluster), Err(OpenError::Unsealed));
        let other = Sealer::new(keyring(2), [9; 16]);
        assert!(matches!(
            other.open(&sealed, cluster),
            Err(OpenError::UnknownKey(_))
        ));
        assert_eq!(sealer.open(&sealed[..40], cluster), Err(OpenError::BadSeal));
        assert_eq!(
            sealer.open(&sealed[..10], cluster),
            Err(OpenError::NotSealed)
        );
    }

    #[test]
    fn keys_parse_from_hex_and_ids_name_them() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let key = ClusterKey::from_hex(&format!("  {hex}\n")).expect("hex");
        assert_eq!(key.id(), ClusterKey::from_hex(hex).expect("hex").id());
        assert_ne!(key.id(), ClusterKey::new(&[0; KEY_BYTES]).id());
        assert!(matches!(
            ClusterKey::from_hex("abc"),
            Err(KeyError::Length(3))
        ));
        assert!(matches!(
            ClusterKey::from_hex(&hex.replace('a', "g")),
            Err(KeyError::NotHex('g'))
        ));
        assert!(
            !format!("{key:?}").contains("0011"),
            "Debug never shows the key"
        );
    }

    #[test]
    fn a_rotation_keyring_opens_old_and_new() {
        let cluster = ClusterId::from_label("rossip");
        let old = ClusterKey::new(&[1; KEY_BYTES]);
        let new = ClusterKey::new(&[2; KEY_BYTES]);
        let mut old_sealer = Sealer::new(Keyring::new(old.clone(), Vec::new()), [1; 16]);
        let both = Sealer::new(Keyring::new(new, vec![old]), [2; 16]);
        let datagram = plain(&Body::Leave { generation: 1 });
        let sealed = old_sealer.seal(&datagram).expect("seal");
        assert_eq!(both.open(&sealed, cluster), Ok(datagram));
    }
}
