//! How protocol values map to SQLite columns.
//!
//! SQLite integers are signed 64-bit; sequence numbers and HLC milliseconds
//! are `u64` and may (from a faulty peer) exceed `i64::MAX`. They are stored
//! with the sign bit flipped, a bijection that keeps their order, so the
//! `ORDER BY` of history and the age cutoff compare exactly as the protocol
//! does. (Reading the file with the `sqlite3` shell: the stored value is the
//! number minus 2^63.)

use rossip_proto::message::{Auth, Author, BatchProof, Hlc, Recipient};
use rossip_proto::sign::{PUBLIC_KEY_BYTES, PublicKey, SIGNATURE_BYTES, Signature};
use rossip_proto::{Message, MessageId, NodeId};

const SIGN: u64 = 1 << 63;

/// A `u64` as an order-preserving SQLite integer.
pub(super) fn key(x: u64) -> i64 {
    i64::from_ne_bytes((x ^ SIGN).to_ne_bytes())
}

/// The inverse of [`key`].
pub(super) fn unkey(x: i64) -> u64 {
    u64::from_ne_bytes(x.to_ne_bytes()) ^ SIGN
}

/// An HLC reading as a blob whose byte order (SQLite compares blobs with
/// memcmp) is the reading's order: big-endian milliseconds, then logical.
pub(super) fn hlc_blob(ts: Hlc) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&ts.ms.to_be_bytes());
    out[8..].copy_from_slice(&ts.logical.to_be_bytes());
    out
}

/// The inverse of [`hlc_blob`]; `None` for a blob of another length.
pub(super) fn hlc_from_blob(blob: &[u8]) -> Option<Hlc> {
    let ms = blob.get(..8)?.try_into().ok().map(u64::from_be_bytes)?;
    let logical = blob.get(8..12)?.try_into().ok().map(u32::from_be_bytes)?;
    (blob.len() == 12).then_some(Hlc { ms, logical })
}

/// A node id from its 16-byte column; `None` for any other length.
pub(super) fn node_id(blob: &[u8]) -> Option<NodeId> {
    blob.try_into().ok().map(NodeId)
}

/// Seen ranges as one blob: `(first, last)` pairs of big-endian `u64`s.
/// One row per origin, rewritten whole, is cheaper than a row per range
/// (the node caps an origin at 256 ranges: 4 KiB at most).
pub(super) fn ranges_blob(ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ranges.len() * 16);
    for (first, last) in ranges {
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&last.to_be_bytes());
    }
    out
}

/// The inverse of [`ranges_blob`]; `None` if the blob is not whole pairs
/// or a pair is reversed (a damaged row, which the caller skips).
pub(super) fn ranges_from_blob(blob: &[u8]) -> Option<Vec<(u64, u64)>> {
    if !blob.len().is_multiple_of(16) {
        return None;
    }
    blob.chunks_exact(16)
        .map(|pair| {
            let first = u64::from_be_bytes(pair.get(..8)?.try_into().ok()?);
            let last = u64::from_be_bytes(pair.get(8..)?.try_into().ok()?);
            (first <= last).then_some((first, last))
        })
        .collect()
}

/// One `messages` row as read by the loading query: columns `origin, seq,
/// ms, logical, origin_name, channel, text, key, sig`, then (after one
/// column the caller reads itself) `user, nick, to_node, to_user, proof`.
pub(super) fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Message>> {
    let origin: Vec<u8> = row.get(0)?;
    let Some(origin) = node_id(&origin) else {
        return Ok(None);
    };
    let seq: i64 = row.get(1)?;
    let ms: i64 = row.get(2)?;
    let logical: u32 = row.get(3)?;
    let key: Vec<u8> = row.get(7)?;
    let sig: Vec<u8> = row.get(8)?;
    // A damaged row is skipped, as one with a bad origin is.
    let (Ok(key_bytes), Ok(sig_bytes)) = (
        <[u8; PUBLIC_KEY_BYTES]>::try_from(key.as_slice()),
        <[u8; SIGNATURE_BYTES]>::try_from(sig.as_slice()),
    ) else {
        return Ok(None);
    };
    let batch = match row.get::<_, Option<Vec<u8>>>(14)? {
        None => None,
        Some(bytes) => match BatchProof::from_bytes(&bytes) {
            Some(proof) => Some(proof),
            None => return Ok(None),
        },
    };
    Ok(Some(Message {
        id: MessageId {
            origin,
            seq: unkey(seq),
        },
        ts: Hlc {
            ms: unkey(ms),
            logical,
        },
        origin_name: row.get(4)?,
        channel: row.get(5)?,
        text: row.get(6)?,
        author: Author {
            user: row.get(10)?,
            nick: row.get(11)?,
        },
        to: match row.get::<_, Option<Vec<u8>>>(12)? {
            None => None,
            Some(node) => {
                let Some(node) = node_id(&node) else {
                    return Ok(None);
                };
                Some(Recipient {
                    node,
                    user: row.get(13)?,
                })
            }
        },
        auth: Auth {
            key: PublicKey(key_bytes),
            sig: Signature::from_bytes(&sig_bytes),
            batch,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_order_of_u64() {
        let values = [
            0,
            1,
            2,
            i64::MAX as u64,
            SIGN,
            SIGN + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for pair in values.windows(2) {
            assert!(key(pair[0]) < key(pair[1]), "{pair:?}");
        }
        for v in values {
            assert_eq!(unkey(key(v)), v);
        }
    }

    #[test]
    fn hlc_blobs_keep_the_order_of_readings() {
        let a = Hlc { ms: 5, logical: 9 };
        let b = Hlc { ms: 6, logical: 0 };
        assert!(hlc_blob(a) < hlc_blob(b));
        assert_eq!(hlc_from_blob(&hlc_blob(b)), Some(b));
        assert_eq!(hlc_from_blob(&[0; 11]), None);
    }

    #[test]
    fn ranges_round_trip_and_damage_is_refused() {
        let ranges = vec![(1, 5), (7, 7), (9, u64::MAX)];
        assert_eq!(ranges_from_blob(&ranges_blob(&ranges)), Some(ranges));
        assert_eq!(ranges_from_blob(&[0; 15]), None);
        assert_eq!(ranges_from_blob(&ranges_blob(&[(5, 1)])), None);
    }
}
