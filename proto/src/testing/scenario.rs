//! The scale scenario of issue 4, shared by the default-size test
//! (`proto/tests/scale.rs`) and the `sim-bench` binary: a cold start of N
//! nodes joined through a few seeds, a quiet settling phase, an idle phase,
//! then steady publishing under loss with some nodes crashing midway, until
//! every live node has every message (or a limit).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::stats::percentile;
use super::{
    DatagramsPerMessage, DeliveryReport, DisseminationReport, PhaseTraffic, Published, Sim,
};
use crate::node::PeerState;

/// What [`run_scale`] simulates.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Nodes 0..seeds are the seeds every other node contacts (round robin).
    pub seeds: usize,
    /// Datagram loss during the idle and publishing phases (the cold start
    /// is lossless, so that its time measures membership alone).
    pub loss: f64,
    /// Fraction of nodes that crash halfway through publishing.
    pub crash_fraction: f64,
    /// Messages published, each from a random live node.
    pub messages: usize,
    /// The run's seed.
    pub seed: u64,
    /// One-way latency.
    pub latency: Duration,
    /// Extra random latency, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Virtual time between two nodes' first contact with their seed.
    pub join_spacing: Duration,
    /// Give up waiting for the full member view after this long (from the
    /// last contact).
    pub cold_start_limit: Duration,
    /// Quiet time between the cold start and the idle phase, so that the
    /// idle figure measures the steady state, not the draining of the
    /// joins' gossip (SWIM retransmits each join for a while).
    pub settle: Duration,
    /// Length of the idle phase.
    pub idle: Duration,
    /// Virtual time between two publishes.
    pub publish_interval: Duration,
    /// Give up waiting for full delivery this long after the last publish.
    pub drain_limit: Duration,
    /// How often convergence conditions are checked (their resolution).
    pub check_every: Duration,
}

impl ScaleConfig {
    /// Defaults for `nodes` nodes: 3 seeds, 5% loss, 1% crashing, 36
    /// messages 100 ms apart, 1 ms latency, joins 5 ms apart, at most 60 s
    /// for the full member view, 30 s to settle, 10 s idle.
    pub fn new(nodes: usize, seed: u64) -> Self {
        ScaleConfig {
            nodes,
            seeds: 3,
            loss: 0.05,
            crash_fraction: 0.01,
            messages: 36,
            seed,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            join_spacing: Duration::from_millis(5),
            cold_start_limit: Duration::from_secs(60),
            settle: Duration::from_secs(30),
            idle: Duration::from_secs(10),
            publish_interval: Duration::from_millis(100),
            drain_limit: Duration::from_secs(60),
            check_every: Duration::from_millis(100),
        }
    }
}

/// How long nodes took to see every other node alive.
#[derive(Debug, Clone, Default)]
pub struct ColdStart {
    /// Nodes in the run.
    pub nodes: usize,
    /// Virtual time from the first contact to the last.
    pub join_spread: Duration,
    /// For every node that got there: time from the first contact until it
    /// first saw all others alive, sorted.
    pub times: Vec<Duration>,
}

impl ColdStart {
    /// Nodes that reached the full view.
    pub fn converged(&self) -> usize {
        self.times.len()
    }

    /// Whether every node reached the full view.
    pub fn is_complete(&self) -> bool {
        self.times.len() == self.nodes
    }

    /// The time by which a fraction `p` of the nodes that converged had.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.times, p)
    }
}

/// Everything [`run_scale`] measured.
#[derive(Debug, Clone)]
pub struct ScaleReport {
    /// What ran.
    pub config: ScaleConfig,
    /// Cold start convergence.
    pub cold_start: ColdStart,
    /// Mean bytes sent per node per second while idle (with loss).
    pub idle_bytes_per_node_per_sec: f64,
    /// Mean datagrams sent per node per second while idle.
    pub idle_datagrams_per_node_per_sec: f64,
    /// What was sent while idle, by node and by kind of datagram (the
    /// breakdown of the two figures above).
    pub idle_traffic: PhaseTraffic,
    /// Nodes live during the idle phase (what the idle figures are per).
    pub idle_nodes: usize,
    /// Nodes crashed during publishing.
    pub crashed: Vec<usize>,
    /// The messages published.
    pub published: Vec<Published>,
    /// Delivery to the nodes live at the end.
    pub delivery: DeliveryReport,
    /// Pushes and repairs per message.
    pub dissemination: DisseminationReport,
    /// All datagrams of the publishing phase per message (live nodes),
    /// membership and anti-entropy included.
    pub all_traffic: DatagramsPerMessage,
    /// Like `all_traffic.mean`, minus what the same nodes would have sent
    /// idle in that time: what the messages added.
    pub excess_per_message: f64,
    /// Virtual time from the last publish until every live node had every
    /// message; `None` if that did not happen within the drain limit.
    pub drained_after: Option<Duration>,
    /// Length of the publishing phase (first publish to drained or limit).
    pub publishing: Duration,
}

