//! Publishing and eager push: a new message goes at once to `push_fanout`
//! random members, and every node that receives it first forwards it the
//! same way. De-duplication by id stops the flood; anti-entropy
//! (`anti_entropy`) repairs whatever pushes missed.

use std::net::SocketAddr;

use rand::seq::SliceRandom;

use super::{Event, Node, PublishError};
use crate::id::{MessageId, NodeId};
use crate::message::{MAX_NAME_BYTES, Message, validate_channel};
use crate::wire::{self, Body};

/// Whether a message from the network is one rossip could have produced.
fn is_valid(message: &Message) -> bool {
    message.id.seq >= 1
        && !message.text.is_empty()
        && message.text.len() <= wire::MAX_TEXT_BYTES
        && message.origin_name.len() <= MAX_NAME_BYTES
        && validate_channel(&message.channel).is_ok()
}

impl Node {
    /// See [`Node::publish`].
    pub(super) fn publish_message(
        &mut self,
        channel: &str,
        text: &str,
        wall_ms: u64,
    ) -> Result<Message, PublishError> {
        if self.left {
            return Err(PublishError::Left);
        }
        if text.is_empty() {
            return Err(PublishError::Empty);
        }
        validate_channel(channel)?;
        if text.len() > self.config.max_text_bytes {
            return Err(PublishError::TooLarge {
                size: text.len(),
                max: self.config.max_text_bytes,
            });
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let message = Message {
            id: MessageId {
                origin: self.config.id,
                seq,
            },
            origin_name: self.config.name.clone(),
            ts: self.clock.tick(wall_ms),
            channel: channel.to_owned(),
            text: text.to_owned(),
        };
        self.history.insert(message.clone());
        self.stats.messages_sent += 1;
        self.events.push_back(Event::Message(message.clone()));
        self.push(&message, &[]);
        Ok(message)
    }

    /// A message arrived, pushed (`forward`: pass it on) or repaired.
    pub(super) fn on_message(&mut self, sender: NodeId, message: Message, forward: bool) {
        if !is_valid(&message) {
            self.count_drop("invalid_message");
            return;
        }
        if self.history.is_seen(&message.id) {
            self.stats.duplicates += 1;
            return;
        }
        self.clock.observe(message.ts);
        self.history.insert(message.clone());
        self.stats.messages_received += 1;
        if forward {
            self.push(&message, &[sender, message.id.origin]);
        } else {
            self.repaired_since_round += 1;
        }
        self.events.push_back(Event::Message(message));
    }

    /// Sends `message` to `push_fanout` random alive or suspect members,
    /// except `excluded`.
    fn push(&mut self, message: &Message, excluded: &[NodeId]) {
        let mut targets = self.members.active_targets(excluded);
        let fanout = self.config.push_fanout.min(targets.len());
        let (chosen, _) = targets.partial_shuffle(&mut self.rng, fanout);
        let chosen: Vec<SocketAddr> = chosen.iter().map(|(_, addr)| *addr).collect();
        let body = Body::Push(message.clone());
        for addr in chosen {
            self.send(addr, &body);
        }
    }
}
