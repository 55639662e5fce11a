//! The hello handshake that turns a discovered address into a member (for
//! hints within the bounds of `hints`), and the graceful leave.
//!
//! A leave notice goes directly (twice) to every member the leaver knows,
//! and each member that learns of it forwards it once to a few others, so a
//! node that lost the leaver's copies, or that the leaver did not know yet,
//! still shows it as `left`. foca's own "down" gossip spreads too, but
//! cannot say "left".

use std::net::SocketAddr;
use std::time::Instant;

use rand::seq::SliceRandom;

use super::timers::TimerKind;
use super::{Event, Node};
use crate::id::NodeId;
use crate::message::MAX_NAME_BYTES;
use crate::sign::Signature;
use crate::wire::{Body, Hello};

/// Past this many remembered hello targets, old entries are pruned.
const HELLO_MEMORY: usize = 256;

impl Node {
    /// Sends a hello request to `addr`, unless that is pointless (see
    /// [`Node::handle_contact`]).
    pub(super) fn contact(&mut self, addr: SocketAddr, now: Instant) {
        if self.left || addr == self.config.advertise_addr || self.members.is_active_addr(addr) {
            return;
        }
        let min_interval = self.config.protocol.hello_min_interval;
        if let Some(sent) = self.hello_sent.get(&addr)
            && now.saturating_duration_since(*sent) < min_interval
        {
            return;
        }
        self.send_hello(addr, now);
    }

    /// See [`Node::handle_hint`].
    pub(super) fn hint(&mut self, addr: SocketAddr, now: Instant) {
        if self.left || addr == self.config.advertise_addr || self.members.is_active_addr(addr) {
            return;
        }
        self.hints.add(addr, now);
        self.greet_due_hints(now);
    }

    /// Sends the hellos to hints that are due and within the hello rate,
    /// and sets the timer for the next ones.
    fn greet_due_hints(&mut self, now: Instant) {
        let members = &self.members;
        let due = self
            .hints
            .take_due(now, |addr| members.is_active_addr(addr));
        for addr in due {
            self.send_hello(addr, now);
        }
        if let Some(deadline) = self.hints.next_deadline(now)
            && self.hints.claim_timer(deadline)
        {
            self.timers.schedule(deadline, TimerKind::Hints(deadline));
        }
    }

    /// The hint timer set for `deadline` fired.
    pub(super) fn on_hints_timer(&mut self, deadline: Instant, now: Instant) {
        if self.hints.timer_fired(deadline) {
            self.greet_due_hints(now);
        }
    }

    /// Sends a hello request to `addr`.
    fn send_hello(&mut self, addr: SocketAddr, now: Instant) {
        if self.hello_sent.len() >= HELLO_MEMORY {
            let min_interval = self.config.protocol.hello_min_interval;
            self.hello_sent
                .retain(|_, sent| now.saturating_duration_since(*sent) < min_interval);
        }
        self.hello_sent.insert(addr, now);
        let hello = Hello {
            identity: self.swim.identity().clone(),
            ack: false,
            stamp_us: self.stamp_us(now),
        };
        self.send(addr, &Body::Hello(hello));
    }

    /// A hello arrived: answer a request, and make the sender a member (it
    /// just proved its gossip port answers). An answer also asks the peer for
    /// its member list, and is reported as [`Event::Contacted`].
    pub(super) fn on_hello(
        &mut self,
        from: SocketAddr,
        sender: NodeId,
        hello: Hello,
        now: Instant,
    ) {
        let Hello {
            identity,
            ack,
            stamp_us,
        } = hello;
        if identity.id != sender || identity.name.len() > MAX_NAME_BYTES {
            self.count_drop("invalid_hello");
            return;
        }
        // A node answers there: no longer a hint (if foca refuses it below,
        // mDNS brings it again).
        self.hints.verified(from);
        self.hints.verified(identity.addr);
        if !ack {
            let answer = Hello {
                identity: self.swim.identity().clone(),
                ack: true,
                stamp_us,
            };
            self.send(from, &Body::Hello(answer));
        }
        let mut result = self.swim.apply_alive(identity.clone());
        if ack && result.is_ok() {
            result = self.swim.announce(identity.clone());
        }
        if let Err(err) = result {
            tracing::debug!(
                peer = %crate::log_text::LogText(&identity.name),
                peer_id = %sender.short(),
                addr = %from,
                %err,
                "foca refused a hello's identity"
            );
            self.count_drop("swim_rejected");
        }
        self.after_swim(now);
        if ack {
            if let Some(rtt) = self.rtt_since(stamp_us, now) {
                self.members.set_rtt(sender, rtt);
            }
            self.events.push_back(Event::Contacted {
                from,
                id: identity.id,
                name: identity.name,
            });
        }
    }

