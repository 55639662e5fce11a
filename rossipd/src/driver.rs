//! The driver: the one task that owns the protocol [`Node`]. It feeds the
//! node datagrams, timer expiries, discovery hints and RPC commands, then
//! drains everything the node produced (str0m's rule: mutate, drain, wait).
//! Other tasks talk to it only through [`Command`]s with a oneshot reply.
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

use rossip_proto::rpc::{
    self, ErrorObject, EventBody, JoinResult, LeaveResult, MessageView, PeerView,
};
use rossip_proto::{Event, Message, Node, PeerState, PublishError};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::history_query::{self, HistoryQuery};
use crate::peer_cache::{self, PeerCache};
use crate::state::StateDir;
use crate::store::Store;
use crate::views::{self, WallClock};

mod backpressure;
mod command;
mod events;
mod identity;
mod keyring;
mod persist;
pub(crate) mod problems;
mod status;
mod unstored;

/// Events the daemon-wide ring holds for subscription forwarders. Each
/// forwarder drains it in batches into its own bounded backlog, so this
/// only needs to cover one scheduling gap; it is kept small because the
/// ring keeps its last events (and their texts) alive.
pub const EVENT_BUFFER: usize = 1024;

/// Largest datagram we read; larger ones are truncated by the kernel and
/// then refused by the wire decoder (counted as oversized/malformed).
const RECV_BUFFER: usize = 65_536;

/// Datagrams drained per wake-up before giving timers and commands a turn.
const RECV_BATCH: usize = 64;

/// Commands carried out per wake-up before the flush (and its commit).
const COMMAND_BATCH: usize = 256;

/// How often the store applies its retention window (besides every
/// [`crate::store::PRUNE_EVERY_INSERTS`] inserts): the age bound moves
/// with the clock even when nothing arrives.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

/// A `send` whose message is published but not yet committed.
type PendingSend = (
    oneshot::Sender<Result<MessageView, ErrorObject>>,
    MessageView,
);

pub use command::Command;
pub use keyring::{KeysReply, KeysStarted};

/// A subscription's start: the replayed history and the live receiver.
pub type Subscription = (Vec<MessageView>, broadcast::Receiver<Arc<EventBody>>);

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
}

/// Counters shared with the RPC tasks.
#[derive(Debug, Default)]
pub struct SharedCounters {
    /// Events not delivered to subscribers that did not keep up.
    pub subscriber_drops: AtomicU64,
    /// Local socket connections open now.
    pub rpc_connections: AtomicU64,
    /// The most local socket connections served at once.
    pub rpc_max_connections: AtomicU64,
    /// Local socket connections refused for want of room.
    pub rpc_refused: AtomicU64,
    /// What mDNS discovery saw and dropped (it counts; `status` reads).
    pub discovery: Arc<crate::discovery::Counters>,
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
    reply: oneshot::Sender<JoinResult>,
}

