//! Corpus-driven fuzzing of every datagram decoder, on stable Rust and in
//! bounded time. This file: `wire::decode`/`decode_header`, and the corpus
//! itself; `fuzz_seal.rs`: `seal::Sealer::open`; `fuzz_reassembly.rs`:
//! reassembly of fragments (driven through a `Node`). Shared parts are in
//! `fuzz/`.
//!
//! A hand-written seeded generator, not `proptest` or `cargo fuzz`: the
//! inputs are mutations of real datagrams (bit flips, truncations, splices,
//! edited length varints, random bodies behind a valid header), which a
//! byte-level mutator reaches directly, and a failure is reproduced exactly
//! from the seed and case number it prints. No new dependency.
//!
//! Bounds: `ROSSIP_FUZZ_CASES` (default 30,000 per target, ~6 s for the
//! file on a 2-core machine) raises the number of cases for a long run;
//! `ROSSIP_FUZZ_SEED` picks another seed. Example of a long run:
//! `ROSSIP_FUZZ_CASES=2000000 ROSSIP_FUZZ_SEED=7 cargo test --release -p rossip-proto --test fuzz_wire --test fuzz_seal --test fuzz_reassembly`.
//!
//! Corpus: `tests/corpus/wire/*.bin` (plaintext datagrams of every body
//! kind) and `tests/corpus/sealed/*.bin` (the same, sealed under
//! `fuzz::CORPUS_KEY`) are loaded and mutated together with seeds built in
//! code. They are written by code, so that a change of the wire format is
//! one command away from a fresh corpus:
//! `cargo test -p rossip-proto --test fuzz_wire -- --ignored write_corpus`.
//! A file named `crash-*.bin` is a regression input (kept as found): it
//! must not panic, and need not decode.

mod fuzz;

use std::panic::catch_unwind;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rossip_proto::wire;

use fuzz::seeds::{KINDS, kind, seed_bodies};
use fuzz::{
    BODY_REASONS, DECODE_REASONS, DEFAULT_CASES, REGEN, cases, cluster, corpus_dir,
    generated_corpus, load_corpus, mutate, open, repro, sealer, seed, seeds,
};

#[test]
fn the_seeds_cover_every_body_kind() {
    let mut kinds: Vec<&str> = seed_bodies().iter().map(|(_, b)| kind(b)).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), KINDS, "seed bodies cover only {kinds:?}");
}

/// Writes the corpus (run after a wire format change; see the module doc).
#[test]
#[ignore = "writes the corpus: cargo test -p rossip-proto --test fuzz_wire -- --ignored write_corpus"]
fn write_corpus() {
    for kind in ["wire", "sealed"] {
        let dir = corpus_dir(kind);
        std::fs::create_dir_all(&dir).expect("create the corpus dir");
        // Generated files only: crash-*.bin regressions stay.
        for entry in std::fs::read_dir(&dir).expect("read the corpus dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.extension().is_some_and(|e| e == "bin") && !name.starts_with("crash-") {
                std::fs::remove_file(&path).expect("remove an old corpus file");
            }
        }
    }
    for (name, plain, sealed) in generated_corpus() {
        std::fs::write(corpus_dir("wire").join(&name), plain).expect("write");
        std::fs::write(corpus_dir("sealed").join(&name), sealed).expect("write");
    }
}

#[test]
fn the_corpus_is_current_and_round_trips() {
    for (name, bytes) in load_corpus("wire") {
        if name.starts_with("crash-") {
            continue;
        }
        let (header, body) = wire::decode(
            &bytes,
            cluster(),
            &mut rossip_proto::sign::Verifier::default(),
        )
        .unwrap_or_else(|e| panic!("corpus wire/{name} no longer decodes ({e}): {REGEN}"));
        let again = wire::encode(&header, &body).expect("a decoded body encodes");
        assert_eq!(again, bytes, "wire/{name} does not round-trip: {REGEN}");
    }
    for (name, bytes) in load_corpus("sealed") {
        if name.starts_with("crash-") {
            continue;
        }
        let plain = open(&mut sealer(), &bytes)
            .unwrap_or_else(|e| panic!("corpus sealed/{name} does not open ({e}): {REGEN}"));
        wire::decode(
            &plain,
            cluster(),
            &mut rossip_proto::sign::Verifier::default(),
        )
        .unwrap_or_else(|e| panic!("corpus sealed/{name} opens to garbage ({e}): {REGEN}"));
    }
}

#[test]
fn wire_decoders_never_panic_and_round_trip() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let seeds = seeds("wire");
    let total = cases(DEFAULT_CASES);
    let (mut accepted, mut refused) = (0usize, 0usize);
    for case in 0..total {
        let input = mutate(&mut rng, &seeds);
        let outcome = catch_unwind(|| {
            (
                wire::decode_header(&input, cluster()).map(|(h, body)| (h, body.len())),
                wire::decode(
                    &input,
                    cluster(),
                    &mut rossip_proto::sign::Verifier::default(),
                ),
            )
        });
        let Ok((head, whole)) = outcome else {
            panic!(
                "case {case}: a decoder panicked on {input:02x?}\n{}",
                repro("fuzz_wire", "wire_decoders", seed)
            );
        };
        match (&head, &whole) {
            (Ok((h1, body_len)), Ok((h2, body))) => {
                accepted += 1;
                assert_eq!(h1, h2, "case {case}: headers disagree");
                assert_eq!(*body_len, input.len() - wire::HEADER_LEN);
                // A decoded datagram encodes again, to bytes that decode to
                // the same thing.
                let again = wire::encode(h2, body).unwrap_or_else(|e| {
                    panic!("case {case}: decoded body does not encode ({e}): {input:02x?}")
                });
                assert!(again.len() <= wire::MAX_DATAGRAM_BYTES);
                let twice = wire::decode(
                    &again,
                    cluster(),
                    &mut rossip_proto::sign::Verifier::default(),
                )
                .expect("re-encoded decodes");
                assert_eq!(&twice, whole.as_ref().expect("matched Ok"), "case {case}");
            }
            (Err(e1), Err(e2)) => {
                refused += 1;
                assert_eq!(e1, e2, "case {case}: header errors disagree");
                assert!(DECODE_REASONS.contains(&e2.reason()), "{e2:?}");
            }
            (Ok(_), Err(e)) => {
                refused += 1;
                assert!(
                    BODY_REASONS.contains(&e.reason()),
                    "case {case}: a body error of a header kind ({e:?}): {input:02x?}"
                );
            }
            (Err(e), Ok(_)) => panic!("case {case}: header refused ({e}) but decode accepted"),
        }
    }
    // Mutations must reach both sides, or the generator is broken.
    assert!(
        accepted > total / 100 && refused > total / 2,
        "accepted {accepted}, refused {refused} of {total}"
    );
}
