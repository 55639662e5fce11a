//! A `history` answer written a page at a time: the driver hands out pages
//! of at most [`PAGE_MESSAGES`] messages, and the connection asks for the
//! next one only when its output has room, so a full window (100,000
//! messages) never sits in memory, whole or as one JSON text.

use std::fmt::Write as _;

use crate::delivery::Cursor;
use crate::driver::ReadStart;
use crate::driver::journal::{ReadFilter, ReadFrom, ReadPage};
use crate::views;

/// Messages per page asked of the driver.
pub const PAGE_MESSAGES: usize = 256;

/// About the most bytes of messages per page.
pub const PAGE_BYTES: usize = 256 * 1024;

/// A `history` read in progress.
#[derive(Debug)]
pub struct HistoryStream {
    /// The next page's position; `None`: done.
    from: Option<ReadFrom>,
    filter: ReadFilter,
    /// The newest delivery the read covers.
    snapshot: u64,
    /// The cursor the answer ends with: the last delivery it covers.
    end: Cursor,
    /// With `after` and `n`: messages still wanted.
    remaining: Option<usize>,
    /// Messages written so far.
    written: usize,
    /// Deliveries passed that had left history (reads by number).
    dropped: u64,
}

impl HistoryStream {
    /// A read from `start`; `first_n`: with `after`, how many at most.
    pub fn new(start: ReadStart, filter: ReadFilter, first_n: Option<usize>) -> HistoryStream {
        // A read by number covers what it passed; an ordered one, what was
        // delivered when it began.
        let end = match start.from {
            Some(ReadFrom::After(after)) => Cursor {
                store: start.cursor.store,
                seq: after,
            },
            _ => start.cursor,
        };
        HistoryStream {
            from: start.from,
            filter,
            snapshot: start.snapshot,
            end,
            remaining: first_n,
            written: 0,
            dropped: 0,
        }
    }

    /// Whether every page is written.
    pub fn is_done(&self) -> bool {
        self.from.is_none() || self.remaining == Some(0)
    }

    /// The request for the next page (`None`: done).
    pub fn next_request(&self) -> Option<(ReadFrom, ReadFilter, usize)> {
        if self.is_done() {
            return None;
        }
        let limit = self.remaining.unwrap_or(PAGE_MESSAGES).min(PAGE_MESSAGES);
        self.from
            .clone()
            .map(|from| (from, self.filter.clone(), limit))
    }

    /// The text that opens the result.
    pub fn opening() -> &'static str {
        "{\"messages\":["
    }

    /// Appends `page`'s messages to `out` and moves on.
    pub fn take_page(&mut self, page: ReadPage, out: &mut String) {
        let Some(from) = self.from.take() else {
            return;
        };
        let by_number = matches!(from, ReadFrom::After(_));
        if by_number {
            self.dropped += page.dropped;
        }
        for delivered in &page.deliveries {
            if by_number && delivered.cursor.seq > self.snapshot {
                // Delivered after the read began: past its end.
                self.end.seq = self.snapshot;
                return;
            }
            if self.written > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", super::encode(&views::message_view(delivered)));
            self.written += 1;
            if let Some(remaining) = &mut self.remaining {
                *remaining -= 1;
                if *remaining == 0 {
                    // A page: it ends at its last message.
                    self.end = delivered.cursor;
                    return;
                }
            }
        }
        self.from = match page.next {
            Some(ReadFrom::After(position)) if by_number => {
                self.end.seq = position.min(self.snapshot);
                let unchanged = from == ReadFrom::After(position);
                (position < self.snapshot && !unchanged).then_some(ReadFrom::After(position))
            }
            next => next,
        };
    }

    /// The text that closes the result.
    pub fn closing(&self) -> String {
        if self.dropped > 0 {
            format!(
                "],\"cursor\":\"{}\",\"dropped\":{}}}",
                self.end, self.dropped
            )
        } else {
            format!("],\"cursor\":\"{}\"}}", self.end)
        }
    }
}