/// Owns the node and its socket.
pub struct Driver {
    node: Node,
    udp: UdpSocket,
    state: StateDir,
    clock: WallClock,
    info: StaticInfo,
    counters: Arc<SharedCounters>,
    events: broadcast::Sender<Arc<EventBody>>,
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
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("node", &self.node.id())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Wraps a node (already restored from `store`) and its bound socket.
    pub fn new(
        node: Node,
        udp: UdpSocket,
        state: StateDir,
        store: Store,
        clock: WallClock,
        info: StaticInfo,
        counters: Arc<SharedCounters>,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let node_id = node.id();
        let (peer_cache, greet) = PeerCache::open(state.path());
        let mut pins = crate::pins::Pins::load_or_empty(state.path());
        // This node's own name first: another node using it is flagged too.
        pins.observe(&info.name, &node.public_key(), &node.id());
        let mut driver = Driver {
            node,
            udp,
            state,
            clock,
            info,
            counters,
            events,
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
        };
        driver.greet_cached_peers(&greet);
        driver
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
            // Let subscription forwarders and connections run before the
            // next batch: on the single-threaded runtime the driver would
            // otherwise keep the thread while datagrams keep coming, and the
            // event buffer would overflow before anyone read it.
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
            tokio::select! {
                () = &mut shutdown => break Exit::Shutdown,
                received = self.udp.recv_from(&mut buf) => self.on_datagrams(received, &mut buf),
                command = commands.recv() => match command {
                    Some(command) => {
                        if let Some(reply) = self.on_commands(command, &mut commands) {
                            let notified = self.leave().await;
                            let _ = reply.send(LeaveResult { notified });
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

    fn on_datagrams(&mut self, first: std::io::Result<(usize, SocketAddr)>, buf: &mut [u8]) {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(received) = next.take() {
            match received {
                Ok((len, from)) => {
                    let bytes = buf.get(..len).unwrap_or_default();
                    let now = Instant::now();
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
                // ICMP port unreachable from an earlier send surfaces here on
                // Linux (ECONNREFUSED); it says nothing about this datagram.
                Err(e) => tracing::debug!("UDP receive: {e}"),
            }
            handled += 1;
            if handled < RECV_BATCH {
                match self.udp.try_recv_from(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    other => next = Some(other),
                }
            }
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
    ) -> Option<oneshot::Sender<LeaveResult>> {
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
    fn on_command(&mut self, command: Command) -> Option<oneshot::Sender<LeaveResult>> {
        let now = Instant::now();
        match command {
            Command::Send {
                channel,
                text,
                reply,
            } => self.on_send(channel, text, reply, now),
            Command::History { query, reply } => {
                let _ = reply.send(self.select(&query));
            }
            Command::Subscribe { replay, reply } => {
                // Replay and receiver are taken in one step of the only task
                // that broadcasts, so nothing falls between them.
                let replayed = match &replay {
                    Some(query) => self.select(query),
                    None => Ok(Vec::new()),
                };
                let _ = reply.send(replayed.map(|messages| (messages, self.events.subscribe())));
            }
            Command::Peers { all, reply } => {
                let members: Vec<rossip_proto::Member> = self
                    .node
                    .members()
                    .filter(|m| all || matches!(m.state, PeerState::Alive | PeerState::Suspect))
                    .cloned()
                    .collect();
                let mut peers: Vec<PeerView> = members.iter().map(|m| self.peer_view(m)).collect();
                peers.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
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
                    let _ = reply.send(JoinResult {
                        id: m.id.to_string(),
                        name: m.name.clone(),
                        addr: m.addr.to_string(),
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
        channel: &str,
        text: &str,
        now: Instant,
    ) -> Result<MessageView, Result<Duration, ErrorObject>> {
        // The sequence number must be reserved on disk before it is used, so
        // that a crash right after can never lead to its reuse.
        if let Err(e) = self.state.ensure_reserved(self.node.next_seq()) {
            tracing::error!("cannot reserve message sequence numbers: {e:#}");
            return Err(Err(ErrorObject::new(
                rpc::code::INTERNAL_ERROR,
                format!("cannot write state: {e:#}"),
            )));
        }
        match self.node.publish(channel, text, views::unix_ms_now(), now) {
            Ok(message) => Ok(self.message_view(&message)),
            Err(e) => Err(backpressure::classify(e)),
        }
    }

    fn select(&self, query: &HistoryQuery) -> Result<Vec<MessageView>, ErrorObject> {
        let picked = history_query::select(
            self.node.history(),
            |id| self.node.message(id).map(Message::order_key),
            query,
        )?;
        Ok(picked
            .into_iter()
            .map(|message| {
                let mut view = MessageView::from(message);
                view.name_trust = self.pins.trust(&message.origin_name, &message.auth.key);
                view
            })
            .collect())
    }

    /// A message as the API shows it, its name checked against the pins
    /// (and pinned, if new).
    fn message_view(&mut self, message: &Message) -> MessageView {
        let mut view = MessageView::from(message);
        view.name_trust =
            self.pins
                .observe(&message.origin_name, &message.auth.key, &message.id.origin);
        view
    }

    /// A member as the API shows it, its name checked against the pins
    /// (and pinned, if new).
    fn peer_view(&mut self, member: &rossip_proto::Member) -> PeerView {
        let mut view = views::peer_view(member, &self.clock);
        view.name_trust = self.pins.observe(&member.name, &member.key, &member.id);
        view
    }

    /// Records this node's highest new sequence number, sends every
    /// pending datagram, commits what the node delivered, then answers
    /// sends and hands events to subscribers.
    ///
    /// The number is recorded before anything leaves, so a restart can
    /// resume right after it without ever reusing a number peers saw; the
    /// messages are committed after sending, so peers need not wait for it.
    async fn flush(&mut self) {
        let events: Vec<Event> = std::iter::from_fn(|| self.node.poll_event()).collect();
        self.record_own_seq(&events);
        self.save_keyring_before_acks(&events);
        while let Some(transmit) = self.node.poll_transmit() {
            self.transmit(&transmit).await;
        }
        let committed = self.persist(&events);
        for (reply, view) in std::mem::take(&mut self.pending_sends) {
            let answer = match &committed {
                Ok(()) => Ok(view),
                Err(e) => Err(ErrorObject::new(
                    rpc::code::INTERNAL_ERROR,
                    format!(
                        "the history store failed ({e}): the message {} went out to the cluster \
                         but is not durable here yet; it is held in memory and stored once the \
                         store works again (a restart before then loses it on this node)",
                        view.id
                    ),
                )),
            };
            let _ = reply.send(answer);
        }
        for event in events {
            self.on_event(event);
        }
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

fn publish_error(e: PublishError) -> ErrorObject {
    let code = match &e {
        PublishError::Empty => rpc::code::EMPTY_MESSAGE,
        PublishError::TooLarge { size, max } => {
            return ErrorObject::with_data(
                rpc::code::MESSAGE_TOO_LARGE,
                e.to_string(),
                serde_json::json!({"size": size, "max_bytes": max}),
            );
        }
        PublishError::Channel(_) => rpc::code::INVALID_CHANNEL,
        PublishError::Left => rpc::code::NOT_IN_CLUSTER,
        // Held by `backpressure` rather than answered; if it gets here, the
        // data says when to retry.
        PublishError::Busy { retry_after } => {
            return ErrorObject::with_data(
                rpc::code::BUSY,
                e.to_string(),
                serde_json::json!({
                    "retry_after_ms": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)
                }),
            );
        }
    };
    ErrorObject::new(code, e.to_string())
}
