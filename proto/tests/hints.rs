//! Discovery hints in the deterministic simulation: a node fed a flood of
//! forged addresses (as mDNS records would name them) greets them no faster
//! than its hello rate, holds no more of them than its bound, and still
//! greets and joins a real node hinted in the middle of the flood.
//! `ROSSIP_TEST_SEED` replays one seed.
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::seed;
use rossip_proto::node::{HintConfig, HintDrop, PeerState};
use rossip_proto::testing::Sim;

/// A forged address: one host outside the simulation, many ports.
fn forged(n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(192, 0, 2, 66), 20_000 + (n % 40_000) as u16))
}

#[test]
fn a_hint_flood_keeps_to_the_hello_rate_and_a_real_node_still_joins() {
    let seed = seed();
    let mut sim = Sim::new(Instant::now(), seed);
    let victim = sim.add_node("victim");
    let real = sim.add_node("real");
    let config = HintConfig::default();
    let start = sim.now();
    let mut n = 0;
    // 500 forged hints a second for 30 s; the real node's record halfway.
    for step in 0..3_000u32 {
        for _ in 0..5 {
            sim.with_node(victim, |node, now| node.handle_hint(forged(n), now));
            n += 1;
        }
        if step == 1_500 {
            sim.with_node(victim, |node, now| node.handle_hint(Sim::addr(real), now));
        }
        sim.run_for(Duration::from_millis(10));
        assert!(sim.node(victim).unverified_hints() <= config.max_unverified);
    }
    let elapsed = sim.now().duration_since(start).as_secs_f64();
    let stats = sim.node(victim).hint_stats().clone();
    let bound = f64::from(config.hello_burst) + f64::from(config.hellos_per_second) * elapsed;
    assert!(
        stats.hellos_sent as f64 <= bound,
        "seed {seed:#x}: {} hellos in {elapsed} s (bound {bound})",
        stats.hellos_sent
    );
    assert_eq!(stats.hints, u64::from(n) + 1, "seed {seed:#x}");
    assert!(
        stats.dropped.get(&HintDrop::SetFull).copied().unwrap_or(0) > 0,
        "seed {seed:#x}: {stats:?}"
    );
    // The real node answered: a member, and no longer an unverified hint.
    let real_id = Sim::id(real);
    assert_eq!(
        sim.node(victim).member(&real_id).map(|m| m.state),
        Some(PeerState::Alive),
        "seed {seed:#x}: the real node did not join during the flood"
    );
}