    /// `sender` says its run `generation` leaves: it becomes `left` (and
    /// foca is told it is down, so probing stops and the news spreads).
    pub(super) fn on_leave(
        &mut self,
        sender: NodeId,
        generation: u64,
        sig: Signature,
        now: Instant,
    ) {
        if !self.leave_is_signed(sender, generation, &sig) {
            return;
        }
        self.mark_left(sender, generation, sig, now);
    }

    /// Whether `sig` is `id`'s own signature of its leave of `generation`.
    /// Counted as a drop if not (an unknown node's leave changes nothing
    /// either way, so it is dropped too).
    fn leave_is_signed(&mut self, id: NodeId, generation: u64, sig: &Signature) -> bool {
        let Some(key) = self.members.key_of(id) else {
            self.count_drop("leave_from_unknown");
            return false;
        };
        let bytes = crate::wire::leave_bytes(&id, generation);
        let signed = super::lock_verifier(&self.verifier).verify(
            &key,
            crate::sign::Domain::Leave,
            &bytes,
            sig,
        );
        if signed {
            true
        } else {
            self.count_drop("bad_signature");
            false
        }
    }

    /// `sender` forwarded that `id`'s run `generation` left. Only members
    /// are listened to: a stranger's claim could otherwise spread.
    pub(super) fn on_left_notice(
        &mut self,
        sender: NodeId,
        id: NodeId,
        generation: u64,
        sig: Signature,
        now: Instant,
    ) {
        if self.members.active_identity(sender).is_none() {
            self.count_drop("left_notice_from_non_member");
            return;
        }
        if id == self.config.id {
            // Only we say when we leave; foca settles our own liveness.
            self.count_drop("left_notice_about_self");
            return;
        }
        if !self.leave_is_signed(id, generation, &sig) {
            return;
        }
        self.mark_left(id, generation, sig, now);
    }

    /// Records that `id`'s run `generation` left. The first time, the news
    /// is forwarded to [`super::ProtocolConfig::left_forward_fanout`] random members (before foca's
    /// "down", which would make them show `failed`): every node forwards it
    /// at most once, so it reaches those that lost the leaver's own notices.
    fn mark_left(&mut self, id: NodeId, generation: u64, sig: Signature, now: Instant) {
        let (change, identity) = self.members.left(id, generation, now);
        if let Some(change) = change {
            self.presence_follow_member(&change);
            self.events.push_back(Event::Peer(change));
            let mut targets = self.members.active_targets(&[id]);
            let fanout = self.config.protocol.left_forward_fanout.min(targets.len());
            let (chosen, _) = targets.partial_shuffle(&mut self.rng, fanout);
            let chosen: Vec<SocketAddr> = chosen.iter().map(|(_, addr)| *addr).collect();
            let notice = Body::Left {
                id,
                generation,
                sig,
            };
            for addr in chosen {
                self.send(addr, &notice);
            }
        }
        if let Some(identity) = identity {
            if let Err(err) = self.swim.apply_down(identity) {
                tracing::debug!(
                    peer = self.members.get(&id).map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                    peer_id = %id.short(),
                    %err,
                    "foca refused a leave"
                );
                self.count_drop("swim_rejected");
            }
            self.after_swim(now);
        }
    }

    /// See [`Node::leave`].
    pub(super) fn leave_cluster(&mut self, now: Instant) -> usize {
        if self.left {
            return 0;
        }
        // What was published before goes out signed, ahead of the goodbye.
        self.sign_published();
        let targets = self.members.active_targets(&[]);
        let generation = self.swim.identity().generation;
        let notice = Body::Leave {
            generation,
            sig: self.config.key.sign(
                crate::sign::Domain::Leave,
                &crate::wire::leave_bytes(&self.config.id, generation),
            ),
        };
        for _ in 0..self.config.protocol.leave_copies {
            for (_, addr) in &targets {
                self.send(*addr, &notice);
            }
        }
        if let Err(err) = self.swim.leave() {
            tracing::debug!(%err, "foca could not gossip our leave");
        }
        // Marked before draining foca: its `Defunct` notification for our own
        // leave is expected, not a failure to warn about.
        self.left = true;
        self.after_swim(now);
        self.timers.clear();
        targets.len()
    }
}
