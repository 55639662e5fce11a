//! Two running nodes with one key (a state directory copied to another
//! machine), in the deterministic simulation: no renewal race whatever
//! their generations, the copy with the lower (generation, address) reports
//! the conflict once, and after it takes a new identity both deliver.
//! `ROSSIP_TEST_SEED` replays one seed.
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod common;

use std::time::{Duration, Instant};

use common::seed;
use rossip_proto::NodeId;
use rossip_proto::node::{Event, IdentityInUse, PeerState};
use rossip_proto::sign::NodeKey;
use rossip_proto::testing::Sim;

/// The normal node, the original and its copy.
const OTHER: usize = 0;
const ORIGINAL: usize = 1;
const CLONE: usize = 2;

/// Generation of the original; the copy's is `ORIGINAL_GENERATION + gap`.
const ORIGINAL_GENERATION: u64 = 1_000;

/// Messages the original sends before its copy starts, under numbers the
/// copy starts from too.
const BEFORE_THE_COPY: u64 = 3;

/// How long the copies run side by side in each test: long enough for
/// thousands of renewals if they raced (one per round trip).
const WINDOW: Duration = Duration::from_secs(20);

/// Generous bound of renewals: a copy may be declared down once or twice
/// before it hears of the other (they are not supposed to race at all).
const MAX_RENEWALS: u64 = 3;

/// Node 0 normal; node 1 with key 1 at generation 1000; node 2 with node 1's
/// key, at its own address and generation `1000 + gap`, joining once 0 and
/// 1 are alive to each other.
fn clone_joins(seed: u64, gap: u64) -> Sim {
    let mut sim = Sim::new(Instant::now(), seed);
    sim.add_node("other");
    let mut original = sim.config(ORIGINAL, "original");
    original.generation = ORIGINAL_GENERATION;
    sim.add_node_with(original);
    sim.contact(ORIGINAL, OTHER);
    let joined = sim.run_until(Duration::from_secs(10), |sim| {
        sim.state(OTHER, ORIGINAL) == Some(PeerState::Alive)
            && sim.state(ORIGINAL, OTHER) == Some(PeerState::Alive)
    });
    assert!(joined, "seed {seed:#x}: the original did not join");
    // Sent after the state directory was copied: the copy's numbers
    // start where these did.
    let before: Vec<_> = (0..BEFORE_THE_COPY)
        .map(|n| {
            sim.publish(ORIGINAL, &format!("before the copy {n}"))
                .expect("publish")
                .id
        })
        .collect();
    let delivered = sim.run_until(Duration::from_secs(10), |sim| {
        before
            .iter()
            .all(|id| common::count_delivered(sim, OTHER, *id) == 1)
    });
    assert!(
        delivered,
        "seed {seed:#x}: the original's messages did not arrive"
    );
    let mut clone = sim.config(CLONE, "clone");
    clone.key = Sim::key(ORIGINAL);
    clone.generation = ORIGINAL_GENERATION + gap;
    sim.add_node_with(clone);
    sim.contact(CLONE, OTHER);
    sim
}

/// Every identity conflict a node reported, by node.
fn conflicts(sim: &Sim) -> Vec<(usize, IdentityInUse)> {
    (0..sim.len())
        .flat_map(|index| {
            sim.host(index)
                .events
                .iter()
                .filter_map(move |(_, e)| match e {
                    Event::IdentityInUse(conflict) => Some((index, conflict.clone())),
                    _ => None,
                })
        })
        .collect()
}

/// Runs `duration` in steps, doing what the daemon does on a conflict:
/// the reporting node takes a new key (`taken` counts them).
fn run_switching(sim: &mut Sim, duration: Duration, taken: &mut usize) {
    let end = sim.elapsed() + duration;
    while sim.elapsed() < end {
        sim.run_for(Duration::from_millis(50));
        let reported = conflicts(sim);
        for (index, conflict) in reported.iter().skip(*taken) {
            let key = NodeKey::for_testing(1_000 + *taken as u64);
            let generation = conflict.our_generation + 1;
            sim.with_node(*index, |node, now| {
                node.take_new_identity(key, generation, now);
            });
        }
        *taken = reported.len();
    }
}

/// Whether `observer` sees the node `id` alive at `addr`.
fn sees_alive(sim: &Sim, observer: usize, id: NodeId, index: usize) -> bool {
    sim.node(observer)
        .member(&id)
        .is_some_and(|m| m.state == PeerState::Alive && m.addr == Sim::addr(index))
}

