//! The small-cluster loss scenario: a handful of nodes on a LAN-like
//! network (0.1 ms one way), every one a member of every other, publishing
//! sparse messages (one at a time, from random nodes) and then a stream
//! (one sender, many a millisecond), at a given loss. Measures, per
//! message, the delay until every other node has it (the slowest
//! receiver: what a user waiting for "everyone" sees), and the datagrams
//! each message costs: pushes, repairs and acknowledgements, and all
//! traffic above the idle rate. Shared by the `loss_recovery` tests and
//! `sim-bench --small`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::stats::percentile;
use super::{PhaseTraffic, Published, Sim};
use crate::id::MessageId;
use crate::node::{Event, PeerState, ProtocolConfig};

/// What [`run_small`] simulates.
#[derive(Debug, Clone)]
pub struct SmallConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Datagram loss after the cluster formed (every datagram, every
    /// direction: as inbound loss on every host).
    pub loss: f64,
    /// The run's seed.
    pub seed: u64,
    /// One-way latency (a veth LAN: about 0.05–0.1 ms).
    pub latency: Duration,
    /// Messages published one at a time, each from a random node.
    pub sparse_messages: usize,
    /// Virtual time between two sparse messages.
    pub sparse_interval: Duration,
    /// Messages of the stream, all from node 0.
    pub stream_messages: usize,
    /// Virtual time between two messages of the stream.
    pub stream_interval: Duration,
    /// Length of the idle phase that measures the idle rate.
    pub idle: Duration,
    /// Give up waiting for full delivery this long after a phase's last
    /// publish.
    pub drain_limit: Duration,
    /// The protocol every node runs.
    pub protocol: ProtocolConfig,
}

impl SmallConfig {
    /// Defaults: 5 nodes, 10% loss, 0.1 ms latency, 200 sparse messages
    /// 100 ms apart, a stream of 500 messages 0.2 ms apart (5,000/s), 10 s
    /// idle, the default protocol.
    pub fn new(seed: u64) -> Self {
        SmallConfig {
            nodes: 5,
            loss: 0.10,
            seed,
            latency: Duration::from_micros(100),
            sparse_messages: 200,
            sparse_interval: Duration::from_millis(100),
            stream_messages: 500,
            stream_interval: Duration::from_micros(200),
            idle: Duration::from_secs(10),
            drain_limit: Duration::from_secs(30),
            protocol: ProtocolConfig::default(),
        }
    }
}

/// What one publishing phase measured.
#[derive(Debug, Clone, Default)]
pub struct PhaseReport {
    /// Messages published.
    pub messages: usize,
    /// For every message every other node delivered: the delay until the
    /// last of them had it, sorted.
    pub to_all: Vec<Duration>,
    /// Messages some live node never delivered (within the drain limit).
    pub incomplete: usize,
    /// Pushes and repairs sent, by all nodes.
    pub message_datagrams: u64,
    /// Acknowledgements sent, by all nodes.
    pub ack_datagrams: u64,
    /// Every datagram sent, by all nodes.
    pub all_datagrams: u64,
    /// The datagrams the idle rate accounts for over the phase.
    pub idle_share: f64,
    /// Retransmitted datagrams (included in `message_datagrams`).
    pub retransmissions: u64,
    /// Length of the phase, first publish to the end of the drain.
    pub duration: Duration,
}

impl PhaseReport {
    /// The delay to all by which a fraction `p` of the messages were
    /// everywhere.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.to_all, p)
    }

    /// Pushes, repairs and acknowledgements per message: the cost of
    /// dissemination alone.
    pub fn dissemination_per_message(&self) -> f64 {
        (self.message_datagrams + self.ack_datagrams) as f64 / self.messages.max(1) as f64
    }

    /// All datagrams per message above the idle rate: what the messages
    /// cost in all (anti-entropy speeding up included).
    pub fn all_per_message_above_idle(&self) -> f64 {
        (self.all_datagrams as f64 - self.idle_share) / self.messages.max(1) as f64
    }
}

/// Everything [`run_small`] measured.
#[derive(Debug, Clone)]
pub struct SmallReport {
    /// What ran.
    pub config: SmallConfig,
    /// Datagrams per second the whole cluster sends while idle.
    pub idle_datagrams_per_sec: f64,
    /// Sparse messages, one at a time.
    pub sparse: PhaseReport,
    /// One sender's stream.
    pub stream: PhaseReport,
}

