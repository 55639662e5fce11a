//! A cluster with a key: it works as without one, and nodes without the
//! key (or with another) never become members and deliver nothing.

#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod common;

use std::time::{Duration, Instant};

use rossip_proto::seal::{ClusterKey, KEY_BYTES, Keyring};
use rossip_proto::testing::Sim;

use common::{all_alive, count_delivered, seed};

/// The node's replay freshness span in milliseconds, the unit of its wall
/// clock.
fn freshness_ms(config: &rossip_proto::NodeConfig) -> u64 {
    u64::try_from(config.protocol.replay_freshness.as_millis()).expect("minutes")
}

fn keyring(byte: u8) -> Option<Keyring> {
    Some(Keyring::new(
        ClusterKey::new(&[byte; KEY_BYTES]),
        Vec::new(),
    ))
}

#[test]
fn a_keyed_cluster_works_and_keeps_outsiders_out() {
    let seed = seed() ^ 0x5ea1;
    let mut sim = Sim::new(Instant::now(), seed);
    // 0..3 share key 1; 3 has key 2; 4 has none.
    for (index, key) in [Some(1), Some(1), Some(1), Some(2), None]
        .into_iter()
        .enumerate()
    {
        let mut config = sim.config(index, &format!("n{index}"));
        config.keyring = key.and_then(keyring);
        sim.add_node_with(config);
    }
    for index in 1..5 {
        sim.contact(index, 0);
    }
    let joined = sim.run_until(Duration::from_secs(20), |sim| all_alive(sim, &[0, 1, 2]));
    assert!(joined, "seed {seed:#x}: the keyed nodes did not join");
    let sent = sim.publish(1, "for key holders only").expect("publish");
    let big = sim.publish(2, &"k".repeat(20_000)).expect("publish");
    sim.run_for(Duration::from_secs(5));
    for index in [0, 2] {
        assert_eq!(count_delivered(&sim, index, sent.id), 1);
    }
    assert_eq!(
        count_delivered(&sim, 0, big.id),
        1,
        "fragments are sealed too"
    );
    for outsider in [3, 4] {
        assert_eq!(
            sim.node(outsider).members().count(),
            0,
            "seed {seed:#x}: n{outsider} became a member of something"
        );
        assert_eq!(count_delivered(&sim, outsider, sent.id), 0);
        for index in 0..3 {
            assert!(
                sim.state(index, outsider).is_none(),
                "n{index} lists n{outsider}"
            );
        }
    }
    let dropped = |index: usize, reason: &str| {
        sim.node(index)
            .stats()
            .dropped
            .get(reason)
            .copied()
            .unwrap_or(0)
    };
    assert!(dropped(0, "unknown_key") > 0, "n3's hellos: another key");
    assert!(dropped(0, "unsealed_refused") > 0, "n4's hellos: plaintext");
}

#[test]
fn during_a_rotation_old_and_new_keys_interoperate() {
    let seed = seed() ^ 0x5ea2;
    let mut sim = Sim::new(Instant::now(), seed);
    let old = ClusterKey::new(&[1; KEY_BYTES]);
    let new = ClusterKey::new(&[2; KEY_BYTES]);
    // n0 seals with the old key, n1 already with the new one; both hold both.
    let rings = [
        Keyring::new(old.clone(), vec![new.clone()]),
        Keyring::new(new, vec![old]),
    ];
    for (index, ring) in rings.into_iter().enumerate() {
        let mut config = sim.config(index, &format!("n{index}"));
        config.keyring = Some(ring);
        sim.add_node_with(config);
    }
    sim.contact(1, 0);
    assert!(sim.run_until(Duration::from_secs(20), |sim| all_alive(sim, &[0, 1])));
    let a = sim.publish(0, "under the old key").expect("publish");
    let b = sim.publish(1, "under the new key").expect("publish");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(count_delivered(&sim, 1, a.id), 1);
    assert_eq!(count_delivered(&sim, 0, b.id), 1);
}

/// Drives two nodes by hand, delivering every datagram between them (and
/// recording each), until neither has anything to send.
fn exchange(
    nodes: &mut [rossip_proto::Node; 2],
    now: Instant,
    captured: &mut Vec<(usize, std::net::SocketAddr, Vec<u8>)>,
) {
    for _ in 0..100 {
        let mut quiet = true;
        for from in 0..2 {
            while let Some(transmit) = nodes[from].poll_transmit() {
                quiet = false;
                let to = 1 - from;
                let src = rossip_proto::testing::Sim::addr(from);
                captured.push((to, src, transmit.payload.clone()));
                nodes[to].handle_datagram(src, &transmit.payload, now);
            }
        }
        if quiet {
            return;
        }
    }
}

fn messages(node: &mut rossip_proto::Node) -> usize {
    std::iter::from_fn(|| node.poll_event())
        .filter(|event| matches!(event, rossip_proto::Event::Message(_)))
        .count()
}

