//! Presence across three namespaced hosts: a user whose chat connection
//! registers on one node is listed by `rossipctl who` on the others,
//! available, then away with a status line, and gone once the connection
//! closes; a node killed with -9 takes its users with it once the others
//! declare it failed. A `presence` subscriber on another node sees each
//! change as an event. The three-host test needs root and iproute2; without
//! them it prints one line and passes, except with `CI=true`, where it must
//! run.

use std::time::Duration;

use rossip_proto::rpc::{EventBody, PresenceStateName, PresenceView};
use rossip_tests::cluster;
use rossip_tests::ctl::rossipctl_in;
use rossip_tests::daemon::Daemon;
use rossip_tests::netns::Lan;
use rossip_tests::rpc::RpcClient;
use rossip_tests::wait::wait_until;
use serde_json::{Value, json};

/// mDNS plus the first probes; generous for a loaded 2-core machine.
/// A presence change is pushed at once; a lost push is repaired by the
/// 20 s refresh. Generous for a loaded machine.
const PRESENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Failure detection takes about two seconds; generous.
const FAILURE_TIMEOUT: Duration = Duration::from_secs(60);

/// `rossipctl --json who` on host `index`.
fn who(lan: &Lan, index: usize, daemon: &Daemon) -> Vec<PresenceView> {
    let out = rossipctl_in(
        Some(&lan.host(index).ns),
        daemon.socket(),
        &["--json", "who"],
    );
    out.assert_success();
    out.json_lines()
        .into_iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect()
}

/// Waits until `who` on host `index` lists `from` as `want` (`None`: not at
/// all), and returns the entry.
fn wait_who(
    lan: &Lan,
    index: usize,
    daemon: &Daemon,
    from: &str,
    want: Option<(PresenceStateName, Option<&str>)>,
    timeout: Duration,
) -> Option<PresenceView> {
    let what = format!("{} to list {from} as {want:?}", daemon.name());
    wait_until(timeout, &what, || {
        let users = who(lan, index, daemon);
        let entry = users.iter().find(|u| u.from == from).cloned();
        let seen = entry.as_ref().map(|u| (u.state, u.status.as_deref()));
        if seen == want {
            Ok(entry)
        } else {
            Err(format!("{users:?}"))
        }
    })
}

/// The next `presence` event for `from` on `client`.
fn next_presence(client: &mut RpcClient, from: &str) -> (PresenceView, Option<PresenceStateName>) {
    wait_until(
        PRESENCE_TIMEOUT,
        &format!("a presence event for {from}"),
        || {
            let event = client.next_event(Duration::from_millis(200))?;
            match event.event {
                EventBody::Presence { presence, previous } if presence.from == from => {
                    Some((presence, previous))
                }
                _ => None,
            }
        },
    )
}

