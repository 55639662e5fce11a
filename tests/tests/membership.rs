//! Membership acceptance tests (issue 3): real `rossipd` processes, one per
//! network namespace on one bridge, finding each other by mDNS only, each
//! watched by a peer-event recorder (`subscribe {events: ["peer"]}`). They
//! need root, iproute2 and nftables; without them they print one line and
//! pass, except with `CI=true`, where they must run.
//!
//! Deadlines are generous (the machine may be busy); the figures the issue
//! asks for are printed, not asserted, except where the issue states a
//! behaviour (`failed` everywhere, `left` not `failed`, zero false failures,
//! healing without a restart).
//!
//! Only two tests run at a time (libtest's threads on 2 cores), and the
//! timing-sensitive ones (loss, partition) take [`exclusive`] so no other
//! cluster competes with them for the CPU.

use std::time::{Duration, Instant};

use rossip_proto::rpc::{PeerStateName, PeerView, ProblemKind};
use rossip_tests::cpu::{exclusive, shared};
use rossip_tests::ctl::{rossipctl_in, spawn_rossipctl};
use rossip_tests::daemon::DaemonBuilder;
use rossip_tests::events::PeerRecorder;
use rossip_tests::nscluster::{NsCluster, secs};
use rossip_tests::sys;
use rossip_tests::wait;

/// mDNS plus the first probes; generous for a loaded 2-core machine.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// A killed or vanished node must be `failed` everywhere by then (the
/// target is 2 s).
const DETECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// A restarted node must be `alive` everywhere by then.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// A leaving node must be `left` everywhere by then (the target is 0.1 s;
/// the issue promises 1 s).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);
/// Each side of a partition must mark the other failed by then.
const PARTITION_DETECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// After a heal, all must see all alive again by then.
const HEAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the 10% loss lasts (the issue says 60 s).
const LOSS_DURATION: Duration = Duration::from_secs(60);
/// How long separation and single-listing must hold after discovery settled.
const HOLD: Duration = Duration::from_secs(5);
/// `rossipctl join` gives up after the daemon's 5 s join timeout.
const JOIN_REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

fn as_is(_: usize, daemon: DaemonBuilder) -> DaemonBuilder {
    daemon
}

/// Starts `hosts` mDNS-only daemons and waits until all see all alive;
/// prints the discovery time. `None` when the test is skipped.
fn discovered(test: &str, hosts: usize) -> Option<NsCluster> {
    let cluster = NsCluster::start(test, hosts, |_| {}, as_is).ok()?;
    let settled = cluster.wait_all_alive(cluster.spawned, DISCOVERY_TIMEOUT, "discovery");
    sys::say(&format!(
        "{test}: {hosts} daemons listed each other alive {:.2} s after spawning",
        secs(cluster.spawned, settled)
    ));
    Some(cluster)
}

/// Asserts that no recorder in `observers` ever recorded `name` entering
/// `failed`.
fn assert_never_failed(cluster: &NsCluster, observers: &[usize], name: &str) {
    for &i in observers {
        let failed: Vec<_> = cluster.recorders[i]
            .records_of(name)
            .into_iter()
            .filter(|r| r.enters(PeerStateName::Failed))
            .collect();
        if !failed.is_empty() {
            cluster.fail(&format!(
                "{} recorded {name} as failed (it left gracefully)",
                cluster.name(i)
            ));
        }
    }
}

/// Seconds from `from` to each instant, for printing.
fn figures(from: Instant, instants: &[Instant]) -> String {
    let parts: Vec<String> = instants
        .iter()
        .map(|at| format!("{:.2}", secs(from, *at)))
        .collect();
    format!("[{}] s", parts.join(", "))
}

/// The node a kill or vanish test takes out, and what the others knew of
/// it before.
struct Victim {
    index: usize,
    name: String,
    /// Every other host: the observers.
    others: Vec<usize>,
    /// The generation h1 listed it under before it went.
    generation_before: u64,
}

impl Victim {
    fn of(cluster: &NsCluster, index: usize) -> Victim {
        let name = cluster.name(index).to_owned();
        Victim {
            index,
            others: cluster.all_but(index),
            generation_before: generation_seen(cluster, 0, &name),
            name,
        }
    }

    /// Waits until every other node recorded it `failed` at or after
    /// `since`; `what` names the step for failures.
    fn wait_failed(&self, cluster: &NsCluster, since: Instant, what: &str) -> Vec<Instant> {
        cluster.wait_entered(
            &self.others,
            self.index,
            PeerStateName::Failed,
            since,
            DETECTION_TIMEOUT,
            what,
        )
    }

