//! What the driver does with each event the node produced, after the
//! flush committed it: followers get messages (through the journal) and
//! member changes, `join` callers their answer, keyring changes go to
//! `keyring`.

use std::sync::Arc;

use rossip_proto::Event;

use super::{Driver, Joined, PeerChange};
use crate::delivery::Delivered;
use crate::views;

impl Driver {
    /// Makes a committed delivery readable by followers.
    pub(super) fn on_message(&mut self, delivery: Arc<Delivered>) {
        let message = &delivery.message;
        tracing::debug!(
            msg = %message.id,
            origin_name = %rossip_proto::log_text::LogText(&message.origin_name),
            origin = %message.id.origin.short(),
            cursor = %delivery.cursor,
            "message delivered"
        );
        self.journal.publish(delivery);
    }

    /// Hands one other event to whoever waits for it.
    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            // Numbered and published by the flush.
            Event::Message(_) => {}
            Event::Peer(change) => {
                tracing::info!(
                    peer = %rossip_proto::log_text::LogText(&change.member.name),
                    peer_id = %change.member.id.short(),
                    addr = %change.member.addr,
                    state = views::state_name(change.member.state).as_str(),
                    previous = change.previous.map(|p| views::state_name(p).as_str()).unwrap_or("new"),
                    "member changed"
                );
                let peer = self.peer_snapshot(change.member);
                // No receivers is fine: nobody is subscribed.
                let _ = self.peer_changes.send(Arc::new(PeerChange {
                    peer,
                    previous: change.previous,
                }));
            }
            // Recorded (and logged) by `persist`; not an API event.
            Event::Lost(_) => {}
            Event::Keyring(event) => self.on_keyring_event(event),
            Event::IdentityInUse(conflict) => self.on_identity_in_use(conflict),
            Event::Presence(change) => self.on_presence_change(change),
            Event::DirectStatus(status) => self.on_direct_status(status),
            Event::Contacted { from, id, name } => {
                let joined = Joined {
                    id,
                    name,
                    addr: from,
                };
                let waiters = std::mem::take(&mut self.join_waiters);
                for waiter in waiters {
                    if waiter.addrs.contains(&from) {
                        let _ = waiter.reply.send(joined.clone());
                    } else if !waiter.reply.is_closed() {
                        self.join_waiters.push(waiter);
                    }
                }
            }
        }
    }
}
