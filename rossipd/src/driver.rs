//! The driver: the one task that owns the protocol [`Node`]. It feeds the
//! node datagrams, timer expiries, discovery hints and RPC commands, then
//! drains everything the node produced (str0m's rule: mutate, drain, wait).
//! Other tasks talk to it only through its [`Handle`], in domain types.
//!
//! Exactly once across restarts: what a flush delivers (messages, and the
//! seen ranges of their origins) is committed to the [`Store`] in one
//! transaction before any of it reaches subscribers, and a `send` is
//! answered only after its message is committed. If a commit fails (a full
//! disk), pending sends get an error, the failure is logged and counted
//! (`store.errors` in `status`), messages are still delivered live, and
//! what the commit left out is held for the next one (`unstored`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use rossip_proto::message::Draft;
use rossip_proto::{Event, Message, MessageId, Node, PeerState};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::delivery::Delivered;
use crate::peer_cache::{self, PeerCache};
use crate::state::StateDir;
use crate::store::Store;
use crate::views::{self, WallClock};

mod backpressure;
mod channels;
mod direct;
mod events;
mod handle;
mod identity;
mod inbox;
pub mod journal;
mod keyring;
mod nick;
mod persist;
mod presence;
pub(crate) mod problems;
mod reads;
mod status;
mod unstored;

/// Member changes held for subscribers that have not read them yet (they
/// are rare; a subscriber further behind gets a `lagged` count instead).
pub const PEER_CHANGES: usize = 1024;

/// Presence changes held for subscribers that have not read them yet (a
/// subscriber further behind gets a `lagged` count instead).
pub const PRESENCE_CHANGES: usize = 1024;

/// Outcomes of direct messages held for subscribers that have not read
/// them yet (a subscriber further behind gets a `lagged` count instead).
pub const DIRECT_STATUSES: usize = 1024;

/// Largest datagram we read; larger ones are truncated by the kernel and
/// then refused by the wire decoder (counted as oversized/malformed).
const RECV_BUFFER: usize = 65_536;

/// Datagrams handled per wake-up before giving timers and commands a turn
/// (membership datagrams as they are read, and bulk ones from the inbox:
/// see `inbox`).
const RECV_BATCH: usize = 64;

/// Commands carried out per wake-up before the flush (and its commit).
const COMMAND_BATCH: usize = 256;

/// How often the store applies its retention window (besides every
/// [`crate::store::PRUNE_EVERY_INSERTS`] inserts): the age bound moves
/// with the clock even when nothing arrives.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// Where the answer to a `send` goes.
type SendReply = oneshot::Sender<Result<Arc<Delivered>, CoreError>>;

/// A `send` whose message is published but not yet committed.
type PendingSend = (SendReply, MessageId);

pub use channels::ChannelSummary;
pub use direct::DirectStatusUpdate;
pub use handle::{
    Command, CoreError, Handle, Joined, PeerChange, PeerSnapshot, ReadStart, SendTicket,
    SincePoint, StartQuery, WeakHandle,
};
pub use keyring::{KeysReply, KeysStarted};
pub use nick::NickChange;
pub use presence::{
    LocalPresence, PresenceEntry, PresenceRequest, PresenceSession, PresenceUpdate,
};

/// Facts about this daemon that only `status` needs.
#[derive(Debug, Clone)]
pub struct StaticInfo {
    /// Cluster label.
    pub cluster: String,
    /// Node name.
    pub name: String,
    /// Bound gossip address.
    pub bind: SocketAddr,
    /// Advertised gossip address.
    pub addr: SocketAddr,
    /// Socket path.
    pub socket: String,
    /// Whether mDNS runs.
    pub mdns: bool,
    /// The HTTP gateway, if it runs.
    pub http: Option<rossip_proto::rpc::HttpView>,
}

/// Counters shared with the RPC tasks.
#[derive(Debug, Default)]
pub struct SharedCounters {
    /// Events subscribers did not get because they fell behind so far
    /// that the events were gone (see `journal`).
    pub subscriber_drops: AtomicU64,
    /// Local socket connections open now.
    pub rpc_connections: AtomicU64,
    /// The most local socket connections served at once.
    pub rpc_max_connections: AtomicU64,
    /// Local socket connections refused for want of room.
    pub rpc_refused: AtomicU64,
    /// What mDNS discovery saw and dropped (it counts; `status` reads).
    pub discovery: Arc<crate::discovery::Counters>,
    /// The HTTP gateway's connections and refusals.
    pub http: crate::http::Counters,
}

