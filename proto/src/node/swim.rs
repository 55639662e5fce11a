//! The `foca` glue: our identity type, the LAN configuration, and turning
//! foca's runtime outputs into datagrams, timers and member-table changes.
//!
//! foca runs the SWIM protocol (probe, indirect probe, suspicion, refutation
//! by incarnation, gossip piggybacked on probes). We drive it with its
//! [`foca::AccumulatingRuntime`] and drain that after every call: its
//! sends become [`wire::Body::Swim`] datagrams, its timers go into the node's
//! timer queue, and its notifications update the member table.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Codec, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec};
use rand::rngs::StdRng;

use super::timers::TimerKind;
use super::{Node, ProtocolConfig};
use crate::id::NodeId;
use crate::sign::Verifier;
use crate::wire::{self, Identity, RunRef, SwimIdentity};

/// foca's own packet limit: what remains of a datagram after our header and
/// the `Swim` body's tag and length prefix (with a few bytes of slack).
const SWIM_MAX_PACKET_BYTES: usize = wire::MAX_BODY_BYTES - 8;

/// foca's configuration from the node's [`ProtocolConfig`]; failed and
/// left members are forgotten after `reap_after`. Counts of zero (which
/// foca cannot take) are read as one.
fn foca_config(protocol: &ProtocolConfig, reap_after: Duration) -> foca::Config {
    let at_least_one = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
    foca::Config {
        probe_period: protocol.probe_period,
        probe_rtt: protocol.probe_rtt,
        num_indirect_probes: at_least_one(protocol.indirect_probes),
        max_transmissions: NonZeroU8::new(protocol.gossip_transmissions).unwrap_or(NonZeroU8::MIN),
        suspect_to_down_after: protocol.suspect_to_down_after,
        remove_down_after: Some(reap_after),
        max_packet_size: NonZeroUsize::MIN.saturating_add(SWIM_MAX_PACKET_BYTES - 1),
        notify_down_members: true,
        periodic_announce: Some(foca::PeriodicParams {
            frequency: protocol.periodic_announce_interval,
            num_members: at_least_one(protocol.periodic_announce_fanout),
        }),
        periodic_announce_to_down_members: Some(foca::PeriodicParams {
            frequency: protocol.periodic_announce_down_interval,
            num_members: at_least_one(protocol.periodic_announce_down_fanout),
        }),
        periodic_gossip: Some(foca::PeriodicParams {
            frequency: protocol.periodic_gossip_interval,
            num_members: at_least_one(protocol.periodic_gossip_fanout),
        }),
    }
}

impl foca::Identity for Identity {
    /// Members are keyed by node id: two identities of one node are two runs
    /// of it, and only one can be current.
    type Addr = NodeId;

    /// A node declared failed while still running comes back as the next
    /// generation (foca then announces it), instead of staying out.
    fn renew(&self) -> Option<Self> {
        // Signed anew: the generation is part of what the node signs.
        self.renewed()
    }

    fn addr(&self) -> NodeId {
        self.id
    }

    /// The higher generation is the later run and wins. Equal generations
    /// with different details should not happen (one run, one identity);
    /// comparing the rest keeps the choice deterministic anyway.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.addr, &self.name)
            > (adversary.generation, &adversary.addr, &adversary.name)
    }
}

/// When the last immediate gossip went out, and whether one waits for the
/// end of [`ProtocolConfig::immediate_gossip_min_interval`].
#[derive(Debug, Default)]
pub(super) struct GossipPacing {
    last: Option<Instant>,
    deferred: bool,
}