    /// Restarts it (same state dir) and waits until the others recorded it
    /// alive again and it has everyone alive too; `what` names the step for
    /// failures. Returns the instant of the restart and, per other node,
    /// when it recorded the victim alive.
    fn restart(&self, cluster: &mut NsCluster, what: &str) -> (Instant, Vec<Instant>) {
        let restarted = cluster.restart(self.index);
        let rejoined = cluster.wait_entered(
            &self.others,
            self.index,
            PeerStateName::Alive,
            restarted,
            REJOIN_TIMEOUT,
            what,
        );
        // The restarted node itself must learn everyone again too.
        cluster.wait_all_alive(restarted, REJOIN_TIMEOUT, what);
        (restarted, rejoined)
    }
}

#[test]
fn sigkill_is_failed_everywhere_and_a_restart_is_alive_again() {
    let _cpu = shared();
    let Some(mut cluster) = discovered("member_kill", 5) else {
        return;
    };
    let victim = Victim::of(&cluster, 2);
    let name = victim.name.as_str();
    let id = cluster.daemons[victim.index].status().id;

    let killed = Instant::now();
    cluster.daemons[victim.index].kill9();
    let detected = victim.wait_failed(&cluster, killed, &format!("after kill -9 of {name}"));
    sys::say(&format!(
        "member_kill: kill -9 {name} -> failed on h1,h2,h4,h5 after {} (target <= 2 s)",
        figures(killed, &detected)
    ));

    let (restarted, rejoined) = victim.restart(&mut cluster, &format!("after restarting {name}"));
    sys::say(&format!(
        "member_kill: restarted {name} -> alive again on the others after {}",
        figures(restarted, &rejoined)
    ));
    assert_eq!(
        cluster.daemons[victim.index].status().id,
        id,
        "{name} restarted from the same state dir must keep its node id"
    );
    // Each observer must come to list it once, alive, under its new run.
    // Polled, not sampled: on a loaded machine a restarted node can be
    // `suspect` for a moment (a probe answered late) and then recover.
    let generation_before = victim.generation_before;
    for &i in &victim.others {
        let listed_right = wait::try_wait_until(REJOIN_TIMEOUT, || {
            let listed: Vec<PeerView> = cluster
                .peers_all(i)
                .into_iter()
                .filter(|p| p.name == name)
                .collect();
            let right = listed.len() == 1
                && listed[0].id == id
                && listed[0].state == PeerStateName::Alive
                && listed[0].generation > generation_before;
            if right {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        });
        if let Err(last) = listed_right {
            cluster.fail(&format!(
                "{} lists the restarted {name} as {}, want one alive member with id {id} \
                 and a generation above {generation_before}",
                cluster.name(i),
                last.unwrap_or_default()
            ));
        }
    }
}

/// The generation under which daemon `observer` lists the member `name`.
fn generation_seen(cluster: &NsCluster, observer: usize, name: &str) -> u64 {
    let peers = cluster.peers_all(observer);
    peers
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.generation)
        .unwrap_or_else(|| {
            cluster.fail(&format!("{} does not list {name}", cluster.name(observer)))
        })
}

#[test]
fn silent_vanish_is_failed_everywhere_and_the_node_is_readmitted() {
    let _cpu = shared();
    let Some(mut cluster) = discovered("member_vanish", 5) else {
        return;
    };
    let victim = Victim::of(&cluster, 4);
    let name = victim.name.as_str();

    // Pull the cable, then pull the plug: nothing the host does afterwards
    // (not even the kernel closing its socket) can reach anyone.
    let cut = Instant::now();
    cluster.lan.isolate(victim.index);
    cluster.daemons[victim.index].kill9();
    let killed = Instant::now();
    let detected = victim.wait_failed(&cluster, cut, &format!("after {name} vanished"));
    assert!(
        cluster.lan.isolation_drops() > 0,
        "the switch dropped nothing for the isolated {name}: the cut was not in force"
    );
    sys::say(&format!(
        "member_vanish: {name} cut off and killed ({:.3} s later) -> failed on h1..h4 after {} \
         from the cut (target <= 2 s)",
        secs(cut, killed),
        figures(cut, &detected)
    ));

    cluster.lan.reconnect(victim.index);
    let (restarted, rejoined) = victim.restart(&mut cluster, &format!("after {name} came back"));
    for &i in &victim.others {
        let generation = generation_seen(&cluster, i, name);
        assert!(
            generation > victim.generation_before,
            "{} lists the re-admitted {name} with generation {generation}, not above {}",
            cluster.name(i),
            victim.generation_before
        );
    }
    sys::say(&format!(
        "member_vanish: {name} reconnected and restarted -> alive again after {}",
        figures(restarted, &rejoined)
    ));
}