/// Runs the scenario of `config` from `start` (virtual time zero), telling
/// `progress` what phase it is in.
pub fn run_scale(
    config: &ScaleConfig,
    start: Instant,
    progress: &mut dyn FnMut(&str),
) -> ScaleReport {
    let mut sim = Sim::new(start, config.seed);
    sim.set_record_trace(false);
    sim.set_latency(config.latency);
    sim.set_jitter(config.jitter);
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5ca1_ab1e);
    let n = config.nodes;

    progress(&format!("cold start: {n} nodes via {} seeds", config.seeds));
    let cold_start = run_cold_start(&mut sim, config, progress);
    progress(&format!(
        "cold start: {}/{n} nodes saw all others alive (last after {:?})",
        cold_start.converged(),
        cold_start.percentile(1.0).unwrap_or_default()
    ));

    sim.set_loss(config.loss);
    progress(&format!("settling {:?}", config.settle));
    sim.run_for(config.settle);
    progress(&format!(
        "idle {:?} at {:.0}% loss",
        config.idle,
        config.loss * 100.0
    ));
    let idle_start = sim.traffic();
    sim.run_for(config.idle);
    let idle = sim.traffic().since(&idle_start);
    let live = sim.live_nodes();
    let idle_bytes = idle.bytes_per_node_per_sec(&live);
    let idle_datagrams = idle.datagrams_per_node_per_sec(&live);
    let idle_live = live.len();

    progress(&format!("publishing {} messages", config.messages));
    let phase_start = sim.traffic();
    let first = sim.published().len();
    let crash_count = (config.crash_fraction * n as f64).round() as usize;
    let mut crashed = Vec::new();
    for k in 0..config.messages {
        if k == config.messages / 2 {
            let mut candidates = sim.live_nodes();
            candidates.shuffle(&mut rng);
            crashed = candidates.into_iter().take(crash_count).collect();
            crashed.sort_unstable();
            for &i in &crashed {
                sim.crash(i);
            }
            progress(&format!("crashed {crashed:?}"));
        }
        let live = sim.live_nodes();
        let origin = live[rng.random_range(0..live.len())];
        // A publish can only fail on bad input; this text is valid.
        let _ = sim.publish(origin, &format!("message {k} from n{origin}"));
        sim.run_for(config.publish_interval);
    }
    let published: Vec<Published> = sim.published()[first..].to_vec();
    let last_publish = published.last().map_or(sim.elapsed(), |p| p.at);
    let drained = run_checked(&mut sim, config.drain_limit, config.check_every, |sim| {
        all_delivered(sim, &published)
    });
    let drained_after = drained.then(|| sim.elapsed().saturating_sub(last_publish));
    let phase: PhaseTraffic = sim.traffic().since(&phase_start);
    let live = sim.live_nodes();
    let all_traffic = phase.datagrams_per_message(published.len(), &live);
    let idle_share = idle_datagrams * phase.duration.as_secs_f64() / published.len().max(1) as f64;
    progress(&format!(
        "publishing done: {}",
        if drained {
            "every live node has every message"
        } else {
            "drain limit reached"
        }
    ));

    ScaleReport {
        config: config.clone(),
        cold_start,
        idle_bytes_per_node_per_sec: idle_bytes,
        idle_datagrams_per_node_per_sec: idle_datagrams,
        idle_nodes: idle_live,
        idle_traffic: idle,
        crashed,
        delivery: sim.delivery_report(&published),
        dissemination: sim.dissemination_report(&published),
        all_traffic,
        excess_per_message: all_traffic.mean - idle_share,
        drained_after,
        publishing: phase.duration,
        published,
    }
}

/// The cold start of [`run_scale`] on its own: adds `config.nodes` nodes to
/// `sim` (which should have none), has each contact a seed
/// `join_spacing` apart, then runs until every node saw all others alive
/// or `cold_start_limit`. The loss, latency and jitter are `sim`'s.
pub fn run_cold_start(
    sim: &mut Sim,
    config: &ScaleConfig,
    progress: &mut dyn FnMut(&str),
) -> ColdStart {
    let n = config.nodes;
    let seeds = config.seeds.clamp(1, n.max(1));
    for i in 0..n {
        sim.add_node(&format!("n{i}"));
    }
    let begin = sim.elapsed();
    for i in 1..n {
        sim.contact(i, if i < seeds { 0 } else { i % seeds });
        sim.run_for(config.join_spacing);
        if i % 250 == 0 {
            progress(&format!("cold start: {i}/{n} nodes contacted a seed"));
        }
    }
    let mut report = ColdStart {
        nodes: n,
        join_spread: sim.elapsed().saturating_sub(begin),
        times: Vec::new(),
    };
    let mut pending: Vec<usize> = (0..n).collect();
    let mut next_report = Duration::from_secs(10);
    run_checked(sim, config.cold_start_limit, config.check_every, |sim| {
        let now = sim.elapsed().saturating_sub(begin);
        if now >= next_report {
            next_report += Duration::from_secs(10);
            progress(&format!(
                "cold start: {now:.0?}: {}/{n} nodes with the full view",
                n - pending.len()
            ));
        }
        pending.retain(|&i| {
            let alive = sim
                .node(i)
                .members()
                .filter(|m| m.state == PeerState::Alive)
                .count();
            let full = alive == n - 1;
            if full {
                report.times.push(now);
            }
            !full
        });
        pending.is_empty()
    });
    report.times.sort_unstable();
    report
}

/// Runs in `every` steps until `done` (checked before the first step too)
/// or `limit`; returns whether `done` held.
fn run_checked(
    sim: &mut Sim,
    limit: Duration,
    every: Duration,
    mut done: impl FnMut(&Sim) -> bool,
) -> bool {
    let deadline = sim.elapsed() + limit;
    loop {
        if done(sim) {
            return true;
        }
        if sim.elapsed() >= deadline {
            return false;
        }
        sim.run_for(every.min(deadline - sim.elapsed()));
    }
}

/// Whether every live node holds every message of `published`.
fn all_delivered(sim: &Sim, published: &[Published]) -> bool {
    sim.live_nodes().into_iter().all(|i| {
        published
            .iter()
            .all(|p| sim.node(i).message(&p.id).is_some())
    })
}
