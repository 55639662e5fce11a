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
//! open anything). The nonce is a random 64-bit number chosen per run, the
//! sender's wall clock in milliseconds, and a 64-bit counter: it never
//! repeats under one key, and it lets a receiver refuse replays (see
//! [`replay`]). The key id is a
//! value derived from the key by the cipher itself (the first four bytes
//! of the sealing of a fixed text under a zero nonce): it names the key
//! without revealing anything of it.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use crate::wire::{self, ClusterId, HEADER_LEN, MAGIC, VERSION};

pub mod replay;

/// Bytes `at..at + 8` of a nonce as a big-endian number.
fn nonce_part(nonce: &[u8; NONCE_BYTES], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(part) = nonce.get(at..at + 8) {
        bytes.copy_from_slice(part);
    }
    u64::from_be_bytes(bytes)
}

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

/// Most keys a [`Keyring`] holds: a rotation needs two; the bound keeps
/// a key holder from growing every node's keyring (and the keyring
/// reports) without limit.
pub const MAX_KEYS: usize = 16;

/// One cluster key.
#[derive(Clone)]
pub struct ClusterKey {
    id: KeyId,
    cipher: XChaCha20Poly1305,
    /// The key itself: kept so that a keyring can be persisted and a key
    /// installed on other nodes. Never printed (see `Debug`).
    bytes: [u8; KEY_BYTES],
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
            bytes: *bytes,
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

    /// The key's bytes: secret. For the key file and for installing the
    /// key on other nodes (inside a sealed datagram) only.
    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }

    /// The key as 64 hex digits (the key file's format): secret, like
    /// [`ClusterKey::bytes`].
    pub fn to_hex(&self) -> String {
        use std::fmt::Write as _;
        self.bytes
            .iter()
            .fold(String::with_capacity(KEY_BYTES * 2), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            })
    }
}

/// Why a keyring change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The key is not in the keyring.
    #[error("key {0} is not installed")]
    Unknown(KeyId),
    /// The key is the one datagrams are sealed with: make another key the
    /// primary first.
    #[error("key {0} is the primary key; `use` another key first")]
    Primary(KeyId),
    /// The keyring already holds [`MAX_KEYS`] keys.
    #[error("the keyring already holds {MAX_KEYS} keys; remove one first")]
    Full,
    /// Another key with the same 32-bit id is installed (a collision:
    /// about one in four billion); generate another key.
    #[error("another key with id {0} is installed; generate a new key")]
    IdCollision(KeyId),
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

    /// The primary key (what the first line of a key file holds).
    pub fn primary(&self) -> &ClusterKey {
        &self.primary
    }

    /// Every key, the primary first (the order of a key file).
    pub fn keys(&self) -> impl Iterator<Item = &ClusterKey> {
        std::iter::once(&self.primary).chain(&self.others)
    }

    /// Whether a key with this id is held.
    pub fn contains(&self, id: KeyId) -> bool {
        self.find(id).is_some()
    }

    /// Adds `key` as an accepted (not sealing) key. `Ok(false)` if it is
    /// already held; [`KeyringError::Full`] past [`MAX_KEYS`].
    pub fn install(&mut self, key: ClusterKey) -> Result<bool, KeyringError> {
        if let Some(held) = self.find(key.id) {
            // Ids are 32 bits: the same id does not prove the same key.
            return if held.bytes == key.bytes {
                Ok(false)
            } else {
                Err(KeyringError::IdCollision(key.id))
            };
        }
        if self.others.len() + 1 >= MAX_KEYS {
            return Err(KeyringError::Full);
        }
        self.others.push(key);
        Ok(true)
    }

    /// Makes the installed key `id` the one datagrams are sealed with; the
    /// previous primary stays accepted. Using the primary again is a no-op.
    pub fn use_key(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if self.primary.id == id {
            return Ok(());
        }
        let at = self
            .others
            .iter()
            .position(|k| k.id == id)
            .ok_or(KeyringError::Unknown(id))?;
        let previous = std::mem::replace(&mut self.primary, self.others.remove(at));
        self.others.insert(0, previous);
        Ok(())
    }

    /// Removes the key `id`; refuses the primary and unknown keys.
    pub fn remove(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if self.primary.id == id {
            return Err(KeyringError::Primary(id));
        }
        let before = self.others.len();
        self.others.retain(|k| k.id != id);
        if self.others.len() == before {
            return Err(KeyringError::Unknown(id));
        }
        Ok(())
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
    /// A datagram this node opened before (a replay), or one too old to
    /// tell.
    #[error("datagram was already received (replayed)")]
    Replayed,
    /// From a sender run this node has no record of, stamped more than
    /// five minutes from this node's clock: an old capture, or a clock
    /// that needs NTP.
    #[error("datagram is stamped more than 5 minutes from this node's clock")]
    Stale,
}