/// How the driver loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The daemon's shutdown signal fired.
    Shutdown,
    /// `leave` was called over RPC.
    LeaveRequested,
    /// Every command sender is gone.
    Orphaned,
}

struct JoinWaiter {
    addrs: Vec<SocketAddr>,
    reply: oneshot::Sender<Joined>,
}

/// Owns the node and its socket.
pub struct Driver {
    node: Node,
    udp: UdpSocket,
    state: StateDir,
    clock: WallClock,
    info: StaticInfo,
    counters: Arc<SharedCounters>,
    /// What this node delivered, by cursor, for followers.
    journal: journal::Journal,
    /// Bulk datagrams read ahead of the membership ones; see `inbox`.
    inbox: inbox::Inbox,
    /// Member changes, for subscribers.
    peer_changes: broadcast::Sender<Arc<PeerChange>>,
    join_waiters: Vec<JoinWaiter>,
    send_errors: u64,
    /// The last live members' addresses, kept for the next run.
    peer_cache: PeerCache,
    /// The durable history and seen sets.
    store: Store,
    /// Failed store commits and prunes.
    store_errors: u64,
    /// Delivered messages a failed commit left out of the store.
    unstored: unstored::Unstored,
    /// Sends answered after the next commit.
    pending_sends: Vec<PendingSend>,
    /// Sends held for room in the history window; see `backpressure`.
    deferred: backpressure::Deferred,
    /// Where members' answers to `keys.*` requests go, by request stamp;
    /// see `keyring`.
    keyring_answers:
        std::collections::BTreeMap<u64, mpsc::Sender<rossip_proto::node::KeyringEvent>>,
    /// Node names pinned to keys (trust on first use).
    pins: crate::pins::Pins,
    /// This node's id and key ids, for discovery's mDNS record (see
    /// [`Driver::publish_announced_to`]).
    announced: tokio::sync::watch::Sender<crate::discovery::Announced>,
    /// Other cluster labels and keys, silent seeds: warned about and listed
    /// in `status`.
    problems: problems::Problems,
    /// The display names of this node's users; see `nick`.
    nicks: crate::nicks::Nicks,
    /// Which local users are in a chat, per connection; see `presence`.
    local_presence: presence::LocalPresenceTable,
    /// Presence changes, for subscribers.
    presence_changes: broadcast::Sender<Arc<PresenceUpdate>>,
    /// Direct messages sent or received here, for reads; see `direct`.
    direct: direct::DirectMessages,
    /// `send`s of direct messages waiting to learn their outcome.
    direct_waiters:
        std::collections::BTreeMap<MessageId, oneshot::Sender<rossip_proto::node::DirectOutcome>>,
    /// Acks of received direct messages not sent for want of a commit.
    direct_acks_withheld: u64,
    /// What became of direct messages sent here, for subscribers.
    direct_statuses: broadcast::Sender<Arc<DirectStatusUpdate>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("node", &self.node.id())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Wraps a node (already restored from `store`, with the delivery
    /// numbers of the messages it holds) and its bound socket.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: Node,
        numbered: Vec<(u64, MessageId)>,
        udp: UdpSocket,
        state: StateDir,
        store: Store,
        clock: WallClock,
        info: StaticInfo,
        counters: Arc<SharedCounters>,
    ) -> Self {
        let (peer_changes, _) = broadcast::channel(PEER_CHANGES);
        let (presence_changes, _) = broadcast::channel(PRESENCE_CHANGES);
        let (direct_statuses, _) = broadcast::channel(DIRECT_STATUSES);
        let mut journal = journal::Journal::new(store.id(), store.next_cursor());
        journal.restore(numbered);
        let node_id = node.id();
        let (peer_cache, greet) = PeerCache::open(state.path());
        let mut pins = crate::pins::Pins::load_or_empty(state.path());
        let nicks = crate::nicks::Nicks::load_or_empty(state.path());
        // This node's own name first: another node using it is flagged too.
        pins.observe(&info.name, &node.public_key(), &node.id());
        let mut driver = Driver {
            node,
            udp,
            state,
            clock,
            info,
            counters,
            journal,
            inbox: inbox::Inbox::default(),
            peer_changes,
            join_waiters: Vec::new(),
            send_errors: 0,
            peer_cache,
            store,
            store_errors: 0,
            unstored: unstored::Unstored::default(),
            pending_sends: Vec::new(),
            deferred: backpressure::Deferred::default(),
            keyring_answers: std::collections::BTreeMap::new(),
            pins,
            announced: tokio::sync::watch::Sender::new(crate::discovery::Announced {
                id: node_id,
                keys: Vec::new(),
            }),
            problems: problems::Problems::default(),
            nicks,
            local_presence: presence::LocalPresenceTable::default(),
            presence_changes,
            direct: direct::DirectMessages::default(),
            direct_waiters: std::collections::BTreeMap::new(),
            direct_acks_withheld: 0,
            direct_statuses,
        };
        driver.restore_direct_messages();
        driver.greet_cached_peers(&greet);
        driver
    }

