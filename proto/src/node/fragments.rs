//! Large messages: splitting into fragments and reassembling them in
//! bounded memory.
//!
//! A message whose encoding does not fit one datagram travels as
//! [`Fragment`]s of [`FRAGMENT_DATA_BYTES`] of its postcard encoding. The
//! split is a pure function of the message, so any node holding the message
//! can produce any piece again: that is how anti-entropy repairs a single
//! lost piece without resending the rest.
//!
//! Incomplete messages are bounded: at most
//! [`ProtocolConfig::max_partials`] at once and
//! [`ProtocolConfig::reassembly_max_bytes`] of pieces in all, and each
//! expires after [`ProtocolConfig::partial_timeout`] without a new piece. Past a bound the partial that
//! progressed least recently is dropped and counted; anti-entropy brings it
//! again later, whole.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ProtocolConfig;
use crate::id::MessageId;
use crate::message::Message;
use crate::sign::Verifier;
use crate::wire::{FRAGMENT_DATA_BYTES, Fragment, MAX_ENCODED_MESSAGE_BYTES, PartialDigest};

/// The message's encoding, if it needs fragments (else `None`: it travels
/// whole). `whole_limit` is the largest encoding sent whole.
pub(super) fn encode_if_large(message: &Message, whole_limit: usize) -> Option<Vec<u8>> {
    let size = encoded_len(message);
    if size <= whole_limit {
        return None;
    }
    postcard::to_allocvec(message).ok()
}

/// Length of a message's postcard encoding.
pub(super) fn encoded_len(message: &Message) -> usize {
    postcard::serialize_with_flavor::<_, postcard::ser_flavors::Size, usize>(
        message,
        postcard::ser_flavors::Size::default(),
    )
    .unwrap_or(usize::MAX)
}

/// Piece `index` of the encoding `bytes` of message `id`.
pub(super) fn piece(id: MessageId, bytes: &[u8], index: usize) -> Option<Fragment> {
    let start = index.checked_mul(FRAGMENT_DATA_BYTES)?;
    let end = start.saturating_add(FRAGMENT_DATA_BYTES).min(bytes.len());
    let data = bytes.get(start..end)?;
    if data.is_empty() {
        return None;
    }
    Some(Fragment {
        id,
        total: u32::try_from(bytes.len()).ok()?,
        index: u16::try_from(index).ok()?,
        data: data.to_vec(),
    })
}

/// Why a fragment was refused; [`Reject::reason`] names the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reject {
    /// Inconsistent sizes or index.
    Invalid,
    /// Disagrees with pieces already held for the same id.
    Mismatch,
    /// Already held.
    Duplicate,
    /// The pieces do not decode into the message their id names, signed
    /// by its origin.
    Corrupt,
}

impl Reject {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Reject::Invalid => "invalid_fragment",
            Reject::Mismatch => "fragment_mismatch",
            Reject::Duplicate => "duplicate_fragment",
            Reject::Corrupt => "corrupt_reassembly",
        }
    }
}

/// What adding a piece did.
#[derive(Debug)]
pub(super) enum Added {
    /// A new piece; the message is still incomplete.
    Stored,
    /// The last missing piece: the message.
    Complete(Box<Message>),
}

#[derive(Debug)]
struct Partial {
    total: usize,
    pieces: Vec<Option<Vec<u8>>>,
    held: usize,
    bytes: usize,
    last_progress: Instant,
}

/// Messages being reassembled.
#[derive(Debug)]
pub(super) struct Reassembly {
    partials: BTreeMap<MessageId, Partial>,
    bytes: usize,
    /// Incomplete messages dropped for a bound or a timeout.
    pub(super) evicted: u64,
    /// [`ProtocolConfig::max_partials`].
    max_partials: usize,
    /// [`ProtocolConfig::reassembly_max_bytes`].
    max_bytes: usize,
    /// [`ProtocolConfig::partial_timeout`].
    partial_timeout: Duration,
}

impl Reassembly {
    /// Nothing held, within the bounds of `protocol`.
    pub(super) fn new(protocol: &ProtocolConfig) -> Self {
        Reassembly {
            partials: BTreeMap::new(),
            bytes: 0,
            evicted: 0,
            max_partials: protocol.max_partials,
            max_bytes: protocol.reassembly_max_bytes,
            partial_timeout: protocol.partial_timeout,
        }
    }

