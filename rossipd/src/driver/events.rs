//! What the driver does with each event the node produced, after the
//! flush committed it: subscribers get messages and member changes, `join`
//! callers their answer, keyring changes go to `keyring`.

use std::sync::Arc;

use rossip_proto::Event;
use rossip_proto::rpc::{EventBody, JoinResult};

use super::Driver;
use crate::views;

impl Driver {
    /// Hands one event to whoever waits for it.
    pub(super) fn on_event(&mut self, event: Event) {
        let body = match event {
            Event::Message(message) => {
                tracing::debug!(
                    msg = %message.id,
                    origin_name = %rossip_proto::log_text::LogText(&message.origin_name),
                    origin = %message.id.origin.short(),
                    "message delivered"
                );
                EventBody::Message {
                    message: self.message_view(&message),
                }
            }
            Event::Peer(change) => {
                let peer = self.peer_view(&change.member);
                tracing::info!(
                    peer = %rossip_proto::log_text::LogText(&change.member.name),
                    peer_id = %change.member.id.short(),
                    addr = %change.member.addr,
                    state = peer.state.as_str(),
                    previous = change.previous.map(|p| views::state_name(p).as_str()).unwrap_or("new"),
                    "member changed"
                );
                EventBody::Peer {
                    peer,
                    previous: change.previous.map(views::state_name),
                }
            }
            // Recorded (and logged) by `persist`; not an API event.
            Event::Lost(_) => return,
            Event::Keyring(event) => {
                self.on_keyring_event(event);
                return;
            }
            Event::IdentityInUse(conflict) => {
                self.on_identity_in_use(conflict);
                return;
            }
            Event::Contacted { from, id, name } => {
                let result = JoinResult {
                    id: id.to_string(),
                    name,
                    addr: from.to_string(),
                };
                let waiters = std::mem::take(&mut self.join_waiters);
                for waiter in waiters {
                    if waiter.addrs.contains(&from) {
                        let _ = waiter.reply.send(result.clone());
                    } else if !waiter.reply.is_closed() {
                        self.join_waiters.push(waiter);
                    }
                }
                return;
            }
        };
        // No receivers is fine: nobody is subscribed.
        let _ = self.events.send(Arc::new(body));
    }
}