/// How a node is told to leave.
#[derive(Debug, Clone, Copy)]
enum Goodbye {
    Sigterm,
    Sigint,
    RossipctlLeave,
}

#[test]
fn sigterm_sigint_and_rossipctl_leave_are_left_everywhere_not_failed() {
    let _cpu = shared();
    let Some(mut cluster) = discovered("member_leave", 5) else {
        return;
    };
    // h5, h4 and h3 leave one after the other; those still running must
    // see each as `left`.
    for (leaver, how) in [
        (4, Goodbye::Sigterm),
        (3, Goodbye::Sigint),
        (2, Goodbye::RossipctlLeave),
    ] {
        let name = cluster.name(leaver).to_owned();
        let observers: Vec<usize> = (0..leaver).collect();
        let sent = Instant::now();
        // `rossipctl leave`'s own answer is checked after the others had
        // their say, so a failure shows both.
        let ctl = match how {
            Goodbye::Sigterm => {
                cluster.daemons[leaver].sigterm();
                None
            }
            Goodbye::Sigint => {
                cluster.daemons[leaver].sigint();
                None
            }
            Goodbye::RossipctlLeave => {
                let ns = cluster.lan.host(leaver).ns.clone();
                Some(rossipctl_in(
                    Some(&ns),
                    cluster.daemons[leaver].socket(),
                    &["leave"],
                ))
            }
        };
        let left = cluster.wait_entered(
            &observers,
            leaver,
            PeerStateName::Left,
            sent,
            LEAVE_TIMEOUT,
            &format!("after {how:?} to {name}"),
        );
        sys::say(&format!(
            "member_leave: {how:?} to {name} -> left on the {} others after {} \
             (target <= 0.1 s, promise 1 s)",
            observers.len(),
            figures(sent, &left)
        ));
        if let Some(ctl) = ctl {
            ctl.assert_success();
        }
        cluster.daemons[leaver].assert_clean_exit(Duration::from_secs(20), &format!("{how:?}"));
    }

    // All three stay `left` (a later `failed` would be a false alarm about
    // a node that said goodbye).
    for observer in [0, 1] {
        let peers = cluster.peers_all(observer);
        for gone in ["h3", "h4", "h5"] {
            let state = peers.iter().find(|p| p.name == gone).map(|p| p.state);
            assert!(
                matches!(state, Some(PeerStateName::Left) | None),
                "{} lists {gone} as {state:?} after it left",
                cluster.name(observer)
            );
        }
    }
    assert_never_failed(&cluster, &[0, 1, 2, 3], "h5");
    assert_never_failed(&cluster, &[0, 1, 2], "h4");
    assert_never_failed(&cluster, &[0, 1], "h3");
}

#[test]
fn ten_percent_loss_for_60_s_raises_no_false_failure() {
    let _cpu = exclusive();
    let Some(cluster) = discovered("member_loss", 5) else {
        return;
    };
    let all: Vec<usize> = (0..5).collect();
    let names = cluster.names();

    let started = Instant::now();
    cluster.lan.set_loss_all(10);
    // Hold the fault for its whole duration (this is the test's load, not a
    // wait for a condition), watching that no daemon dies meanwhile.
    let ended = wait::try_wait_until(LOSS_DURATION, || {
        cluster
            .recorders
            .iter()
            .find_map(|r| r.ended())
            .map(|(_, why)| why)
    });
    if let Ok(why) = ended {
        cluster.fail(&format!("a daemon's event stream ended under loss: {why}"));
    }
    let held = started.elapsed();
    // Still under loss: suspicion in flight at this instant may resolve.
    let settled = cluster.try_wait_alive(&all, &all, started, DETECTION_TIMEOUT);
    let drops: Vec<u64> = all.iter().map(|&i| cluster.lan.fault_drops(i)).collect();
    cluster.lan.heal();

    let failed: usize = cluster
        .recorders
        .iter()
        .map(|r| r.count_entered(PeerStateName::Failed, started))
        .sum();
    let suspected: usize = cluster
        .recorders
        .iter()
        .map(|r| r.count_entered(PeerStateName::Suspect, started))
        .sum();
    let lagged: u64 = cluster.recorders.iter().map(PeerRecorder::lagged).sum();
    sys::say(&format!(
        "member_loss: 10% inbound loss on all 5 hosts for {:.0} s: {failed} failed and \
         {suspected} suspect transitions recorded by the 5 subscribers; packets dropped per \
         host {drops:?}",
        held.as_secs_f64()
    ));
    assert!(
        drops.iter().all(|&d| d > 0),
        "a loss rule dropped nothing ({drops:?}): the test proved nothing"
    );
    assert_eq!(lagged, 0, "a subscriber lagged: the records are incomplete");
    if failed > 0 {
        cluster.fail(&format!(
            "{failed} false `failed` transitions under 10% loss (every node was alive)"
        ));
    }
    if let Err(why) = settled {
        cluster.fail(&format!(
            "not all of {names:?} alive everywhere at the end of the loss: {why}"
        ));
    }
}