    /// Adds a piece; a completed message is checked with `verifier` (the
    /// node's memo). `Err` leaves everything as it was.
    pub(super) fn add(
        &mut self,
        fragment: Fragment,
        now: Instant,
        verifier: &mut Verifier,
    ) -> Result<Added, Reject> {
        let total = usize::try_from(fragment.total).map_err(|_| Reject::Invalid)?;
        let index = usize::from(fragment.index);
        let count = Fragment::count_for(total);
        let expected_len = if index + 1 == count {
            total - index * FRAGMENT_DATA_BYTES
        } else {
            FRAGMENT_DATA_BYTES
        };
        if total <= FRAGMENT_DATA_BYTES
            || total > MAX_ENCODED_MESSAGE_BYTES
            || index >= count
            || fragment.data.len() != expected_len
        {
            return Err(Reject::Invalid);
        }
        let id = fragment.id;
        if let Some(partial) = self.partials.get(&id) {
            if partial.total != total {
                return Err(Reject::Mismatch);
            }
            if partial.pieces.get(index).is_some_and(Option::is_some) {
                return Err(Reject::Duplicate);
            }
            self.make_room(id, fragment.data.len(), false);
        } else {
            self.make_room(id, fragment.data.len(), true);
            self.partials.insert(
                id,
                Partial {
                    total,
                    pieces: vec![None; count],
                    held: 0,
                    bytes: 0,
                    last_progress: now,
                },
            );
        }
        let Some(partial) = self.partials.get_mut(&id) else {
            return Err(Reject::Invalid);
        };
        let len = fragment.data.len();
        if let Some(slot) = partial.pieces.get_mut(index) {
            *slot = Some(fragment.data);
        }
        partial.held += 1;
        partial.bytes += len;
        partial.last_progress = now;
        self.bytes += len;
        if partial.held < partial.pieces.len() {
            return Ok(Added::Stored);
        }
        let Some(done) = self.partials.remove(&id) else {
            return Err(Reject::Invalid);
        };
        self.bytes = self.bytes.saturating_sub(done.bytes);
        let mut encoded = Vec::with_capacity(done.total);
        for piece in done.pieces.into_iter().flatten() {
            encoded.extend_from_slice(&piece);
        }
        match postcard::from_bytes::<Message>(&encoded) {
            Ok(message) if message.id == id && message.verify(verifier).is_ok() => {
                Ok(Added::Complete(Box::new(message)))
            }
            _ => Err(Reject::Corrupt),
        }
    }

    /// Forgets a message's pieces (it arrived whole, or was given up).
    pub(super) fn remove(&mut self, id: &MessageId) {
        if let Some(partial) = self.partials.remove(id) {
            self.bytes = self.bytes.saturating_sub(partial.bytes);
        }
    }

    /// Drops partials that made no progress for
    /// [`ProtocolConfig::partial_timeout`].
    pub(super) fn expire(&mut self, now: Instant) {
        let stale: Vec<MessageId> = self
            .partials
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_progress) >= self.partial_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.remove(&id);
            self.evicted += 1;
        }
    }

    /// Up to `limit` partials as digest entries (bitmaps of held pieces),
    /// those of `wanted` origins' ids only if given.
    pub(super) fn digests(
        &self,
        limit: usize,
        wanted: impl Fn(&MessageId) -> bool,
    ) -> Vec<PartialDigest> {
        self.partials
            .iter()
            .filter(|(id, _)| wanted(id))
            .take(limit)
            .map(|(id, partial)| {
                let mut have = vec![0u8; partial.pieces.len().div_ceil(8)];
                for (i, piece) in partial.pieces.iter().enumerate() {
                    if piece.is_some()
                        && let Some(byte) = have.get_mut(i / 8)
                    {
                        *byte |= 1 << (i % 8);
                    }
                }
                PartialDigest { id: *id, have }
            })
            .collect()
    }

    /// Bytes of pieces held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of incomplete messages.
    pub(super) fn len(&self) -> usize {
        self.partials.len()
    }

    /// Drops the least recently progressing partials (other than `keep`)
    /// until `incoming` more bytes, and a new partial if `new`, fit the
    /// bounds.
    fn make_room(&mut self, keep: MessageId, incoming: usize, new: bool) {
        while (new && self.partials.len() >= self.max_partials)
            || self.bytes + incoming > self.max_bytes
        {
            let victim = self
                .partials
                .iter()
                .filter(|(id, _)| **id != keep)
                .min_by_key(|(_, p)| p.last_progress)
                .map(|(id, _)| *id);
            let Some(victim) = victim else { break };
            self.remove(&victim);
            self.evicted += 1;
        }
    }
}