#[test]
fn the_older_copy_takes_a_new_identity_and_both_deliver() {
    let seed = seed();
    // A copy started far later (the gap that made thousands of renewals),
    // one just after, and one at the same generation (the address decides).
    for gap in [500_000, 1, 0] {
        let mut sim = clone_joins(seed, gap);
        let mut taken = 0;
        run_switching(&mut sim, WINDOW, &mut taken);

        let reported = conflicts(&sim);
        assert_eq!(
            reported.len(),
            1,
            "seed {seed:#x} gap {gap}: one report expected: {reported:#?}"
        );
        let (reporter, conflict) = &reported[0];
        // (generation, address): the clone is higher in every case here
        // (later, or equal with the higher address 10.0.0.3).
        assert_eq!(*reporter, ORIGINAL, "seed {seed:#x} gap {gap}");
        assert_eq!(conflict.ours, Sim::addr(ORIGINAL));
        assert_eq!(conflict.theirs, Sim::addr(CLONE));
        assert_eq!(conflict.id, Sim::id(ORIGINAL));
        for index in 0..sim.len() {
            let renewals = sim.node(index).stats().renewals;
            assert!(
                renewals <= MAX_RENEWALS,
                "seed {seed:#x} gap {gap}: node {index} renewed {renewals} times"
            );
        }

        // The copy learnt the numbers the original used under the shared
        // id (from their messages, repaired to it) and continues after them.
        assert!(
            sim.node(CLONE).next_seq() > BEFORE_THE_COPY,
            "seed {seed:#x} gap {gap}: the copy would reuse the original's numbers"
        );
        let new_id = sim.node(ORIGINAL).id();
        assert_ne!(new_id, Sim::id(ORIGINAL), "the original kept the shared id");
        assert_eq!(sim.node(CLONE).id(), Sim::id(ORIGINAL));
        let settled = sim.run_until(Duration::from_secs(20), |sim| {
            sees_alive(sim, OTHER, new_id, ORIGINAL)
                && sees_alive(sim, OTHER, Sim::id(ORIGINAL), CLONE)
                && sees_alive(sim, CLONE, new_id, ORIGINAL)
                && sees_alive(sim, ORIGINAL, Sim::id(ORIGINAL), CLONE)
        });
        assert!(
            settled,
            "seed {seed:#x} gap {gap}: the two did not settle as two members: other sees {:#?}",
            sim.node(OTHER).members().collect::<Vec<_>>()
        );

        let sent: Vec<_> = [ORIGINAL, CLONE, OTHER]
            .into_iter()
            .map(|index| {
                sim.publish(index, &format!("from {index} after gap {gap}"))
                    .expect("publish")
                    .id
            })
            .collect();
        let delivered = sim.run_until(Duration::from_secs(20), |sim| {
            (0..sim.len()).all(|index| {
                sent.iter()
                    .all(|id| common::count_delivered(sim, index, *id) == 1)
            })
        });
        assert!(
            delivered,
            "seed {seed:#x} gap {gap}: not every message reached every node once: {:?}",
            (0..sim.len())
                .map(|index| sent
                    .iter()
                    .map(|id| common::count_delivered(&sim, index, *id))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
        let before = sim.node(ORIGINAL).stats().renewals + sim.node(CLONE).stats().renewals;
        sim.run_for(WINDOW);
        let after = sim.node(ORIGINAL).stats().renewals + sim.node(CLONE).stats().renewals;
        assert_eq!(before, after, "seed {seed:#x} gap {gap}: renewals went on");
        assert_eq!(conflicts(&sim).len(), 1, "seed {seed:#x} gap {gap}");
    }
}

/// Even if nobody acts on the report, the copies do not race: the renewal
/// race needs each copy's foca to declare the other down, and identities of
/// a node's own id at other addresses never reach its foca.
#[test]
fn copies_that_keep_one_id_do_not_race() {
    let seed = seed();
    let mut sim = clone_joins(seed, 500_000);
    sim.run_for(WINDOW);
    let first = sim.node(ORIGINAL).stats().datagrams_sent;
    sim.run_for(WINDOW);
    let second = sim.node(ORIGINAL).stats().datagrams_sent - first;
    for index in 0..sim.len() {
        let renewals = sim.node(index).stats().renewals;
        assert!(
            renewals <= MAX_RENEWALS,
            "seed {seed:#x}: node {index} renewed {renewals} times"
        );
    }
    let reported = conflicts(&sim);
    assert_eq!(
        reported.len(),
        1,
        "seed {seed:#x}: reported once, not again: {reported:#?}"
    );
    // A steady node sends a few datagrams a second (probes, gossip,
    // digests); a race sends one per round trip, thousands a second.
    let per_second = second / WINDOW.as_secs();
    assert!(
        per_second < 100,
        "seed {seed:#x}: the original sends {per_second} datagrams a second"
    );
}
