//! The driver's record of what this node delivered, by delivery cursor:
//! which message each number went to, while that message is in history,
//! and the newest deliveries whole, for followers to read.
//!
//! Followers (subscriptions, `tail -f`) do not get events pushed into
//! queues of their own: each keeps a position (the last number it sent)
//! and reads what comes after it, a page at a time, when its connection has
//! room. So a follower that stops reading costs the daemon nothing but its
//! position, and one that reads slowly falls behind only until the history
//! window drops what it has not read yet (then it is told exactly how many
//! it missed). Reads come from [`Journal::recent`] (the newest deliveries,
//! kept whole, including a message that arrived older than the window and
//! so left history at once) and, behind it, from the node's history.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use rossip_proto::message::OrderKey;
use rossip_proto::{Message, MessageId};
use tokio::sync::watch;

use crate::delivery::{Cursor, Delivered, StoreId};

/// Most deliveries kept whole in [`Journal::recent`].
pub const RECENT_DELIVERIES: usize = 8192;

/// Most bytes of deliveries kept whole (the newest is kept whatever its
/// size); behind this, followers read from history. Small: these are
/// copies of what history holds, kept while nobody may need them.
pub const RECENT_BYTES: usize = 4 * 1024 * 1024;

/// Index entries for messages that left history, tolerated before a sweep
/// removes them (a sweep walks the whole index).
const SWEEP_SLACK: usize = 4096;

/// What a read wants: which messages, and how much at most.
#[derive(Debug, Clone, Default)]
pub struct ReadFilter {
    /// Only this channel's messages.
    pub channel: Option<String>,
    /// Who reads: direct messages are shown only to the users they concern.
    pub viewer: Viewer,
    /// This node's id, which says whom a direct message concerns here (set
    /// by the driver; without it a [`Viewer::User`] sees no direct message).
    pub here: Option<rossip_proto::NodeId>,
}

/// Who reads, for the visibility of direct messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Viewer {
    /// Every message (root, and the daemon's own readers).
    #[default]
    Everyone,
    /// A local user: of direct messages, those the user sent from this
    /// node, and those this node received for the user (or for no one in
    /// particular).
    User(String),
}

impl ReadFilter {
    /// Whether `message` passes.
    pub fn wants(&self, message: &Message) -> bool {
        self.channel.as_deref().is_none_or(|c| c == message.channel) && self.may_see(message)
    }

    /// The filter read at node `here`.
    pub fn here(mut self, here: rossip_proto::NodeId) -> ReadFilter {
        self.here = Some(here);
        self
    }

    /// Whether the viewer may see `message` (every channel message; a
    /// direct message if it concerns the viewer).
    pub fn may_see(&self, message: &Message) -> bool {
        let Some(to) = &message.to else {
            return true;
        };
        match &self.viewer {
            Viewer::Everyone => true,
            Viewer::User(user) => self.here.is_some_and(|here| {
                (message.id.origin == here && message.author.user == *user)
                    || (to.node == here && to.user.as_ref().is_none_or(|u| u == user))
            }),
        }
    }
}

/// Where a read goes on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    /// Deliveries numbered after this one, in delivery order.
    After(u64),
    /// History order, within `lower` .. `until` (inclusive), of deliveries
    /// numbered at most `snapshot` (what was delivered when the read began:
    /// later ones come to a subscriber by number, and must not come twice).
    Ordered {
        /// Where the next page starts.
        lower: Bound<OrderKey>,
        /// The last key the read covers.
        until: OrderKey,
        /// The newest delivery the read covers.
        snapshot: u64,
    },
}

/// One page of a read.
#[derive(Debug, Default)]
pub struct ReadPage {
    /// The deliveries, in the read's order.
    pub deliveries: Vec<Arc<Delivered>>,
    /// Deliveries the read passed that are no longer here (they left the
    /// history window before they were read): a follower is told.
    pub dropped: u64,
    /// Where the next page starts; `None`: this read is complete (ordered
    /// reads end; a read by number never does, it waits for more).
    pub next: Option<ReadFrom>,
}

