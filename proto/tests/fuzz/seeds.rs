//! Datagram bodies of every kind, built in code: the seeds the fuzz
//! targets mutate and the corpus is written from.
#![allow(clippy::disallowed_methods)]

use rossip_proto::message::{Hlc, Message};
use rossip_proto::sign::{NodeKey, Signature};
use rossip_proto::testing::Sim;
use rossip_proto::wire::{
    self, Body, Digest, FRAGMENT_DATA_BYTES, Fragment, Hello, Identity, KeyOp, OriginDigest,
    Payload, SeqRange,
};

/// The one place this file builds an `Identity` (its fields change with
/// the node-identity work of issue 5).
pub fn identity(n: usize, name: &str) -> Identity {
    Identity::signed(&Sim::key(n), Sim::addr(n), name.into(), 1)
}

/// The one place this file builds a `Message`.
pub fn message(key: &NodeKey, seq: u64, text: String) -> Message {
    Message::signed(
        key,
        seq,
        "beta".into(),
        Hlc {
            ms: 1_700_000_000_000,
            logical: 1,
        },
        rossip_proto::message::Draft::channel("general", text),
    )
}

/// `count` messages from `first_seq` on, signed as one batch: each carries
/// a batch proof.
pub fn batch(key: &NodeKey, first_seq: u64, count: u64) -> Vec<Message> {
    let mut messages: Vec<Message> = (first_seq..first_seq + count)
        .map(|seq| {
            Message::unsigned(
                key,
                seq,
                "beta".into(),
                Hlc {
                    ms: 1_700_000_000_000,
                    logical: 1,
                },
                rossip_proto::message::Draft::channel("general", format!("batched {seq}")),
            )
        })
        .collect();
    rossip_proto::message::sign_batch(key, &mut messages);
    messages
}

/// One named body of every kind, as seeds for mutation and the corpus.
pub fn seed_bodies() -> Vec<(&'static str, Body)> {
    let small = message(&Sim::key(1), 3, "fuzz me".into());
    let (large, pieces) = large_message(&Sim::key(1), 4, 3_000);
    vec![
        (
            "hello",
            Body::Hello(Hello {
                identity: identity(1, "beta"),
                ack: false,
                stamp_us: 17,
            }),
        ),
        ("swim", Body::Swim(vec![0, 1, 2, 3, 4, 5, 6, 7])),
        (
            "push-whole",
            Body::Push(wire::Push {
                relay: true,
                items: vec![Payload::Whole(small.clone())],
            }),
        ),
        (
            "push-piece",
            Body::Push(wire::Push {
                relay: false,
                items: vec![Payload::Piece(pieces[1].clone())],
            }),
        ),
        ("repair", Body::Repair(vec![Payload::Whole(small.clone())])),
        (
            "push-batch",
            Body::Push(wire::Push {
                relay: false,
                items: batch(&Sim::key(1), 10, 3)
                    .into_iter()
                    .map(Payload::Whole)
                    .collect(),
            }),
        ),
        (
            "repair-piece",
            Body::Repair(vec![Payload::Piece(pieces[0].clone())]),
        ),
        (
            "gone",
            Body::Gone(vec![wire::GoneRange {
                origin: Sim::id(1),
                first: 1,
                last: 3,
            }]),
        ),
        (
            "leave",
            Body::Leave {
                generation: 1,
                sig: leave_signature(),
            },
        ),
        (
            "suspected",
            Body::Suspected {
                generation: 1,
                incarnation: 4,
            },
        ),
        (
            "left",
            Body::Left {
                id: Sim::id(1),
                generation: 1,
                sig: leave_signature(),
            },
        ),
        (
            "member-digest",
            Body::MemberDigest {
                stamp_us: 6,
                after: Some(Sim::id(0)),
                through: None,
                fingerprints: vec![[1, 2, 3, 4], [5, 6, 7, 8]],
            },
        ),
        (
            "member-sync",
            Body::MemberSync {
                reply_to: 6,
                complete: true,
                identities: vec![identity(2, "gamma")],
            },
        ),
        (
            "member-summary",
            Body::MemberSummary {
                stamp_us: 7,
                count: 3,
                sum: 0x1234_5678_9abc_def0,
            },
        ),
        ("keyring-query", Body::KeyringQuery { stamp_us: 8 }),
        (
            "keyring-report",
            Body::KeyringReport {
                reply_to: 8,
                primary: 0x0102_0304,
                ids: vec![0x0102_0304, 7],
            },
        ),
        (
            "keyring-command",
            Body::KeyringCommand {
                stamp_us: 9,
                op: KeyOp::Install([0x33; 32]),
            },
        ),
        (
            "keyring-command-use",
            Body::KeyringCommand {
                stamp_us: 10,
                op: KeyOp::Use(7),
            },
        ),
        (
            "keyring-command-remove",
            Body::KeyringCommand {
                stamp_us: 11,
                op: KeyOp::Remove(7),
            },
        ),
        (
            "keyring-ack",
            Body::KeyringAck {
                reply_to: 9,
                ok: false,
                error: "unknown key".into(),
            },
        ),
        ("direct", Body::Direct(direct_seed())),
        (
            "identity-request",
            Body::IdentityRequest(vec![identity(2, "gamma").run(), identity(3, "delta").run()]),
        ),
        ("identities", Body::Identities(vec![identity(2, "gamma")])),
        (
            "ack",
            Body::Ack(wire::Ack {
                seen: vec![
                    SeqRange { first: 1, last: 2 },
                    SeqRange { first: 4, last: 9 },
                ],
                pieces: vec![wire::PieceAck { seq: 10, index: 3 }],
            }),
        ),
        (
            "digest",
            Body::Digest(Digest {
                stamp_us: 5,
                reply_to: None,
                after: None,
                through: Some(Sim::id(4)),
                origins: vec![OriginDigest {
                    origin: Sim::id(1),
                    seen: vec![SeqRange { first: 1, last: 2 }],
                }],
                partial: vec![wire::PartialDigest {
                    id: large.id,
                    have: vec![1],
                }],
                heads: vec![wire::Head {
                    origin: Sim::id(2),
                    seq: 7,
                }],
            }),
        ),
        (
            "presence",
            Body::Presence(rossip_proto::presence::PresenceRecord::signed(
                &Sim::key(1),
                1,
                4,
                vec![rossip_proto::presence::UserPresence {
                    user: "alice".into(),
                    nick: Some("Al".into()),
                    availability: rossip_proto::presence::Availability::Away,
                    status: Some("lunch".into()),
                    since_ms: 1_700_000_000_000,
                }],
            )),
        ),
    ]
}

