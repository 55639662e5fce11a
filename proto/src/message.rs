//! Chat messages and the hybrid logical clock that orders them.

use serde::{Deserialize, Serialize};

use crate::id::{MessageId, NodeId};

/// The channel a message goes to when `send` names none.
pub const DEFAULT_CHANNEL: &str = "general";

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 64;

/// Longest node name, in bytes. Names travel in every membership update, so
/// they are kept short.
pub const MAX_NAME_BYTES: usize = 64;

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
}

impl Message {
    /// The key that orders history identically on every node.
    pub fn order_key(&self) -> OrderKey {
        OrderKey {
            ts: self.ts,
            origin: self.id.origin,
            seq: self.id.seq,
        }
    }

    /// Bytes of payload this message carries (text + channel + name), the
    /// figure limits are checked against.
    pub fn payload_len(&self) -> usize {
        self.text.len() + self.channel.len() + self.origin_name.len()
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
