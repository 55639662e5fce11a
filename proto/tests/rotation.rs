//! Cluster-wide key rotation in the simulation: install, use, remove on a
//! 3-node cluster under loss while messages flow, with none lost and none
//! delivered twice; keyring reports; refusals come back as failed acks.

#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rossip_proto::node::{Event, KeyringEvent};
use rossip_proto::seal::{ClusterKey, KEY_BYTES, KeyId, Keyring};
use rossip_proto::testing::Sim;
use rossip_proto::wire::KeyOp;
use rossip_proto::{MessageId, NodeId};

use common::{all_alive, count_delivered, seed};

const OLD: [u8; KEY_BYTES] = [1; KEY_BYTES];
const NEW: [u8; KEY_BYTES] = [2; KEY_BYTES];

fn keyed_cluster(seed: u64) -> Sim {
    let mut sim = Sim::new(Instant::now(), seed);
    for index in 0..3 {
        let mut config = sim.config(index, &format!("n{index}"));
        config.keyring = Some(Keyring::new(ClusterKey::new(&OLD), Vec::new()));
        sim.add_node_with(config);
    }
    sim.contact(1, 0);
    sim.contact(2, 0);
    assert!(
        sim.run_until(Duration::from_secs(20), |sim| all_alive(sim, &[0, 1, 2])),
        "seed {seed:#x}: the keyed nodes did not join"
    );
    sim
}

/// The acks node `index` got for the command stamped `stamp`: (from, ok, error).
fn acks(sim: &Sim, index: usize, stamp: u64) -> Vec<(NodeId, bool, String)> {
    sim.host(index)
        .events
        .iter()
        .filter_map(|(_, event)| match event {
            Event::Keyring(KeyringEvent::Ack {
                from,
                reply_to,
                ok,
                error,
                ..
            }) if *reply_to == stamp => Some((*from, *ok, error.clone())),
            _ => None,
        })
        .collect()
}

/// Applies `op` on node `index` and sends it to the others, repeating the
/// broadcast (commands are idempotent) until every other node acked one
/// copy, while `publish` keeps messages flowing. Returns the acks.
fn run_step(
    sim: &mut Sim,
    index: usize,
    op: &KeyOp,
    publish: &mut impl FnMut(&mut Sim),
) -> Vec<(NodeId, bool, String)> {
    sim.with_node(index, |node, _| node.apply_key_op(op))
        .unwrap_or_else(|e| panic!("seed {:#x}: {op:?} refused locally: {e}", sim.seed()));
    let others: BTreeSet<NodeId> = (0..3).filter(|&i| i != index).map(Sim::id).collect();
    let mut answered: Vec<(NodeId, bool, String)> = Vec::new();
    for _attempt in 0..20 {
        let request = sim
            .with_node(index, |node, now| node.broadcast_key_op(op.clone(), now))
            .expect("broadcast");
        for _ in 0..10 {
            publish(sim);
            sim.run_for(Duration::from_millis(50));
        }
        for ack in acks(sim, index, request.stamp) {
            if !answered.iter().any(|(from, ..)| *from == ack.0) {
                answered.push(ack);
            }
        }
        let from: BTreeSet<NodeId> = answered.iter().map(|(from, ..)| *from).collect();
        if from == others {
            return answered;
        }
    }
    panic!(
        "seed {:#x}: {op:?} was not acked by every node: {answered:?}",
        sim.seed()
    );
}

#[test]
fn rotating_keys_under_loss_loses_no_message() {
    let seed = seed() ^ 0x7077;
    let mut sim = keyed_cluster(seed);
    sim.set_loss(0.1);
    let mut sent: Vec<MessageId> = Vec::new();
    let mut counter = 0u64;
    let mut publish = |sim: &mut Sim| {
        counter += 1;
        let origin = usize::try_from(counter % 2).expect("small");
        let message = sim
            .publish(origin, &format!("during rotation {counter}"))
            .expect("publish");
        sent.push(message.id);
    };
    let old = ClusterKey::new(&OLD).id();
    let new = ClusterKey::new(&NEW).id();
    for op in [KeyOp::Install(NEW), KeyOp::Use(new.0), KeyOp::Remove(old.0)] {
        let answered = run_step(&mut sim, 2, &op, &mut publish);
        assert!(
            answered.iter().all(|(_, ok, _)| *ok),
            "seed {seed:#x}: {op:?} failed somewhere: {answered:?}"
        );
    }
    for _ in 0..20 {
        publish(&mut sim);
        sim.run_for(Duration::from_millis(50));
    }
    sim.set_loss(0.0);
    sim.run_for(Duration::from_secs(10));
    for index in 0..3 {
        assert_eq!(
            sim.node(index).key_ids(),
            vec![new],
            "seed {seed:#x}: n{index} ends with only the new key"
        );
        for id in &sent {
            assert_eq!(
                count_delivered(&sim, index, *id),
                1,
                "seed {seed:#x}: n{index} delivered {id} not exactly once ({} sent)",
                sent.len()
            );
        }
        let changed = sim
            .host(index)
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Keyring(KeyringEvent::Changed { .. })))
            .count();
        assert_eq!(
            changed,
            if index == 2 { 0 } else { 3 },
            "seed {seed:#x}: n{index} reports each change once (repeats change nothing)"
        );
    }
    assert!(sent.len() > 50, "messages flowed throughout");
    assert!(sim.lost > 0, "the loss was in force");
}

