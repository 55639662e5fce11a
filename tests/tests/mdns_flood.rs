//! A flood of forged mDNS records is bounded in what it makes a node do.
//! Two daemons on hosts h1 and h2 of a namespaced LAN find each other; then
//! h3 multicasts forged `_rossip._udp.local.` records (thousands a second,
//! one-day TTL, each naming another UDP port of h3, TXT as a real node of
//! this cluster puts it) for as long as the test runs. Meanwhile a third
//! daemon starts on h4 and must join as usual.
//!
//! Asserted, from each daemon's `status`: hellos to hinted addresses never
//! exceed the configured burst plus the configured rate over the time
//! between two `status` calls (the bounds come from
//! [`HintConfig::default`], which rossipd uses); what was dropped is
//! counted (`discovery.hints_dropped`, `discovery.cache_resets`); no forged
//! record becomes a member; and h4 joins h1 and h2.
//!
//! The flood is sent from inside h3's namespace (a socket created there),
//! to the mDNS group on the test's own bridge: nothing leaves the
//! namespaces. Needs root and iproute2; without them one line says it was
//! skipped, except with `CI=true`, where it must run.

use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rossip_proto::node::HintConfig;
use rossip_proto::rpc::StatusResult;
use rossip_tests::daemon::Daemon;
use rossip_tests::mdns_flood::{self, Forgery, RecordSet};
use rossip_tests::netns::Lan;
use rossip_tests::{cluster, sys};

/// mDNS plus the first probes; generous for a loaded 2-core machine, and
/// for discovery during a flood.
const JOIN_TIMEOUT: Duration = Duration::from_secs(90);
/// Forged nodes in the flood (it ends earlier when the test is done).
const FORGED_RECORDS: usize = 300_000;
/// Flood packets a second (six forged nodes each): well above any real
/// LAN, slow enough for a debug build of mdns-sd to read them all.
const FLOOD_PACKETS_PER_S: u32 = 300;

/// A `status` and the instants just before it was asked and just after it
/// came: the daemon read its counters somewhere in between.
struct Sample {
    asked: Instant,
    answered: Instant,
    status: StatusResult,
}

fn sample(daemon: &Daemon) -> Sample {
    let asked = Instant::now();
    let status = daemon.status();
    Sample {
        asked,
        answered: Instant::now(),
        status,
    }
}

/// Hellos to hints between two samples stay within the token bucket: its
/// size, plus its rate over the longest time the daemon's two readings can
/// be apart.
fn assert_hello_rate(name: &str, first: &Sample, last: &Sample) {
    let config = HintConfig::default();
    let span = last.answered.duration_since(first.asked).as_secs_f64();
    let bound = f64::from(config.hello_burst) + f64::from(config.hellos_per_second) * span;
    let hellos = last.status.discovery.hellos_sent - first.status.discovery.hellos_sent;
    assert!(
        hellos as f64 <= bound,
        "{name} sent {hellos} hellos to hinted addresses in at most {span:.1} s: more than the \
         burst of {} plus {}/s ({bound:.0}); discovery {:?}",
        config.hello_burst,
        config.hellos_per_second,
        last.status.discovery
    );
}

/// Members of any state besides the real nodes.
fn members(status: &StatusResult) -> u64 {
    let p = &status.peers;
    p.alive + p.suspect + p.failed + p.left
}

#[test]
fn an_mdns_flood_is_bounded_and_real_nodes_still_join() {
    let Ok(lan) = Lan::new("mdns_flood", 4) else {
        return;
    };
    let spawn = |index: usize| {
        Daemon::builder(&lan.host(index).name)
            .netns(&lan.host(index).ns)
            // Debug logs would hold a line per forged record.
            .log_level("info")
            .spawn()
    };
    let mut daemons = vec![spawn(0), spawn(1)];
    {
        let nodes: Vec<(&str, &Path)> = daemons.iter().map(|d| (d.name(), d.socket())).collect();
        cluster::wait_all_alive(&nodes, JOIN_TIMEOUT);
    }

    let forgery = Forgery {
        records: FORGED_RECORDS,
        ttl_s: 86_400,
        cluster: "rossip".to_owned(),
        key_id: String::new(),
        target: lan.host(2).addr,
        seed: u64::from(std::process::id()),
        records_each: RecordSet::Service,
    };
    let packets = mdns_flood::packets(&forgery);
    let socket =
        mdns_flood::udp_socket_in(&lan.host(2).ns, SocketAddrV4::new(lan.host(2).addr, 5353))
            .unwrap_or_else(|e| panic!("the flood's socket in h3: {e}"));
    let before: Vec<Sample> = daemons.iter().map(sample).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            mdns_flood::send_flood(&socket, &packets, FLOOD_PACKETS_PER_S, &stop)
        })
    };
    // Stops the flood however the test ends.
    struct StopFlood(Arc<AtomicBool>);
    impl Drop for StopFlood {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_on_exit = StopFlood(stop.clone());

    // The flood reaches the daemons: they resolve forged records and greet
    // some of them (mDNS stays a hint), drop the hints past the bounds, and
    // drop their mDNS cache past its bound.
    rossip_tests::wait_until(JOIN_TIMEOUT, "both daemons dropping forged hints", || {
        let seen: Vec<_> = daemons.iter().map(|d| d.status().discovery).collect();
        let dropping = seen.iter().all(|d| {
            let dropped = |reason: &str| d.hints_dropped.get(reason).copied().unwrap_or(0);
            d.hellos_sent > 0 && d.cache_resets > 0 && dropped("set_full") + dropped("evicted") > 0
        });
        if dropping {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });

    // A real node started during the flood joins both.
    let late_asked = Instant::now();
    daemons.push(spawn(3));
    let late_first = Sample {
        asked: late_asked,
        answered: Instant::now(),
        status: daemons[2].status(),
    };
    {
        let nodes: Vec<(&str, &Path)> = daemons.iter().map(|d| (d.name(), d.socket())).collect();
        cluster::wait_all_alive(&nodes, JOIN_TIMEOUT);
    }
    assert!(
        !flood.is_finished(),
        "the flood ended before the late node joined: make it longer"
    );

    let after: Vec<Sample> = daemons.iter().map(sample).collect();
    stop.store(true, Ordering::Relaxed);
    let sent = flood
        .join()
        .expect("the flood thread")
        .unwrap_or_else(|e| panic!("the flood: {e}"));
    for (i, daemon) in daemons.iter().enumerate() {
        let first = before.get(i).unwrap_or(&late_first);
        assert_hello_rate(daemon.name(), first, &after[i]);
        // The flood ran while the late node looked for peers: forged
        // records may be resolved, never members.
        assert_eq!(
            members(&after[i].status),
            2,
            "{} counts members besides the two real nodes: {:?}",
            daemon.name(),
            after[i].status.peers
        );
    }
    sys::say(&format!(
        "mDNS flood: {sent} packets ({} forged nodes); discovery {:?}",
        sent * 6,
        after
            .iter()
            .map(|s| (s.status.name.clone(), s.status.discovery.clone()))
            .collect::<Vec<_>>()
    ));
}