#[test]
fn partition_2_3_fails_each_side_and_heals_without_restart() {
    let _cpu = exclusive();
    let Some(cluster) = discovered("member_part", 5) else {
        return;
    };
    let left_side = [0, 1];
    let right_side = [2, 3, 4];

    let cut = Instant::now();
    for &a in &left_side {
        cluster.lan.partition(a, &right_side);
    }
    for &b in &right_side {
        cluster.lan.partition(b, &left_side);
    }
    let mut detected = Vec::new();
    for (observers, across) in [(&left_side[..], &right_side[..]), (&right_side, &left_side)] {
        for &member in across {
            let at = cluster.wait_entered(
                observers,
                member,
                PeerStateName::Failed,
                cut,
                PARTITION_DETECTION_TIMEOUT,
                "during the 2|3 partition",
            );
            detected.extend(at);
        }
    }
    let last_detected = detected.iter().max().copied().unwrap_or(cut);
    // Each side still has its own members alive.
    for side in [&left_side[..], &right_side] {
        if let Err(why) = cluster.try_wait_alive(side, side, cut, DETECTION_TIMEOUT) {
            cluster.fail(&format!("within one side of the partition: {why}"));
        }
    }
    sys::say(&format!(
        "member_part: 2|3 partition -> each side had the other failed after {:.2} s \
         (first {:.2} s)",
        secs(cut, last_detected),
        detected.iter().min().map_or(0.0, |first| secs(cut, *first))
    ));

    let healed = Instant::now();
    cluster.lan.heal();
    let all: Vec<usize> = (0..5).collect();
    let merged = cluster
        .try_wait_alive(&all, &all, healed, HEAL_TIMEOUT)
        .unwrap_or_else(|why| cluster.fail(&format!("after healing the partition: {why}")));
    let last = merged.iter().max().copied().unwrap_or(healed);
    sys::say(&format!(
        "member_part: heal -> all five saw all five alive after {:.2} s (per observer {})",
        secs(healed, last),
        figures(healed, &merged)
    ));
}

