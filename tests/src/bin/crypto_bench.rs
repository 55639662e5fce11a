//! What security costs per operation on this machine: signing and verifying
//! a message, sealing and opening a datagram. Each verification is of a
//! distinct signature, so the daemon's memo of verified statements does not
//! help (as for a message a node receives once).
//!
//!     cargo run --release -p rossip-tests --bin crypto-bench [-- --count 10000]

use std::time::Instant;

use rossip_proto::Message;
use rossip_proto::message::Hlc;
use rossip_proto::seal::{ClusterKey, KEY_BYTES, Keyring, Sealer};
use rossip_proto::sign::{NodeKey, Verifier};
use rossip_proto::wire::{self, Body, ClusterId, Header, Payload, Push};

fn per_op(label: &str, count: usize, started: Instant) {
    let total = started.elapsed();
    let each = total.as_secs_f64() * 1e6 / count as f64;
    println!("{label:<46} {each:>8.1} µs/op   {:>9.0} ops/s", 1e6 / each);
}

fn main() {
    let mut count = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--count", Some(n)) => count = n.parse().unwrap_or(count).clamp(100, 15_000),
            _ => {
                eprintln!("usage: crypto-bench [--count N (100..=15000)]");
                std::process::exit(2);
            }
        }
    }
    let key = NodeKey::for_testing(1);
    let text = "x".repeat(200);
    let message = |seq: u64| {
        Message::signed(
            &key,
            seq,
            "bench".to_owned(),
            Hlc {
                ms: 1_800_000_000_000 + seq,
                logical: 0,
            },
            rossip_proto::message::Draft::channel("general", text.clone()),
        )
    };

    println!("{count} operations each, 200-byte texts");
    let started = Instant::now();
    let messages: Vec<Message> = (1..=count as u64).map(message).collect();
    per_op("sign a message (Ed25519)", count, started);

    // One verifier, as one node has: its memo of keys is warm after the
    // first message, its memo of statements never hits (each is new).
    let mut verifier = Verifier::default();
    let started = Instant::now();
    let valid = messages
        .iter()
        .filter(|m| m.verify(&mut verifier).is_ok())
        .count();
    per_op("verify a message (Ed25519)", count, started);
    assert_eq!(valid, count, "every signature verifies");

    // What a busy origin does: the messages of one driver turn signed
    // together (one signature per batch; each message carries its proof).
    // Each batch is checked by a node that saw none of it before: its
    // first message costs a signature check, the rest a few hashes.
    let batch_len = rossip_proto::node::ProtocolConfig::default().max_signing_batch;
    let started = Instant::now();
    let batches: Vec<Vec<Message>> = (0..count.div_ceil(batch_len))
        .map(|b| {
            let mut batch: Vec<Message> = (0..batch_len as u64)
                .map(|i| {
                    let seq = 2 * count as u64 + (b * batch_len) as u64 + i;
                    Message::unsigned(
                        &key,
                        seq,
                        "bench".to_owned(),
                        Hlc {
                            ms: 1_800_000_000_000 + seq,
                            logical: 0,
                        },
                        rossip_proto::message::Draft::channel("general", text.clone()),
                    )
                })
                .collect();
            rossip_proto::message::sign_batch(&key, &mut batch);
            batch
        })
        .collect();
    let batched = batches.len() * batch_len;
    per_op(
        &format!("sign, in batches of {batch_len} (per message)"),
        batched,
        started,
    );
    let started = Instant::now();
    let valid = batches
        .iter()
        .flatten()
        .filter(|m| m.verify(&mut verifier).is_ok())
        .count();
    per_op(
        &format!("verify, in batches of {batch_len} (per message)"),
        batched,
        started,
    );
    assert_eq!(valid, batched, "every batched message verifies");
    let proof_bytes = batches[0][0]
        .auth
        .batch
        .as_ref()
        .map_or(0, |proof| proof.to_bytes().len());
    println!("  (a batch proof adds {proof_bytes} bytes to each message)");

    let header = Header {
        flags: 0,
        cluster: ClusterId::from_label("rossip"),
        sender: key.node_id(),
    };
    let datagrams: Vec<Vec<u8>> = (1..=count as u64)
        .map(|seq| {
            let body = Body::Push(Push {
                relay: false,
                items: vec![Payload::Whole(message(seq + count as u64))],
            });
            wire::encode(&header, &body).expect("encode")
        })
        .collect();
    let started = Instant::now();
    let decoded = datagrams
        .iter()
        .filter(|d| wire::decode(d, header.cluster, &mut verifier).is_ok())
        .count();
    per_op("decode a push of one message (verifies it)", count, started);
    assert_eq!(decoded, count);

    let ring = || Keyring::new(ClusterKey::new(&[7; KEY_BYTES]), Vec::new());
    let mut sender = Sealer::new(ring(), 1);
    let mut receiver = Sealer::new(ring(), 2);
    let now_ms = 1_800_000_000_000;
    let started = Instant::now();
    let sealed: Vec<Vec<u8>> = datagrams
        .iter()
        .map(|d| sender.seal(d, now_ms).expect("seal"))
        .collect();
    per_op(
        &format!("seal a {}-byte datagram", datagrams[0].len()),
        count,
        started,
    );
    let started = Instant::now();
    let opened = sealed
        .iter()
        .filter(|d| receiver.open(d, header.cluster, now_ms).is_ok())
        .count();
    per_op("open it (with the replay check)", count, started);
    assert_eq!(opened, count);
}
