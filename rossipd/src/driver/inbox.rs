//! Membership datagrams before bulk data.
//!
//! On a saturated host the gossip socket's kernel queue holds seconds of
//! messages (a full-speed flood on a two-core machine queued up to 8 MB,
//! 6.6 s of work, in the membership benchmark), and a probe's answer or a
//! refutation that waits behind them looks like a dead peer: healthy nodes
//! were declared failed. So the driver reads the kernel's queue ahead,
//! handles membership datagrams at once ([`rossip_proto::wire::urgency`]),
//! and keeps bulk data here, to be handled [`super::RECV_BATCH`] at a time
//! between the other work of the loop. The kernel's queue stays short, so
//! it no longer overflows and drops membership datagrams with the rest;
//! when this queue is full, bulk datagrams are dropped instead (counted as
//! `inbox_full`; anti-entropy repairs what they carried).

use std::collections::VecDeque;
use std::net::SocketAddr;

/// Most bytes of bulk datagrams held: as much as the kernel buffer asked
/// for the socket (see `transport`), which a burst fits in.
pub(super) const MAX_BULK_BYTES: usize = 4 * 1024 * 1024;

/// Most datagrams read from the kernel in one turn of the loop: enough to
/// empty the queue of a busy turn, few enough that the turn stays short
/// (reading costs about a microsecond a datagram).
pub(super) const READ_AHEAD: usize = 2048;

/// A bulk datagram waiting to be handled.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) from: SocketAddr,
    pub(super) bytes: Vec<u8>,
}

/// Bulk datagrams read from the socket and not handled yet, oldest first.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    bulk: VecDeque<Queued>,
    bytes: usize,
    /// Bulk datagrams dropped because the queue was full.
    dropped: u64,
}

impl Inbox {
    /// Keeps a bulk datagram, or drops it (and counts it) when full.
    pub(super) fn push(&mut self, from: SocketAddr, bytes: &[u8]) {
        if self.bytes + bytes.len() > MAX_BULK_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += bytes.len();
        self.bulk.push_back(Queued {
            from,
            bytes: bytes.to_vec(),
        });
    }

    /// The oldest bulk datagram.
    pub(super) fn pop(&mut self) -> Option<Queued> {
        let queued = self.bulk.pop_front()?;
        self.bytes -= queued.bytes.len();
        if self.bulk.is_empty() {
            // A burst's worth of slots is not kept for an idle daemon.
            self.bulk.shrink_to(64);
        }
        Some(queued)
    }

    /// Whether bulk datagrams wait.
    pub(super) fn has_bulk(&self) -> bool {
        !self.bulk.is_empty()
    }

    /// Bulk datagrams dropped for want of room, so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_drops_past_its_byte_bound() {
        let from: SocketAddr = "192.0.2.1:7465".parse().expect("an address");
        let mut inbox = Inbox::default();
        let big = vec![7u8; MAX_BULK_BYTES / 2];
        inbox.push(from, &big);
        inbox.push(from, &[1]);
        inbox.push(from, &big);
        assert_eq!(inbox.dropped(), 1);
        assert_eq!(inbox.pop().map(|q| q.bytes.len()), Some(big.len()));
        assert_eq!(inbox.pop().map(|q| q.bytes), Some(vec![1]));
        assert!(!inbox.has_bulk());
        assert!(inbox.pop().is_none());
    }
}
