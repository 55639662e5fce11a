//! What the `fuzz_*` test files share: the knobs (`ROSSIP_FUZZ_CASES`,
//! `ROSSIP_FUZZ_SEED`), the corpus on disk, and the byte-level mutator.
//! See `fuzz_wire.rs` for the approach and how to rewrite the corpus.
#![allow(dead_code)] // each test file uses a different subset
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

pub mod seeds;

use std::path::{Path, PathBuf};

use rand::RngExt;
use rand::rngs::StdRng;
use rossip_proto::seal::{ClusterKey, Keyring, OpenError, Sealer};
use rossip_proto::testing::{SIM_CLUSTER, Sim};
use rossip_proto::wire::{self, ClusterId, Header};

/// The key the sealed corpus is sealed under (a test value, not secret).
pub const CORPUS_KEY: [u8; 32] = [0x5a; 32];

/// Run number and clock of the sealed corpus (part of every nonce): fixed,
/// so regeneration is repeatable and the opener's clock matches.
pub const CORPUS_RUN: u64 = 0x1111_2222_3333_4444;
/// See [`CORPUS_RUN`].
pub const CORPUS_TIME_MS: u64 = 1_700_000_000_000;

/// Sender runs a replay guard remembers at most: hostile stamps must never
/// push it past this.
pub const MAX_REPLAY_RUNS: usize = rossip_proto::seal::replay::MAX_RUNS;

/// Cases per target by default (a few seconds in all); `ROSSIP_FUZZ_CASES`
/// overrides it.
pub const DEFAULT_CASES: usize = 30_000;

/// Default seed; `ROSSIP_FUZZ_SEED` overrides it.
pub const DEFAULT_SEED: u64 = 0xf022_5eed;

/// Every reason `wire::DecodeError::reason` may give (the `dropped` keys).
pub const DECODE_REASONS: &[&str] = &[
    "too_short",
    "bad_magic",
    "unsupported_version",
    "unsupported_flags",
    "sealed_without_key",
    "wrong_cluster",
    "oversized",
    "malformed",
    "bad_signature",
];

/// The reasons the body decoder gives after the header passed.
pub const BODY_REASONS: &[&str] = &["malformed", "bad_signature"];

/// Every reason `seal::OpenError::reason` may give.
pub const OPEN_REASONS: &[&str] = &[
    "unsealed_refused",
    "unknown_key",
    "bad_seal",
    "not_sealed",
    "replayed",
    "stale",
];

/// Cases per target: `ROSSIP_FUZZ_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("ROSSIP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generator's seed: `ROSSIP_FUZZ_SEED`, else [`DEFAULT_SEED`].
pub fn seed() -> u64 {
    std::env::var("ROSSIP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// How to rerun a failing case (same seed and case count: same inputs).
pub fn repro(file: &str, test: &str, seed: u64) -> String {
    format!(
        "reproduce: ROSSIP_FUZZ_SEED={seed} ROSSIP_FUZZ_CASES={} cargo test -p rossip-proto --test {file} {test}",
        cases(DEFAULT_CASES)
    )
}

/// The cluster every seed datagram belongs to.
pub fn cluster() -> ClusterId {
    ClusterId::from_label(SIM_CLUSTER)
}

/// The plaintext header of every seed datagram.
pub fn header() -> Header {
    Header {
        flags: 0,
        cluster: cluster(),
        sender: Sim::id(1),
    }
}

/// `tests/corpus/<kind>` (`wire` or `sealed`).
pub fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind)
}

/// The one place this file makes a `Sealer` (its API grows with replay
/// protection and key rotation).
pub fn sealer_with(key: &[u8; 32]) -> Sealer {
    Sealer::new(Keyring::new(ClusterKey::new(key), Vec::new()), CORPUS_RUN)
}

/// A sealer of the corpus key.
pub fn sealer() -> Sealer {
    sealer_with(&CORPUS_KEY)
}

/// Seals at the corpus clock.
pub fn seal(sealer: &mut Sealer, plain: &[u8]) -> Vec<u8> {
    sealer.seal(plain, CORPUS_TIME_MS).expect("seals")
}

/// Opens at the corpus clock.
pub fn open(sealer: &mut Sealer, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    sealer.open(sealed, cluster(), CORPUS_TIME_MS)
}

/// The corpus as code writes it: (file name, plaintext, sealed).
pub fn generated_corpus() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut sealer = sealer();
    seeds::seed_bodies()
        .into_iter()
        .map(|(name, body)| {
            let plain = wire::encode(&header(), &body).expect("a seed body encodes");
            let sealed = seal(&mut sealer, &plain);
            (format!("{name}.bin"), plain, sealed)
        })
        .collect()
}

