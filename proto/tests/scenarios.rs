//! Deterministic scenarios: several `Node`s on a simulated network
//! (`rossip_proto::testing::Sim`), virtual time, no sleeping.
//!
//! Every assertion message carries the seed; a run is replayed exactly by
//! the same seed.
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

use std::time::{Duration, Instant};

use rossip_proto::NodeId;
use rossip_proto::message::{Hlc, Message};
use rossip_proto::node::{Event, NodeConfig, PeerState, PublishError};
use rossip_proto::testing::{SIM_CLUSTER, Sim};
use rossip_proto::wire::{self, Body, ClusterId, Header};

mod common;
use common::{all_alive, count_delivered, history_ids, restart_as, seed, three_joined};

#[test]
fn three_nodes_become_mutually_alive() {
    let seed = seed();
    let sim = three_joined(seed);
    assert!(
        sim.elapsed() < Duration::from_secs(3),
        "seed {seed:#x}: joining took {:?}",
        sim.elapsed()
    );
    // Node 1 only contacted 0; it learned 2 through membership gossip.
    let contacted: Vec<_> = sim
        .host(1)
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Contacted { .. }))
        .collect();
    assert_eq!(contacted.len(), 1, "seed {seed:#x}: {contacted:?}");
    let beta = sim.member(0, 1).expect("0 knows 1");
    assert_eq!(beta.name, "beta");
    assert_eq!(beta.addr, Sim::addr(1));
    assert!(beta.last_seen.is_some());
    let alpha = sim.member(1, 0).expect("1 knows 0");
    assert!(alpha.rtt.is_some(), "the hello round trip is measured");
    // Every peer event starts with "new" (previous: None).
    for index in 0..3 {
        let first_states: Vec<_> = sim
            .host(index)
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Peer(change) => Some(change.previous),
                _ => None,
            })
            .collect();
        assert_eq!(
            first_states,
            vec![None, None],
            "seed {seed:#x} node {index}"
        );
    }
}

#[test]
fn a_message_is_delivered_exactly_once_everywhere() {
    let seed = seed();
    let mut sim = three_joined(seed);
    let sent = sim.publish(0, "hello").expect("publish");
    assert_eq!(sent.id.seq, 1);
    assert_eq!(sim.node(0).next_seq(), 2);
    sim.run_for(Duration::from_secs(5));
    for index in 0..3 {
        assert_eq!(
            count_delivered(&sim, index, sent.id),
            1,
            "seed {seed:#x} node {index}: {:#?}",
            sim.trace()
        );
        assert_eq!(sim.node(index).message(&sent.id), Some(&sent));
    }
    assert_eq!(sim.node(0).stats().messages_sent, 1);
    assert_eq!(sim.node(1).stats().messages_received, 1);
    assert_eq!(sim.node(2).stats().messages_received, 1);
}

#[test]
fn the_same_text_twice_is_two_messages() {
    let seed = seed();
    let mut sim = three_joined(seed);
    let first = sim.publish(1, "again").expect("publish");
    let second = sim.publish(1, "again").expect("publish");
    assert_ne!(first.id, second.id);
    assert!(first.ts < second.ts);
    sim.run_for(Duration::from_secs(5));
    for index in 0..3 {
        assert_eq!(count_delivered(&sim, index, first.id), 1, "seed {seed:#x}");
        assert_eq!(count_delivered(&sim, index, second.id), 1, "seed {seed:#x}");
        assert_eq!(history_ids(&sim, index), vec![first.id, second.id]);
    }
}