#[test]
fn presence_spreads_changes_and_ends_with_the_connection_or_the_node() {
    let Ok(lan) = Lan::new("presence", 3) else {
        return;
    };
    let (mut daemons, _) = cluster::start_on_lan(&lan);

    // A presence subscriber on C.
    let mut watcher = daemons[2].client();
    watcher.subscribe(json!({"events": ["presence"]}));

    // A chat client on A registers its user (the test's own uid).
    let mut chat = daemons[0].client();
    let set: Value = chat.call_ok("presence.set", json!({}));
    let user = set["user"]
        .as_str()
        .expect("presence.set names the user")
        .to_owned();
    assert_eq!(set["state"], "available", "{set}");
    let from = format!("{user}@{}", daemons[0].name());

    let here = wait_who(
        &lan,
        0,
        &daemons[0],
        &from,
        Some((PresenceStateName::Available, None)),
        PRESENCE_TIMEOUT,
    )
    .expect("listed");
    assert!(here.local, "{here:?}");
    for b in [1, 2] {
        let there = wait_who(
            &lan,
            b,
            &daemons[b],
            &from,
            Some((PresenceStateName::Available, None)),
            PRESENCE_TIMEOUT,
        )
        .expect("listed");
        assert!(!there.local, "{there:?}");
        assert_eq!(there.node_name, daemons[0].name());
        assert_eq!(there.node, daemons[0].status().id);
    }
    let (event, previous) = next_presence(&mut watcher, &from);
    assert_eq!(
        (event.state, previous),
        (PresenceStateName::Available, None)
    );

    // Away, with a status line.
    let set: Value = chat.call_ok(
        "presence.set",
        json!({"state": "away", "status": "in a meeting"}),
    );
    assert_eq!(set["state"], "away", "{set}");
    for b in [1, 2] {
        wait_who(
            &lan,
            b,
            &daemons[b],
            &from,
            Some((PresenceStateName::Away, Some("in a meeting"))),
            PRESENCE_TIMEOUT,
        );
    }
    let (event, previous) = next_presence(&mut watcher, &from);
    assert_eq!(
        (event.state, event.status.as_deref(), previous),
        (
            PresenceStateName::Away,
            Some("in a meeting"),
            Some(PresenceStateName::Available)
        )
    );
    // The human table, on B.
    let table = rossipctl_in(Some(&lan.host(1).ns), daemons[1].socket(), &["who"]);
    table.assert_success();
    let line = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&from))
        .unwrap_or_else(|| panic!("`who` on B does not list {from}:\n{}", table.stdout));
    assert!(
        line.contains("away") && line.contains("in a meeting"),
        "{line}"
    );

    // A second connection of the same user, available: the user is
    // available while either is; when it closes, away again.
    let mut second = daemons[0].client();
    let set: Value = second.call_ok("presence.set", json!({"state": "available"}));
    assert_eq!(set["state"], "available", "{set}");
    wait_who(
        &lan,
        1,
        &daemons[1],
        &from,
        Some((PresenceStateName::Available, None)),
        PRESENCE_TIMEOUT,
    );
    drop(second);
    wait_who(
        &lan,
        1,
        &daemons[1],
        &from,
        Some((PresenceStateName::Away, Some("in a meeting"))),
        PRESENCE_TIMEOUT,
    );

    // The chat closes: the user is gone everywhere.
    drop(chat);
    for b in [0, 1, 2] {
        wait_who(&lan, b, &daemons[b], &from, None, PRESENCE_TIMEOUT);
    }
    let offline = wait_until(PRESENCE_TIMEOUT, "an offline event", || {
        let (event, previous) = next_presence(&mut watcher, &from);
        (event.state == PresenceStateName::Offline).then_some(previous)
    });
    assert_eq!(offline, Some(PresenceStateName::Away));

    // Again, and then A is killed: its user goes when A is declared failed.
    let mut chat = daemons[0].client();
    let _: Value = chat.call_ok("presence.set", json!({"status": "back"}));
    for b in [1, 2] {
        wait_who(
            &lan,
            b,
            &daemons[b],
            &from,
            Some((PresenceStateName::Available, Some("back"))),
            PRESENCE_TIMEOUT,
        );
    }
    let killed = std::time::Instant::now();
    daemons[0].kill9();
    for b in [1, 2] {
        wait_who(&lan, b, &daemons[b], &from, None, FAILURE_TIMEOUT);
    }
    rossip_tests::sys::say(&format!(
        "presence: {from} gone from B and C {:.2} s after kill -9 of its node",
        killed.elapsed().as_secs_f64()
    ));
    drop(chat);
}

#[test]
fn presence_set_refuses_bad_params_and_who_says_when_nobody_is_there() {
    // One daemon on loopback: no namespaces, so no root, needed.
    let daemon = Daemon::builder("presence-params").loopback().spawn();
    let empty = rossip_tests::ctl::rossipctl(daemon.socket(), &["who"]);
    empty.assert_success();
    assert_eq!(empty.stdout, "", "{empty:?}");
    assert!(empty.stderr.contains("nobody is in a chat"), "{empty:?}");
    let mut client = daemon.client();
    for params in [
        json!({"state": "offline"}),
        json!({"state": "busy"}),
        json!({"status": "x".repeat(129)}),
        json!({"status": "a\u{1b}[2Jb"}),
        json!({"mood": "happy"}),
    ] {
        let err = client
            .call("presence.set", params.clone())
            .expect_err(&format!("presence.set {params} was accepted"));
        assert_eq!(err.code, -32602, "{params}: {err:?}");
    }
    // Nothing was registered by the refusals.
    let users: Value = client.call_ok("who", json!({}));
    assert_eq!(users, json!({"users": []}));
    // An empty status clears it.
    let set: Value = client.call_ok("presence.set", json!({"state": "away", "status": ""}));
    assert_eq!(set.get("status"), None, "{set}");
    // `who --json` on this node: its own user, local.
    let listed = rossip_tests::ctl::rossipctl(daemon.socket(), &["--json", "who"]);
    listed.assert_success();
    let users = listed.json_lines();
    assert_eq!(users.len(), 1, "{listed:?}");
    assert_eq!(users[0]["state"], "away", "{listed:?}");
    assert_eq!(users[0]["local"], true, "{listed:?}");
    assert_eq!(users[0]["node_name"], daemon.name(), "{listed:?}");
}