/// The kind of a body. Exhaustive on purpose: a new `Body` variant does not
/// compile here until it has a seed in [`seed_bodies`] (then rewrite the
/// corpus), so that every kind is fuzzed.
pub fn kind(body: &Body) -> &'static str {
    match body {
        Body::Hello(_) => "hello",
        Body::Swim(_) => "swim",
        Body::Push(_) => "push",
        Body::Leave { .. } => "leave",
        Body::Digest(_) => "digest",
        Body::Repair(_) => "repair",
        Body::Suspected { .. } => "suspected",
        Body::Left { .. } => "left",
        Body::Gone(_) => "gone",
        Body::MemberDigest { .. } => "member-digest",
        Body::MemberSync { .. } => "member-sync",
        Body::MemberSummary { .. } => "member-summary",
        Body::KeyringQuery { .. } => "keyring-query",
        Body::KeyringReport { .. } => "keyring-report",
        Body::KeyringCommand { .. } => "keyring-command",
        Body::KeyringAck { .. } => "keyring-ack",
        Body::Presence(_) => "presence",
        Body::Direct(_) => "direct",
        Body::IdentityRequest(_) => "identity-request",
        Body::Identities(_) => "identities",
        Body::Ack(_) => "ack",
    }
}

/// Every kind [`kind`] names.
pub const KINDS: usize = 21;

/// A direct message from node 1 to node 0, sealed (a fuzzed copy never
/// opens; the seed makes the decoder and the opening path run).
pub fn direct_seed() -> rossip_proto::direct::SealedDirect {
    let mut draft = rossip_proto::message::Draft::channel("general", "fuzz me directly");
    draft.to = Some(rossip_proto::message::Recipient {
        node: Sim::id(0),
        user: None,
    });
    let message = Message::signed(
        &Sim::key(1),
        rossip_proto::node::DIRECT_SEQ_BIT | 5,
        "beta".into(),
        Hlc {
            ms: 1_700_000_000_000,
            logical: 1,
        },
        draft,
    );
    rossip_proto::direct::seal(
        &Sim::key(1),
        &Sim::key(0).public(),
        [3; rossip_proto::direct::NONCE_BYTES],
        &rossip_proto::direct::DirectPlain::Message(Box::new(message)),
    )
    .expect("valid keys")
}

/// A leave signature: any 64 bytes decode (a signature is checked when a
/// node handles the notice, not by the decoder), and forging one is the
/// point of fuzzing anyway.
pub fn leave_signature() -> Signature {
    Signature::from_bytes(&[7; 64])
}

/// A message whose encoding needs fragments, and its pieces (split as the
/// node splits: `FRAGMENT_DATA_BYTES` of its postcard encoding each).
pub fn large_message(key: &NodeKey, seq: u64, text_len: usize) -> (Message, Vec<Fragment>) {
    let text: String = (0..text_len)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)))
        .collect();
    let message = message(key, seq, text);
    let bytes = postcard::to_allocvec(&message).expect("a message encodes");
    let total = u32::try_from(bytes.len()).expect("small enough");
    let pieces = bytes
        .chunks(FRAGMENT_DATA_BYTES)
        .enumerate()
        .map(|(index, data)| Fragment {
            id: message.id,
            total,
            index: u16::try_from(index).expect("few pieces"),
            data: data.to_vec(),
        })
        .collect();
    (message, pieces)
}
