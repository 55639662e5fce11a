//! Property-style robustness: seeded random, truncated and bit-flipped
//! datagrams never make decoding or a `Node` panic, and every refusal has a
//! reason. Deterministic: a failure names the seed and the case number.
//! (The valid datagrams mutated are `fuzz::seeds`' bodies, shared with the
//! `fuzz_*` files, which mutate them their own way.)
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod fuzz;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rossip_proto::testing::Sim;
use rossip_proto::wire;

use fuzz::cluster;

const SEED: u64 = 0xf022_0001;
const CASES: usize = 100_000;

/// Valid datagrams of every kind, as seeds for mutation.
fn valid_datagrams() -> Vec<Vec<u8>> {
    fuzz::seeds::seed_bodies()
        .iter()
        .map(|(_, body)| wire::encode(&fuzz::header(), body).expect("valid body encodes"))
        .collect()
}

/// One input: random, a truncated valid datagram, a bit-flipped one, or a
/// valid header with a random body (which reaches the body decoder).
fn mutate(rng: &mut StdRng, valid: &[Vec<u8>]) -> Vec<u8> {
    let base = &valid[rng.random_range(0..valid.len())];
    match rng.random_range(0..4u8) {
        0 => {
            let mut bytes = vec![0u8; rng.random_range(0..1_500)];
            rng.fill(&mut bytes[..]);
            bytes
        }
        1 => base[..rng.random_range(0..base.len())].to_vec(),
        2 => {
            let mut bytes = base.clone();
            for _ in 0..rng.random_range(1..8) {
                let bit = rng.random_range(0..bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            bytes
        }
        _ => {
            let mut bytes = base[..wire::HEADER_LEN].to_vec();
            let mut body = vec![0u8; rng.random_range(0..200)];
            rng.fill(&mut body[..]);
            // Keep a valid body tag half the time, so variants get parsed
            // (`valid` holds one datagram per body kind).
            if let Some(first) = body.first_mut()
                && rng.random_bool(0.5)
            {
                *first %= u8::try_from(valid.len()).unwrap_or(u8::MAX);
            }
            bytes.extend_from_slice(&body);
            bytes
        }
    }
}

#[test]
fn decoding_never_panics() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let valid = valid_datagrams();
    let mut accepted = 0;
    for case in 0..CASES {
        let input = mutate(&mut rng, &valid);
        let result = std::panic::catch_unwind(|| {
            wire::decode(
                &input,
                cluster(),
                &mut rossip_proto::sign::Verifier::default(),
            )
        });
        match result {
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(err)) => assert!(!err.reason().is_empty()),
            Err(_) => panic!("seed {SEED:#x} case {case}: decode panicked on {input:02x?}"),
        }
    }
    // Some mutations stay valid (e.g. flips inside text); most do not.
    assert!(accepted > 0 && accepted < CASES, "accepted {accepted}");
}

#[test]
fn a_node_survives_hostile_datagrams() {
    let mut sim = Sim::new(Instant::now(), SEED);
    for name in ["target", "peer", "third"] {
        sim.add_node(name);
    }
    sim.contact(1, 0);
    sim.contact(2, 0);
    sim.run_for(Duration::from_secs(1));
    let valid = valid_datagrams();
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    for case in 0..20_000 {
        let input = mutate(&mut rng, &valid);
        let from = Sim::addr(rng.random_range(0..4));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sim.inject(0, from, &input);
        }));
        assert!(
            result.is_ok(),
            "seed {SEED:#x} case {case}: node panicked on {input:02x?}"
        );
        if case % 1_000 == 0 {
            sim.run_for(Duration::from_millis(100));
        }
    }
    let stats = sim.node(0).stats();
    assert!(
        stats.dropped.values().sum::<u64>() > 10_000,
        "{:?}",
        stats.dropped
    );
    // The node still works.
    let sent = sim.publish(0, "still alive").expect("publish");
    let delivered = sim.run_until(Duration::from_secs(30), |sim| {
        sim.node(1).message(&sent.id).is_some()
    });
    assert!(delivered, "seed {SEED:#x}");
}