    /// A handle for the tasks that talk to this driver through `commands`
    /// (the sender of the queue [`Driver::run`] reads).
    pub fn handle(&self, commands: mpsc::Sender<Command>) -> Handle {
        Handle::new(
            commands,
            self.journal.subscribe(),
            self.peer_changes.clone(),
            self.presence_changes.clone(),
            self.direct_statuses.clone(),
            self.clock,
        )
    }

    /// Sends this node's id and key ids to `announced` after every keyring
    /// change and every change of id (discovery advertises both).
    pub fn publish_announced_to(
        &mut self,
        announced: tokio::sync::watch::Sender<crate::discovery::Announced>,
    ) {
        self.announced = announced;
    }

    /// Tells discovery the id and key ids now held (the mDNS record names
    /// the sealing key's id; peers of either key stay welcome).
    fn announce(&self) {
        let keys = self
            .node
            .key_ids()
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = self.announced.send(crate::discovery::Announced {
            id: self.node.id(),
            keys,
        });
    }

    /// Greets the members of the previous run (the peer cache), so a
    /// restarted node is back at once rather than when mDNS finds it.
    fn greet_cached_peers(&mut self, addrs: &[SocketAddr]) {
        let now = Instant::now();
        for addr in addrs {
            self.node.handle_contact(*addr, now);
        }
        if !addrs.is_empty() {
            tracing::debug!(count = addrs.len(), "greeting cached peers");
        }
    }

    /// Alive and suspect members' addresses, with when each was last heard.
    fn live_peers(&self) -> Vec<(Option<Instant>, SocketAddr)> {
        self.node
            .members()
            .filter(|m| m.state.is_active())
            .map(|m| (m.last_seen, m.addr))
            .collect()
    }

