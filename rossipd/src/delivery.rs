//! Delivery cursors: this node's numbering of what it delivers, in local
//! arrival order, as journald cursors or Kafka offsets number theirs.
//!
//! The history order (HLC timestamps) is the same on every node but is not
//! the order in which one node learns of messages: a node that was cut off
//! catches up messages that order *before* what it already showed. A
//! follower that resumes "after the last id" in history order would never
//! see those. A follower that resumes after its last *cursor* gets exactly
//! what this node delivered since, whatever their timestamps.
//!
//! A cursor names its store (a random id made when the history database is
//! created), so that one from another store (a wiped state directory,
//! another node) is refused rather than taken to mean some other position.

use std::fmt;
use std::str::FromStr;

use rossip_proto::Message;
use rossip_proto::rpc::NameTrust;

/// The random id of one history store; a new store (a wiped state directory)
/// gets a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreId(pub u64);

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A position in one store's delivery order: `seq` is the number of the
/// delivery (the first is 1); 0 is "before everything".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The store whose deliveries are numbered.
    pub store: StoreId,
    /// The delivery's number in it.
    pub seq: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.store, self.seq)
    }
}

/// Why a text is not a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a cursor (a cursor looks like 3f9a1c2e7b6d5a40-1234; take it from a message's `cursor`)"
)]
pub struct CursorParseError(pub String);

impl FromStr for Cursor {
    type Err = CursorParseError;

    fn from_str(text: &str) -> Result<Cursor, CursorParseError> {
        let fail = || CursorParseError(text.to_owned());
        let (store, seq) = text.split_once('-').ok_or_else(fail)?;
        if store.len() != 16 || !store.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(fail());
        }
        if seq.is_empty() || !seq.chars().all(|c| c.is_ascii_digit()) {
            return Err(fail());
        }
        Ok(Cursor {
            store: StoreId(u64::from_str_radix(store, 16).map_err(|_| fail())?),
            seq: seq.parse().map_err(|_| fail())?,
        })
    }
}

/// A message as this node delivered it: its cursor, and what the pins said
/// of its sender's name when it arrived.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Where it is in this node's delivery order.
    pub cursor: Cursor,
    /// The message.
    pub message: Message,
    /// Its origin name checked against the pins.
    pub name_trust: NameTrust,
}

impl Delivered {
    /// Bytes it holds, for the bounds of what keeps deliveries in memory.
    pub fn size(&self) -> usize {
        self.message.payload_len() + std::mem::size_of::<Delivered>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let cursor = Cursor {
            store: StoreId(0x3f9a_1c2e_7b6d_5a40),
            seq: 1234,
        };
        assert_eq!(cursor.to_string(), "3f9a1c2e7b6d5a40-1234");
        assert_eq!("3f9a1c2e7b6d5a40-1234".parse::<Cursor>(), Ok(cursor));
        for bad in [
            "",
            "12",
            "3f9a1c2e7b6d5a40",
            "3f9a1c2e7b6d5a40-",
            "3f9a1c2e7b6d5a4-1",
            "3f9a1c2e7b6d5a40-+1",
            "3f9a1c2e7b6d5a40-1-2",
            "zz9a1c2e7b6d5a40-1",
            "3f9a1c2e7b6d5a40-99999999999999999999999",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }
}
