//! Reads of what this node delivered, a page at a time: `history`,
//! subscription replays and followers all go through [`Driver::start_read`]
//! and [`Driver::read`], so a long history never sits whole in memory and a
//! follower's position is a number, not a queue.

use std::ops::Bound;
use std::sync::Arc;

use rossip_proto::Message;
use rossip_proto::message::OrderKey;

use super::journal::{ReadFilter, ReadFrom, ReadPage};
use super::{CoreError, Driver, ReadStart, SincePoint, StartQuery};
use crate::delivery::Delivered;

impl Driver {
    /// Resolves where a read starts. An ordered read covers what was
    /// delivered until now (`snapshot`); what comes later, a subscriber
    /// gets by number after it, so nothing comes twice or falls between.
    pub(super) fn start_read(
        &self,
        query: &StartQuery,
        filter: &ReadFilter,
    ) -> Result<ReadStart, CoreError> {
        let snapshot = self.journal.newest();
        let start = |from| ReadStart {
            from,
            snapshot,
            cursor: self.journal.cursor(snapshot),
        };
        match query {
            StartQuery::After(cursor) => {
                if cursor.store != self.journal.store() {
                    return Err(CoreError::ForeignCursor {
                        given: *cursor,
                        here: self.journal.store(),
                    });
                }
                if cursor.seq > snapshot {
                    return Err(CoreError::CursorAhead {
                        given: *cursor,
                        newest: snapshot,
                    });
                }
                Ok(start(Some(ReadFrom::After(cursor.seq))))
            }
            StartQuery::Ordered { n, since } => {
                let mut lower = match since {
                    None => Bound::Unbounded,
                    Some(SincePoint::After(id)) => match self.any_message(id) {
                        Some(message) => Bound::Excluded(message.order_key()),
                        None => return Err(CoreError::UnknownMessage(*id)),
                    },
                    Some(SincePoint::From(ms)) => Bound::Included(OrderKey {
                        ts: rossip_proto::Hlc {
                            ms: *ms,
                            logical: 0,
                        },
                        origin: rossip_proto::NodeId([0; 16]),
                        seq: 0,
                    }),
                };
                let Some(until) = self.newest_key() else {
                    return Ok(start(None));
                };
                if let Some(n) = *n {
                    if n == 0 {
                        return Ok(start(None));
                    }
                    // The newest `n` that the read would return.
                    let nth = self
                        .all_messages_in((lower, Bound::Included(until)), true)
                        .filter(|m| self.readable(m, snapshot, filter))
                        .nth(n - 1);
                    if let Some(message) = nth {
                        lower = Bound::Included(message.order_key());
                    }
                }
                Ok(start(Some(ReadFrom::Ordered {
                    lower,
                    until,
                    snapshot,
                })))
            }
        }
    }

    /// Whether an ordered read shows `message`: delivered (numbered) by
    /// `snapshot`, and wanted.
    fn readable(&self, message: &Message, snapshot: u64, filter: &ReadFilter) -> bool {
        self.journal
            .number_of(&message.id)
            .is_some_and(|number| number <= snapshot)
            && filter.wants(message)
    }

    /// One page of a read.
    pub(super) fn read(
        &mut self,
        from: ReadFrom,
        filter: &ReadFilter,
        limit: usize,
        max_bytes: usize,
    ) -> ReadPage {
        let limit = limit.max(1);
        match from {
            ReadFrom::After(after) => {
                let node = &self.node;
                let direct = &self.direct;
                let pins = &self.pins;
                let journal = &self.journal;
                let page = journal.read_after(after, filter, limit, max_bytes, |id, number| {
                    let message = node.message(id).or_else(|| direct.get(id))?;
                    Some(Delivered {
                        cursor: journal.cursor(number),
                        message: message.clone(),
                        name_trust: pins.trust(&message.origin_name, &message.auth.key),
                    })
                });
                if page.dropped > 0 {
                    self.counters
                        .subscriber_drops
                        .fetch_add(page.dropped, std::sync::atomic::Ordering::Relaxed);
                }
                page
            }
            ReadFrom::Ordered {
                lower,
                until,
                snapshot,
            } => {
                let mut page = ReadPage::default();
                let mut bytes = 0usize;
                let mut last: Option<OrderKey> = None;
                for message in self.all_messages_in((lower, Bound::Included(until)), false) {
                    if page.deliveries.len() >= limit || bytes >= max_bytes {
                        page.next = last.map(|key| ReadFrom::Ordered {
                            lower: Bound::Excluded(key),
                            until,
                            snapshot,
                        });
                        return page;
                    }
                    last = Some(message.order_key());
                    if !self.readable(message, snapshot, filter) {
                        continue;
                    }
                    let Some(number) = self.journal.number_of(&message.id) else {
                        continue;
                    };
                    let delivered = Delivered {
                        cursor: self.journal.cursor(number),
                        message: message.clone(),
                        name_trust: self.pins.trust(&message.origin_name, &message.auth.key),
                    };
                    bytes += delivered.size();
                    page.deliveries.push(Arc::new(delivered));
                }
                page
            }
        }
    }
}