    /// Runs until `shutdown` fires, `leave` is requested, or every command
    /// sender is dropped. Leaves the cluster gracefully before returning.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut discovered: mpsc::Receiver<SocketAddr>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Exit {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut control = crate::transport::control_buffer();
        let mut discovery_open = true;
        tokio::pin!(shutdown);
        let mut cache_tick = tokio::time::interval(peer_cache::SAVE_INTERVAL);
        cache_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune_tick = tokio::time::interval(PRUNE_INTERVAL);
        prune_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut problems_tick = tokio::time::interval(problems::SWEEP_INTERVAL);
        problems_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = loop {
            self.flush().await;
            // Let the connections run before the next batch: on the
            // single-threaded runtime the driver would otherwise keep the
            // thread while datagrams keep coming, and followers would read
            // nothing until the burst is over.
            tokio::task::yield_now().await;
            let deadline = self.node.poll_timeout();
            let retry_at = self.deferred.retry_at();
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let bulk_waiting = self.inbox.has_bulk();
            tokio::select! {
                () = &mut shutdown => break Exit::Shutdown,
                readable = self.udp.readable() => match readable {
                    Ok(()) => self.on_datagrams(&mut buf, &mut control),
                    Err(e) => tracing::debug!("UDP socket: {e}"),
                },
                () = std::future::ready(()), if bulk_waiting => self.on_bulk(),
                command = commands.recv() => match command {
                    Some(command) => {
                        if let Some(reply) = self.on_commands(command, &mut commands) {
                            let notified = self.leave().await;
                            let _ = reply.send(notified);
                            return Exit::LeaveRequested;
                        }
                    }
                    None => break Exit::Orphaned,
                },
                addr = discovered.recv(), if discovery_open => match addr {
                    Some(addr) => self.node.handle_hint(addr, Instant::now()),
                    None => discovery_open = false,
                },
                () = sleep => self.node.handle_timeout(Instant::now()),
                () = retry => self.retry_deferred(Instant::now()),
                _ = cache_tick.tick() => {
                    let live = self.live_peers();
                    self.peer_cache.save_if_changed(live);
                }
                _ = prune_tick.tick() => self.prune_store(),
                _ = problems_tick.tick() => self.sweep_problems(Instant::now()),
            }
        };
        self.leave().await;
        exit
    }

    /// Leaves gracefully and sends what that produced. Returns how many
    /// members were told.
    async fn leave(&mut self) -> u64 {
        if self.node.has_left() {
            return 0;
        }
        // Who was alive is what the next run greets; the goodbyes go first,
        // the disk write after.
        let live = self.live_peers();
        let notified = self.node.leave(Instant::now());
        // The last chance to store what a failed commit left out: not
        // postponed by the back-off.
        self.unstored.retry_now();
        self.flush().await;
        if !self.unstored.is_empty() {
            tracing::error!(
                held_back = self.unstored.len(),
                path = %self.store.path().display(),
                "shutting down with delivered messages the history store still refuses: they are \
                 not in this node's history after a restart (received ones are asked of peers \
                 again then)"
            );
        }
        tracing::info!(notified, "left the cluster");
        self.peer_cache.save_now(live).await;
        u64::try_from(notified).unwrap_or(u64::MAX)
    }

    /// Reads the datagrams queued on the socket (at most
    /// [`inbox::READ_AHEAD`]): membership datagrams, and those that cannot
    /// be told apart before they are opened (sealed), are handled at once,
    /// at most [`RECV_BATCH`] before timers and commands get a turn; bulk
    /// data goes to the inbox, handled by [`Driver::on_bulk`] (see
    /// `inbox`). How long each datagram handled at once waited in the
    /// kernel's queue tells the node how far behind it runs (local health:
    /// a node behind its inputs stretches its failure detector's waits
    /// rather than accuse peers whose answers it has not read yet).
    fn on_datagrams(&mut self, buf: &mut [u8], control: &mut [u8]) {
        let mut handled = 0;
        for _ in 0..inbox::READ_AHEAD {
            let received = self.udp.try_io(tokio::io::Interest::READABLE, || {
                crate::transport::recv_stamped(&self.udp, buf, control)
            });
            match received {
                Ok(received) => {
                    let bytes = buf.get(..received.len).unwrap_or_default();
                    if rossip_proto::wire::urgency(bytes) == rossip_proto::wire::Urgency::Bulk {
                        self.inbox.push(received.from, bytes);
                        continue;
                    }
                    let now = Instant::now();
                    if let Some(waited) = received.waited {
                        self.node.handle_receive_lag(waited, now);
                    }
                    self.handle_datagram(received.from, bytes, now);
                    handled += 1;
                    if handled >= RECV_BATCH {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable from an earlier send surfaces here on
                // Linux (ECONNREFUSED); it says nothing about this datagram.
                Err(e) => tracing::debug!("UDP receive: {e}"),
            }
        }
    }

    /// Handles up to [`RECV_BATCH`] bulk datagrams from the inbox.
    fn on_bulk(&mut self) {
        for _ in 0..RECV_BATCH {
            let Some(queued) = self.inbox.pop() else {
                break;
            };
            self.handle_datagram(queued.from, &queued.bytes, Instant::now());
        }
    }

    /// Hands one datagram to the node, and notes what it says about seeds
    /// and misconfigured peers.
    fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        if self.problems.awaits_seeds() {
            self.problems.heard_from(from);
        }
        if let Some(mismatch) = self.node.handle_datagram(from, bytes, now)
            && let Some(warning) = self.problems.refused(from, mismatch, now)
        {
            let keys = self.node.key_ids();
            warning.log(self.own_settings(&keys));
        }
    }

    /// Carries out `first` and the commands already queued behind it (up to
    /// [`COMMAND_BATCH`]), so that a burst of sends from several clients
    /// shares one flush, hence one store commit. A `leave` ends the batch
    /// and is handed back (see [`Driver::on_command`]).
    fn on_commands(
        &mut self,
        first: Command,
        queue: &mut mpsc::Receiver<Command>,
    ) -> Option<oneshot::Sender<u64>> {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(command) = next.take() {
            if let Some(leave) = self.on_command(command) {
                return Some(leave);
            }
            handled += 1;
            if handled < COMMAND_BATCH {
                next = queue.try_recv().ok();
            }
        }
        None
    }

    /// Carries out a command. A `leave` is handed back, because it ends the
    /// loop and must send datagrams (async) before replying.
    fn on_command(&mut self, command: Command) -> Option<oneshot::Sender<u64>> {
        let now = Instant::now();
        match command {
            Command::Send { draft, reply } => self.on_send(draft, reply, now),
            Command::Start {
                query,
                filter,
                reply,
            } => {
                let filter = filter.here(self.node.id());
                let _ = reply.send(self.start_read(&query, &filter));
            }
            Command::Read {
                from,
                filter,
                limit,
                max_bytes,
                reply,
            } => {
                let filter = filter.here(self.node.id());
                let _ = reply.send(self.read(from, &filter, limit, max_bytes));
            }
            Command::Peers { all, reply } => {
                let members: Vec<rossip_proto::Member> = self
                    .node
                    .members()
                    .filter(|m| all || matches!(m.state, PeerState::Alive | PeerState::Suspect))
                    .cloned()
                    .collect();
                let mut peers: Vec<PeerSnapshot> =
                    members.into_iter().map(|m| self.peer_snapshot(m)).collect();
                peers.sort_by(|a, b| {
                    a.member
                        .name
                        .cmp(&b.member.name)
                        .then_with(|| a.member.id.cmp(&b.member.id))
                });
                let _ = reply.send(peers);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status(now));
            }
            Command::Join { seed, addrs, reply } => {
                // Already a member at that address: nothing to wait for (the
                // node does not re-greet alive members).
                let known = self.node.members().find(|m| {
                    addrs.contains(&m.addr)
                        && matches!(m.state, PeerState::Alive | PeerState::Suspect)
                });
                if let Some(m) = known {
                    let _ = reply.send(Joined {
                        id: m.id,
                        name: m.name.clone(),
                        addr: m.addr,
                    });
                    return None;
                }
                for addr in &addrs {
                    self.node.handle_contact(*addr, now);
                }
                self.watch_seed(&seed, &addrs, now);
                self.join_waiters.retain(|w| !w.reply.is_closed());
                self.join_waiters.push(JoinWaiter { addrs, reply });
            }
            Command::Contact { seed, addrs } => {
                for addr in &addrs {
                    self.node.handle_contact(*addr, now);
                }
                self.watch_seed(&seed, &addrs, now);
            }
            Command::KeysList { reply } => self.on_keys_list(reply, now),
            Command::KeyOp { op, reply } => self.on_key_op(op, reply, now),
            Command::ReloadKeys { file, reply } => {
                let _ = reply.send(self.on_reload_keys(file));
            }
            Command::Leave { reply } => return Some(reply),
            Command::Channels { reply } => {
                let _ = reply.send(self.channels());
            }
            Command::Nick {
                user,
                change,
                reply,
            } => {
                let outcome = self.on_nick(&user, change);
                if outcome.is_ok() {
                    // A user in a chat shows the new name at once.
                    self.state_presence(now);
                }
                let _ = reply.send(outcome);
            }
            Command::PresenceSet { request, reply } => {
                let _ = reply.send(self.on_presence_set(request, now));
            }
            Command::PresenceEnd { session } => self.on_presence_end(session, now),
            Command::Who { reply } => {
                let _ = reply.send(self.who());
            }
            Command::SendDirect {
                draft,
                reply,
                outcome,
            } => self.on_send_direct(draft, reply, outcome, now),
            Command::KnownNodes { reply } => {
                let known = self
                    .pins
                    .iter()
                    .map(|(name, key)| (key.node_id(), name.to_owned()))
                    .collect();
                let _ = reply.send(known);
            }
        }
        None
    }

    /// Watches whether a seed answers (see `problems`). Addresses of this
    /// node are left out: a hello sent there comes back as this node's own
    /// and is dropped, so it would never count as an answer.
    fn watch_seed(&mut self, seed: &str, addrs: &[SocketAddr], now: Instant) {
        let (own, others): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.iter().partition(|a| self.is_this_node(**a));
        if !own.is_empty() {
            tracing::debug!(
                seed = %rossip_proto::log_text::LogText(seed),
                ?own,
                "not watching seed addresses of this node itself"
            );
        }
        self.problems.contacting_seed(seed, &others, now);
    }

    /// Whether `addr` reaches this node: its advertised address, or its
    /// gossip port at any address of this host. The same join list on
    /// every node names each node too, often by a host name that resolves
    /// to another of its addresses (127.0.1.1 from /etc/hosts). A second
    /// daemon on this host on the same port, each bound to one address, is
    /// taken for this node: its silence goes unreported, a lesser harm than
    /// a false warning forever.
    fn is_this_node(&self, addr: SocketAddr) -> bool {
        addr == self.info.addr
            || (addr.port() == self.info.bind.port() && crate::interfaces::is_own_ip(addr.ip()))
    }

    /// Logs the silent seeds due a warning and forgets problems that
    /// stopped.
    fn sweep_problems(&mut self, now: Instant) {
        let node = &self.node;
        let warnings = self.problems.sweep(now, |addr| {
            node.member_at(addr).is_some_and(|m| m.state.is_active())
        });
        if !warnings.is_empty() {
            let keys = self.node.key_ids();
            for warning in warnings {
                warning.log(self.own_settings(&keys));
            }
        }
    }

    /// This node's settings as problem details name them.
    fn own_settings<'a>(
        &'a self,
        keys: &'a [rossip_proto::seal::KeyId],
    ) -> problems::OwnSettings<'a> {
        problems::OwnSettings {
            cluster: &self.info.cluster,
            keys,
        }
    }

    /// Publishes; `Err(Ok(retry_after))` when the history window has no
    /// room yet (see `backpressure`), `Err(Err(e))` for a refusal.
    fn publish(
        &mut self,
        draft: &Draft,
        now: Instant,
    ) -> Result<MessageId, Result<Duration, CoreError>> {
        // The sequence number must be reserved on disk before it is used, so
        // that a crash right after can never lead to its reuse.
        if let Err(e) = self.state.ensure_reserved(self.node.next_seq()) {
            tracing::error!("cannot reserve message sequence numbers: {e:#}");
            return Err(Err(CoreError::State(format!("{e:#}"))));
        }
        match self.node.publish(draft, views::unix_ms_now(), now) {
            Ok(id) => Ok(id),
            Err(e) => Err(backpressure::classify(e)),
        }
    }

    /// A delivery as followers get it, its sender's name checked against
    /// the pins (and pinned, if new).
    fn delivered(&mut self, number: u64, message: Message) -> Delivered {
        let name_trust =
            self.pins
                .observe(&message.origin_name, &message.auth.key, &message.id.origin);
        Delivered {
            cursor: self.journal.cursor(number),
            message,
            name_trust,
        }
    }

    /// A member as the driver reports it, its name checked against the
    /// pins (and pinned, if new).
    fn peer_snapshot(&mut self, member: rossip_proto::Member) -> PeerSnapshot {
        let name_trust = self.pins.observe(&member.name, &member.key, &member.id);
        PeerSnapshot { member, name_trust }
    }

    /// Records this node's highest new sequence number, sends every
    /// pending datagram, commits what the node delivered, then answers
    /// sends and hands events to subscribers.
    ///
    /// The number is recorded before anything leaves, so a restart can
    /// resume right after it without ever reusing a number peers saw; the
    /// messages are committed after sending, so peers need not wait for it.
    async fn flush(&mut self) {
        let mut events: Vec<Event> = std::iter::from_fn(|| self.node.poll_event()).collect();
        self.take_direct_messages(&mut events);
        self.record_own_seq(&events);
        self.save_keyring_before_acks(&events);
        while let Some(transmit) = self.node.poll_transmit() {
            self.transmit(&transmit).await;
        }
        // Acks of received direct messages go only once those are saved.
        let direct_acks: Vec<rossip_proto::node::DirectAck> =
            std::iter::from_fn(|| self.node.poll_direct_ack()).collect();
        // Numbered before the commit, which stores each with its number.
        let numbered: Vec<(u64, &Message)> = events
            .iter()
            .filter_map(|event| match event {
                Event::Message(message) => Some(message),
                _ => None,
            })
            .map(|message| (self.journal.number(message), message))
            .collect();
        let committed = self.persist(&numbered, &events);
        let numbers: Vec<u64> = numbered.iter().map(|&(number, _)| number).collect();
        drop(numbered);
        self.send_direct_acks(direct_acks, committed.is_ok()).await;
        // Numbers of messages the store gave up on are never shown: reads
        // go past them once later ones are shown.
        let given_up = self.unstored.take_given_up_numbers();
        self.journal.forget(&given_up);
        let mut delivered: std::collections::HashMap<MessageId, Arc<Delivered>> =
            std::collections::HashMap::new();
        // Shown once committed, in number order: what earlier failures held
        // back first, then this flush's. Uncommitted ones wait in `unstored`.
        if let Ok(released) = &committed {
            for (number, message) in released.clone() {
                let delivery = Arc::new(self.delivered(number, message));
                self.on_message(delivery);
            }
        }
        let mut numbers = numbers.into_iter();
        for event in events {
            match event {
                Event::Message(message) => {
                    let Some(number) = numbers.next() else {
                        continue;
                    };
                    if committed.is_err() {
                        continue;
                    }
                    let delivery = Arc::new(self.delivered(number, message));
                    if !self.pending_sends.is_empty() {
                        delivered.insert(delivery.message.id, delivery.clone());
                    }
                    self.on_message(delivery);
                }
                other => self.on_event(other),
            }
        }
        for (reply, id) in std::mem::take(&mut self.pending_sends) {
            let answer = match (&committed, delivered.get(&id)) {
                (Ok(_), Some(delivery)) => Ok(delivery.clone()),
                (Err(e), _) => Err(CoreError::NotDurable {
                    id,
                    error: e.to_string(),
                }),
                // Published, so delivered by this very flush.
                (Ok(_), None) => Err(CoreError::State(format!(
                    "the message {id} was published but not delivered here"
                ))),
            };
            let _ = reply.send(answer);
        }
        let held_len = self.node.history_len() + self.direct.len();
        let node = &self.node;
        let direct = &self.direct;
        self.journal.sweep(held_len, |id| {
            node.message(id).is_some() || direct.get(id).is_some()
        });
    }

    /// Sends one datagram, waiting (at most a second) for room in the
    /// kernel's buffer rather than dropping it.
    async fn transmit(&mut self, transmit: &rossip_proto::Transmit) {
        let sent = match self.udp.try_send_to(&transmit.payload, transmit.dst) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => match tokio::time::timeout(
                Duration::from_secs(1),
                self.udp.send_to(&transmit.payload, transmit.dst),
            )
            .await
            {
                Ok(r) => r.map(|_| ()),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "send buffer stayed full",
                )),
            },
            other => other.map(|_| ()),
        };
        if let Err(e) = sent {
            // UDP sends fail for unreachable networks and the like; the
            // protocol's probes and anti-entropy recover what is lost.
            self.send_errors += 1;
            // An error path: looking up who is at the address is cheap here.
            let member = self.node.member_at(transmit.dst);
            tracing::debug!(
                peer = member.map(|m| tracing::field::display(rossip_proto::log_text::LogText(&m.name))),
                peer_id = member.map(|m| tracing::field::display(m.id.short())),
                addr = %transmit.dst,
                "UDP send failed: {e}"
            );
        }
    }
}