#[test]
fn publish_validates_its_input() {
    let seed = seed();
    let mut sim = three_joined(seed);
    assert_eq!(sim.publish(0, ""), Err(PublishError::Empty));
    assert!(matches!(
        sim.publish_in(0, "bad channel", "x"),
        Err(PublishError::Channel(_))
    ));
    let limit = rossip_proto::node::DEFAULT_MAX_TEXT_BYTES;
    let huge = "x".repeat(limit + 1);
    assert_eq!(
        sim.publish(0, &huge),
        Err(PublishError::TooLarge {
            size: limit + 1,
            max: limit
        })
    );
    let largest = "y".repeat(limit);
    let sent = sim.publish(0, &largest).expect("the largest text fits");
    sim.run_for(Duration::from_secs(3));
    for index in 1..3 {
        assert_eq!(count_delivered(&sim, index, sent.id), 1, "seed {seed:#x}");
        let arrived = sim.node(index).message(&sent.id).expect("in history");
        assert_eq!(arrived.text, largest, "reassembled intact");
    }
    assert_eq!(
        sim.node(0).next_seq(),
        2,
        "refused publishes use no sequence number"
    );
}

#[test]
fn a_crashed_node_becomes_failed_within_bounded_time() {
    let seed = seed();
    let mut sim = three_joined(seed);
    sim.crash(2);
    let crashed_at = sim.elapsed();
    let failed = sim.run_until(Duration::from_secs(10), |sim| {
        sim.state(0, 2) == Some(PeerState::Failed) && sim.state(1, 2) == Some(PeerState::Failed)
    });
    assert!(failed, "seed {seed:#x}: {:#?}", sim.trace());
    let took = sim.elapsed() - crashed_at;
    assert!(
        took <= Duration::from_secs(6),
        "seed {seed:#x}: took {took:?}"
    );
    // The survivors still see each other alive, and still deliver.
    assert!(all_alive(&sim, &[0, 1]));
    let sent = sim.publish(1, "still here").expect("publish");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(count_delivered(&sim, 0, sent.id), 1);
}

#[test]
fn leaving_shows_left_not_failed() {
    let seed = seed();
    let mut sim = three_joined(seed);
    assert_eq!(sim.leave(2), 2);
    assert!(sim.node(2).has_left());
    assert_eq!(sim.publish(2, "after leave"), Err(PublishError::Left));
    assert_eq!(sim.leave(2), 0, "leaving twice tells no one");
    let left_at = sim.host(0).events.len();
    sim.run_for(Duration::from_secs(15));
    for index in [0, 1] {
        assert_eq!(sim.state(index, 2), Some(PeerState::Left), "seed {seed:#x}");
        let later_states: Vec<PeerState> = sim.host(index).events
            [if index == 0 { left_at } else { 0 }..]
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Peer(c) if c.member.id == Sim::id(2) => Some(c.member.state),
                _ => None,
            })
            .collect();
        assert!(
            !later_states.contains(&PeerState::Failed),
            "seed {seed:#x} node {index}: {later_states:?}"
        );
    }
    assert!(all_alive(&sim, &[0, 1]));
    assert_eq!(sim.node(2).poll_timeout(), None);
}

#[test]
fn a_restarted_node_with_a_higher_generation_is_alive_again() {
    let seed = seed();
    let mut sim = three_joined(seed);
    sim.crash(2);
    let failed = sim.run_until(Duration::from_secs(10), |sim| {
        sim.state(0, 2) == Some(PeerState::Failed) && sim.state(1, 2) == Some(PeerState::Failed)
    });
    assert!(failed, "seed {seed:#x}");
    let mut config = sim.config(2, "gamma-2");
    config.generation = 2;
    config.first_seq = 101;
    sim.restart(2, config);
    sim.contact(2, 0);
    let back = sim.run_until(Duration::from_secs(10), |sim| all_alive(sim, &[0, 1, 2]));
    assert!(back, "seed {seed:#x}: {:#?}", sim.trace());
    assert_eq!(sim.member(1, 2).map(|m| m.name.as_str()), Some("gamma-2"));
    let sent = sim.publish(2, "back").expect("publish");
    assert_eq!(sent.id.seq, 101);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(count_delivered(&sim, 1, sent.id), 1);

    // Leave, then come back once more.
    sim.leave(2);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.state(0, 2), Some(PeerState::Left));
    restart_as(&mut sim, 2, "gamma-3", 3, 1);
    let back = sim.run_until(Duration::from_secs(10), |sim| all_alive(sim, &[0, 1, 2]));
    assert!(back, "seed {seed:#x}: {:#?}", sim.trace());
}