/// What the codec foca owns shares with [`Swim`].
#[derive(Debug)]
struct CodecShared {
    /// Members foca encoded since the last [`Swim::take_changed`].
    encoded: Vec<foca::Member<Identity>>,
    /// Our current identity (foca's, refreshed after every call).
    own: Identity,
    /// Identities with our id at another address that arrived in SWIM
    /// updates since the last [`Swim::take_elsewhere`] (at most
    /// [`MAX_ELSEWHERE`]).
    elsewhere: Vec<Identity>,
    /// The identity of every other member foca holds, by id: what a
    /// reference ([`SwimIdentity::Known`]) in a packet resolves to. foca
    /// has no lookup by id, so the codec keeps this index of what foca
    /// encoded (every change foca applies is encoded, see
    /// [`RecordingCodec`]); members foca forgets are removed
    /// ([`Swim::forget`]), so it is as large as foca's member list.
    directory: BTreeMap<NodeId, Identity>,
    /// Members that addressed a packet to our current run, so hold our
    /// identity: (their generation, ours at the time). Our identity goes by
    /// reference to them, whole to everyone else.
    holds_ours: BTreeMap<NodeId, (u64, u64)>,
    /// Whether the packet being encoded is a feed (an answer to a node
    /// that announced itself, which may know no one): its members go
    /// whole.
    feeding: bool,
    /// References the last packet decoded named that this node does not
    /// hold (at most [`MAX_UNRESOLVED`]), for [`Swim::take_unresolved`].
    unresolved: Vec<Unresolved>,
    /// Whether the last packet decoded was refused because its header
    /// named a run this node does not hold.
    header_unresolved: bool,
}

/// Identities of our id at other addresses held between two drains: one
/// is enough to act on; the bound keeps a hostile packet from growing it.
const MAX_ELSEWHERE: usize = 4;

/// Unresolved references kept from one packet (a full packet of
/// references holds about 70).
const MAX_UNRESOLVED: usize = 128;

/// A run a SWIM packet named by reference that this node does not hold,
/// and the update about it the packet carried (`None`: it was named in
/// the header, which was refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unresolved {
    pub(super) run: RunRef,
    pub(super) update: Option<(foca::Incarnation, foca::State)>,
}

type Shared = Arc<Mutex<CodecShared>>;

impl CodecShared {
    /// The identity `run` names, if this node holds it: its own current
    /// one or a member's (never one of another run).
    fn resolve(&self, run: &RunRef) -> Option<Identity> {
        if run.id == self.own.id {
            return (run.generation == self.own.generation).then(|| self.own_copy());
        }
        self.directory
            .get(&run.id)
            .filter(|identity| identity.generation == run.generation)
            .cloned()
    }

    /// Our identity as a decoded copy (without the key that renews it).
    fn own_copy(&self) -> Identity {
        Identity {
            own_key: crate::sign::OwnKey::default(),
            ..self.own.clone()
        }
    }

    fn note_unresolved(&mut self, unresolved: Unresolved) {
        if self.unresolved.len() < MAX_UNRESOLVED {
            self.unresolved.push(unresolved);
        }
    }

    /// A header's identity: checked if whole, resolved if a reference (an
    /// unknown reference refuses the packet and is noted).
    fn header_identity(
        &mut self,
        identity: SwimIdentity,
        verifier: &mut Verifier,
    ) -> Result<Identity, <PostcardCodec as Codec<Identity>>::Error> {
        match identity {
            SwimIdentity::Full(identity) => {
                check_identity(&identity, verifier)?;
                Ok(identity)
            }
            SwimIdentity::Known(run) => self.resolve(&run).ok_or_else(|| {
                self.header_unresolved = true;
                self.note_unresolved(Unresolved { run, update: None });
                postcard::Error::SerdeDeCustom
            }),
        }
    }

    /// The receiver named in a header: our identity, or a stand-in with the
    /// id and generation named (foca only compares it with its own, and
    /// drops it: a packet for another node or another run of ours is
    /// ignored, except an announce to any run of ours).
    fn receiver(
        &self,
        identity: SwimIdentity,
        verifier: &mut Verifier,
    ) -> Result<Identity, <PostcardCodec as Codec<Identity>>::Error> {
        match identity {
            SwimIdentity::Full(identity) => {
                check_identity(&identity, verifier)?;
                Ok(identity)
            }
            SwimIdentity::Known(run) => Ok(self.resolve(&run).unwrap_or_else(|| Identity {
                id: run.id,
                generation: run.generation,
                ..self.own_copy()
            })),
        }
    }
}

