//! Scenarios with dozens to a hundred nodes: membership and delivery still
//! converge quickly (kept small enough to run by default; `sim-bench` runs
//! the same scenario with a thousand).
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

use std::time::{Duration, Instant};

use rossip_proto::node::{Event, PeerState, ProtocolConfig};
use rossip_proto::testing::Sim;
use rossip_proto::testing::scenario::{ScaleConfig, ScaleReport, run_scale};

mod common;
use common::seed;

/// Whether every node in `0..n` sees all `n - 1` others alive (cheap
/// enough to check every 100 ms of virtual time for dozens of nodes).
fn fully_joined(sim: &Sim, n: usize) -> bool {
    (0..n).all(|i| {
        sim.node(i)
            .members()
            .filter(|m| m.state == PeerState::Alive)
            .count()
            == n - 1
    })
}

/// Runs in 100 ms steps until `done` or `limit`; returns whether `done`.
fn run_until_coarse(sim: &mut Sim, limit: Duration, done: impl Fn(&Sim) -> bool) -> bool {
    let deadline = sim.elapsed() + limit;
    while sim.elapsed() < deadline {
        sim.run_for(Duration::from_millis(100));
        if done(sim) {
            return true;
        }
    }
    false
}

#[test]
fn fifty_nodes_joined_through_one_seed_converge() {
    let n = 50;
    let seed = seed() ^ 50;
    let mut sim = Sim::new(Instant::now(), seed);
    for i in 0..n {
        sim.add_node(&format!("n{i}"));
    }
    for i in 1..n {
        sim.contact(i, 0);
        sim.run_for(Duration::from_millis(20));
    }
    let joined = run_until_coarse(&mut sim, Duration::from_secs(10), |sim| {
        fully_joined(sim, n)
    });
    assert!(joined, "seed {seed:#x}: membership did not converge");

    let sent = sim.publish(7, "to all").expect("publish");
    let everywhere = run_until_coarse(&mut sim, Duration::from_secs(3), |sim| {
        (0..n).all(|i| sim.node(i).message(&sent.id).is_some())
    });
    assert!(everywhere, "seed {seed:#x}: message did not reach everyone");

    sim.crash(3);
    let failed = run_until_coarse(&mut sim, Duration::from_secs(10), |sim| {
        (0..n)
            .filter(|&i| i != 3)
            .all(|i| sim.state(i, 3) == Some(PeerState::Failed))
    });
    assert!(failed, "seed {seed:#x}: crash not detected everywhere");
    let false_suspicions = (0..n)
        .flat_map(|i| sim.host(i).events.iter())
        .filter(|(_, e)| {
            matches!(e, Event::Peer(c) if c.member.state == PeerState::Suspect
                && c.member.id != Sim::id(3))
        })
        .count();
    assert_eq!(
        false_suspicions, 0,
        "seed {seed:#x}: no loss, no false suspicion"
    );
}

/// The issue-4 metrics of a scale run, one per line, with the seed.
fn describe(report: &ScaleReport) -> String {
    let cold = &report.cold_start;
    let d = &report.dissemination;
    format!(
        "seed {:#x}: {} nodes, loss {:.0}%, crashed {:?}\n\
         cold start: {}/{} with the full view, p50 {:?} p99 {:?} max {:?}\n\
         idle: {:.0} bytes/node/s ({:.1} datagrams/node/s)\n\
         delivery: {}\n\
         all delivered {:?} after the last publish\n\
         push+repair per message: {:.2}/node mean, busiest node {} (n{})\n\
         all datagrams per message: {:.2}/node mean ({:.2} above idle), busiest {:.2}",
        report.config.seed,
        report.config.nodes,
        report.config.loss * 100.0,
        report.crashed,
        cold.converged(),
        cold.nodes,
        cold.percentile(0.5),
        cold.percentile(0.99),
        cold.percentile(1.0),
        report.idle_bytes_per_node_per_sec,
        report.idle_datagrams_per_node_per_sec,
        report.delivery,
        report.drained_after,
        d.mean_per_node,
        d.busiest,
        d.busiest_node,
        report.all_traffic.mean,
        report.excess_per_message,
        report.all_traffic.busiest,
    )
}

#[test]
fn a_hundred_nodes_under_loss_and_crashes_deliver_every_message() {
    let seed = seed() ^ 100;
    let config = ScaleConfig::new(100, seed);
    assert_eq!((config.loss, config.crash_fraction), (0.05, 0.01));
    let report = run_scale(&config, Instant::now(), &mut |phase| {
        eprintln!("seed {seed:#x}: {phase}");
    });
    let summary = describe(&report);
    println!("{summary}");

    assert_eq!(report.crashed.len(), 1, "{summary}");
    assert_eq!(report.published.len(), config.messages, "{summary}");
    assert!(report.delivery.is_complete(), "{summary}");
    assert_eq!(report.delivery.live_nodes, 99, "{summary}");
    assert!(
        report.delivery.max() <= Some(Duration::from_secs(20)),
        "{summary}"
    );
    assert!(report.drained_after.is_some(), "{summary}");
    // Sanity of the measurements: every live node but the origin got each
    // message, each at least once by push or repair.
    assert!(
        report.dissemination.datagrams >= report.delivery.expected as u64,
        "{summary}"
    );
    assert!(report.idle_bytes_per_node_per_sec > 0.0, "{summary}");

    // Targets of issue 4 the protocol may not meet yet: printed, not asserted.
    let rounds = ProtocolConfig::default().probe_period * 5;
    let p99 = report.delivery.p99().unwrap_or_default();
    println!(
        "targets: p99 {p99:?} <= {rounds:?}: {}; mean push+repair/message/node {:.2} <= 3: {}; \
         busiest {} <= ~50: {}; cold start full view everywhere: {}",
        p99 <= rounds,
        report.dissemination.mean_per_node,
        report.dissemination.mean_per_node <= 3.0,
        report.dissemination.busiest,
        report.dissemination.busiest <= 50,
        report.cold_start.is_complete(),
    );
}

#[test]
fn the_scale_scenario_replays_from_its_seed() {
    let run = |seed| {
        let mut config = ScaleConfig::new(20, seed);
        config.messages = 6;
        config.crash_fraction = 0.05;
        config.idle = Duration::from_secs(2);
        let report = run_scale(&config, Instant::now(), &mut |_| {});
        (
            report.crashed,
            report.delivery.times,
            report.dissemination.datagrams,
            report.cold_start.times,
        )
    };
    let seed = seed() ^ 20;
    assert_eq!(run(seed), run(seed), "seed {seed:#x}");
}
