//! Helpers shared by the scenario test files.
#![allow(dead_code)] // each test file uses a different subset

use std::time::{Duration, Instant};

use rossip_proto::MessageId;
use rossip_proto::node::PeerState;
use rossip_proto::testing::Sim;

/// The seed of every scenario: `ROSSIP_TEST_SEED` (decimal or 0x-hex) to
/// replay or explore, else a fixed one.
pub fn seed() -> u64 {
    let Ok(text) = std::env::var("ROSSIP_TEST_SEED") else {
        return 0x5eed_0001;
    };
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.expect("ROSSIP_TEST_SEED is a u64")
}

/// Three nodes; 1 and 2 contact 0. Returns once all are mutually alive.
pub fn three_joined(seed: u64) -> Sim {
    let mut sim = Sim::new(Instant::now(), seed);
    for name in ["alpha", "beta", "gamma"] {
        sim.add_node(name);
    }
    sim.contact(1, 0);
    sim.contact(2, 0);
    let joined = sim.run_until(Duration::from_secs(10), |sim| all_alive(sim, &[0, 1, 2]));
    assert!(
        joined,
        "seed {seed:#x}: nodes did not join: {:#?}",
        sim.trace()
    );
    sim
}

/// Whether every node in `nodes` sees every other as alive.
pub fn all_alive(sim: &Sim, nodes: &[usize]) -> bool {
    nodes.iter().all(|&a| {
        nodes
            .iter()
            .all(|&b| a == b || sim.state(a, b) == Some(PeerState::Alive))
    })
}

/// How many times node `index` delivered message `id`.
pub fn count_delivered(sim: &Sim, index: usize, id: MessageId) -> usize {
    sim.delivered_messages(index)
        .iter()
        .filter(|m| m.id == id)
        .count()
}

/// Node `index`'s history, as ids, oldest first.
pub fn history_ids(sim: &Sim, index: usize) -> Vec<MessageId> {
    sim.node(index).history().map(|m| m.id).collect()
}

/// Restarts node `index` as run `generation` named `name` (same id and
/// address, a fresh state) and has it contact node `contact`.
pub fn restart_as(sim: &mut Sim, index: usize, name: &str, generation: u64, contact: usize) {
    let mut config = sim.config(index, name);
    config.generation = generation;
    sim.restart(index, config);
    sim.contact(index, contact);
}