/// foca's message with each identity it names mapped by `map`.
fn map_message<A, B, E>(
    message: foca::Message<A>,
    mut map: impl FnMut(A) -> Result<B, E>,
) -> Result<foca::Message<B>, E> {
    use foca::Message as M;
    Ok(match message {
        M::Ping(n) => M::Ping(n),
        M::Ack(n) => M::Ack(n),
        M::PingReq {
            target,
            probe_number,
        } => M::PingReq {
            target: map(target)?,
            probe_number,
        },
        M::IndirectPing {
            origin,
            probe_number,
        } => M::IndirectPing {
            origin: map(origin)?,
            probe_number,
        },
        M::IndirectAck {
            target,
            probe_number,
        } => M::IndirectAck {
            target: map(target)?,
            probe_number,
        },
        M::ForwardedAck {
            origin,
            probe_number,
        } => M::ForwardedAck {
            origin: map(origin)?,
            probe_number,
        },
        M::Announce => M::Announce,
        M::Feed => M::Feed,
        M::Gossip => M::Gossip,
        M::Broadcast => M::Broadcast,
        M::TurnUndead => M::TurnUndead,
    })
}

/// foca's postcard codec, with identities sent by reference where the
/// receiver holds them ([`SwimIdentity`]), that also records every member
/// foca encodes, and keeps identities of our own id at other addresses
/// away from foca.
///
/// Why references: a signed identity is ~130 bytes, and a SWIM packet names
/// two to three members in its header and one per piggybacked update; sent
/// whole, identities were most of a 1,000-node cluster's idle traffic. The
/// receiver is named by reference (it knows itself), the sender whole until
/// the receiver addressed a packet to its current run, probe targets and
/// gossiped updates by reference, a feed's members whole. A reference this
/// node does not hold refuses the packet if it is in the header, and is
/// ignored if it is an update; either way it is noted, and the node pulls
/// the identity from the sender ([`wire::Body::IdentityRequest`]).
///
/// Why record: foca notifies up, down and renames, but not suspicion or
/// incarnation changes, and finding those by scanning its whole member list
/// after every datagram costs O(members) per input (most of the run time of
/// a 1,000-node simulation). But foca encodes each change it applies to
/// another member, to gossip it — with broadcasting on, as every call in
/// this module asks — and a feed encodes members as they are. So the
/// members encoded during a call include every one whose state changed,
/// each with its state after the change: the work is proportional to what
/// the call did.
///
/// Why keep our id away: foca declares down any identity with its own id
/// that is not its own, and gossips that; if that identity is another live
/// copy of this node (a copied state directory), the copy renews itself and
/// the two go on forever (see `identity_conflict`). Such an update is
/// recorded for [`Node::check_own_identity`] and handed to foca as our own
/// identity, alive at incarnation 0, which foca ignores.
///
/// foca owns its codec and has no accessor for it, hence the shared state
/// (a `Mutex` and not a `RefCell`, so that `Node` stays `Send`; it is never
/// contended).
///
/// It also checks the signature of every whole identity it decodes, with
/// the node's [`Verifier`] (references resolve only to identities checked
/// when they arrived).
struct RecordingCodec {
    shared: Shared,
    verifier: SharedVerifier,
}

/// The node's memo of verified signatures, lent to the codec foca owns:
/// see [`Node`]'s `verifier`.
pub(super) type SharedVerifier = Arc<Mutex<Verifier>>;

/// Locks the node's verifier (never contended: one node, one thread; a
/// `Mutex` only so that `Node` stays `Send`).
pub(super) fn lock_verifier(verifier: &SharedVerifier) -> std::sync::MutexGuard<'_, Verifier> {
    verifier.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks `identity`'s signature; refused as foca's codec error, which