impl OpenError {
    /// Short, stable name used as the key of the drop counters.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::Unsealed => "unsealed_refused",
            OpenError::UnknownKey(_) => "unknown_key",
            OpenError::BadSeal => "bad_seal",
            OpenError::NotSealed => "not_sealed",
            OpenError::Replayed => "replayed",
            OpenError::Stale => "stale",
        }
    }
}

/// Seals and opens datagrams with a keyring, and refuses replays (see
/// [`replay`]).
#[derive(Debug)]
pub struct Sealer {
    keyring: Keyring,
    run: u64,
    counter: u64,
    replay: replay::ReplayGuard,
}

impl Sealer {
    /// A sealer whose nonces start with `run` (random, once per run),
    /// refusing datagrams of unknown runs outside the default
    /// [`crate::node::ProtocolConfig::replay_freshness`].
    pub fn new(keyring: Keyring, run: u64) -> Sealer {
        Sealer {
            keyring,
            run,
            counter: 0,
            replay: replay::ReplayGuard::new(
                crate::node::ProtocolConfig::default().replay_freshness,
            ),
        }
    }

    /// The same sealer, with another freshness span for datagrams of runs
    /// it has no record of (a node's own
    /// [`crate::node::ProtocolConfig::replay_freshness`]). Call before the
    /// first datagram: it forgets the runs remembered.
    pub fn with_replay_freshness(mut self, freshness: std::time::Duration) -> Sealer {
        self.replay = replay::ReplayGuard::new(freshness);
        self
    }

    /// Runs of other nodes whose counters this sealer remembers.
    pub fn runs_remembered(&self) -> usize {
        self.replay.len()
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The keyring, to change (a rotation). The nonce counter is shared by
    /// every key, so a nonce never repeats under any of them.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    /// Seals a plaintext datagram (as [`wire::encode`] made it) at wall
    /// clock `now_ms` (milliseconds since the Unix epoch).
    pub fn seal(&mut self, plain: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        let (head, body) = plain.split_at_checked(HEADER_LEN)?;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..8].copy_from_slice(&self.run.to_be_bytes());
        nonce[8..16].copy_from_slice(&now_ms.to_be_bytes());
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

    /// Opens a sealed datagram of cluster `cluster`, at wall clock `now_ms`,
    /// into the plaintext datagram [`wire::decode`] reads. A datagram opens
    /// at most once (see [`replay`]).
    pub fn open(
        &mut self,
        sealed: &[u8],
        cluster: ClusterId,
        now_ms: u64,
    ) -> Result<Vec<u8>, OpenError> {
        // No sealed datagram is larger than this: refuse before the AEAD
        // pass (up to 64 KiB of work per forged datagram otherwise); the
        // wire decoder counts it as oversized.
        if sealed.len() > wire::MAX_DATAGRAM_BYTES {
            return Err(OpenError::NotSealed);
        }
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
        let stamp = replay::Stamp {
            run: nonce_part(&nonce, 0),
            sent_ms: nonce_part(&nonce, 8),
            counter: nonce_part(&nonce, 16),
        };
        // Checked before the (costlier) decryption; recorded only after it,
        // so a forger cannot move the window.
        self.replay
            .check(stamp, now_ms)
            .map_err(|refusal| match refusal {
                replay::Refusal::Replayed => OpenError::Replayed,
                replay::Refusal::Stale => OpenError::Stale,
            })?;
        let plain_body = key
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: body, aad })
            .map_err(|_| OpenError::BadSeal)?;
        self.replay.record(stamp, now_ms);
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