#[test]
fn a_fast_restart_is_never_shown_as_failed() {
    let seed = seed();
    let mut sim = three_joined(seed);
    sim.crash(2);
    sim.run_for(Duration::from_millis(200));
    restart_as(&mut sim, 2, "gamma-2", 2, 0);
    sim.run_for(Duration::from_secs(15));
    for index in [0, 1] {
        assert_eq!(
            sim.state(index, 2),
            Some(PeerState::Alive),
            "seed {seed:#x}"
        );
        assert_eq!(
            sim.member(index, 2).map(|m| m.name.as_str()),
            Some("gamma-2")
        );
        let failed = sim.host(index).events.iter().any(|(_, e)| {
            matches!(e, Event::Peer(c) if c.member.id == Sim::id(2)
                && c.member.state == PeerState::Failed)
        });
        assert!(!failed, "seed {seed:#x} node {index}: {:#?}", sim.trace());
    }
}

#[test]
fn a_node_wrongly_declared_failed_rejoins_as_the_next_generation() {
    let seed = seed();
    let mut sim = three_joined(seed);
    sim.isolate(2); // a partition: the node keeps running, unreachable
    let failed = sim.run_until(Duration::from_secs(10), |sim| {
        sim.state(0, 2) == Some(PeerState::Failed)
            && sim.state(1, 2) == Some(PeerState::Failed)
            && sim.state(2, 0) == Some(PeerState::Failed)
    });
    assert!(failed, "seed {seed:#x}: {:#?}", sim.trace());
    let sent = sim.publish(0, "during the partition").expect("publish");
    sim.run_for(Duration::from_secs(1));
    sim.heal(2);
    let back = sim.run_until(Duration::from_secs(60), |sim| all_alive(sim, &[0, 1, 2]));
    assert!(back, "seed {seed:#x}: {:#?}", sim.trace());
    let caught_up = sim.run_until(Duration::from_secs(5), |sim| {
        sim.node(2).message(&sent.id).is_some()
    });
    assert!(
        caught_up,
        "seed {seed:#x}: anti-entropy after the partition"
    );
}

#[test]
fn a_late_joiner_gets_earlier_messages_in_the_same_order() {
    let seed = seed();
    let mut sim = three_joined(seed);
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(sim.publish(i % 3, &format!("m{i}")).expect("publish").id);
        sim.run_for(Duration::from_millis(50));
    }
    sim.run_for(Duration::from_secs(2));
    let late = sim.add_node("late");
    sim.contact(late, 1);
    let caught_up = sim.run_until(Duration::from_secs(10), |sim| {
        sim.node(late).history().count() == 10
    });
    assert!(caught_up, "seed {seed:#x}: {:#?}", sim.trace());
    let order = history_ids(&sim, 0);
    assert_eq!(order.len(), 10);
    for index in 1..4 {
        assert_eq!(
            history_ids(&sim, index),
            order,
            "seed {seed:#x} node {index}"
        );
    }
    for id in sent {
        assert_eq!(count_delivered(&sim, late, id), 1, "seed {seed:#x}");
    }
    assert!(sim.node(0).stats().repairs_sent + sim.node(1).stats().repairs_sent > 0);
}

#[test]
fn a_late_joiner_catches_up_on_a_large_backlog_in_seconds() {
    let seed = seed();
    let mut sim = three_joined(seed);
    for i in 0..2_000 {
        sim.publish(i % 3, &format!("backlog {i}"))
            .expect("publish");
    }
    sim.run_for(Duration::from_secs(2));
    let late = sim.add_node("late");
    sim.contact(late, 0);
    let start = sim.elapsed();
    let caught_up = sim.run_until(Duration::from_secs(60), |sim| {
        sim.node(late).history().count() == 2_000
    });
    let took = sim.elapsed() - start;
    assert!(
        caught_up,
        "seed {seed:#x}: only {}",
        sim.node(late).history().count()
    );
    assert!(
        took < Duration::from_secs(15),
        "seed {seed:#x}: took {took:?}"
    );
    assert_eq!(history_ids(&sim, late), history_ids(&sim, 0));
    assert_eq!(sim.delivered_messages(late).len(), 2_000, "each once");
}

