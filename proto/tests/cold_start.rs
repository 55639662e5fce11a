//! A cold start reaches the full member view on every node: 200 nodes
//! joining through 3 seeds, each node ending with all 199 others alive.
//! SWIM gossip alone leaves a tail of nodes that miss a few members for a
//! minute or more; membership anti-entropy (`node::member_sync`) closes it.
//! `ROSSIP_TEST_SEED` replays one seed.
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod common;

use std::time::{Duration, Instant};

use common::seed;
use rossip_proto::node::PeerState;
use rossip_proto::testing::Sim;
use rossip_proto::testing::scenario::{ColdStart, ScaleConfig, run_cold_start};

const NODES: usize = 200;

/// Far beyond the few seconds it takes (the joins alone span one).
const DEADLINE: Duration = Duration::from_secs(30);

/// Runs a cold start of [`NODES`] nodes through 3 seeds at `loss`.
fn cold_start(seed: u64, loss: f64) -> (Sim, ColdStart) {
    let mut config = ScaleConfig::new(NODES, seed);
    config.seeds = 3;
    config.cold_start_limit = DEADLINE;
    let mut sim = Sim::new(Instant::now(), seed);
    sim.set_record_trace(false);
    sim.set_loss(loss);
    let report = run_cold_start(&mut sim, &config, &mut |_| {});
    (sim, report)
}

/// What a failure needs: the seed, the times, and who lacks whom.
fn describe(seed: u64, loss: f64, sim: &Sim, report: &ColdStart) -> String {
    let mut lacking = Vec::new();
    for i in 0..NODES {
        let missing: Vec<usize> = (0..NODES)
            .filter(|&j| j != i && sim.state(i, j) != Some(PeerState::Alive))
            .collect();
        if !missing.is_empty() && lacking.len() < 10 {
            let shown = &missing[..missing.len().min(10)];
            lacking.push(format!("n{i} lacks {} (e.g. {shown:?})", missing.len()));
        }
    }
    format!(
        "seed {seed:#x} (ROSSIP_TEST_SEED to replay), loss {loss}: {}/{} nodes with the full \
         view within {DEADLINE:?} (joins spread over {:?}); p50 {:?}, max {:?}; {}",
        report.converged(),
        report.nodes,
        report.join_spread,
        report.percentile(0.5),
        report.percentile(1.0),
        lacking.join("; ")
    )
}

#[test]
fn two_hundred_nodes_through_three_seeds_all_reach_the_full_view() {
    for k in 0..3u64 {
        let seed = seed().wrapping_add(k.wrapping_mul(0x9e37_79b9)) ^ 200;
        let (sim, report) = cold_start(seed, 0.0);
        let summary = describe(seed, 0.0, &sim, &report);
        println!("{summary}");
        assert!(report.is_complete(), "{summary}");
        // Well within the deadline: a few seconds after the last join.
        assert!(
            report.percentile(1.0) <= Some(report.join_spread + Duration::from_secs(10)),
            "{summary}"
        );
    }
}

/// Whether node `index` sees all others alive.
fn has_full_view(sim: &Sim, index: usize) -> bool {
    sim.node(index)
        .members()
        .filter(|m| m.state == PeerState::Alive)
        .count()
        == NODES - 1
}

#[test]
fn a_cold_start_under_ten_percent_loss_still_reaches_the_full_view() {
    let loss = 0.10;
    let seed = seed() ^ 0x10_55;
    let mut sim = Sim::new(Instant::now(), seed);
    sim.set_record_trace(false);
    sim.set_loss(loss);
    for i in 0..NODES {
        sim.add_node(&format!("n{i}"));
    }
    let seed_of = |i: usize| if i < 3 { 0 } else { i % 3 };
    for i in 1..NODES {
        sim.contact(i, seed_of(i));
        sim.run_for(Duration::from_millis(5));
    }
    let join_spread = sim.elapsed();
    // A lost hello is retried, as the daemon does with its seeds, until the
    // node has a member; from then on membership is on its own.
    let mut report = ColdStart {
        nodes: NODES,
        join_spread,
        times: Vec::new(),
    };
    let mut pending: Vec<usize> = (0..NODES).collect();
    while !pending.is_empty() && sim.elapsed() < join_spread + DEADLINE {
        for i in 1..NODES {
            if sim.node(i).members().next().is_none() {
                sim.contact(i, seed_of(i));
            }
        }
        sim.run_for(Duration::from_millis(100));
        pending.retain(|&i| {
            let full = has_full_view(&sim, i);
            if full {
                report.times.push(sim.elapsed());
            }
            !full
        });
    }
    let summary = describe(seed, loss, &sim, &report);
    println!("{summary}");
    assert!(report.is_complete(), "{summary}");
}