/// Runs the scenario of `config` from `start` (virtual time zero).
pub fn run_small(config: &SmallConfig, start: Instant) -> SmallReport {
    let mut sim = Sim::new(start, config.seed);
    sim.set_record_trace(false);
    sim.set_latency(config.latency);
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5a11_c105);
    for i in 0..config.nodes {
        let mut node = sim.config(i, &format!("n{i}"));
        node.protocol = config.protocol;
        sim.add_node_with(node);
    }
    for i in 1..config.nodes {
        sim.contact(i, 0);
    }
    let n = config.nodes;
    sim.run_until(Duration::from_secs(20), |sim| {
        (0..n).all(|a| (0..n).all(|b| a == b || sim.state(a, b) == Some(PeerState::Alive)))
    });
    // Joins gossip for a while; the idle figure is of the steady state.
    sim.run_for(Duration::from_secs(5));
    sim.set_loss(config.loss);
    let idle_start = sim.traffic();
    sim.run_for(config.idle);
    let nodes: Vec<usize> = (0..n).collect();
    let idle = sim.traffic().since(&idle_start);
    let idle_rate = idle.total(&nodes, |t| t.datagrams) as f64 / idle.duration.as_secs_f64();

    let sparse = run_phase(
        &mut sim,
        config,
        idle_rate,
        |sim, k| {
            let origin = rng.random_range(0..n);
            let _ = sim.publish(origin, &format!("sparse {k} from n{origin}"));
            config.sparse_interval
        },
        config.sparse_messages,
    );
    let stream = run_phase(
        &mut sim,
        config,
        idle_rate,
        |sim, k| {
            let _ = sim.publish(0, &format!("stream {k}"));
            config.stream_interval
        },
        config.stream_messages,
    );
    SmallReport {
        config: config.clone(),
        idle_datagrams_per_sec: idle_rate,
        sparse,
        stream,
    }
}

/// Publishes `messages` with `publish` (which returns the wait before the
/// next), drains, and measures.
fn run_phase(
    sim: &mut Sim,
    config: &SmallConfig,
    idle_rate: f64,
    mut publish: impl FnMut(&mut Sim, usize) -> Duration,
    messages: usize,
) -> PhaseReport {
    let traffic_start = sim.traffic();
    let retransmissions_start = retransmissions(sim);
    let first = sim.published().len();
    let started = sim.elapsed();
    for k in 0..messages {
        let wait = publish(sim, k);
        sim.run_for(wait);
    }
    let published: Vec<Published> = sim.published()[first..].to_vec();
    sim.run_until(config.drain_limit, |sim| {
        sim.delivery_report(&published).is_complete()
    });
    let phase: PhaseTraffic = sim.traffic().since(&traffic_start);
    let nodes: Vec<usize> = (0..sim.len()).collect();
    let (to_all, incomplete) = delay_to_all(sim, &published);
    PhaseReport {
        messages: published.len(),
        to_all,
        incomplete,
        message_datagrams: phase.total(&nodes, |t| t.message_datagrams),
        ack_datagrams: phase.total(&nodes, |t| t.ack_datagrams),
        all_datagrams: phase.total(&nodes, |t| t.datagrams),
        idle_share: idle_rate * phase.duration.as_secs_f64(),
        retransmissions: retransmissions(sim) - retransmissions_start,
        duration: sim.elapsed().saturating_sub(started),
    }
}

fn retransmissions(sim: &Sim) -> u64 {
    (0..sim.len())
        .map(|i| sim.node(i).stats().retransmissions)
        .sum()
}

/// For each of `published`, the delay until the last live node other
/// than its origin delivered it (sorted), and how many some node lacks.
pub fn delay_to_all(sim: &Sim, published: &[Published]) -> (Vec<Duration>, usize) {
    let live = sim.live_nodes();
    let arrivals: Vec<BTreeMap<MessageId, Duration>> = live
        .iter()
        .map(|&node| {
            let mut arrived = BTreeMap::new();
            for (at, event) in &sim.host(node).events {
                if let Event::Message(message) = event {
                    arrived.entry(message.id).or_insert(*at);
                }
            }
            arrived
        })
        .collect();
    let mut times = Vec::new();
    let mut incomplete = 0;
    for message in published {
        let mut slowest = Some(message.at);
        for (k, &node) in live.iter().enumerate() {
            if node == message.origin {
                continue;
            }
            slowest = match (slowest, arrivals[k].get(&message.id)) {
                (Some(slowest), Some(&at)) => Some(slowest.max(at)),
                _ => None,
            };
        }
        match slowest {
            Some(at) => times.push(at.saturating_sub(message.at)),
            None => incomplete += 1,
        }
    }
    times.sort_unstable();
    (times, incomplete)
}
