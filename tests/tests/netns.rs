//! Multi-host tests: real `rossipd` processes in three network namespaces on
//! one bridge (see `netns/README.md`), finding each other by mDNS only (no
//! `--join`), on the default port. They need root and iproute2; without
//! them they print one line and pass, except with `CI=true`, where they
//! must run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rossip_proto::rpc::{EventBody, MessageView, PeerStateName, PeerView};
use rossip_tests::cluster::{self, DUPLICATE_WINDOW};
use rossip_tests::ctl::{rossipctl_in, spawn_rossipctl};
use rossip_tests::daemon::Daemon;
use rossip_tests::netns::Lan;
use rossip_tests::rpc::RpcClient;
use rossip_tests::sys;
use rossip_tests::wait::wait_until;

/// mDNS plus the first probes; generous for a loaded 2-core machine.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Anti-entropy under 30% loss may need many rounds.
const LOSSY_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

fn peers_via_ctl(lan: &Lan, index: usize, daemon: &Daemon) -> Vec<PeerView> {
    let out = rossipctl_in(
        Some(&lan.host(index).ns),
        daemon.socket(),
        &["--json", "peers", "--all"],
    );
    out.assert_success();
    out.json_lines()
        .into_iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect()
}

#[test]
fn three_hosts_discover_by_mdns_deliver_once_and_see_a_leave() {
    let Ok(lan) = Lan::new("netns_discovery", 3) else {
        return;
    };
    let (mut daemons, discovery) = cluster::start_on_lan(&lan);
    sys::say(&format!(
        "netns discovery: 3 rossipd in 3 namespaces (mDNS only) each listed the other two alive \
         {:.2} s after the first was started",
        discovery.as_secs_f64()
    ));
    for d in &daemons {
        let status = d.status();
        assert!(
            status.addr.starts_with("10.77.0."),
            "{} advertises {}, not its LAN address",
            d.name(),
            status.addr
        );
    }

    // `-n 100` replays what arrived before the subscription, so the check
    // holds however late the tails subscribe, and covers the hand-over from
    // replay to live without duplicates.
    let tails: Vec<_> = [1, 2]
        .iter()
        .map(|&i| {
            spawn_rossipctl(
                Some(&lan.host(i).ns),
                daemons[i].socket(),
                &["--json", "tail", "-f", "-n", "100"],
            )
        })
        .collect();
    let text = "hello over the namespaced LAN";
    rossipctl_in(Some(&lan.host(0).ns), daemons[0].socket(), &["send", text]).assert_success();

    for tail in &tails {
        let what = format!("`{}` to print {text:?}", tail.command());
        wait_until(DELIVERY_TIMEOUT, &what, || {
            tail.json_lines::<MessageView>()
                .iter()
                .any(|m| m.text == text)
        });
    }
    // Late duplicates (anti-entropy, replay/live overlap) would show here.
    std::thread::sleep(DUPLICATE_WINDOW);
    for (tail, host) in tails.iter().zip(["h2", "h3"]) {
        let printed = tail.json_lines::<MessageView>();
        let copies: Vec<&MessageView> = printed.iter().filter(|m| m.text == text).collect();
        assert_eq!(
            copies.len(),
            1,
            "{host}: `{}` printed {copies:?}",
            tail.command()
        );
        assert_eq!(copies[0].origin_name, "h1", "{host}: the sender is h1");
    }
    drop(tails);

    daemons[2].stop_with_sigterm(Duration::from_secs(20));
    for index in [0, 1] {
        let what = format!("h{} to list h3 as left", index + 1);
        wait_until(LEAVE_TIMEOUT, &what, || {
            let peers = peers_via_ctl(&lan, index, &daemons[index]);
            match cluster::state_of(&peers, "h3") {
                Some(PeerStateName::Left) => Ok(()),
                _ => Err(cluster::describe_peers(&peers)),
            }
        });
    }
}

/// Reads every event already waiting on `client` into `texts` (text → copies).
fn drain(client: &mut RpcClient, texts: &mut BTreeMap<String, usize>) {
    while let Some(event) = client.next_event(Duration::from_millis(100)) {
        if let EventBody::Message { message } = event.event {
            *texts.entry(message.text).or_default() += 1;
        }
    }
}

/// DELIVERY CHECK: with 30% of inbound packets dropped on every host, 20
/// messages sent on h1 still reach h2 and h3 (anti-entropy fills what eager
/// push lost), each exactly once.
#[test]
fn delivery_check_20_messages_reach_everyone_once_under_30_percent_loss() {
    let Ok(lan) = Lan::new("netns_lossy", 3) else {
        return;
    };
    let (daemons, discovery) = cluster::start_on_lan(&lan);
    sys::say(&format!(
        "netns lossy test: discovery took {:.2} s (before loss)",
        discovery.as_secs_f64()
    ));
    let mut subscribers: Vec<RpcClient> = daemons[1..]
        .iter()
        .map(|d| d.client().subscribed_to_messages())
        .collect();

    lan.set_loss_all(30);
    let started = Instant::now();
    let texts: Vec<String> = (0..20).map(|i| format!("lossy message {i:02}")).collect();
    let mut sender = daemons[0].client();
    for text in &texts {
        sender.send(text);
    }

    let mut seen: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new(); subscribers.len()];
    wait_until(
        LOSSY_DELIVERY_TIMEOUT,
        "all 20 messages on h2 and h3",
        || {
            let mut missing = Vec::new();
            for (i, client) in subscribers.iter_mut().enumerate() {
                drain(client, &mut seen[i]);
                let absent = texts.iter().filter(|t| !seen[i].contains_key(*t)).count();
                if absent > 0 {
                    missing.push(format!("h{} misses {absent}", i + 2));
                }
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing.join(", "))
            }
        },
    );
    let took = started.elapsed();
    // Late duplicates would arrive now.
    std::thread::sleep(DUPLICATE_WINDOW);
    for (i, client) in subscribers.iter_mut().enumerate() {
        drain(client, &mut seen[i]);
        let twice: Vec<_> = seen[i].iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "h{} delivered more than once: {twice:?}",
            i + 2
        );
        let history = daemons[i + 1].client().history();
        for text in &texts {
            assert_eq!(
                cluster::count_text(&history, text),
                1,
                "h{} history holds {text:?} not exactly once",
                i + 2
            );
        }
    }
    let drops: Vec<u64> = (0..3).map(|i| lan.fault_drops(i)).collect();
    assert!(
        drops.iter().sum::<u64>() > 0,
        "the 30% loss rules dropped nothing; the test proved nothing"
    );
    sys::say(&format!(
        "netns delivery check: 20 messages reached h2 and h3 under 30% loss in {:.2} s \
         (packets dropped by the loss rules on h1..h3: {drops:?})",
        took.as_secs_f64()
    ));
    lan.heal();
}
