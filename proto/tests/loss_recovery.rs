//! Loss recovery in a small cluster: with 10% loss on every datagram, every
//! message reaches every member within a few retransmission timeouts, not
//! at the next anti-entropy round; and acknowledgements stay within the
//! datagram budget (see `node::acks` and `testing::small`).

use std::time::{Duration, Instant};

use rossip_proto::node::ProtocolConfig;
use rossip_proto::testing::small::{SmallConfig, SmallReport, run_small};

fn run(seed: u64, loss: f64, push_acks: bool) -> SmallReport {
    let mut config = SmallConfig::new(seed);
    config.loss = loss;
    config.protocol.push_acks.enabled = push_acks;
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    let start = Instant::now();
    run_small(&config, start)
}

fn describe(report: &SmallReport) -> String {
    let phase = |p: &rossip_proto::testing::small::PhaseReport| {
        format!(
            "{} messages, to all p50 {:?} p99 {:?} max {:?}, {} incomplete, {:.2} push+repair+ack/msg ({:.2} acks), {:.2} all above idle/msg, {} retransmitted",
            p.messages,
            p.percentile(0.5),
            p.percentile(0.99),
            p.percentile(1.0),
            p.incomplete,
            p.dissemination_per_message(),
            p.ack_datagrams as f64 / p.messages.max(1) as f64,
            p.all_per_message_above_idle(),
            p.retransmissions,
        )
    };
    format!(
        "seed {} loss {} acks {}: idle {:.1}/s\n  sparse: {}\n  stream: {}",
        report.config.seed,
        report.config.loss,
        report.config.protocol.push_acks.enabled,
        report.idle_datagrams_per_sec,
        phase(&report.sparse),
        phase(&report.stream)
    )
}

/// The longest a message may take to reach every member at 10% loss: the
/// first push, then every fast retry and two backed-off ones, each a round
/// trip late at most. Two copies per retry make a third loss in a row
/// rare; these seeds are checked, not hoped for.
fn bound(config: &SmallConfig) -> Duration {
    let acks = ProtocolConfig::default().push_acks;
    let timeout = acks.min_timeout + acks.ack_interval;
    let retries = acks.fast_retries + 2;
    timeout * (retries + 2) + config.latency * 2 * (retries + 1)
}

#[test]
fn at_ten_percent_loss_every_message_reaches_all_four_members_within_a_few_timeouts() {
    for seed in [1, 2, 3] {
        let report = run(seed, 0.10, true);
        let summary = describe(&report);
        eprintln!("{summary}");
        let bound = bound(&report.config);
        for phase in [&report.sparse, &report.stream] {
            assert_eq!(phase.incomplete, 0, "{summary}");
            let max = phase.percentile(1.0).expect("messages were published");
            assert!(max <= bound, "slowest {max:?} > {bound:?}: {summary}");
        }
        assert!(report.sparse.retransmissions > 0, "{summary}");
    }
}

#[test]
fn without_loss_acknowledgements_cost_one_per_member_sparse_and_less_in_a_stream() {
    let report = run(1, 0.0, true);
    let before = run(1, 0.0, false);
    let summary = format!("{}\nwithout acks: {}", describe(&report), describe(&before));
    eprintln!("{summary}");
    let members = (report.config.nodes - 1) as f64;
    for phase in [&report.sparse, &report.stream] {
        assert_eq!(phase.incomplete, 0, "{summary}");
        assert_eq!(
            phase.retransmissions, 0,
            "nothing lost, nothing resent: {summary}"
        );
    }
    // One push and at most one acknowledgement per member.
    assert!(
        report.sparse.dissemination_per_message() <= 2.0 * members,
        "{summary}"
    );
    // A stream shares acknowledgements: well under one per message each.
    let stream_acks = report.stream.ack_datagrams as f64 / report.stream.messages as f64;
    assert!(stream_acks <= members / 2.0, "{summary}");
}

/// Three nodes, all members of each other, with `configure`d protocols.
fn trio(seed: u64, configure: impl Fn(&mut ProtocolConfig)) -> rossip_proto::testing::Sim {
    use rossip_proto::node::PeerState;
    #[allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time
    let mut sim = rossip_proto::testing::Sim::new(Instant::now(), seed);
    sim.set_latency(Duration::from_micros(100));
    for i in 0..3 {
        let mut config = sim.config(i, &format!("n{i}"));
        configure(&mut config.protocol);
        sim.add_node_with(config);
    }
    for i in 1..3 {
        sim.contact(i, 0);
    }
    let joined = sim.run_until(Duration::from_secs(20), |sim| {
        (0..3).all(|a| (0..3).all(|b| a == b || sim.state(a, b) == Some(PeerState::Alive)))
    });
    assert!(joined, "seed {seed}: nodes did not join");
    sim
}

#[test]
fn what_waits_for_acknowledgement_stays_within_its_bound_and_drops_are_counted() {
    let max_pending = 8;
    let mut sim = trio(7, |protocol| protocol.push_acks.max_pending = max_pending);
    // n2 hears nothing from n0: every push to it waits, until the bound.
    sim.block(0, 2);
    for k in 0..20 {
        sim.publish(0, &format!("m{k}")).expect("publish");
        let (pairs, _) = sim.node(0).retransmit_usage();
        assert!(pairs <= max_pending, "{pairs} pairs held > {max_pending}");
    }
    sim.run_for(Duration::from_millis(1));
    let stats = sim.node(0).stats();
    assert!(
        stats.retransmit_dropped >= 12,
        "20 messages to a silent member, 8 held: {stats:?}"
    );
    // n1 acknowledged everything: only n2's pairs are held.
    let (pairs, _) = sim.node(0).retransmit_usage();
    assert!(pairs <= max_pending);
    // Once the link heals, retries and anti-entropy bring n2 everything.
    sim.heal_blocks();
    let published: Vec<_> = sim.published().to_vec();
    let done = sim.run_until(Duration::from_secs(10), |sim| {
        sim.delivery_report(&published).is_complete()
    });
    assert!(done, "{}", sim.delivery_report(&published));
}

#[test]
fn a_member_that_never_acknowledges_is_given_up_after_the_last_retry() {
    let mut sim = trio(8, |_| {});
    let acks = ProtocolConfig::default().push_acks;
    // n0's pushes reach n2, its acknowledgements never come back.
    sim.block(2, 0);
    sim.publish(0, "one").expect("publish");
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.node(0).retransmit_usage().0, 1, "only n2 still owes");
    // Every retry, then nothing more is held.
    sim.run_until(Duration::from_secs(2), |sim| {
        sim.node(0).retransmit_usage().0 == 0
    });
    let stats = sim.node(0).stats();
    assert_eq!(stats.retransmit_given_up, 1, "{stats:?}");
    assert_eq!(
        stats.retransmissions,
        u64::from(acks.max_retries * acks.copies),
        "{stats:?}"
    );
    // n2 had it from the first push, and dropped the copies.
    assert!(sim.node(2).stats().duplicates >= u64::from(acks.max_retries));
}