/// See the module docs. Owned by the driver.
///
/// A number is given when a flush delivers a message, and shown (made
/// readable) only once the store committed it: a number a follower saw is
/// durable, so a restart never gives it again. While the store fails,
/// numbered messages wait (in `unstored`) and followers wait with them.
#[derive(Debug)]
pub struct Journal {
    store: StoreId,
    /// The number given last (0: none yet).
    numbered: u64,
    /// The newest number shown to followers: reads end here.
    newest: u64,
    /// Deliveries whose message may still be in history: number → id.
    /// Entries of messages that left history are swept now and then.
    by_number: BTreeMap<u64, MessageId>,
    /// The same, id → number: which messages have a cursor yet (a message
    /// is in history before its flush numbers it).
    number_of: HashMap<MessageId, u64>,
    /// The newest deliveries, whole, oldest first.
    recent: VecDeque<Arc<Delivered>>,
    recent_bytes: usize,
    /// The newest number, for followers waiting for more.
    newest_tx: watch::Sender<u64>,
}

impl Journal {
    /// A journal for `store` whose next delivery is `next`.
    pub fn new(store: StoreId, next: u64) -> Journal {
        let newest = next.saturating_sub(1);
        Journal {
            store,
            numbered: newest,
            newest,
            by_number: BTreeMap::new(),
            number_of: HashMap::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
            newest_tx: watch::Sender::new(newest),
        }
    }

    /// Puts back the numbers of messages restored into history at start.
    pub fn restore(&mut self, numbered: impl IntoIterator<Item = (u64, MessageId)>) {
        for (number, id) in numbered {
            self.by_number.insert(number, id);
            self.number_of.insert(id, number);
        }
    }

    /// The store whose numbers these are.
    pub fn store(&self) -> StoreId {
        self.store
    }

    /// The cursor of delivery `number`.
    pub fn cursor(&self, number: u64) -> Cursor {
        Cursor {
            store: self.store,
            seq: number,
        }
    }

