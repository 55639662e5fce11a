//! Scenarios with dozens of nodes: membership and delivery still converge
//! quickly (kept small enough to run by default).
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

use std::time::{Duration, Instant};

use rossip_proto::node::{Event, PeerState};
use rossip_proto::testing::Sim;

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
