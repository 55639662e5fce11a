//! The channels this node holds messages of (`channels`): counted from the
//! node's history, the same window `history` reads, so a channel's count
//! is what `history {channel}` returns. Direct messages are in no channel.
//!
//! One pass over the window per call (100,000 messages by default, a few
//! milliseconds): `channels` is asked by people, not in a loop, and a count
//! kept up to date on every delivery and eviction would be one more copy of
//! what the history already says.

use std::collections::BTreeMap;

use rossip_proto::Message;

use super::Driver;

/// One channel's messages in this node's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    /// The channel.
    pub name: String,
    /// Its messages.
    pub messages: u64,
    /// The newest one's timestamp (ms since the Unix epoch at its origin).
    pub last_ts: u64,
}

/// The channels of `messages` (direct messages left out), the most recently
/// active first; channels active in the same millisecond by name.
pub fn summarize<'a>(messages: impl Iterator<Item = &'a Message>) -> Vec<ChannelSummary> {
    let mut by_name: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for message in messages.filter(|m| m.to.is_none()) {
        let (count, last) = by_name.entry(&message.channel).or_default();
        *count += 1;
        *last = (*last).max(message.ts.ms);
    }
    let mut channels: Vec<ChannelSummary> = by_name
        .into_iter()
        .map(|(name, (messages, last_ts))| ChannelSummary {
            name: name.to_owned(),
            messages,
            last_ts,
        })
        .collect();
    // Stable: equal times stay in name order.
    channels.sort_by_key(|c| std::cmp::Reverse(c.last_ts));
    channels
}

impl Driver {
    /// The channels of what this node delivered and still holds: the
    /// messages a `history` read would show now.
    pub(super) fn channels(&self) -> Vec<ChannelSummary> {
        let newest = self.journal.newest();
        summarize(self.node.history().filter(|m| {
            self.journal
                .number_of(&m.id)
                .is_some_and(|number| number <= newest)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::message::{Draft, Hlc, Recipient};
    use rossip_proto::sign::NodeKey;

    fn message(seq: u64, channel: &str, ms: u64) -> Message {
        Message::signed(
            &NodeKey::for_testing(1),
            seq,
            "alpha".into(),
            Hlc { ms, logical: 0 },
            Draft::channel(channel, format!("m{seq}")),
        )
    }

    #[test]
    fn channels_are_counted_newest_activity_first_without_direct_messages() {
        let mut direct = Draft::channel("secret", "for you");
        direct.to = Some(Recipient {
            node: rossip_proto::NodeId([9; 16]),
            user: None,
        });
        let messages = [
            message(1, "general", 1_000),
            message(2, "ops", 2_000),
            message(3, "general", 3_000),
            message(4, "builds", 1_500),
            message(5, "ops", 2_500),
            message(6, "alerts", 3_000),
            Message::signed(
                &NodeKey::for_testing(1),
                7,
                "alpha".into(),
                Hlc {
                    ms: 9_000,
                    logical: 0,
                },
                direct,
            ),
        ];
        let summary = summarize(messages.iter());
        let shown: Vec<(&str, u64, u64)> = summary
            .iter()
            .map(|c| (c.name.as_str(), c.messages, c.last_ts))
            .collect();
        assert_eq!(
            shown,
            [
                ("alerts", 1, 3_000),
                ("general", 2, 3_000),
                ("ops", 2, 2_500),
                ("builds", 1, 1_500),
            ]
        );
        assert!(summarize(std::iter::empty()).is_empty());
    }
}
