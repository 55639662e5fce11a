//! Presence in the deterministic simulation: a node's users reach every
//! member, changes follow, a member that joins late learns them, a lost
//! update is repaired by the refresh, and a node's users are dropped when it
//! fails or leaves. `ROSSIP_TEST_SEED` replays one seed.
#![allow(clippy::disallowed_methods)] // one real Instant as the origin of virtual time

mod common;

use std::time::Duration;

use common::{seed, three_joined};
use rossip_proto::ProtocolConfig;
use rossip_proto::node::PeerState;
use rossip_proto::presence::{Availability, UserPresence};
use rossip_proto::testing::Sim;

fn user(name: &str, availability: Availability, status: Option<&str>) -> UserPresence {
    UserPresence {
        user: name.into(),
        nick: None,
        availability,
        status: status.map(Into::into),
        since_ms: 1,
    }
}

/// What node `at` knows of user `name` of node `of`.
fn seen(sim: &Sim, at: usize, of: usize, name: &str) -> Option<(Availability, Option<String>)> {
    sim.node(at)
        .presence()
        .into_iter()
        .find(|(node, u)| *node == Sim::id(of) && u.user == name)
        .map(|(_, u)| (u.availability, u.status.clone()))
}

/// Runs until every node in `at` sees `want` for user `name` of node `of`.
fn wait_for(
    sim: &mut Sim,
    at: &[usize],
    of: usize,
    name: &str,
    want: Option<(Availability, Option<String>)>,
    limit: Duration,
) -> bool {
    sim.run_until(limit, |sim| {
        at.iter().all(|&i| seen(sim, i, of, name) == want)
    })
}

