//! A deterministic in-process network of [`Node`]s, for tests and
//! simulations: virtual time, a queue of datagrams in flight with a fixed
//! latency, seeded loss, crashes and restarts.
//!
//! Time only moves when [`Sim::step`] advances it to the earliest of the next
//! delivery and every running node's [`Node::poll_timeout`]; nothing sleeps,
//! and the same seed and the same calls give the same run (compare
//! [`Sim::trace`] or [`Sim::wire_hash`]).
//!
//! Datagrams in flight and node wake-ups wait in ordered queues keyed by
//! virtual time, so a step costs O(log N) rather than a scan of every node:
//! a thousand nodes simulate in seconds. A node's wake-up is re-queued after
//! every input to it (its deadline can only change then).
//!
//! [`Sim`] also records what the metrics of [`stats`] need: every publish
//! ([`Sim::published`]), each node's delivery events with virtual times, and
//! per-node sent datagrams and bytes ([`Sim::traffic`]).
//!
//! Nodes live at `10.0.0.x:7465` (x = index + 1, continuing in `10.0.y.x`
//! past 255); node ids derive from per-index test keys (see [`Sim::id`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::id::{MessageId, NodeId};
use crate::message::{DEFAULT_CHANNEL, Message};
use crate::node::{Event, Member, Node, NodeConfig, PeerState, PublishError};
use crate::wire;

pub mod scenario;
pub mod small;
pub mod stats;

pub use stats::{
    DatagramsPerMessage, DeliveryReport, DisseminationReport, KindTraffic, NodeTraffic,
    PhaseTraffic, Published, TrafficSnapshot,
};

/// The gossip port simulated nodes use.
pub const SIM_PORT: u16 = 7465;

/// Cluster label of simulated nodes.
pub const SIM_CLUSTER: &str = "rossip-sim";

/// Wall-clock milliseconds at virtual time zero (publish stamps derive from
/// virtual time, so runs are reproducible).
pub const SIM_WALL_START_MS: u64 = 1_700_000_000_000;

/// One simulated host.
#[derive(Debug)]
pub struct SimNode {
    /// The protocol node.
    pub node: Node,
    /// Its address.
    pub addr: SocketAddr,
    /// Every event it produced, with the virtual time.
    pub events: Vec<(Duration, Event)>,
    /// Crashed nodes neither send, receive nor fire timers.
    pub crashed: bool,
    /// Isolated nodes run (timers fire) but their traffic is lost: a
    /// partition of one.
    pub isolated: bool,
    /// Side of a partition ([`Sim::partition`]): datagrams only flow between
    /// nodes of the same side. 0 unless partitioned.
    pub side: usize,
    /// How long datagrams wait in this host's receive queue before the node
    /// handles them (see [`Sim::set_inbox_lag`]). Zero by default.
    pub inbox_lag: Duration,
}

/// A datagram on its way.
#[derive(Debug)]
struct InFlight {
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
    /// When it reached a host with an inbox lag, and now waits in its queue.
    queued_at: Option<Instant>,
}

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    start: Instant,
    now: Instant,
    seed: u64,
    latency: Duration,
    /// Extra latency, uniform in `0..=jitter` (drawn only when non-zero, so
    /// runs without jitter use the RNG exactly as before).
    jitter: Duration,
    loss: f64,
    rng: StdRng,
    nodes: Vec<SimNode>,
    by_addr: BTreeMap<SocketAddr, usize>,
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    next_number: u64,
    /// Running nodes' next deadlines, keyed (deadline, index): at most one
    /// entry per node, the one in `wakeup_of`.
    wakeups: BTreeSet<(Instant, usize)>,
    /// The deadline node `index` is queued at in `wakeups`, if any.
    wakeup_of: Vec<Option<Instant>>,
    /// What each node sent since it was added (restarts included).
    traffic: Vec<NodeTraffic>,
    /// What all nodes sent, by kind of datagram ([`stats::packet_kind`]).
    traffic_by_kind: BTreeMap<&'static str, stats::KindTraffic>,
    /// Every successful publish, in order.
    published: Vec<Published>,
    /// Pushes and repairs of each message, by sending node.
    message_sends: BTreeMap<MessageId, BTreeMap<usize, u32>>,
    trace: Vec<String>,
    /// Whether events are written to `trace` (off for large runs, where the
    /// formatting dominates).
    record_trace: bool,
    wire_hash: u64,
    /// One-way links cut with [`Sim::block`]: (from, to) indices.
    blocked: std::collections::BTreeSet<(usize, usize)>,
    /// Datagrams delivered to a running node.
    pub delivered: u64,
    /// Datagrams lost (random loss, or to/from a crashed or unknown node).
    pub lost: u64,
}