#[test]
fn reports_list_every_keyring_and_refusals_come_back() {
    let seed = seed() ^ 0x7078;
    let mut sim = keyed_cluster(seed);
    let old = ClusterKey::new(&OLD).id();
    let new = ClusterKey::new(&NEW).id();
    // n1 gets the new key and seals with it; n0 holds it (so it can read
    // n1); n2 does not have it.
    for op in [KeyOp::Install(NEW), KeyOp::Use(new.0)] {
        sim.with_node(1, |node, _| node.apply_key_op(&op))
            .expect("apply");
    }
    sim.with_node(0, |node, _| node.apply_key_op(&KeyOp::Install(NEW)))
        .expect("apply");
    let query = sim
        .with_node(0, |node, now| node.query_keyrings(now))
        .expect("query");
    assert_eq!(query.targets.len(), 2);
    sim.run_for(Duration::from_secs(1));
    let mut reports: Vec<(NodeId, KeyId, Vec<KeyId>)> = sim
        .host(0)
        .events
        .iter()
        .filter_map(|(_, event)| match event {
            Event::Keyring(KeyringEvent::Report {
                from,
                reply_to,
                primary,
                ids,
                ..
            }) if *reply_to == query.stamp => Some((*from, *primary, ids.clone())),
            _ => None,
        })
        .collect();
    reports.sort();
    let mut expected = vec![
        (Sim::id(1), new, vec![new, old]),
        (Sim::id(2), old, vec![old]),
    ];
    expected.sort();
    assert_eq!(reports, expected, "seed {seed:#x}");
    // n0 asks the others to use the new key: n1 already does; n2 does not
    // hold it and refuses.
    let command = sim
        .with_node(0, |node, now| node.broadcast_key_op(KeyOp::Use(new.0), now))
        .expect("broadcast");
    sim.run_for(Duration::from_secs(1));
    let answers = acks(&sim, 0, command.stamp);
    assert_eq!(answers.len(), 2, "seed {seed:#x}: {answers:?}");
    let answer_of = |index: usize| {
        answers
            .iter()
            .find(|(from, ..)| *from == Sim::id(index))
            .unwrap_or_else(|| panic!("no answer from n{index}: {answers:?}"))
    };
    assert!(answer_of(1).1, "n1 already uses it: {answers:?}");
    assert!(
        !answer_of(2).1 && answer_of(2).2.contains("not installed"),
        "n2 refuses: {answers:?}"
    );
    // Every answer was to a request n0 had sent, to a node it went to.
    let dropped = |sim: &Sim| {
        sim.node(0)
            .stats()
            .dropped
            .get("keyring_unsolicited")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(dropped(&sim), 0);
}

#[test]
fn members_declared_failed_still_get_and_answer_key_commands() {
    let seed = seed() ^ 0x7079;
    let mut sim = keyed_cluster(seed);
    sim.isolate(2);
    let failed = sim.run_until(Duration::from_secs(60), |sim| {
        sim.state(0, 2) == Some(rossip_proto::node::PeerState::Failed)
            && sim.state(2, 0) == Some(rossip_proto::node::PeerState::Failed)
    });
    assert!(
        failed,
        "seed {seed:#x}: the cut-off node was not declared failed"
    );
    sim.heal(2);
    // At once, before membership heals: n2 (which has both others as
    // failed) installs a key everywhere; n0 and n1 (which have n2 as
    // failed) apply and answer.
    let command = sim
        .with_node(2, |node, now| {
            node.apply_key_op(&KeyOp::Install(NEW))?;
            node.broadcast_key_op(KeyOp::Install(NEW), now)
        })
        .expect("install");
    assert_eq!(command.targets.len(), 2, "failed members are asked too");
    sim.run_for(Duration::from_secs(1));
    let answers = acks(&sim, 2, command.stamp);
    assert_eq!(answers.len(), 2, "seed {seed:#x}: {answers:?}");
    assert!(answers.iter().all(|(_, ok, _)| *ok), "{answers:?}");
    let new = ClusterKey::new(&NEW).id();
    for index in 0..2 {
        assert!(
            sim.node(index).key_ids().contains(&new),
            "seed {seed:#x}: n{index} installed the key"
        );
    }
}