/// Whether bit `index` is set in a [`PartialDigest::have`] bitmap.
pub(super) fn has_piece(have: &[u8], index: usize) -> bool {
    have.get(index / 8)
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // an arbitrary origin of time
mod tests {
    use super::*;
    use crate::message::Hlc;

    fn big(seq: u64, len: usize) -> Message {
        Message::signed(
            &crate::sign::NodeKey::for_testing(3),
            seq,
            "big".into(),
            Hlc { ms: 5, logical: 0 },
            crate::message::Draft::channel("general", "y".repeat(len)),
        )
    }

    fn pieces(message: &Message) -> Vec<Fragment> {
        let bytes = encode_if_large(message, 1200).expect("large");
        let count = Fragment::count_for(bytes.len());
        (0..count)
            .map(|i| piece(message.id, &bytes, i).expect("piece"))
            .collect()
    }

    #[test]
    fn reassembles_in_any_order_and_refuses_duplicates() {
        let now = Instant::now();
        let message = big(1, 64 * 1024);
        let mut parts = pieces(&message);
        assert_eq!(parts.len(), 64 * 1024 / FRAGMENT_DATA_BYTES + 1);
        parts.reverse();
        let mut reassembly = Reassembly::new(&ProtocolConfig::default());
        let last = parts.pop().expect("pieces");
        for part in &parts {
            assert!(matches!(
                reassembly.add(part.clone(), now, &mut Verifier::default()),
                Ok(Added::Stored)
            ));
        }
        assert!(matches!(
            reassembly.add(parts[0].clone(), now, &mut Verifier::default()),
            Err(Reject::Duplicate)
        ));
        let digest = reassembly.digests(8, |_| true);
        assert_eq!(digest.len(), 1);
        assert!(!has_piece(&digest[0].have, 0) && has_piece(&digest[0].have, parts.len()));
        match reassembly.add(last, now, &mut Verifier::default()) {
            Ok(Added::Complete(done)) => assert_eq!(*done, message),
            other => panic!("expected the message, got {other:?}"),
        }
        assert_eq!((reassembly.len(), reassembly.bytes()), (0, 0));
    }

    #[test]
    fn refuses_inconsistent_pieces() {
        let now = Instant::now();
        let message = big(1, 4000);
        let parts = pieces(&message);
        let mut reassembly = Reassembly::new(&ProtocolConfig::default());
        let mut short = parts[0].clone();
        short.data.pop();
        assert_eq!(
            reassembly.add(short, now, &mut Verifier::default()).err(),
            Some(Reject::Invalid)
        );
        let mut beyond = parts[0].clone();
        beyond.index = 200;
        assert_eq!(
            reassembly.add(beyond, now, &mut Verifier::default()).err(),
            Some(Reject::Invalid)
        );
        reassembly
            .add(parts[0].clone(), now, &mut Verifier::default())
            .expect("first piece");
        let mut other_total = parts[1].clone();
        other_total.total += 1;
        assert!(
            reassembly
                .add(other_total, now, &mut Verifier::default())
                .is_err()
        );
        // Pieces of another message under this id do not decode as it.
        let mut fresh = Reassembly::new(&ProtocolConfig::default());
        let mut result = None;
        for mut part in pieces(&big(2, 4000)) {
            part.id = message.id;
            result = Some(fresh.add(part, now, &mut Verifier::default()));
        }
        assert_eq!(
            result.and_then(Result::err),
            Some(Reject::Corrupt),
            "a message must decode to the id its pieces claim"
        );
    }

    #[test]
    fn memory_is_bounded_and_stale_partials_expire() {
        let now = Instant::now();
        let protocol = ProtocolConfig::default();
        let mut reassembly = Reassembly::new(&protocol);
        for seq in 1..=(protocol.max_partials as u64 + 10) {
            let first = pieces(&big(seq, 3000)).remove(0);
            reassembly
                .add(
                    first,
                    now + Duration::from_millis(seq),
                    &mut Verifier::default(),
                )
                .expect("piece");
        }
        assert_eq!(reassembly.len(), protocol.max_partials);
        assert_eq!(reassembly.evicted, 10);
        reassembly.expire(now + protocol.partial_timeout + Duration::from_secs(1));
        assert_eq!(reassembly.len(), 0);
    }
}