impl Sim {
    /// An empty network starting at `start` (take one `Instant::now()` in the
    /// test), with 1 ms latency and no loss.
    pub fn new(start: Instant, seed: u64) -> Self {
        Sim {
            start,
            now: start,
            seed,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_number: 0,
            wakeups: BTreeSet::new(),
            wakeup_of: Vec::new(),
            traffic: Vec::new(),
            traffic_by_kind: BTreeMap::new(),
            published: Vec::new(),
            message_sends: BTreeMap::new(),
            trace: Vec::new(),
            record_trace: true,
            wire_hash: wire::fnv1a_64(b""),
            blocked: std::collections::BTreeSet::new(),
            delivered: 0,
            lost: 0,
        }
    }

    /// Sets the one-way latency of every datagram.
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Adds a seeded random extra latency, uniform in `0..=jitter`, to every
    /// datagram (datagrams may then overtake each other). Zero by default.
    pub fn set_jitter(&mut self, jitter: Duration) {
        self.jitter = jitter;
    }

    /// Whether events, crashes and partitions are written to [`Sim::trace`]
    /// (on by default). Large simulations turn it off: formatting every
    /// event costs more than simulating it.
    pub fn set_record_trace(&mut self, record: bool) {
        self.record_trace = record;
    }

    /// Sets the probability (0..=1) that a datagram is lost.
    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss.clamp(0.0, 1.0);
    }

    /// The seed this run was created with (print it when a test fails).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Address of node `index`.
    pub fn addr(index: usize) -> SocketAddr {
        let number = index + 1;
        let host = u8::try_from(number % 256).unwrap_or(0);
        let third = u8::try_from(number / 256).unwrap_or(u8::MAX);
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(10, 0, third, host),
            SIM_PORT,
        ))
    }

    /// Key pair of node `index` (deterministic, not secret).
    pub fn key(index: usize) -> crate::sign::NodeKey {
        crate::sign::NodeKey::for_testing(index as u64 + 1)
    }

    /// Id of node `index`: derived from [`Sim::key`], as every node id is
    /// derived from its key. Memoized: deriving a key costs tens of
    /// microseconds, and checks over all pairs of 1,000 nodes ask often.
    pub fn id(index: usize) -> NodeId {
        static IDS: std::sync::Mutex<Vec<NodeId>> = std::sync::Mutex::new(Vec::new());
        let mut ids = IDS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while ids.len() <= index {
            let next = ids.len();
            ids.push(Self::key(next).node_id());
        }
        ids[index]
    }

    /// The configuration [`Sim::add_node`] uses for node `index`.
    pub fn config(&self, index: usize, name: &str) -> NodeConfig {
        let mut config = NodeConfig::new(Self::key(index), name, SIM_CLUSTER, Self::addr(index));
        config.generation = 1;
        config.rng_seed = self.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        config.wall_ms_at_start =
            SIM_WALL_START_MS + u64::try_from(self.elapsed().as_millis()).unwrap_or(0);
        config
    }

    /// Adds a node with the default configuration; returns its index.
    pub fn add_node(&mut self, name: &str) -> usize {
        let config = self.config(self.nodes.len(), name);
        self.add_node_with(config)
    }

    /// Adds a node with `config` (its `advertise_addr` should be
    /// [`Sim::addr`] of the next index); returns its index.
    pub fn add_node_with(&mut self, config: NodeConfig) -> usize {
        let index = self.nodes.len();
        let addr = config.advertise_addr;
        self.nodes.push(SimNode {
            node: Node::new(config, self.now),
            addr,
            events: Vec::new(),
            crashed: false,
            isolated: false,
            side: 0,
            inbox_lag: Duration::ZERO,
        });
        self.by_addr.insert(addr, index);
        self.wakeup_of.push(None);
        self.traffic.push(NodeTraffic::default());
        self.requeue(index);
        index
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index].node
    }

    /// Simulated host `index` (node, events, crash flag).
    pub fn host(&self, index: usize) -> &SimNode {
        &self.nodes[index]
    }

    /// Node `index` contacts node `other` (as discovery or `join` would).
    pub fn contact(&mut self, index: usize, other: usize) {
        let addr = Self::addr(other);
        let now = self.now;
        self.nodes[index].node.handle_contact(addr, now);
        self.flush(index);
    }

    /// Publishes on node `index` in the default channel.
    pub fn publish(&mut self, index: usize, text: &str) -> Result<Message, PublishError> {
        self.publish_in(index, DEFAULT_CHANNEL, text)
    }

    /// Publishes on node `index` as if its wall clock read `wall_ms` (a
    /// node with a skewed clock).
    pub fn publish_at_wall(
        &mut self,
        index: usize,
        text: &str,
        wall_ms: u64,
    ) -> Result<Message, PublishError> {
        self.publish_with(index, DEFAULT_CHANNEL, text, wall_ms)
    }

    /// The wall clock (Unix ms) the simulation's nodes read now.
    pub fn wall_ms(&self) -> u64 {
        SIM_WALL_START_MS + u64::try_from(self.elapsed().as_millis()).unwrap_or(0)
    }

    /// Publishes on node `index` in `channel`.
    pub fn publish_in(
        &mut self,
        index: usize,
        channel: &str,
        text: &str,
    ) -> Result<Message, PublishError> {
        let wall_ms = self.wall_ms();
        self.publish_with(index, channel, text, wall_ms)
    }

    /// Publishes on node `index` with its wall clock at `wall_ms`, records
    /// it, and moves the node's output into the network.
    fn publish_with(
        &mut self,
        index: usize,
        channel: &str,
        text: &str,
        wall_ms: u64,
    ) -> Result<Message, PublishError> {
        let now = self.now;
        let draft = crate::message::Draft::channel(channel, text);
        let id = self.nodes[index].node.publish(&draft, wall_ms, now)?;
        self.published.push(Published {
            id,
            origin: index,
            at: self.elapsed(),
        });
        self.flush(index);
        Ok(self.own_message(index, id))
    }

    /// Publishes `texts` on node `index` in one input, as a driver does
    /// with the sends of one turn: the node signs them as one batch.
    /// Returns the messages as delivered there, signed.
    pub fn publish_batch(
        &mut self,
        index: usize,
        texts: &[String],
    ) -> Result<Vec<Message>, PublishError> {
        let now = self.now;
        let wall_ms = self.wall_ms();
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            let draft = crate::message::Draft::channel(DEFAULT_CHANNEL, text.as_str());
            let id = self.nodes[index].node.publish(&draft, wall_ms, now)?;
            self.published.push(Published {
                id,
                origin: index,
                at: self.elapsed(),
            });
            ids.push(id);
        }
        self.flush(index);
        Ok(ids
            .into_iter()
            .map(|id| self.own_message(index, id))
            .collect())
    }

    /// The message `id` node `index` just published, as its own delivery
    /// event carries it (signed).
    fn own_message(&self, index: usize, id: crate::id::MessageId) -> Message {
        self.nodes[index]
            .events
            .iter()
            .rev()
            .find_map(|(_, event)| match event {
                Event::Message(message) if message.id == id => Some(message.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("node {index} did not deliver its own message {id}"))
    }

    /// Node `index` leaves gracefully; returns how many members it told.
    pub fn leave(&mut self, index: usize) -> usize {
        let now = self.now;
        let told = self.nodes[index].node.leave(now);
        self.flush(index);
        told
    }

    /// Calls `input` on node `index` at the current virtual time, then
    /// sends what it produced (for inputs without a `Sim` method of their
    /// own, such as keyring commands).
    pub fn with_node<R>(&mut self, index: usize, input: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let result = input(&mut self.nodes[index].node, now);
        self.flush(index);
        result
    }

    /// Node `index` stops: nothing reaches it or leaves it, its timers stop.
    pub fn crash(&mut self, index: usize) {
        self.nodes[index].crashed = true;
        self.requeue(index);
        self.note(format!("n{index} crash"));
    }

    /// A crashed node continues with its state intact (a process that was
    /// stopped and continued, a VM resumed).
    pub fn resume(&mut self, index: usize) {
        self.nodes[index].crashed = false;
        self.requeue(index);
        self.note(format!("n{index} resume"));
    }

    /// Node `index` runs `lag` behind its inbox: every datagram that reaches
    /// it waits that long in its host's receive queue (as behind a flood of
    /// bulk data on a saturated host) before the node handles it, and the
    /// node is told how long it waited ([`Node::handle_receive_lag`], as the
    /// daemon's driver does). Its timers still fire on time. Zero ends it.
    pub fn set_inbox_lag(&mut self, index: usize, lag: Duration) {
        self.nodes[index].inbox_lag = lag;
        self.note(format!("n{index} inbox lag {lag:?}"));
    }

    /// Node `index` keeps running but loses all its traffic (a partition).
    pub fn isolate(&mut self, index: usize) {
        self.nodes[index].isolated = true;
        self.note(format!("n{index} isolate"));
    }

    /// Ends [`Sim::isolate`].
    pub fn heal(&mut self, index: usize) {
        self.nodes[index].isolated = false;
        self.note(format!("n{index} heal"));
    }

    /// Splits the network: each slice of `sides` is one side, and
    /// datagrams between sides are lost (nodes not listed form side 0 with
    /// the first slice's nodes).
    pub fn partition(&mut self, sides: &[&[usize]]) {
        for host in &mut self.nodes {
            host.side = 0;
        }
        for (side, members) in sides.iter().enumerate() {
            for &index in *members {
                self.nodes[index].side = side;
            }
        }
        self.note(format!("partition {sides:?}"));
    }

    /// Ends [`Sim::partition`]: one network again.
    pub fn heal_partition(&mut self) {
        self.partition(&[]);
    }

    /// Records `what` in the trace, stamped with the virtual time.
    fn note(&mut self, what: String) {
        if !self.record_trace {
            return;
        }
        let line = format!("{:?} {what}", self.elapsed());
        self.trace.push(line);
    }

    /// Loses every datagram from node `from` to node `to` (one way).
    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
        self.note(format!("block n{from} -> n{to}"));
    }

    /// Ends every [`Sim::block`].
    pub fn heal_blocks(&mut self) {
        self.blocked.clear();
        self.note("blocks healed".to_owned());
    }

    /// Replaces node `index` with a fresh run of `config` (same address),
    /// e.g. the same id with a higher generation. Its event log restarts.
    pub fn restart(&mut self, index: usize, config: NodeConfig) {
        let host = &mut self.nodes[index];
        host.node = Node::new(config, self.now);
        host.crashed = false;
        host.isolated = false;
        host.events.clear();
        self.requeue(index);
        self.note(format!("n{index} restart"));
    }

    /// Replaces node `index` with a fresh run of `config` that restored an
    /// earlier run's persisted state (`history`, and the `seen` ranges of
    /// each origin) before its first input, as the daemon does at start.
    pub fn restart_restored(
        &mut self,
        index: usize,
        config: NodeConfig,
        history: Vec<Message>,
        seen: Vec<(NodeId, Vec<(u64, u64)>)>,
    ) {
        let mut node = Node::new(config, self.now);
        node.restore_history(history);
        for (origin, ranges) in seen {
            node.restore_seen(origin, &ranges);
        }
        let host = &mut self.nodes[index];
        host.node = node;
        host.crashed = false;
        host.isolated = false;
        host.events.clear();
        self.requeue(index);
        self.note(format!("n{index} restart (restored)"));
    }

    /// Delivers raw bytes to node `index` now, as if sent from `from`.
    pub fn inject(&mut self, index: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.nodes[index].node.handle_datagram(from, bytes, now);
        self.flush(index);
    }

    /// Advances to the next instant anything happens and handles all of it:
    /// first every datagram due (in sending order), then the timers of every
    /// node due (in index order). Returns `false` if nothing is left to
    /// happen.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_event_time() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let datagram = entry.remove();
            self.deliver(datagram);
        }
        let mut due = Vec::new();
        while let Some(&(deadline, index)) = self.wakeups.first() {
            if deadline > self.now {
                break;
            }
            self.wakeups.pop_first();
            self.wakeup_of[index] = None;
            due.push(index);
        }
        // One entry per node, so no duplicates; index order as a full scan
        // of the nodes would give.
        due.sort_unstable();
        for index in due {
            let host = &mut self.nodes[index];
            if !host.crashed && host.node.poll_timeout().is_some_and(|t| t <= self.now) {
                host.node.handle_timeout(self.now);
                self.flush(index);
            } else {
                self.requeue(index);
            }
        }
        true
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        while self.next_event_time().is_some_and(|t| t <= deadline) {
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs until `done` holds (checked after every step) or `limit` of
    /// virtual time passed; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_event_time() {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return done(self);
                }
            }
        }
    }

    /// Node `index`'s view of node `other`.
    pub fn member(&self, index: usize, other: usize) -> Option<&Member> {
        let id = Self::id(other);
        self.nodes[index].node.members().find(|m| m.id == id)
    }

    /// Node `index`'s view of node `other`'s state.
    pub fn state(&self, index: usize, other: usize) -> Option<PeerState> {
        self.member(index, other).map(|m| m.state)
    }

    /// Messages delivered on node `index` (its `Event::Message`s), in order.
    pub fn delivered_messages(&self, index: usize) -> Vec<&Message> {
        self.nodes[index]
            .events
            .iter()
            .filter_map(|(_, event)| match event {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// One line per event, crash, restart: equal for equal runs.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Hash of every datagram delivered, in order: equal for equal runs.
    pub fn wire_hash(&self) -> u64 {
        self.wire_hash
    }

    /// Virtual time of the next delivery or wake-up, if any.
    fn next_event_time(&self) -> Option<Instant> {
        let next_delivery = self.in_flight.keys().next().map(|(at, _)| *at);
        let next_timer = self.wakeups.first().map(|(at, _)| *at);
        [next_delivery, next_timer].into_iter().flatten().min()
    }

    /// Puts node `index`'s wake-up in the queue at its current deadline
    /// (none while crashed), replacing the one queued before.
    fn requeue(&mut self, index: usize) {
        let host = &self.nodes[index];
        let want = if host.crashed {
            None
        } else {
            host.node.poll_timeout()
        };
        let had = self.wakeup_of[index];
        if want == had {
            return;
        }
        if let Some(at) = had {
            self.wakeups.remove(&(at, index));
        }
        if let Some(at) = want {
            self.wakeups.insert((at, index));
        }
        self.wakeup_of[index] = want;
    }

    fn deliver(&mut self, datagram: InFlight) {
        let Some(&index) = self.by_addr.get(&datagram.to) else {
            self.lost += 1;
            return;
        };
        if self.nodes[index].crashed || self.nodes[index].isolated {
            self.lost += 1;
            return;
        }
        if let Some(&from) = self.by_addr.get(&datagram.from)
            && (self.nodes[from].side != self.nodes[index].side
                || self.blocked.contains(&(from, index)))
        {
            self.lost += 1;
            return;
        }
        let lag = self.nodes[index].inbox_lag;
        if datagram.queued_at.is_none() && !lag.is_zero() {
            let number = self.next_number;
            self.next_number += 1;
            self.in_flight.insert(
                (self.now + lag, number),
                InFlight {
                    queued_at: Some(self.now),
                    ..datagram
                },
            );
            return;
        }
        self.delivered += 1;
        for chunk in [&datagram.payload[..], &datagram.to.to_string().into_bytes()] {
            self.wire_hash = chunk.iter().fold(self.wire_hash, |hash, &b| {
                (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        }
        let now = self.now;
        let node = &mut self.nodes[index].node;
        if let Some(queued_at) = datagram.queued_at {
            node.handle_receive_lag(now.saturating_duration_since(queued_at), now);
        }
        node.handle_datagram(datagram.from, &datagram.payload, now);
        self.flush(index);
    }

    /// Moves node `index`'s outputs into the network and its event log, and
    /// re-queues its wake-up.
    fn flush(&mut self, index: usize) {
        let elapsed = self.elapsed();
        let host = &mut self.nodes[index];
        let traffic = &mut self.traffic[index];
        // The simulated driver saves at once: acks go with the rest.
        while let Some(transmit) = host
            .node
            .poll_transmit()
            .or_else(|| host.node.poll_direct_ack().map(|ack| ack.transmit))
        {
            assert!(
                transmit.payload.len() <= wire::MAX_DATAGRAM_BYTES,
                "node {index} produced a {}-byte datagram",
                transmit.payload.len()
            );
            stats::count_kind(&mut self.traffic_by_kind, &transmit.payload);
            if traffic.count(&transmit.payload) {
                for id in stats::message_ids_of(&transmit.payload) {
                    *self
                        .message_sends
                        .entry(id)
                        .or_default()
                        .entry(index)
                        .or_insert(0) += 1;
                }
            }
            if host.crashed || host.isolated || (self.loss > 0.0 && self.rng.random_bool(self.loss))
            {
                self.lost += 1;
                continue;
            }
            let number = self.next_number;
            self.next_number += 1;
            let mut latency = self.latency;
            if !self.jitter.is_zero() {
                let extra = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
                latency += Duration::from_nanos(self.rng.random_range(0..=extra));
            }
            self.in_flight.insert(
                (self.now + latency, number),
                InFlight {
                    from: host.addr,
                    to: transmit.dst,
                    payload: transmit.payload,
                    queued_at: None,
                },
            );
        }
        while let Some(event) = host.node.poll_event() {
            if self.record_trace {
                self.trace
                    .push(format!("{elapsed:?} n{index} {}", describe(&event)));
            }
            host.events.push((elapsed, event));
        }
        self.requeue(index);
    }
}

/// A one-line, run-independent description of an event (no `Instant`s).
fn describe(event: &Event) -> String {
    match event {
        Event::Message(m) => format!("message {} {:?}", m.id, m.text),
        Event::Peer(change) => format!(
            "peer {} {:?} -> {:?}",
            change.member.id.short(),
            change.previous,
            change.member.state
        ),
        Event::Contacted { from, id, .. } => format!("contacted {from} {}", id.short()),
        Event::Lost(lost) => format!(
            "lost {} {}..={}",
            lost.origin.short(),
            lost.first,
            lost.last
        ),
        Event::Keyring(event) => format!("keyring {event:?}"),
        Event::DirectStatus(status) => format!(
            "direct {} to {} {}",
            status.id,
            status.recipient.short(),
            status.outcome.as_str()
        ),
        Event::IdentityInUse(conflict) => format!(
            "identity in use {} {} > {}",
            conflict.id.short(),
            conflict.theirs,
            conflict.ours
        ),
        Event::Presence(change) => format!(
            "presence {} {} {:?} -> {:?}",
            change.node.short(),
            change.user,
            change.previous.as_ref().map(|u| u.availability),
            change.current.as_ref().map(|u| u.availability)
        ),
    }
}