    const NOW: u64 = 1_700_000_000_000;

    fn leave() -> Body {
        Body::Leave {
            generation: 7,
            sig: crate::sign::Signature::from_bytes(&[0; 64]),
        }
    }

    #[test]
    fn sealed_datagrams_open_once_and_never_repeat_a_nonce() {
        let cluster = ClusterId::from_label("rossip");
        let mut sealer = Sealer::new(keyring(1), 9);
        let mut receiver = Sealer::new(keyring(1), 10);
        let datagram = plain(&leave());
        let a = sealer.seal(&datagram, NOW).expect("seal");
        let b = sealer.seal(&datagram, NOW).expect("seal");
        assert_eq!(a.len(), datagram.len() + SEAL_OVERHEAD);
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(receiver.open(&b, cluster, NOW), Ok(datagram.clone()));
        assert_eq!(
            receiver.open(&a, cluster, NOW),
            Ok(datagram),
            "reordered is fine"
        );
        assert_eq!(receiver.open(&a, cluster, NOW), Err(OpenError::Replayed));
        assert_eq!(
            receiver.open(&b, cluster, NOW + 1),
            Err(OpenError::Replayed)
        );
        assert_eq!(OpenError::Replayed.reason(), "replayed");
    }

    #[test]
    fn an_old_capture_is_refused_by_a_node_that_never_saw_its_run() {
        let cluster = ClusterId::from_label("rossip");
        let mut sealer = Sealer::new(keyring(1), 9);
        let captured = sealer.seal(&plain(&leave()), NOW).expect("seal");
        let mut restarted = Sealer::new(keyring(1), 11);
        let freshness = crate::node::ProtocolConfig::default().replay_freshness;
        let later = NOW + u64::try_from(freshness.as_millis()).expect("minutes") + 1;
        assert_eq!(
            restarted.open(&captured, cluster, later),
            Err(OpenError::Stale)
        );
        // A fresh datagram of the same run still opens.
        let fresh = sealer.seal(&plain(&leave()), later).expect("seal");
        assert!(restarted.open(&fresh, cluster, later).is_ok());
    }

    #[test]
    fn tampering_unknown_keys_and_plaintext_are_refused() {
        let cluster = ClusterId::from_label("rossip");
        let mut sealer = Sealer::new(keyring(1), 9);
        let mut receiver = Sealer::new(keyring(1), 10);
        let datagram = plain(&leave());
        let sealed = sealer.seal(&datagram, NOW).expect("seal");
        // 13: header (associated data); 30: key id; 35: run; 45: the
        // clock (sent far from now: stale before any decryption); 50:
        // counter; last: tag.
        for at in [13, 30, 35, 45, 50, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x40;
            let expected = match at {
                30 => OpenError::UnknownKey(KeyId(sealer.keyring().primary_id().0 ^ (0x40 << 8))),
                45 => OpenError::Stale,
                _ => OpenError::BadSeal,
            };
            assert_eq!(
                receiver.open(&bad, cluster, NOW),
                Err(expected),
                "byte {at} flipped"
            );
        }
        assert_eq!(
            receiver.open(&datagram, cluster, NOW),
            Err(OpenError::Unsealed)
        );
        let mut other = Sealer::new(keyring(2), 9);
        assert!(matches!(
            other.open(&sealed, cluster, NOW),
            Err(OpenError::UnknownKey(_))
        ));
        assert_eq!(
            receiver.open(&sealed[..40], cluster, NOW),
            Err(OpenError::BadSeal)
        );
        assert_eq!(
            receiver.open(&sealed[..10], cluster, NOW),
            Err(OpenError::NotSealed)
        );
        // None of the forgeries moved the window: the real one opens.
        assert_eq!(receiver.open(&sealed, cluster, NOW), Ok(datagram));
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
        let mut old_sealer = Sealer::new(Keyring::new(old.clone(), Vec::new()), 1);
        let mut both = Sealer::new(Keyring::new(new, vec![old]), 2);
        let datagram = plain(&leave());
        let sealed = old_sealer.seal(&datagram, NOW).expect("seal");
        assert_eq!(both.open(&sealed, cluster, NOW), Ok(datagram));
    }