    /// The newest number shown to followers (0: none yet).
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Followers wait on this for deliveries past their position.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest_tx.subscribe()
    }

    /// The number of `id`, if it was shown here and is in history.
    pub fn number_of(&self, id: &MessageId) -> Option<u64> {
        self.number_of
            .get(id)
            .copied()
            .filter(|&number| number <= self.newest)
    }

    /// Gives `message` the next number (before it is committed, with it).
    pub fn number(&mut self, message: &Message) -> u64 {
        self.numbered += 1;
        self.by_number.insert(self.numbered, message.id);
        self.number_of.insert(message.id, self.numbered);
        self.numbered
    }

    /// Forgets numbers whose messages will never be committed (the store
    /// failed for too long): followers never see them, and count them as
    /// dropped when they read past them.
    pub fn forget(&mut self, numbers: &[u64]) {
        for number in numbers {
            if let Some(id) = self.by_number.remove(number) {
                self.number_of.remove(&id);
            }
        }
    }

    /// Makes a committed delivery readable, and wakes the followers.
    /// Deliveries come in number order.
    pub fn publish(&mut self, delivered: Arc<Delivered>) {
        self.newest = self.newest.max(delivered.cursor.seq);
        self.recent_bytes += delivered.size();
        self.recent.push_back(delivered);
        while self.recent.len() > 1
            && (self.recent.len() > RECENT_DELIVERIES || self.recent_bytes > RECENT_BYTES)
        {
            if let Some(old) = self.recent.pop_front() {
                self.recent_bytes -= old.size();
            }
        }
        self.newest_tx.send_replace(self.newest);
    }

    /// Forgets the numbers of messages no longer in history, once enough
    /// of them piled up; `held` says whether a message is still there.
    pub fn sweep(&mut self, history_len: usize, held: impl Fn(&MessageId) -> bool) {
        if self.by_number.len() <= history_len + SWEEP_SLACK {
            return;
        }
        self.by_number.retain(|_, id| held(id));
        self.number_of.retain(|id, _| held(id));
    }

    /// Up to `limit` deliveries (and about `max_bytes`) after number
    /// `after` that pass `filter`, in delivery order. `lookup` finds a
    /// message in history, with its name's trust.
    pub fn read_after(
        &self,
        after: u64,
        filter: &ReadFilter,
        limit: usize,
        max_bytes: usize,
        lookup: impl Fn(&MessageId, u64) -> Option<Delivered>,
    ) -> ReadPage {
        let mut page = ReadPage::default();
        let mut bytes = 0usize;
        let mut position = after;
        let first_recent = self.recent.front().map_or(u64::MAX, |d| d.cursor.seq);
        // Behind what `recent` holds: from history, by the index.
        let first_recent = first_recent.min(self.newest.saturating_add(1));
        if position.saturating_add(1) < first_recent {
            for (&number, id) in self.by_number.range(position + 1..first_recent) {
                if page.deliveries.len() >= limit || bytes >= max_bytes {
                    page.next = Some(ReadFrom::After(position));
                    return page;
                }
                // Numbers missing from the index left history (swept).
                page.dropped += number - position - 1;
                position = number;
                match lookup(id, number) {
                    Some(delivered) if filter.wants(&delivered.message) => {
                        bytes += delivered.size();
                        page.deliveries.push(Arc::new(delivered));
                    }
                    Some(_) => {}
                    None => page.dropped += 1,
                }
            }
            let end = first_recent.min(self.newest.saturating_add(1));
            page.dropped += end.saturating_sub(position + 1);
            position = end - 1;
        }
        let skip = self.recent.partition_point(|d| d.cursor.seq <= position);
        for delivered in self.recent.iter().skip(skip) {
            if page.deliveries.len() >= limit
                || bytes >= max_bytes
                || delivered.cursor.seq > self.newest
            {
                break;
            }
            position = delivered.cursor.seq;
            if filter.wants(&delivered.message) {
                bytes += delivered.size();
                page.deliveries.push(delivered.clone());
            }
        }
        page.next = Some(ReadFrom::After(position));
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::rpc::NameTrust;
    use rossip_proto::{Hlc, NodeId};

    fn message(seq: u64, channel: &str) -> Message {
        Message {
            id: MessageId {
                origin: NodeId([1; 16]),
                seq,
            },
            origin_name: "a".into(),
            ts: Hlc {
                ms: seq,
                logical: 0,
            },
            channel: channel.into(),
            text: format!("m{seq}"),
            author: Default::default(),
            to: None,
            auth: rossip_proto::message::Auth {
                key: rossip_proto::sign::PublicKey([0; 32]),
                sig: rossip_proto::sign::Signature::from_bytes(&[0; 64]),
                batch: None,
            },
        }
    }

    fn deliver(journal: &mut Journal, m: &Message) -> u64 {
        let number = journal.number(m);
        let cursor = journal.cursor(number);
        journal.publish(Arc::new(Delivered {
            cursor,
            message: m.clone(),
            name_trust: NameTrust::Unchecked,
        }));
        number
    }

    fn texts(page: &ReadPage) -> Vec<String> {
        page.deliveries
            .iter()
            .map(|d| d.message.text.clone())
            .collect()
    }

    #[test]
    fn reads_come_in_delivery_order_from_recent_and_history_and_count_what_left() {
        let mut journal = Journal::new(StoreId(7), 1);
        let messages: Vec<Message> = (1..=RECENT_DELIVERIES as u64 + 10)
            .map(|i| message(i, if i % 2 == 0 { "even" } else { "odd" }))
            .collect();
        for m in &messages {
            deliver(&mut journal, m);
        }
        // History holds all but messages 3 and 4.
        let lookup = |id: &MessageId, number: u64| {
            (id.seq != 3 && id.seq != 4).then(|| Delivered {
                cursor: Cursor {
                    store: StoreId(7),
                    seq: number,
                },
                message: messages[usize::try_from(id.seq - 1).expect("small")].clone(),
                name_trust: NameTrust::Unchecked,
            })
        };
        let all = ReadFilter::default();
        let page = journal.read_after(0, &all, 5, usize::MAX, lookup);
        assert_eq!(texts(&page), ["m1", "m2", "m5", "m6", "m7"]);
        assert_eq!(page.dropped, 2);
        assert_eq!(page.next, Some(ReadFrom::After(7)));
        let mut position = 7;
        let mut seen = 5;
        loop {
            let page = journal.read_after(position, &all, 1000, usize::MAX, lookup);
            assert_eq!(page.dropped, 0);
            seen += page.deliveries.len();
            let Some(ReadFrom::After(next)) = page.next else {
                panic!("reads by number go on")
            };
            if next == position {
                break;
            }
            position = next;
        }
        assert_eq!(seen, messages.len() - 2, "each once");
        let odd = ReadFilter {
            channel: Some("odd".into()),
            ..ReadFilter::default()
        };
        let page = journal.read_after(journal.newest() - 4, &odd, 100, usize::MAX, lookup);
        assert_eq!(page.deliveries.len(), 2, "filtered");
        assert_eq!(page.next, Some(ReadFrom::After(journal.newest())));
    }

    #[test]
    fn direct_messages_are_shown_only_to_the_users_they_concern() {
        let (a, b) = (NodeId([1; 16]), NodeId([2; 16]));
        let mut dm = message(1, "general");
        dm.author.user = "alice".into();
        dm.to = Some(rossip_proto::message::Recipient {
            node: b,
            user: Some("bob".into()),
        });
        let viewer = |user: &str, here: NodeId| {
            ReadFilter {
                viewer: Viewer::User(user.into()),
                ..ReadFilter::default()
            }
            .here(here)
        };
        // The sender's node is `a` (the test message's origin is [1; 16]).
        assert!(viewer("alice", a).wants(&dm), "its sender, at the origin");
        assert!(
            !viewer("mallory", a).wants(&dm),
            "another user at the origin"
        );
        assert!(viewer("bob", b).wants(&dm), "its recipient, at its node");
        assert!(
            !viewer("alice", b).wants(&dm),
            "an alice at the recipient's node"
        );
        assert!(
            !viewer("carol", b).wants(&dm),
            "another user at the recipient's node"
        );
        assert!(
            !viewer("bob", NodeId([3; 16])).wants(&dm),
            "anyone elsewhere"
        );
        let unplaced = ReadFilter {
            viewer: Viewer::User("alice".into()),
            ..ReadFilter::default()
        };
        assert!(!unplaced.wants(&dm), "nobody, until the driver says where");
        assert!(ReadFilter::default().wants(&dm), "root sees all");
        if let Some(to) = &mut dm.to {
            to.user = None;
        }
        assert!(
            viewer("carol", b).wants(&dm),
            "no user named: every user there"
        );
        assert!(
            viewer("carol", b).wants(&message(2, "general")),
            "channel messages: all"
        );
    }

    #[test]
    fn the_sweep_forgets_what_left_history() {
        let mut journal = Journal::new(StoreId(1), 1);
        for i in 1..=(SWEEP_SLACK as u64 + 20) {
            deliver(&mut journal, &message(i, "c"));
        }
        journal.sweep(10, |id| id.seq > SWEEP_SLACK as u64 + 10);
        assert_eq!(journal.by_number.len(), 10);
        assert_eq!(journal.number_of(&message(1, "c").id), None);
        assert_eq!(
            journal.number_of(&message(SWEEP_SLACK as u64 + 20, "c").id),
            Some(SWEEP_SLACK as u64 + 20)
        );
    }
}
