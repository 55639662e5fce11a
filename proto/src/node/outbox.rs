//! Batching of pushes: items queued during one input are packed into as few
//! datagrams as fit when the driver drains the node
//! ([`super::Node::poll_transmit`]), so a burst of small messages costs a
//! few datagrams instead of one per message and target.

use std::net::SocketAddr;
use std::time::Instant;

use rand::seq::SliceRandom;

use super::Node;
use crate::id::NodeId;
use crate::wire::{self, Body, Payload, Push};

/// Bytes of a push or repair body besides its items, at most: the body's
/// tag, the relay flag and the item count.
const BATCH_OVERHEAD: usize = 8;

/// The largest encoded message sent whole; larger ones travel as fragments.
pub(super) const WHOLE_LIMIT: usize = wire::MAX_BODY_BYTES - BATCH_OVERHEAD - 1;

/// Items waiting to be pushed, in order, grouped by who must not get them.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    groups: Vec<Group>,
}

/// How a group of items is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// This node's own messages: to every member of a small cluster
    /// (`relay: false`), else to `push_fanout` members who relay.
    Origin,
    /// Forwarding what arrived with `relay: true`.
    Relay,
}

#[derive(Debug)]
struct Group {
    route: Route,
    /// When the first item was queued: the origin's retransmission
    /// timeouts count from it (draining has no clock of its own).
    at: Instant,
    /// The sender and the origin: they have the items already.
    exclude: [NodeId; 2],
    items: Vec<Payload>,
}

impl Outbox {
    /// Queues `item`, produced at `at`, for members other than `exclude`.
    pub(super) fn add(&mut self, route: Route, exclude: [NodeId; 2], item: Payload, at: Instant) {
        match self.groups.last_mut() {
            Some(group) if group.route == route && group.exclude == exclude => {
                group.items.push(item);
            }
            _ => self.groups.push(Group {
                route,
                at,
                exclude,
                items: vec![item],
            }),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Encoded size of an item inside a batch.
pub(super) fn item_len(item: &Payload) -> usize {
    postcard::serialize_with_flavor::<_, postcard::ser_flavors::Size, usize>(
        item,
        postcard::ser_flavors::Size::default(),
    )
    .unwrap_or(usize::MAX)
}

/// Splits `items` into batches that each fit one datagram, keeping order.
pub(super) fn pack(items: Vec<Payload>) -> Vec<Vec<Payload>> {
    let budget = wire::MAX_BODY_BYTES - BATCH_OVERHEAD;
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for item in items {
        let len = item_len(&item);
        if !current.is_empty() && used + len > budget {
            batches.push(std::mem::take(&mut current));
            used = 0;
        }
        used += len;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

impl Node {
    /// Packs and sends everything queued for pushing.
    pub(super) fn flush_outbox(&mut self) {
        let groups = std::mem::take(&mut self.outbox.groups);
        for group in groups {
            let mut targets = self.members.active_targets(&group.exclude);
            let relay = group.route == Route::Relay
                || targets.len() > self.config.protocol.direct_push_limit;
            let chosen: Vec<SocketAddr> = if relay {
                let fanout = self.config.protocol.push_fanout.min(targets.len());
                let (chosen, _) = targets.partial_shuffle(&mut self.rng, fanout);
                chosen.iter().map(|(_, addr)| *addr).collect()
            } else {
                targets.iter().map(|(_, addr)| *addr).collect()
            };
            if chosen.is_empty() {
                continue;
            }
            if group.route == Route::Origin && !relay {
                // Pushed to every member once: each acknowledges, or gets
                // it again (see `acks`).
                self.track_direct_push(&targets, &group.items, group.at);
            }
            for items in pack(group.items) {
                let body = Body::Push(Push { relay, items });
                self.send_many(&chosen, &body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MessageId;
    use crate::message::{Hlc, MAX_CHANNEL_BYTES, MAX_NAME_BYTES, Message};

    fn message(seq: u64, text_len: usize) -> Message {
        Message {
            id: MessageId {
                origin: NodeId([0xff; 16]),
                seq: u64::MAX - seq,
            },
            origin_name: "é".repeat(MAX_NAME_BYTES / 2),
            ts: Hlc {
                ms: u64::MAX,
                logical: u32::MAX,
            },
            channel: "c".repeat(MAX_CHANNEL_BYTES),
            text: "x".repeat(text_len),
            author: Default::default(),
            to: None,
            auth: crate::message::Auth::for_tests(),
        }
    }

    #[test]
    fn batches_fit_one_datagram_and_keep_order() {
        let header = wire::Header {
            flags: 0,
            cluster: wire::ClusterId(0),
            sender: NodeId([0; 16]),
        };
        let items: Vec<Payload> = (0..200)
            .map(|i| Payload::Whole(message(i, 50 + (i as usize * 37) % 900)))
            .collect();
        let batches = pack(items.clone());
        assert!(batches.len() > 1 && batches.len() < 200);
        for batch in &batches {
            let body = Body::Push(Push {
                relay: true,
                items: batch.clone(),
            });
            wire::encode(&header, &body).expect("every batch fits a datagram");
        }
        let flat: Vec<Payload> = batches.into_iter().flatten().collect();
        assert_eq!(flat, items);
    }

    #[test]
    fn the_largest_whole_message_fits_alone() {
        let mut m = message(1, 0);
        let fixed = super::super::fragments::encoded_len(&m);
        m.text = "x".repeat(WHOLE_LIMIT - fixed - 3);
        assert!(super::super::fragments::encoded_len(&m) <= WHOLE_LIMIT);
        let header = wire::Header {
            flags: 0,
            cluster: wire::ClusterId(0),
            sender: NodeId([0; 16]),
        };
        let body = Body::Repair(vec![Payload::Whole(m)]);
        wire::encode(&header, &body).expect("fits");
    }
}