#[test]
fn a_replayed_datagram_changes_nothing() {
    let start = Instant::now();
    let sim = Sim::new(start, seed() ^ 0x5ea3);
    let node = |index: usize| {
        let mut config = sim.config(index, &format!("n{index}"));
        config.keyring = keyring(1);
        rossip_proto::Node::new(config, start)
    };
    let mut nodes = [node(0), node(1)];
    let mut captured = Vec::new();
    nodes[0].handle_contact(Sim::addr(1), start);
    exchange(&mut nodes, start, &mut captured);
    assert_eq!(nodes[1].members().count(), 1, "the pair joined");
    let wall = sim.wall_ms();
    nodes[0]
        .publish(
            &rossip_proto::message::Draft::channel("general", "once"),
            wall,
            start,
        )
        .expect("publish");
    exchange(&mut nodes, start, &mut captured);
    assert_eq!(messages(&mut nodes[1]), 1);
    let members_before: Vec<_> = nodes[1].members().cloned().collect();

    // Every datagram of the exchange again, a minute later.
    let later = start + Duration::from_secs(60);
    let replayed_before = nodes[1]
        .stats()
        .dropped
        .get("replayed")
        .copied()
        .unwrap_or(0);
    let to_node_1: Vec<_> = captured
        .iter()
        .filter(|(to, ..)| *to == 1)
        .cloned()
        .collect();
    for (_, src, bytes) in &to_node_1 {
        nodes[1].handle_datagram(*src, bytes, later);
    }
    let replayed = nodes[1]
        .stats()
        .dropped
        .get("replayed")
        .copied()
        .unwrap_or(0)
        - replayed_before;
    assert_eq!(replayed, to_node_1.len() as u64, "every replay refused");
    assert_eq!(messages(&mut nodes[1]), 0, "nothing delivered twice");
    let members_after: Vec<_> = nodes[1].members().cloned().collect();
    assert_eq!(members_before.len(), members_after.len());
    assert!(
        std::iter::from_fn(|| nodes[1].poll_transmit())
            .next()
            .is_none(),
        "no answers to replays"
    );

    // A node that never heard of n0's run refuses the capture once it is
    // older than the freshness bound.
    let mut fresh = {
        let mut config = sim.config(2, "n2");
        config.keyring = keyring(1);
        config.wall_ms_at_start = wall + freshness_ms(&config) + 1_000;
        rossip_proto::Node::new(config, later)
    };
    for (_, src, bytes) in &to_node_1 {
        fresh.handle_datagram(*src, bytes, later);
    }
    assert_eq!(
        fresh.stats().dropped.get("stale").copied(),
        Some(to_node_1.len() as u64)
    );
    assert_eq!(fresh.members().count(), 0);
    assert_eq!(messages(&mut fresh), 0);
}

/// Each setting that keeps two nodes apart is named by `handle_datagram`
/// (besides its drop counter), so the driver can tell the operator; a bad
/// packet is not.
#[test]
fn configuration_mismatches_are_named() {
    use rossip_proto::Mismatch;

    let start = Instant::now();
    let sim = Sim::new(start, seed() ^ 0x5ea4);
    let node = |index: usize, cluster: &str, key: Option<u8>| {
        let mut config = sim.config(index, &format!("n{index}"));
        config.cluster = cluster.to_owned();
        config.keyring = key.and_then(keyring);
        rossip_proto::Node::new(config, start)
    };
    // What `from` says to `to` first (its hello), and what `to` makes of it.
    let first_words = |from: &mut rossip_proto::Node, to: &mut rossip_proto::Node| {
        from.handle_contact(Sim::addr(1), start);
        let hello = from.poll_transmit().expect("a hello");
        to.handle_datagram(Sim::addr(0), &hello.payload, start)
    };
    let other_key = ClusterKey::new(&[2; KEY_BYTES]).id();
    for (sender, receiver, expected) in [
        ((Some(1), "a"), (Some(1), "a"), None),
        ((None, "a"), (None, "b"), Some(Mismatch::OtherCluster)),
        ((Some(1), "a"), (Some(1), "b"), Some(Mismatch::OtherCluster)),
        ((None, "a"), (Some(1), "a"), Some(Mismatch::Unsealed)),
        (
            (Some(1), "a"),
            (None, "a"),
            Some(Mismatch::SealedWithoutKey),
        ),
        (
            (Some(2), "a"),
            (Some(1), "a"),
            Some(Mismatch::UnknownKey(other_key)),
        ),
    ] {
        let mut from = node(0, sender.1, sender.0);
        let mut to = node(1, receiver.1, receiver.0);
        let named = first_words(&mut from, &mut to);
        assert_eq!(named, expected, "{sender:?} to {receiver:?}");
        if let Some(mismatch) = named {
            assert_eq!(to.stats().dropped.get(mismatch.reason()), Some(&1));
        }
    }
    // A sender whose clock is 10 minutes ahead.
    let mut ahead = {
        let mut config = sim.config(0, "n0");
        config.cluster = "a".to_owned();
        config.keyring = keyring(1);
        config.wall_ms_at_start += 2 * freshness_ms(&config);
        rossip_proto::Node::new(config, start)
    };
    let mut to = node(1, "a", Some(1));
    assert_eq!(
        first_words(&mut ahead, &mut to),
        Some(Mismatch::ClockSkew),
        "a clock off by more than the freshness bound"
    );
    let mut keyed = node(1, "a", Some(1));
    assert_eq!(
        keyed.handle_datagram(Sim::addr(0), b"not rossip at all", start),
        None,
        "a bad packet is not a setting"
    );
}
