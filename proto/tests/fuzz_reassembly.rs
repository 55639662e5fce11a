//! Fuzzing reassembly of large messages through a `Node` (see
//! `fuzz_wire.rs` for the approach and the knobs): random, duplicated and
//! inconsistent fragments in pushes and repairs never panic, reassembly
//! stays within its bounds (`Node::reassembly_usage`), only genuine
//! messages are delivered, each once, and refusals are counted by reason.
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod fuzz;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rossip_proto::message::Message;
use rossip_proto::node::ProtocolConfig;
use rossip_proto::testing::Sim;
use rossip_proto::wire::{self, Body, FRAGMENT_DATA_BYTES, Fragment, Payload};

use fuzz::seeds::large_message;
use fuzz::{DEFAULT_CASES, cases, header, repro, seed};

/// Reassembly's bounds (most partials, most bytes held), from the
/// configuration the nodes run with: what `Node::reassembly_usage` must
/// never exceed, whatever arrives.
fn reassembly_bounds() -> (usize, usize) {
    let protocol = ProtocolConfig::default();
    (protocol.max_partials, protocol.reassembly_max_bytes)
}

/// Hostile pieces for a node's reassembly: pieces of real large messages
/// (shuffled, duplicated), and forged ones.
fn hostile_piece(rng: &mut StdRng, real: &[(Message, Vec<Fragment>)]) -> Fragment {
    let (_, pieces) = &real[rng.random_range(0..real.len())];
    let mut piece = pieces[rng.random_range(0..pieces.len())].clone();
    match rng.random_range(0..10u8) {
        // Genuine pieces, most of the time, so messages complete.
        0..=3 => {}
        // Another total for a held id.
        4 => piece.total = piece.total.wrapping_add(rng.random_range(1..5_000)),
        // An index past the end, or another one.
        5 => piece.index = rng.random(),
        // Wrong data length.
        6 => {
            let len = rng.random_range(0..FRAGMENT_DATA_BYTES * 2);
            piece.data.resize(len, 0x41);
        }
        // The right shape under another id: decodes to the wrong message.
        7 => {
            piece.id.seq = piece.id.seq.wrapping_add(rng.random_range(1..1_000));
        }
        // Corrupt bytes: the reassembled message fails its signature.
        8 => {
            let at = rng.random_range(0..piece.data.len());
            piece.data[at] ^= 0x20;
        }
        // A fresh id claiming a huge message: holds memory until a bound.
        _ => {
            piece.id.seq = rng.random_range(1_000..u64::MAX);
            piece.total = rng.random_range(
                u32::try_from(FRAGMENT_DATA_BYTES).expect("small") + 1
                    ..=u32::try_from(wire::MAX_ENCODED_MESSAGE_BYTES).expect("fits"),
            );
            let count = Fragment::count_for(piece.total as usize);
            piece.index =
                u16::try_from(rng.random_range(0..count.saturating_sub(1).max(1))).unwrap_or(0);
            piece.data = vec![0x42; FRAGMENT_DATA_BYTES];
        }
    }
    piece
}

#[test]
fn reassembly_survives_hostile_fragments_in_bounded_memory() {
    let (max_partials, reassembly_max_bytes) = reassembly_bounds();
    let seed = seed() ^ 0xf4a9;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim::new(Instant::now(), seed);
    sim.add_node("target");
    sim.add_node("beta");
    sim.contact(1, 0);
    sim.run_for(Duration::from_secs(1));
    let real: Vec<(Message, Vec<Fragment>)> = (0..8)
        .map(|i| large_message(&Sim::key(1), 100 + i, 2_000 + 1_500 * i as usize))
        .collect();
    let total = cases(DEFAULT_CASES) / 2;
    for case in 0..total {
        let items: Vec<Payload> = (0..rng.random_range(1..=2))
            .map(|_| Payload::Piece(hostile_piece(&mut rng, &real)))
            .collect();
        let body = if rng.random_bool(0.5) {
            Body::Push(wire::Push {
                relay: rng.random_bool(0.5),
                items,
            })
        } else {
            Body::Repair(items)
        };
        // Two pieces may not fit one datagram: send what encodes.
        let Ok(bytes) = wire::encode(&header(), &body) else {
            continue;
        };
        let injected = catch_unwind(AssertUnwindSafe(|| sim.inject(0, Sim::addr(1), &bytes)));
        assert!(
            injected.is_ok(),
            "case {case}: the node panicked on {body:?}\n{}",
            repro("fuzz_reassembly", "reassembly_survives", seed)
        );
        let (partials, bytes_held) = sim.node(0).reassembly_usage();
        assert!(
            partials <= max_partials && bytes_held <= reassembly_max_bytes,
            "case {case}: reassembly holds {partials} partials, {bytes_held} bytes\n{}",
            repro("fuzz_reassembly", "reassembly_survives", seed)
        );
        if case % 500 == 0 {
            sim.run_for(Duration::from_millis(50));
        }
    }
    // Only genuine messages were delivered, each once.
    let delivered = sim.delivered_messages(0);
    let mut ids: Vec<_> = delivered.iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), delivered.len(), "a message was delivered twice");
    for got in &delivered {
        if got.id.origin == Sim::id(1) && got.id.seq >= 100 && got.id.seq < 108 {
            let want = &real[usize::try_from(got.id.seq - 100).expect("small")].0;
            assert_eq!(*got, want, "a forged message was delivered");
        }
    }
    assert!(
        delivered.iter().any(|m| m.id.seq >= 100),
        "no large message ever completed: the generator sends too few genuine pieces"
    );
    let dropped = &sim.node(0).stats().dropped;
    for reason in [
        "invalid_fragment",
        "fragment_mismatch",
        "corrupt_reassembly",
    ] {
        assert!(
            dropped.get(reason).copied().unwrap_or(0) > 0,
            "no {reason} drop counted: {dropped:?}"
        );
    }
}