    #[test]
    fn keyring_install_use_remove() {
        let old = ClusterKey::new(&[1; KEY_BYTES]);
        let new = ClusterKey::new(&[2; KEY_BYTES]);
        let mut ring = Keyring::new(old.clone(), Vec::new());
        assert_eq!(ring.install(new.clone()), Ok(true));
        assert_eq!(ring.install(new.clone()), Ok(false), "already held");
        assert_eq!(ring.ids(), vec![old.id(), new.id()]);
        let stranger = KeyId(7);
        assert_eq!(ring.use_key(stranger), Err(KeyringError::Unknown(stranger)));
        assert_eq!(ring.remove(old.id()), Err(KeyringError::Primary(old.id())));
        assert_eq!(ring.use_key(new.id()), Ok(()));
        assert_eq!(ring.use_key(new.id()), Ok(()), "using the primary again");
        assert_eq!(ring.ids(), vec![new.id(), old.id()]);
        assert_eq!(ring.remove(stranger), Err(KeyringError::Unknown(stranger)));
        assert_eq!(ring.remove(old.id()), Ok(()));
        assert_eq!(ring.ids(), vec![new.id()]);
        assert_eq!(ring.primary().to_hex(), "02".repeat(KEY_BYTES));
        assert_eq!(
            ClusterKey::from_hex(&new.to_hex()).map(|k| k.id()),
            Ok(new.id())
        );
        for byte in 3..=u8::try_from(MAX_KEYS).expect("small") + 1 {
            assert_eq!(ring.install(ClusterKey::new(&[byte; KEY_BYTES])), Ok(true));
        }
        assert_eq!(ring.ids().len(), MAX_KEYS);
        assert_eq!(
            ring.install(ClusterKey::new(&[0xee; KEY_BYTES])),
            Err(KeyringError::Full)
        );
    }

    #[test]
    fn a_sealer_follows_its_keyring_through_a_rotation() {
        const NOW_MS: u64 = 1_700_000_000_000;
        let cluster = ClusterId::from_label("rossip");
        let old = ClusterKey::new(&[1; KEY_BYTES]);
        let new = ClusterKey::new(&[2; KEY_BYTES]);
        let mut a = Sealer::new(Keyring::new(old.clone(), Vec::new()), 1);
        let mut b = Sealer::new(Keyring::new(old.clone(), Vec::new()), 2);
        let datagram = plain(&Body::Swim(vec![1, 2, 3]));
        for sealer in [&mut a, &mut b] {
            assert_eq!(sealer.keyring_mut().install(new.clone()), Ok(true));
        }
        a.keyring_mut().use_key(new.id()).expect("use");
        // a seals under the new key, b still under the old: each opens both.
        let from_a = a.seal(&datagram, NOW_MS).expect("seal");
        let from_b = b.seal(&datagram, NOW_MS).expect("seal");
        assert_eq!(b.open(&from_a, cluster, NOW_MS), Ok(datagram.clone()));
        assert_eq!(a.open(&from_b, cluster, NOW_MS), Ok(datagram.clone()));
        b.keyring_mut().use_key(new.id()).expect("use");
        a.keyring_mut().remove(old.id()).expect("remove");
        assert_eq!(
            a.open(&from_b, cluster, NOW_MS),
            Err(OpenError::UnknownKey(old.id())),
            "the old key is gone"
        );
        let again = b.seal(&datagram, NOW_MS).expect("seal");
        assert_eq!(a.open(&again, cluster, NOW_MS), Ok(datagram));
    }
}