/// The files of one corpus directory: (name, bytes).
pub fn load_corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "corpus {} missing ({e}); write it: {}",
                dir.display(),
                REGEN
            )
        })
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "bin"))
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            (name, std::fs::read(&path).expect("read a corpus file"))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} is empty: {REGEN}",
        dir.display()
    );
    files
}

/// The command that rewrites the corpus.
pub const REGEN: &str = "cargo test -p rossip-proto --test fuzz_wire -- --ignored write_corpus";

/// Seeds for mutation: the stored corpus plus the bodies built in code
/// (current even before a stale corpus is rewritten).
pub fn seeds(kind: &str) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = load_corpus(kind).into_iter().map(|(_, b)| b).collect();
    for (_, plain, sealed) in generated_corpus() {
        seeds.push(if kind == "sealed" { sealed } else { plain });
    }
    seeds
}

/// Index of a byte in `0..len` (`len > 0`).
pub fn position(rng: &mut StdRng, len: usize) -> usize {
    rng.random_range(0..len)
}

/// One hostile input derived from the seeds.
pub fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let base = seeds[rng.random_range(0..seeds.len())].clone();
    let mut bytes = base;
    // Stack one to three mutations, so that e.g. a flip lands in a truncated
    // datagram too.
    for _ in 0..rng.random_range(1..=3u8) {
        apply_mutation(rng, seeds, &mut bytes);
    }
    bytes
}

/// Applies one mutation of a random kind to `bytes`.
pub fn apply_mutation(rng: &mut StdRng, seeds: &[Vec<u8>], bytes: &mut Vec<u8>) {
    match rng.random_range(0..9u8) {
        // Random bytes of random length (some over the datagram cap).
        0 => {
            let len = if rng.random_bool(0.1) {
                rng.random_range(0..4_000)
            } else {
                rng.random_range(0..200)
            };
            *bytes = vec![0u8; len];
            rng.fill(&mut bytes[..]);
        }
        // Bit flips.
        1 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..8) {
                let bit = rng.random_range(0..bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
        }
        // Truncation.
        2 if !bytes.is_empty() => {
            let keep = rng.random_range(0..bytes.len());
            bytes.truncate(keep);
        }
        // Splice: this datagram's head onto another's tail.
        3 => {
            let other = &seeds[rng.random_range(0..seeds.len())];
            let cut = rng.random_range(0..=bytes.len());
            let from = rng.random_range(0..=other.len());
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[from..]);
        }
        // Length-field edit: postcard lengths and integers are varints, so
        // overwrite a byte with a varint boundary value, or insert a huge
        // varint (a length no datagram can back).
        4 if !bytes.is_empty() => {
            let at = position(rng, bytes.len());
            let values = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe];
            bytes[at] = values[rng.random_range(0..values.len())];
        }
        5 => {
            let at = rng.random_range(0..=bytes.len());
            let huge: &[u8] = match rng.random_range(0..3u8) {
                0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                1 => &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                _ => &[
                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                ],
            };
            bytes.splice(at..at, huge.iter().copied());
        }
        // Increment or decrement a byte (off-by-one lengths and tags).
        6 if !bytes.is_empty() => {
            let at = position(rng, bytes.len());
            bytes[at] = if rng.random_bool(0.5) {
                bytes[at].wrapping_add(1)
            } else {
                bytes[at].wrapping_sub(1)
            };
        }
        // A valid header with a random body (reaches the body decoder);
        // half the time with a valid variant tag.
        7 => {
            let mut out = bytes.get(..wire::HEADER_LEN).unwrap_or(&[]).to_vec();
            let mut body = vec![0u8; rng.random_range(0..300)];
            rng.fill(&mut body[..]);
            if let Some(first) = body.first_mut()
                && rng.random_bool(0.5)
            {
                // The seeds hold every kind, so their highest tag bounds
                // the valid ones; one past it is an unknown tag.
                let kinds = seeds
                    .iter()
                    .filter_map(|s| s.get(wire::HEADER_LEN).copied())
                    .filter(|tag| *tag < 0x80)
                    .max()
                    .unwrap_or(0);
                *first %= kinds.saturating_add(2);
            }
            out.extend_from_slice(&body);
            *bytes = out;
        }
        // Duplicate a slice in place (repeated items, trailing bytes).
        _ if !bytes.is_empty() => {
            let start = position(rng, bytes.len());
            let end = rng.random_range(start..=bytes.len().min(start + 64));
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
        _ => bytes.push(rng.random()),
    }
}