#[test]
fn users_spread_change_and_go_with_their_node() {
    let seed = seed();
    let mut sim = three_joined(seed);
    let fast = Duration::from_secs(1);

    sim.with_node(0, |node, now| {
        node.set_presence(vec![user("alice", Availability::Available, None)], now)
    });
    assert!(
        wait_for(
            &mut sim,
            &[1, 2],
            0,
            "alice",
            Some((Availability::Available, None)),
            fast
        ),
        "seed {seed:#x}: alice did not reach the members"
    );

    sim.with_node(0, |node, now| {
        node.set_presence(vec![user("alice", Availability::Away, Some("lunch"))], now)
    });
    assert!(
        wait_for(
            &mut sim,
            &[1, 2],
            0,
            "alice",
            Some((Availability::Away, Some("lunch".into()))),
            fast
        ),
        "seed {seed:#x}: the change did not follow"
    );

    // A member that joins later is told at once.
    let late = sim.add_node("delta");
    sim.contact(late, 1);
    assert!(
        wait_for(
            &mut sim,
            &[late],
            0,
            "alice",
            Some((Availability::Away, Some("lunch".into()))),
            Duration::from_secs(10)
        ),
        "seed {seed:#x}: a late member did not learn alice"
    );

    // Node 0 dies: its users go with it once it is declared failed.
    sim.crash(0);
    assert!(
        wait_for(
            &mut sim,
            &[1, 2, late],
            0,
            "alice",
            None,
            Duration::from_secs(10)
        ),
        "seed {seed:#x}: alice outlived her node"
    );
    assert_eq!(sim.state(1, 0), Some(PeerState::Failed), "seed {seed:#x}");

    // Every change was an event, in order, on a member.
    let changes: Vec<(Option<Availability>, Option<Availability>)> = sim
        .host(1)
        .events
        .iter()
        .filter_map(|(_, event)| match event {
            rossip_proto::Event::Presence(change) if change.user == "alice" => Some((
                change.previous.as_ref().map(|u| u.availability),
                change.current.as_ref().map(|u| u.availability),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (None, Some(Availability::Available)),
            (Some(Availability::Available), Some(Availability::Away)),
            (Some(Availability::Away), None),
        ],
        "seed {seed:#x}"
    );
}

#[test]
fn a_lost_update_is_repaired_by_the_refresh_and_a_leave_drops_users() {
    let seed = seed();
    let mut sim = three_joined(seed);
    sim.with_node(0, |node, now| {
        node.set_presence(vec![user("bob", Availability::Available, None)], now)
    });
    assert!(
        wait_for(
            &mut sim,
            &[1, 2],
            0,
            "bob",
            Some((Availability::Available, None)),
            Duration::from_secs(1)
        ),
        "seed {seed:#x}"
    );
    // Node 2 misses the update (its link from 0 drops everything for a
    // moment), and gets it with the next refresh.
    sim.block(0, 2);
    sim.with_node(0, |node, now| node.set_presence(Vec::new(), now));
    sim.run_for(Duration::from_millis(100));
    sim.heal_blocks();
    assert!(
        wait_for(&mut sim, &[1], 0, "bob", None, Duration::from_secs(1)),
        "seed {seed:#x}"
    );
    let refresh = ProtocolConfig::default().presence_refresh_interval;
    assert!(
        wait_for(&mut sim, &[2], 0, "bob", None, refresh * 2),
        "seed {seed:#x}: the refresh did not repair the lost update"
    );

    // A graceful leave drops a node's users too.
    sim.with_node(1, |node, now| {
        node.set_presence(vec![user("carol", Availability::Away, None)], now)
    });
    assert!(
        wait_for(
            &mut sim,
            &[0, 2],
            1,
            "carol",
            Some((Availability::Away, None)),
            Duration::from_secs(1)
        ),
        "seed {seed:#x}"
    );
    sim.leave(1);
    assert!(
        wait_for(&mut sim, &[0, 2], 1, "carol", None, Duration::from_secs(5)),
        "seed {seed:#x}: carol outlived her node's leave"
    );
}

#[test]
fn a_member_cannot_state_another_nodes_users() {
    let seed = seed();
    let mut sim = three_joined(seed);
    // Node 1 signs a statement naming node 0: refused by node 2.
    let mut forged = rossip_proto::presence::PresenceRecord::signed(
        &Sim::key(1),
        1,
        1,
        vec![user("mallory", Availability::Available, None)],
    );
    forged.node = Sim::id(0);
    let header = rossip_proto::wire::Header {
        flags: 0,
        cluster: rossip_proto::wire::ClusterId::from_label(rossip_proto::testing::SIM_CLUSTER),
        sender: Sim::id(1),
    };
    let bytes = rossip_proto::wire::encode(&header, &rossip_proto::wire::Body::Presence(forged))
        .expect("encode");
    sim.inject(2, Sim::addr(1), &bytes);
    sim.run_for(Duration::from_millis(100));
    assert!(seen(&sim, 2, 0, "mallory").is_none(), "seed {seed:#x}");
    assert_eq!(
        sim.node(2).stats().dropped.get("bad_signature").copied(),
        Some(1),
        "seed {seed:#x}"
    );
}

#[test]
fn a_statement_that_comes_before_its_node_is_a_member_is_kept_for_then() {
    let seed = seed();
    let mut sim = three_joined(seed);
    let late = sim.add_node("delta");
    // Node 1 hears delta's statement before it knows delta.
    let record = rossip_proto::presence::PresenceRecord::signed(
        &Sim::key(late),
        1,
        1,
        vec![user("dave", Availability::Available, None)],
    );
    let header = rossip_proto::wire::Header {
        flags: 0,
        cluster: rossip_proto::wire::ClusterId::from_label(rossip_proto::testing::SIM_CLUSTER),
        sender: Sim::id(late),
    };
    let bytes = rossip_proto::wire::encode(&header, &rossip_proto::wire::Body::Presence(record))
        .expect("encode");
    sim.inject(1, Sim::addr(late), &bytes);
    assert!(seen(&sim, 1, late, "dave").is_none(), "seed {seed:#x}");
    // Once delta is a member there, its users are listed.
    sim.contact(late, 0);
    assert!(
        wait_for(
            &mut sim,
            &[1],
            late,
            "dave",
            Some((Availability::Available, None)),
            Duration::from_secs(10)
        ),
        "seed {seed:#x}: the early statement was lost"
    );
}

#[test]
fn users_come_back_with_their_node_after_a_partition_without_waiting_for_the_refresh() {
    let seed = seed();
    let mut sim = three_joined(seed);
    sim.with_node(0, |node, now| {
        node.set_presence(vec![user("erin", Availability::Available, None)], now)
    });
    let fast = Duration::from_secs(1);
    assert!(
        wait_for(
            &mut sim,
            &[1, 2],
            0,
            "erin",
            Some((Availability::Available, None)),
            fast
        ),
        "seed {seed:#x}"
    );
    // Node 0 is cut off until the others declare it failed: erin goes.
    sim.partition(&[&[0], &[1, 2]]);
    assert!(
        wait_for(&mut sim, &[1, 2], 0, "erin", None, Duration::from_secs(10)),
        "seed {seed:#x}: erin outlived her node's failure"
    );
    // Healed: node 0 comes back (a new run of its identity), and erin with
    // it, well before the periodic refresh.
    sim.heal_partition();
    let refresh = ProtocolConfig::default().presence_refresh_interval;
    let healed = sim.now();
    assert!(
        wait_for(
            &mut sim,
            &[1, 2],
            0,
            "erin",
            Some((Availability::Available, None)),
            refresh
        ),
        "seed {seed:#x}: erin did not come back"
    );
    let took = sim.now().duration_since(healed);
    assert!(
        took < refresh / 2,
        "seed {seed:#x}: erin came back only after {took:?}"
    );
}