#[test]
fn two_cluster_labels_on_one_bridge_stay_two_memberships() {
    let _cpu = shared();
    let label = |index: usize| if index < 2 { "a" } else { "b" };
    let Ok(cluster) = NsCluster::start(
        "member_labels",
        4,
        |_| {},
        |index, daemon| daemon.args(["--cluster", label(index)]),
    ) else {
        return;
    };
    let a = [0, 1];
    let b = [2, 3];
    for side in [&a, &b] {
        if let Err(why) = cluster.try_wait_alive(side, side, cluster.spawned, DISCOVERY_TIMEOUT) {
            cluster.fail(&format!("discovery within one label: {why}"));
        }
    }
    let settled = Instant::now();
    sys::say(&format!(
        "member_labels: each pair found its own label's member {:.2} s after spawning; \
         holding {HOLD:?}",
        secs(cluster.spawned, settled)
    ));

    // mDNS alone keeps the labels apart (TXT filter), so also make a node of
    // label b knock on a's door directly: the wire check must refuse it.
    let knock_addr = cluster.daemons[0].addr();
    let mut knock = spawn_rossipctl(
        cluster.daemons[2].netns(),
        cluster.daemons[2].socket(),
        &["join", &knock_addr],
    );

    let foreign = |i: usize| -> Vec<String> {
        let mine: Vec<&str> = (0..4)
            .filter(|&j| label(j) == label(i))
            .map(|j| cluster.name(j))
            .collect();
        let mut seen = cluster.recorders[i].names();
        seen.extend(cluster.peers_all(i).into_iter().map(|p| p.name));
        seen.retain(|n| !mine.contains(&n.as_str()));
        seen
    };
    // The labels must stay apart for the whole window, not just at its end.
    let mixed = wait::try_wait_until(HOLD, || {
        (0..4).find_map(|i| {
            let strangers = foreign(i);
            (!strangers.is_empty()).then(|| format!("{} lists {strangers:?}", cluster.name(i)))
        })
    });
    if let Ok(what) = mixed {
        cluster.fail(&format!("clusters with different labels merged: {what}"));
    }
    for i in 0..4 {
        let status = cluster.daemons[i].status();
        assert_eq!(
            status.cluster,
            label(i),
            "{}: status.cluster",
            cluster.name(i)
        );
    }
    let joined = wait::try_wait_until(JOIN_REFUSAL_TIMEOUT, || knock.exited())
        .unwrap_or_else(|_| cluster.fail("`rossipctl join` across labels never returned"));
    assert!(
        !joined.success(),
        "`{}` across labels succeeded:\n{}",
        knock.command(),
        knock.lines().join("\n")
    );
    let refused = cluster.daemons[0]
        .status()
        .datagrams
        .dropped
        .get("wrong_cluster")
        .copied()
        .unwrap_or(0);
    assert!(
        refused > 0,
        "{} got {}'s hello but counted no wrong_cluster drop",
        cluster.name(0),
        cluster.name(2)
    );
    // …and says so: a status problem naming the knocker's address.
    let knocker = cluster.daemons[2].addr();
    let problems = cluster.daemons[0].status().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.kind == ProblemKind::WrongCluster && p.addr.as_deref() == Some(&knocker)),
        "{} lists no wrong_cluster problem about {knocker}: {problems:?}",
        cluster.name(0)
    );
    // The knock changed nothing: still two memberships.
    for i in 0..4 {
        let strangers = foreign(i);
        assert!(
            strangers.is_empty(),
            "{} lists {strangers:?} after the cross-label join",
            cluster.name(i)
        );
    }
}

#[test]
fn a_host_with_two_interfaces_is_listed_once() {
    let _cpu = shared();
    let mut second = None;
    let Ok(cluster) = NsCluster::start(
        "member_twoif",
        3,
        |lan| second = Some(lan.add_interface(0)),
        as_is,
    ) else {
        return;
    };
    let second = second.expect("the LAN was prepared");
    let settled = cluster.wait_all_alive(cluster.spawned, DISCOVERY_TIMEOUT, "discovery");
    let addrs = [
        cluster.lan.host(0).addr.to_string(),
        second.addr.to_string(),
    ];
    sys::say(&format!(
        "member_twoif: h1 on eth0 {} and {} {}; all listed all alive {:.2} s after spawning; \
         holding {HOLD:?}",
        addrs[0],
        second.name,
        addrs[1],
        secs(cluster.spawned, settled)
    ));
    let id = cluster.daemons[0].status().id;

    let duplicate = |i: usize| -> Option<String> {
        let peers = cluster.peers_all(i);
        for name in cluster
            .names()
            .into_iter()
            .filter(|n| *n != cluster.name(i))
        {
            let listed: Vec<&PeerView> = peers.iter().filter(|p| p.name == name).collect();
            if listed.len() != 1 {
                return Some(format!("{} lists {name} as {listed:?}", cluster.name(i)));
            }
        }
        let h1_ids: Vec<String> = cluster.recorders[i]
            .records_of("h1")
            .into_iter()
            .map(|r| r.peer.id)
            .filter(|other| *other != id)
            .collect();
        (!h1_ids.is_empty())
            .then(|| format!("{} recorded h1 under other ids {h1_ids:?}", cluster.name(i)))
    };
    let twice = wait::try_wait_until(HOLD, || (1..3).find_map(duplicate));
    if let Ok(what) = twice {
        cluster.fail(&format!(
            "the two-interface host is not listed once: {what}"
        ));
    }
    for i in 1..3 {
        let peers = cluster.peers_all(i);
        let h1 = peers
            .iter()
            .find(|p| p.name == "h1")
            .expect("listed once above");
        let ip = h1
            .addr
            .rsplit_once(':')
            .map_or(h1.addr.as_str(), |(ip, _)| ip);
        assert!(
            addrs.iter().any(|a| a == ip),
            "{} lists h1 at {}, which is none of its addresses {addrs:?}",
            cluster.name(i),
            h1.addr
        );
    }
}