#[test]
fn garbage_is_counted_by_reason_and_changes_nothing() {
    let seed = seed();
    let mut sim = three_joined(seed);
    sim.run_for(Duration::from_secs(1));
    let members_before: Vec<_> = sim.node(0).members().cloned().collect();
    let events_before = sim.host(0).events.len();
    let stats_before = sim.node(0).stats().clone();
    let from = Sim::addr(1);

    let cluster = ClusterId::from_label(SIM_CLUSTER);
    let header = |sender: NodeId, cluster: ClusterId| Header {
        flags: 0,
        cluster,
        sender,
    };
    let signed_by_beta = |text: &str| {
        Message::signed(
            &Sim::key(1),
            99,
            "beta".into(),
            Hlc::default(),
            rossip_proto::message::Draft::channel("general", text),
        )
    };
    let sneaky = signed_by_beta("sneaky");
    let push_of = |message: Message| {
        Body::Push(wire::Push {
            relay: true,
            items: vec![wire::Payload::Whole(message)],
        })
    };
    let push = push_of(sneaky.clone());
    let valid = wire::encode(&header(Sim::id(1), cluster), &push).expect("encode");

    sim.inject(0, from, b"");
    sim.inject(0, from, b"GET / HTTP/1.1\r\n\r\n");
    sim.inject(0, from, &valid[..valid.len() - 3]);
    sim.inject(0, from, &valid[..20]);
    let other =
        wire::encode(&header(Sim::id(1), ClusterId::from_label("other")), &push).expect("encode");
    sim.inject(0, from, &other);
    let mut version = valid.clone();
    version[2] = 1;
    sim.inject(0, from, &version);
    sim.inject(0, from, &vec![0x52; wire::MAX_DATAGRAM_BYTES + 1]);
    let own = wire::encode(&header(Sim::id(0), cluster), &push).expect("encode");
    sim.inject(0, from, &own);
    let empty_text = push_of(signed_by_beta(""));
    let invalid = wire::encode(&header(Sim::id(1), cluster), &empty_text).expect("encode");
    sim.inject(0, from, &invalid);
    // Node 2 (gamma) cannot send as node 1 (beta): its own key does not
    // derive beta's id, and beta's signature does not cover altered text.
    let mut impersonation = Message::signed(
        &Sim::key(2),
        99,
        "beta".into(),
        Hlc::default(),
        rossip_proto::message::Draft::channel("general", "sneaky"),
    );
    impersonation.id.origin = Sim::id(1);
    let forged =
        wire::encode(&header(Sim::id(2), cluster), &push_of(impersonation)).expect("encode");
    sim.inject(0, Sim::addr(2), &forged);
    let altered = Message {
        text: "altered".into(),
        ..sneaky
    };
    let altered = wire::encode(&header(Sim::id(2), cluster), &push_of(altered)).expect("encode");
    sim.inject(0, Sim::addr(2), &altered);
    let swim_junk =
        wire::encode(&header(Sim::id(1), cluster), &Body::Swim(vec![0xff; 40])).expect("encode");
    sim.inject(0, from, &swim_junk);

    let stats = sim.node(0).stats();
    let dropped = |reason: &str| {
        stats.dropped.get(reason).copied().unwrap_or(0)
            - stats_before.dropped.get(reason).copied().unwrap_or(0)
    };
    assert_eq!(dropped("too_short"), 2, "{:?}", stats.dropped);
    assert_eq!(dropped("bad_magic"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("malformed"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("wrong_cluster"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("unsupported_version"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("oversized"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("from_self"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("invalid_message"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("swim_rejected"), 1, "{:?}", stats.dropped);
    assert_eq!(dropped("bad_signature"), 2, "{:?}", stats.dropped);
    assert_eq!(
        stats.datagrams_received - stats_before.datagrams_received,
        12
    );
    assert_eq!(sim.host(0).events.len(), events_before, "no events");
    assert_eq!(sim.node(0).history().count(), 0);
    let members_after: Vec<_> = sim.node(0).members().cloned().collect();
    assert_eq!(members_after.len(), members_before.len());
    for (before, after) in members_before.iter().zip(&members_after) {
        assert_eq!((before.id, before.state), (after.id, after.state));
    }
    // The cluster carries on.
    let sent = sim.publish(0, "fine").expect("publish");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(count_delivered(&sim, 2, sent.id), 1);
}

#[test]
fn history_stays_bounded_and_dedup_survives_eviction() {
    let seed = seed();
    let mut sim = Sim::new(Instant::now(), seed);
    for (index, name) in ["small-a", "small-b"].into_iter().enumerate() {
        let mut config: NodeConfig = sim.config(index, name);
        config.history_limit = 5;
        sim.add_node_with(config);
    }
    sim.contact(1, 0);
    assert!(sim.run_until(Duration::from_secs(5), |sim| all_alive(sim, &[0, 1])));
    let mut sent = Vec::new();
    for i in 0..20 {
        // Slower than MIN_RETENTION per history limit: never refused.
        sent.push(sim.publish(0, &format!("n{i}")).expect("publish"));
        sim.run_for(Duration::from_millis(700));
    }
    sim.run_for(Duration::from_secs(3));
    for index in 0..2 {
        let ids = history_ids(&sim, index);
        let expected: Vec<_> = sent[15..].iter().map(|m| m.id).collect();
        assert_eq!(ids, expected, "seed {seed:#x} node {index}");
    }
    assert_eq!(sim.delivered_messages(1).len(), 20);

    // An evicted message arrives again (a late push or a repair): duplicate.
    let old = sent[0].clone();
    assert!(sim.node(1).message(&old.id).is_none());
    let duplicates = sim.node(1).stats().duplicates;
    let header = Header {
        flags: 0,
        cluster: ClusterId::from_label(SIM_CLUSTER),
        sender: Sim::id(0),
    };
    let pushed = Body::Push(wire::Push {
        relay: true,
        items: vec![wire::Payload::Whole(old.clone())],
    });
    for body in [pushed, Body::Repair(vec![wire::Payload::Whole(old)])] {
        let bytes = wire::encode(&header, &body).expect("encode");
        sim.inject(1, Sim::addr(0), &bytes);
    }
    assert_eq!(sim.node(1).stats().duplicates, duplicates + 2);
    assert_eq!(sim.delivered_messages(1).len(), 20, "not delivered again");
    assert_eq!(sim.node(1).history().count(), 5);
}

#[test]
fn every_message_arrives_once_despite_loss() {
    let seed = seed() ^ 0x1055;
    let mut sim = Sim::new(Instant::now(), seed);
    for i in 0..6 {
        sim.add_node(&format!("n{i}"));
    }
    for i in 1..6 {
        sim.contact(i, 0);
    }
    assert!(
        sim.run_until(Duration::from_secs(10), |sim| all_alive(
            sim,
            &[0, 1, 2, 3, 4, 5]
        )),
        "seed {seed:#x}"
    );
    sim.set_loss(0.2);
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(
            sim.publish(i % 6, &format!("lossy {i}"))
                .expect("publish")
                .id,
        );
        sim.run_for(Duration::from_millis(100));
    }
    let complete = sim.run_until(Duration::from_secs(30), |sim| {
        (0..6).all(|i| sim.node(i).history().count() == 30)
    });
    assert!(complete, "seed {seed:#x}: anti-entropy did not converge");
    for i in 0..6 {
        for id in &sent {
            assert_eq!(count_delivered(&sim, i, *id), 1, "seed {seed:#x} node {i}");
        }
    }
    let order = history_ids(&sim, 0);
    for i in 1..6 {
        assert_eq!(history_ids(&sim, i), order, "seed {seed:#x}");
    }
}

/// A run exercising joins, messages, loss, a crash and a leave.
fn busy_run(seed: u64) -> Sim {
    let mut sim = Sim::new(Instant::now(), seed);
    for i in 0..5 {
        sim.add_node(&format!("n{i}"));
    }
    for i in 1..5 {
        sim.contact(i, i - 1);
    }
    sim.run_for(Duration::from_secs(2));
    sim.set_loss(0.05);
    for i in 0..10 {
        let _ = sim.publish(i % 5, &format!("t{i}"));
        sim.run_for(Duration::from_millis(150));
    }
    sim.crash(3);
    sim.run_for(Duration::from_secs(6));
    sim.leave(4);
    sim.run_for(Duration::from_secs(3));
    sim
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = busy_run(42);
    let b = busy_run(42);
    assert!(!a.trace().is_empty());
    assert_eq!(a.trace(), b.trace());
    assert_eq!(a.wire_hash(), b.wire_hash());
    assert_eq!(a.delivered, b.delivered);
    let c = busy_run(43);
    assert_ne!(
        (a.wire_hash(), a.delivered),
        (c.wire_hash(), c.delivered),
        "different seeds should differ somewhere"
    );
}

#[test]
fn forged_identities_and_leave_notices_change_nothing() {
    let seed = seed() ^ 0x1d;
    let mut sim = three_joined(seed);
    sim.run_for(Duration::from_secs(1));
    let cluster = ClusterId::from_label(SIM_CLUSTER);
    let from_gamma = |body: &Body| {
        let header = Header {
            flags: 0,
            cluster,
            sender: Sim::id(2),
        };
        wire::encode(&header, body).expect("encode")
    };
    let beta = sim
        .node(0)
        .members()
        .find(|m| m.id == Sim::id(1))
        .cloned()
        .expect("node 0 knows beta");
    let before = sim
        .node(0)
        .stats()
        .dropped
        .get("bad_signature")
        .copied()
        .unwrap_or(0);

    // gamma (a member) claims beta's identity at gamma's address, and a
    // later generation of beta: neither is signed by beta.
    let real = rossip_proto::wire::Identity::signed(
        &Sim::key(1),
        Sim::addr(1),
        "beta".into(),
        beta.generation,
    );
    let mut moved = real.clone();
    moved.addr = Sim::addr(2);
    let mut bumped = real.clone();
    bumped.generation = u64::MAX;
    for identity in [moved, bumped] {
        let hello = Body::Hello(wire::Hello {
            identity,
            ack: false,
            stamp_us: 1,
        });
        sim.inject(0, Sim::addr(2), &from_gamma(&hello));
    }
    // gamma says beta left, signed with gamma's own key.
    let forged_leave = Body::Left {
        id: Sim::id(1),
        generation: beta.generation,
        sig: rossip_proto::sign::Signature::from_bytes(&[7; 64]),
    };
    sim.inject(0, Sim::addr(2), &from_gamma(&forged_leave));

    let dropped = sim
        .node(0)
        .stats()
        .dropped
        .get("bad_signature")
        .copied()
        .unwrap_or(0)
        - before;
    assert_eq!(
        dropped,
        3,
        "seed {seed:#x}: {:?}",
        sim.node(0).stats().dropped
    );
    sim.run_for(Duration::from_secs(3));
    let after = sim
        .node(0)
        .members()
        .find(|m| m.id == Sim::id(1))
        .cloned()
        .expect("beta is still a member");
    assert_eq!(after.state, PeerState::Alive, "seed {seed:#x}");
    assert_eq!(
        after.addr,
        Sim::addr(1),
        "seed {seed:#x}: beta's address unchanged"
    );
    assert_eq!(after.generation, beta.generation, "seed {seed:#x}");
}
