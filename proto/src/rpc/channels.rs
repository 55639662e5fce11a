//! `channels`: the channels this node holds messages of.

use serde::{Deserialize, Serialize};

/// `channels` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsResult {
    /// Every channel with a message in this node's history (direct
    /// messages are not in any channel), the most recently active first.
    pub channels: Vec<ChannelView>,
}

/// One channel in [`ChannelsResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    /// The channel's name.
    pub name: String,
    /// Its messages in this node's history (what `history {channel}` reads).
    pub messages: u64,
    /// The newest of them: its `ts`, ms since the Unix epoch at its origin.
    pub last_ts: u64,
}