/// foca reports and the node counts as `swim_rejected` (as any packet
/// foca refuses).
fn check_identity(
    identity: &Identity,
    verifier: &mut Verifier,
) -> Result<(), <PostcardCodec as Codec<Identity>>::Error> {
    identity
        .verify(verifier)
        .map_err(|_| postcard::Error::SerdeDeCustom)
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, CodecShared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Codec<Identity> for RecordingCodec {
    type Error = <PostcardCodec as Codec<Identity>>::Error;

    fn encode_header(
        &mut self,
        header: &foca::Header<Identity>,
        buf: impl bytes::BufMut,
    ) -> Result<(), Self::Error> {
        let mut shared = lock(&self.shared);
        shared.feeding = header.message == foca::Message::Feed;
        let dst = &header.dst;
        // An announce goes to a node that may not know us at all.
        let src = if header.message != foca::Message::Announce
            && shared.holds_ours.get(&dst.id) == Some(&(dst.generation, header.src.generation))
        {
            SwimIdentity::Known(header.src.run())
        } else {
            SwimIdentity::Full(header.src.clone())
        };
        drop(shared);
        let wire = foca::Header {
            src,
            src_incarnation: header.src_incarnation,
            dst: SwimIdentity::Known(dst.run()),
            message: map_message(header.message.clone(), |identity: Identity| {
                Ok::<_, Self::Error>(SwimIdentity::Known(identity.run()))
            })?,
        };
        PostcardCodec.encode_header(&wire, buf)
    }

    fn decode_header(
        &mut self,
        buf: impl bytes::Buf,
    ) -> Result<foca::Header<Identity>, Self::Error> {
        let wire: foca::Header<SwimIdentity> = PostcardCodec.decode_header(buf)?;
        let mut verifier = lock_verifier(&self.verifier);
        let mut shared = lock(&self.shared);
        shared.unresolved.clear();
        shared.header_unresolved = false;
        let src = shared.header_identity(wire.src, &mut verifier)?;
        let dst = shared.receiver(wire.dst, &mut verifier)?;
        let message = map_message(wire.message, |identity| {
            shared.header_identity(identity, &mut verifier)
        })?;
        if dst.id == shared.own.id && dst.generation == shared.own.generation {
            let ours = shared.own.generation;
            shared.holds_ours.insert(src.id, (src.generation, ours));
        }
        drop(shared);
        drop(verifier);
        Ok(foca::Header {
            src,
            src_incarnation: wire.src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &foca::Member<Identity>,
        buf: impl bytes::BufMut,
    ) -> Result<(), Self::Error> {
        let mut shared = lock(&self.shared);
        shared.encoded.push(member.clone());
        let identity = member.id();
        if identity.id != shared.own.id {
            shared.directory.insert(identity.id, identity.clone());
        }
        let wire_identity = if shared.feeding {
            SwimIdentity::Full(identity.clone())
        } else {
            SwimIdentity::Known(identity.run())
        };
        drop(shared);
        let wire = foca::Member::new(wire_identity, member.incarnation(), member.state());
        PostcardCodec.encode_member(&wire, buf)
    }

    fn decode_member(
        &mut self,
        buf: impl bytes::Buf,
    ) -> Result<foca::Member<Identity>, Self::Error> {
        let wire: foca::Member<SwimIdentity> = PostcardCodec.decode_member(buf)?;
        let (incarnation, state) = (wire.incarnation(), wire.state());
        let mut shared = lock(&self.shared);
        let identity = match wire.id().clone() {
            SwimIdentity::Full(identity) => {
                check_identity(&identity, &mut lock_verifier(&self.verifier))?;
                identity
            }
            SwimIdentity::Known(run) => match shared.resolve(&run) {
                Some(identity) => identity,
                None => {
                    // Pulled from the sender, then applied with this update.
                    shared.note_unresolved(Unresolved {
                        run,
                        update: Some((incarnation, state)),
                    });
                    return Ok(foca::Member::new(shared.own.clone(), 0, foca::State::Alive));
                }
            },
        };
        if identity.id != shared.own.id || identity.addr == shared.own.addr {
            return Ok(foca::Member::new(identity, incarnation, state));
        }
        if shared.elsewhere.len() < MAX_ELSEWHERE {
            shared.elsewhere.push(identity.clone());
        }
        Ok(foca::Member::new(shared.own.clone(), 0, foca::State::Alive))
    }
}

/// A foca instance and the runtime that accumulates its outputs.
pub(super) struct Swim {
    foca: Foca<Identity, RecordingCodec, StdRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<Identity>,
    /// What the codec recorded, and our identity as it knows it.
    shared: Shared,
}

impl Swim {
    pub(super) fn new(
        identity: Identity,
        rng: StdRng,
        protocol: &ProtocolConfig,
        reap_after: Duration,
        verifier: SharedVerifier,
    ) -> Self {
        let shared = Arc::new(Mutex::new(CodecShared {
            encoded: Vec::new(),
            own: identity.clone(),
            elsewhere: Vec::new(),
            directory: BTreeMap::new(),
            holds_ours: BTreeMap::new(),
            feeding: false,
            unresolved: Vec::new(),
            header_unresolved: false,
        }));
        let codec = RecordingCodec {
            shared: Arc::clone(&shared),
            verifier,
        };
        Swim {
            foca: Foca::new(identity, foca_config(protocol, reap_after), rng, codec),
            runtime: AccumulatingRuntime::new(),
            shared,
        }
    }

    /// The members whose state or incarnation may have changed since the
    /// last call, each with foca's current view of it (the last one foca
    /// encoded: every change is encoded once applied, see
    /// [`RecordingCodec`]), one per node id, by id.
    /// Also tells the codec our identity, if foca renewed it.
    fn take_changed(&mut self) -> BTreeMap<crate::id::NodeId, foca::Member<Identity>> {
        let mut shared = lock(&self.shared);
        if shared.own.generation != self.foca.identity().generation {
            shared.own = self.foca.identity().clone();
        }
        shared.feeding = false;
        let encoded = std::mem::take(&mut shared.encoded);
        drop(shared);
        encoded
            .into_iter()
            .map(|member| (member.id().id, member))
            .collect()
    }

    /// Identities of our id at other addresses that SWIM updates carried
    /// since the last call (kept from foca: see [`RecordingCodec`]).
    fn take_elsewhere(&mut self) -> Vec<Identity> {
        std::mem::take(&mut lock(&self.shared).elsewhere)
    }

    /// The references the last packet handled named that this node does
    /// not hold, and whether one of them refused the packet (it was in the
    /// header).
    pub(super) fn take_unresolved(&mut self) -> (Vec<Unresolved>, bool) {
        let mut shared = lock(&self.shared);
        let header = std::mem::take(&mut shared.header_unresolved);
        (std::mem::take(&mut shared.unresolved), header)
    }

    /// The identity of member `id` foca holds (any state), or ours.
    pub(super) fn identity_of(&self, id: &NodeId) -> Option<Identity> {
        let shared = lock(&self.shared);
        if *id == shared.own.id {
            return Some(shared.own_copy());
        }
        shared.directory.get(id).cloned()
    }

    /// foca forgot `identity` (reaped after it was down or left).
    fn forget(&mut self, identity: &Identity) {
        let mut shared = lock(&self.shared);
        if shared
            .directory
            .get(&identity.id)
            .is_some_and(|known| known.generation == identity.generation)
        {
            shared.directory.remove(&identity.id);
            shared.holds_ours.remove(&identity.id);
        }
    }

    /// Applies members (identities pulled, with the updates that named
    /// them), as if gossiped.
    pub(super) fn apply_members(
        &mut self,
        members: Vec<foca::Member<Identity>>,
    ) -> Result<(), foca::Error> {
        self.foca
            .apply_many(members.into_iter(), true, &mut self.runtime)
    }

    /// Our current identity (foca may have renewed it).
    pub(super) fn identity(&self) -> &Identity {
        self.foca.identity()
    }

    pub(super) fn handle_data(&mut self, data: &[u8]) -> Result<(), foca::Error> {
        self.foca.handle_data(data, &mut self.runtime)
    }

    pub(super) fn handle_timer(&mut self, timer: foca::Timer<Identity>) -> Result<(), foca::Error> {
        self.foca.handle_timer(timer, &mut self.runtime)
    }

    /// Records `identity` as alive: a node that answered on the gossip port.
    pub(super) fn apply_alive(&mut self, identity: Identity) -> Result<(), foca::Error> {
        self.foca.apply_many(
            std::iter::once(foca::Member::alive(identity)),
            true,
            &mut self.runtime,
        )
    }

    /// Records `identities` as alive, as if gossiped (a member-sync answer):
    /// foca keeps whichever run and state wins, and gossips what is news.
    pub(super) fn apply_alive_many(
        &mut self,
        identities: Vec<Identity>,
    ) -> Result<(), foca::Error> {
        self.foca.apply_many(
            identities.into_iter().map(foca::Member::alive),
            true,
            &mut self.runtime,
        )
    }

    /// Records `identity` as down (it left) and gossips that on.
    pub(super) fn apply_down(&mut self, identity: Identity) -> Result<(), foca::Error> {
        self.foca.apply_many(
            std::iter::once(foca::Member::down(identity)),
            true,
            &mut self.runtime,
        )
    }

    /// Asks `identity` for its member list.
    pub(super) fn announce(&mut self, identity: Identity) -> Result<(), foca::Error> {
        self.foca.announce(identity, &mut self.runtime)
    }

    /// Someone suspects our incarnation `incarnation`: refute (foca raises
    /// its incarnation if that is the current one, and gossips).
    pub(super) fn refute(&mut self, incarnation: foca::Incarnation) -> Result<(), foca::Error> {
        let suspected =
            foca::Member::new(self.identity().clone(), incarnation, foca::State::Suspect);
        self.foca
            .apply_many(std::iter::once(suspected), true, &mut self.runtime)
    }

    /// Sends pending membership updates to a few random members now.
    pub(super) fn gossip(&mut self) -> Result<(), foca::Error> {
        self.foca.gossip(&mut self.runtime)
    }

    pub(super) fn leave(&mut self) -> Result<(), foca::Error> {
        self.foca.leave_cluster(&mut self.runtime)
    }

    /// Whether foca holds `identity` as suspect at `incarnation` (so a
    /// nudge about that suspicion is still worth sending).
    pub(super) fn is_suspect_at(
        &self,
        identity: &Identity,
        incarnation: foca::Incarnation,
    ) -> bool {
        self.foca.iter_membership_state().any(|member| {
            member.id() == identity
                && member.state() == foca::State::Suspect
                && member.incarnation() == incarnation
        })
    }
}

impl Node {
    /// A SWIM packet arrived from `sender` (as its header says) at `from`.
    pub(super) fn on_swim(
        &mut self,
        sender: NodeId,
        from: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) {
        if self.identity_conflict.is_reported() {
            // Our id belongs to another node now; until the driver gives us
            // a new one, SWIM would only tell us, again and again, that it
            // is down (and foca would renew it each time).
            self.count_drop("identity_in_use");
            return;
        }
        self.tell_if_identity_elsewhere(sender, from, now);
        let result = self.swim.handle_data(payload);
        let (unresolved, header_unresolved) = self.swim.take_unresolved();
        if result.is_err() && header_unresolved {
            // Not a bad packet: it named a run we do not hold yet.
            self.count_drop("swim_unknown_identity");
        } else if let Err(err) = result {
            tracing::debug!(
                peer = self.members.get(&sender).map(|m| tracing::field::display(crate::log_text::LogText(&m.name))),
                peer_id = %sender.short(),
                addr = %from,
                %err,
                "foca rejected a packet"
            );
            self.count_drop("swim_rejected");
        }
        self.pull_identities(sender, from, unresolved, now);
        self.after_swim(now);
    }

    /// A foca timer fired.
    pub(super) fn on_swim_timer(&mut self, timer: foca::Timer<Identity>, now: Instant) {
        let forget = match &timer {
            foca::Timer::RemoveDown(identity) => Some(identity.clone()),
            _ => None,
        };
        // A suspect still heard from gets more time instead of a "down".
        let Some(timer) = self.confirm_down(timer, now) else {
            return;
        };
        if let Err(err) = self.swim.handle_timer(timer) {
            // foca recovers by itself (e.g. an incomplete probe cycle); the
            // error is only a diagnostic.
            tracing::debug!(%err, "foca timer reported an error");
        }
        if let Some(identity) = forget {
            self.swim.forget(&identity);
            self.members.forget(&identity);
        }
        self.after_swim(now);
    }

    /// Drains foca's runtime: datagrams, timers, membership notifications;
    /// then picks up suspicion changes (foca does not notify those) and
    /// schedules anti-entropy with members that just came up: at once if
    /// this node was alone (it just joined and has everything to catch up
    /// on), else as the targets of the next periodic rounds.
    pub(super) fn after_swim(&mut self, now: Instant) {
        let was_alone = !self.members.has_active();
        let mut came_up = Vec::new();
        let mut changed = false;
        loop {
            if let Some((to, data)) = self.swim.runtime.to_send() {
                self.send(to.addr, &wire::Body::Swim(data.to_vec()));
            } else if let Some((after, timer)) = self.swim.runtime.to_schedule() {
                if let foca::Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    ..
                } = &timer
                {
                    // foca schedules this only on the member whose probe
                    // failed: that one tells the suspect.
                    self.watch_suspect(member_id.clone(), *incarnation, now);
                }
                // A node that runs behind waits longer before it decides
                // that a peer is silent (see `health`).
                let lag = self.health.lag(now, &self.config.protocol);
                let stretch = super::health::stretch(&timer, lag, &self.config.protocol);
                if !stretch.is_zero() {
                    self.stats.detector_waits_stretched += 1;
                }
                self.timers
                    .schedule(now + after + stretch, TimerKind::Swim(timer));
            } else if let Some(notification) = self.swim.runtime.to_notify() {
                changed |= self.on_notification(notification, now, &mut came_up);
            } else if changed && !self.left && self.may_gossip_now(now) {
                // Spread a change at once rather than at the next periodic
                // gossip: a failure or a leave reaches everyone in a few
                // hops of a LAN round trip each.
                changed = false;
                if let Err(err) = self.swim.gossip() {
                    tracing::debug!(%err, "foca could not gossip");
                }
            } else {
                break;
            }
        }
        self.sync_suspicion(now);
        for identity in self.swim.take_elsewhere() {
            self.check_own_identity(&identity);
        }
        if !came_up.is_empty() {
            self.member_sync_on_growth(now);
        }
        for (_, addr) in &came_up {
            self.presence_greet(*addr);
        }
        let mut came_up = came_up.into_iter();
        if was_alone && let Some((_, addr)) = came_up.next() {
            self.send_digest(addr, now);
        }
        for (id, _) in came_up {
            self.sync_soon(id);
        }
    }

    /// Whether an immediate gossip may go out now (and records it). If not,
    /// one is scheduled for when the interval is up, so a change is never
    /// left to the slower periodic gossip.
    fn may_gossip_now(&mut self, now: Instant) -> bool {
        let min_interval = self.config.protocol.immediate_gossip_min_interval;
        if let Some(at) = self.gossip_pacing.last
            && now.saturating_duration_since(at) < min_interval
        {
            if !self.gossip_pacing.deferred {
                self.gossip_pacing.deferred = true;
                self.timers
                    .schedule(at + min_interval, TimerKind::DeferredGossip);
            }
            return false;
        }
        self.gossip_pacing.last = Some(now);
        true
    }

    /// The deferred immediate gossip is due.
    pub(super) fn on_deferred_gossip(&mut self, now: Instant) {
        self.gossip_pacing.deferred = false;
        self.gossip_pacing.last = Some(now);
        if let Err(err) = self.swim.gossip() {
            tracing::debug!(%err, "foca could not gossip");
        }
        self.after_swim(now);
    }

    /// Applies one foca notification to the member table; returns whether a
    /// member's liveness changed (news worth gossiping at once).
    fn on_notification(
        &mut self,
        notification: OwnedNotification<Identity>,
        now: Instant,
        came_up: &mut Vec<(NodeId, std::net::SocketAddr)>,
    ) -> bool {
        let change = match notification {
            OwnedNotification::MemberUp(identity) => {
                let change = self.members.up(&identity, now);
                if change.is_some() {
                    came_up.push((identity.id, identity.addr));
                }
                change
            }
            OwnedNotification::MemberDown(identity) => self.members.down(&identity, now),
            OwnedNotification::Rename(_old, new) => self.members.rename(&new, now),
            OwnedNotification::Rejoin(identity) => {
                self.stats.renewals += 1;
                self.presence_restate(identity.generation);
                // Rare unless something is wrong (a stalled process, or
                // worse): logged at most once per interval, with the count.
                if self
                    .identity_conflict
                    .may_log_renewal(now, self.config.protocol.renewal_log_interval)
                {
                    tracing::info!(
                        generation = identity.generation,
                        renewals = self.stats.renewals,
                        "declared failed while running; rejoined as a new generation"
                    );
                } else {
                    tracing::debug!(
                        generation = identity.generation,
                        "declared failed while running; rejoined as a new generation"
                    );
                }
                None
            }
            OwnedNotification::Active => {
                tracing::debug!("membership: connected to the cluster");
                None
            }
            OwnedNotification::Idle => {
                tracing::debug!("membership: no active member left");
                None
            }
            OwnedNotification::Defunct => {
                if !self.left {
                    tracing::warn!("membership: this node was declared down");
                }
                None
            }
        };
        match change {
            Some(change) => {
                self.presence_follow_member(&change);
                self.events.push_back(super::Event::Peer(change));
                true
            }
            None => false,
        }
    }

    /// Moves members between alive and suspect as foca's view says (and
    /// records their incarnations), for the members foca changed since the
    /// last call: the cost follows what foca did, not the cluster's size.
    fn sync_suspicion(&mut self, now: Instant) {
        let mut changes = Vec::new();
        for member in self.swim.take_changed().into_values() {
            let identity = member.id();
            self.members.set_incarnation(identity, member.incarnation());
            let suspect = match member.state() {
                foca::State::Alive => false,
                foca::State::Suspect => true,
                foca::State::Down => continue,
            };
            if let Some(change) = self.members.set_suspect(identity, suspect, now) {
                changes.push(change);
            }
        }
        self.events
            .extend(changes.into_iter().map(super::Event::Peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity as _;

    fn identity(generation: u64) -> Identity {
        Identity::for_tests(generation)
    }

    #[test]
    fn later_generation_wins_and_renew_bumps_it() {
        let old = identity(5);
        let stranger = Identity::signed(
            &crate::sign::NodeKey::for_testing(77),
            old.addr,
            "s".into(),
            5,
        );
        assert!(
            stranger.renew().is_none(),
            "only this process's nodes renew"
        );
        assert!(old.renew().is_none(), "only a node's own identity renews");
        let old = Identity::own(
            &crate::sign::NodeKey::for_testing(1),
            old.addr,
            old.name.clone(),
            old.generation,
        );
        let new = old.renew().expect("renewable");
        assert_eq!(new.generation, 6);
        assert_eq!(
            new.verify(&mut Verifier::default()),
            Ok(()),
            "a renewal is signed anew"
        );
        assert!(new.renew().is_some(), "and renews again");
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let last = Identity::own(
            &crate::sign::NodeKey::for_testing(1),
            old.addr,
            old.name.clone(),
            u64::MAX,
        );
        assert!(last.renew().is_none());
    }

    #[test]
    fn config_fits_datagrams() {
        let protocol = ProtocolConfig::default();
        let config = foca_config(&protocol, super::super::DEFAULT_REAP_AFTER);
        assert_eq!(config.max_packet_size.get(), SWIM_MAX_PACKET_BYTES);
        assert!(config.probe_rtt < config.probe_period);
        assert_eq!(config.num_indirect_probes.get(), protocol.indirect_probes);
        let header = wire::Header {
            flags: 0,
            cluster: wire::ClusterId(0),
            sender: NodeId([0; 16]),
        };
        let largest = wire::Body::Swim(vec![0xff; SWIM_MAX_PACKET_BYTES]);
        wire::encode(&header, &largest).expect("foca's largest packet fits a datagram");
    }
}
