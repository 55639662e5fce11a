//! Identifiers: who a node is, and which message is which.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node's cluster-wide identity: 16 random bytes, generated once and kept in
/// the node's state directory so that it survives restarts.
///
/// Names can collide (two hosts called `web`); ids cannot, which is why mDNS
/// instance names and membership are keyed by id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// Length of the hexadecimal form.
    pub const HEX_LEN: usize = 32;

    /// Length of [`NodeId::short`], for code that shortens a hex id it
    /// only has as text (an mDNS record, before the node is contacted).
    pub const SHORT_LEN: usize = 8;

    /// A short prefix of the hex form, for logs and human output.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(Self::SHORT_LEN);
        s
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a string is not a [`NodeId`] or [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// A node id is exactly 32 hex digits.
    #[error("a node id is 32 hexadecimal digits, got {0} characters")]
    NodeIdLength(usize),
    /// Something other than 0-9, a-f.
    #[error("a node id is hexadecimal, found {0:?}")]
    NodeIdDigit(char),
    /// A message id is `NODEID-SEQ`.
    #[error("a message id looks like <32 hex digits>-<sequence number>")]
    MessageIdShape,
}

impl FromStr for NodeId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: Vec<char> = s.chars().collect();
        if digits.len() != Self::HEX_LEN {
            return Err(IdParseError::NodeIdLength(digits.len()));
        }
        let mut out = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = pair[0]
                .to_digit(16)
                .ok_or(IdParseError::NodeIdDigit(pair[0]))?;
            let lo = pair[1]
                .to_digit(16)
                .ok_or(IdParseError::NodeIdDigit(pair[1]))?;
            // Both digits are < 16, so the byte cannot overflow.
            out[i] = ((hi << 4) | lo) as u8;
        }
        Ok(NodeId(out))
    }
}

// Human-readable formats (JSON) carry the hex string; binary formats (the
// wire, postcard) carry the 16 raw bytes.
impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            s.parse().map_err(D::Error::custom)
        } else {
            <[u8; 16]>::deserialize(deserializer).map(NodeId)
        }
    }
}

/// A message's identity: the origin node and its per-origin sequence number.
///
/// Sequence numbers start at 1 and never repeat for one origin, across
/// restarts too (the daemon persists a reservation), so the same text sent
/// twice is two messages.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct MessageId {
    /// The node that accepted the message from `send`.
    pub origin: NodeId,
    /// Position in the origin's own sequence.
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.origin, self.seq)
    }
}

impl FromStr for MessageId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (origin, seq) = s.split_once('-').ok_or(IdParseError::MessageIdShape)?;
        let origin = origin.parse()?;
        let seq = seq.parse().map_err(|_| IdParseError::MessageIdShape)?;
        Ok(MessageId { origin, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_through_hex() {
        let id = NodeId([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s.len(), NodeId::HEX_LEN);
        assert_eq!(s.parse::<NodeId>(), Ok(id));
    }

    #[test]
    fn node_id_rejects_bad_input() {
        assert_eq!("abc".parse::<NodeId>(), Err(IdParseError::NodeIdLength(3)));
        let bad = "zz".repeat(16);
        assert_eq!(bad.parse::<NodeId>(), Err(IdParseError::NodeIdDigit('z')));
        // Multi-byte characters must not panic on slicing.
        let wide = "é".repeat(16);
        assert!(wide.parse::<NodeId>().is_err());
        let odd = format!("é{}", "a".repeat(30));
        assert_eq!(odd.len(), 32);
        assert!(odd.parse::<NodeId>().is_err());
    }

    #[test]
    fn message_id_round_trips() {
        let id = MessageId {
            origin: NodeId([7; 16]),
            seq: 42,
        };
        assert_eq!(id.to_string().parse::<MessageId>(), Ok(id));
        assert!("nope".parse::<MessageId>().is_err());
        assert!(
            format!("{}-x", NodeId([1; 16]))
                .parse::<MessageId>()
                .is_err()
        );
    }

    #[test]
    fn node_id_json_is_hex_and_postcard_is_bytes() {
        let id = NodeId([1; 16]);
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, format!("\"{id}\""));
        let bytes = postcard::to_stdvec(&id).expect("serialize");
        assert_eq!(bytes.len(), 16);
        assert_eq!(postcard::from_bytes::<NodeId>(&bytes).expect("decode"), id);
    }
}
