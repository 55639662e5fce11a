//! Fuzzing `seal::Sealer::open` (see `fuzz_wire.rs` for the approach, the
//! knobs and the corpus): mutated sealed datagrams never panic, never open
//! unless unaltered and new, and every refusal has a documented reason.

mod fuzz;

use std::panic::{AssertUnwindSafe, catch_unwind};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rossip_proto::seal::OpenError;
use rossip_proto::wire::{self, Body};

use fuzz::{
    DEFAULT_CASES, MAX_REPLAY_RUNS, OPEN_REASONS, cases, cluster, header, mutate, open, repro,
    seal, sealer, sealer_with, seed, seeds,
};

#[test]
fn open_never_panics_and_only_opens_what_was_sealed_once() {
    let seed = seed() ^ 0x5ea1;
    let mut rng = StdRng::seed_from_u64(seed);
    let seeds = seeds("sealed");
    let mut ours = sealer();
    let mut stranger = sealer_with(&[0xa5; 32]);
    let total = cases(DEFAULT_CASES);
    let mut opened: Vec<Vec<u8>> = Vec::new();
    let mut replayed = 0usize;
    for case in 0..total {
        let input = mutate(&mut rng, &seeds);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            (open(&mut ours, &input), open(&mut stranger, &input))
        }));
        let Ok((mine, theirs)) = outcome else {
            panic!(
                "case {case}: open panicked on {input:02x?}\n{}",
                repro("fuzz_seal", "open_never_panics", seed)
            );
        };
        match mine {
            Ok(plain) => {
                // Authentication: only an unaltered sealed datagram opens,
                // and replay protection: only once.
                assert!(
                    seeds.contains(&input) && !opened.contains(&input),
                    "case {case}: opened a mutated or replayed datagram: {input:02x?}\n{}",
                    repro("fuzz_seal", "open_never_panics", seed)
                );
                opened.push(input.clone());
                assert!(plain.len() <= wire::MAX_DATAGRAM_BYTES);
                catch_unwind(|| {
                    wire::decode(
                        &plain,
                        cluster(),
                        &mut rossip_proto::sign::Verifier::default(),
                    )
                })
                .unwrap_or_else(|_| panic!("case {case}: decode of opened bytes panicked"))
                .unwrap_or_else(|e| panic!("case {case}: a sealed seed opens to garbage: {e}"));
            }
            Err(OpenError::Replayed) => replayed += 1,
            Err(err) => assert!(OPEN_REASONS.contains(&err.reason()), "{err:?}"),
        }
        match theirs {
            Ok(_) => panic!("case {case}: opened without the key: {input:02x?}"),
            Err(err) => assert!(OPEN_REASONS.contains(&err.reason()), "{err:?}"),
        }
        assert!(
            ours.runs_remembered() <= MAX_REPLAY_RUNS
                && stranger.runs_remembered() <= MAX_REPLAY_RUNS,
            "case {case}: the replay guard grew past its bound"
        );
    }
    assert!(!opened.is_empty(), "no unmutated datagram was ever drawn");
    assert!(
        replayed > 0,
        "no seed was drawn twice: replay protection untested"
    );

    // Round trip: anything sealed opens to itself, once.
    let mut sender = sealer();
    let mut receiver = sealer();
    for case in 0..cases(DEFAULT_CASES) / 10 {
        let mut plain = wire::encode(&header(), &Body::Swim(Vec::new())).expect("encodes");
        plain.truncate(wire::HEADER_LEN);
        let mut body = vec![0u8; rng.random_range(0..wire::MAX_BODY_BYTES)];
        rng.fill(&mut body[..]);
        plain.extend_from_slice(&body);
        let sealed = seal(&mut sender, &plain);
        assert!(sealed.len() <= wire::MAX_DATAGRAM_BYTES, "case {case}");
        assert_eq!(open(&mut receiver, &sealed), Ok(plain), "case {case}");
        assert_eq!(
            open(&mut receiver, &sealed),
            Err(OpenError::Replayed),
            "case {case}"
        );
    }
}

/// A sealed datagram over the datagram cap is refused before any AEAD work
/// (no node ever sends one) and left to the wire decoder, which names it
/// `oversized`, even when its key id and stamp would pass.
#[test]
fn oversized_sealed_datagrams_are_refused_unopened() {
    let mut sender = sealer();
    let mut plain = wire::encode(&header(), &Body::Swim(Vec::new())).expect("encodes");
    plain.truncate(wire::HEADER_LEN);
    plain.extend(vec![0x42; wire::MAX_BODY_BYTES]);
    let sealed = seal(&mut sender, &plain);
    assert_eq!(
        sealed.len(),
        wire::MAX_DATAGRAM_BYTES,
        "the largest sealed datagram"
    );
    assert!(open(&mut sealer(), &sealed).is_ok(), "the largest opens");
    let mut padded = seal(&mut sender, &plain);
    padded.extend(vec![0u8; 60_000]);
    assert_eq!(open(&mut sealer(), &padded), Err(OpenError::NotSealed));
    assert_eq!(
        wire::decode(
            &padded,
            cluster(),
            &mut rossip_proto::sign::Verifier::default()
        )
        .map(|_| ()),
        Err(wire::DecodeError::Oversized(padded.len()))
    );
}