/// The byte bound, which random pieces rarely reach (256 partials of one
/// piece each hold only 300 KB): an attacker fills partials of the largest
/// message with every piece but the last, for more ids than fit in
/// `reassembly_max_bytes`. Memory stays bounded, the excess is evicted and
/// counted, and a genuine large message still completes afterwards.
#[test]
fn reassembly_memory_stays_bounded_when_partials_are_nearly_complete() {
    let (max_partials, reassembly_max_bytes) = reassembly_bounds();
    let seed = seed() ^ 0xb16;
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = Sim::new(Instant::now(), seed);
    let total = u32::try_from(wire::MAX_ENCODED_MESSAGE_BYTES).expect("fits");
    let count = Fragment::count_for(wire::MAX_ENCODED_MESSAGE_BYTES);
    // Enough ids to hold 1.5 times the bound.
    let ids = (reassembly_max_bytes * 3 / 2).div_ceil(wire::MAX_ENCODED_MESSAGE_BYTES);
    // A bare node (no simulated network to flush after every datagram:
    // this is tens of thousands of datagrams).
    let now = sim.now();
    let mut node = rossip_proto::Node::new(sim.config(0, "target"), now);
    let mut peak = 0;
    for n in 0..ids {
        let seq = rng.random_range(1_000..u64::MAX);
        for index in 0..count - 1 {
            let piece = Fragment {
                id: rossip_proto::MessageId {
                    origin: Sim::id(1),
                    seq,
                },
                total,
                index: u16::try_from(index).expect("few pieces"),
                data: vec![0x5a; FRAGMENT_DATA_BYTES],
            };
            let body = Body::Repair(vec![Payload::Piece(piece)]);
            let bytes = wire::encode(&header(), &body).expect("a piece fits");
            node.handle_datagram(Sim::addr(1), &bytes, now);
            // Nothing answers a repair; drop anything the node queued.
            while node.poll_transmit().is_some() {}
            let (partials, held) = node.reassembly_usage();
            peak = peak.max(held);
            assert!(
                partials <= max_partials && held <= reassembly_max_bytes,
                "id {n} piece {index}: {partials} partials, {held} bytes\n{}",
                repro("fuzz_reassembly", "nearly_complete", seed)
            );
        }
    }
    assert!(
        peak > reassembly_max_bytes * 9 / 10,
        "the bound was not approached (peak {peak} bytes)"
    );
    assert!(
        node.stats().reassembly_evicted > 0,
        "nothing was evicted past the bound"
    );
    // A genuine large message still gets through.
    let (message, pieces) = large_message(&Sim::key(1), 1, 5_000);
    for piece in pieces {
        let body = Body::Push(wire::Push {
            relay: false,
            items: vec![Payload::Piece(piece)],
        });
        let bytes = wire::encode(&header(), &body).expect("fits");
        node.handle_datagram(Sim::addr(1), &bytes, now);
    }
    let mut delivered = false;
    while let Some(event) = node.poll_event() {
        delivered |= matches!(event, rossip_proto::Event::Message(m) if m == message);
    }
    assert!(
        delivered,
        "a genuine message was not reassembled after the flood of partials"
    );
}
