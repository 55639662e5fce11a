//! Checks of the network-namespace harness itself, without rossip: unicast
//! and multicast reach every host, faults drop what they should, nothing is
//! created in the root namespace and everything is removed afterwards. When
//! a multi-host rossip test fails, these say whether the LAN was at fault.
//!
//! Uses `socat` inside the namespaces (installed by `.ci/run`).

use std::time::Duration;

use rossip_tests::background::Background;
use rossip_tests::netns::Lan;
use rossip_tests::sys;
use rossip_tests::wait::wait_until;

const TIMEOUT: Duration = Duration::from_secs(20);

fn ip() -> String {
    sys::find_program("ip")
        .expect("`ip` (iproute2)")
        .to_string_lossy()
        .into_owned()
}

fn socat() -> String {
    sys::find_program("socat")
        .expect("`socat` is needed for the LAN checks (apt-get install socat)")
        .to_string_lossy()
        .into_owned()
}

/// A UDP receiver in host `index` printing every datagram as a line.
fn receiver(lan: &Lan, index: usize, address: &str) -> Background {
    let socat = socat();
    Background::spawn(
        ip(),
        &[
            "netns",
            "exec",
            &lan.host(index).ns,
            &socat,
            "-u",
            address,
            "STDOUT",
        ],
    )
}

/// Sends one datagram `text\n` from host `index` to `target` (a socat
/// address such as `UDP4-SENDTO:10.77.0.12:9999`).
fn send_from(lan: &Lan, index: usize, target: &str, text: &str) {
    let socat = socat();
    let args = [
        "netns",
        "exec",
        &lan.host(index).ns,
        &socat,
        "-u",
        "STDIN",
        target,
    ];
    if let Err(e) = sys::run_with_stdin(ip(), &args, Some(&format!("{text}\n"))) {
        panic!("send from h{}: {e}", index + 1);
    }
}

fn root_links() -> Vec<String> {
    let out = sys::run(ip(), &["-o", "link", "show"]).expect("ip link show");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_owned()))
        .collect();
    names.sort();
    names
}

fn namespaces() -> String {
    let out = sys::run(ip(), &["netns", "list"]).expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends from `from` until `rx` printed `text` (the receiver may still be
/// starting, so one datagram is not enough).
fn deliver(lan: &Lan, from: usize, target: &str, rx: &Background, text: &str) {
    let what = format!("{text:?} from h{} via {target}", from + 1);
    wait_until(TIMEOUT, &what, || {
        send_from(lan, from, target, text);
        rx.lines().iter().any(|l| l == text)
    });
}

/// Panics with `why` and everything `rx` printed if it printed `text`.
fn assert_not_received(rx: &Background, text: &str, why: &str) {
    let lines = rx.lines();
    assert!(!lines.iter().any(|l| l == text), "{why}: {lines:?}");
}

#[test]
fn lan_carries_unicast_and_multicast_and_leaves_no_trace() {
    let links_before = if sys::effective_uid() == Some(0) {
        root_links()
    } else {
        Vec::new()
    };
    let Ok(lan) = Lan::new("lan_basic", 3) else {
        return;
    };
    let prefix = lan.prefix().to_owned();
    assert_eq!(
        root_links(),
        links_before,
        "building the LAN changed the root namespace's interfaces"
    );

    let unicast = receiver(&lan, 1, "UDP4-RECV:9999");
    deliver(
        &lan,
        0,
        "UDP4-SENDTO:10.77.0.12:9999",
        &unicast,
        "unicast h1->h2",
    );
    deliver(
        &lan,
        2,
        "UDP4-SENDTO:10.77.0.12:9999",
        &unicast,
        "unicast h3->h2",
    );

    // mDNS's group on every host; the sender names no interface, so this
    // also checks the 224.0.0.0/4 route.
    let group = "UDP4-RECV:5353,reuseaddr,ip-add-membership=224.0.0.251:eth0";
    let rx2 = receiver(&lan, 1, group);
    let rx3 = receiver(&lan, 2, group);
    let target = "UDP4-DATAGRAM:224.0.0.251:5353";
    deliver(&lan, 0, target, &rx2, "multicast one");
    deliver(&lan, 0, target, &rx3, "multicast one");

    drop((unicast, rx2, rx3));
    drop(lan);
    assert!(
        !namespaces().contains(&prefix),
        "namespaces {prefix}* still exist after drop:\n{}",
        namespaces()
    );
    assert_eq!(root_links(), links_before, "the root namespace changed");
}

#[test]
fn lan_partition_loss_and_heal() {
    let Ok(lan) = Lan::new("lan_faults", 3) else {
        return;
    };
    let rx = receiver(&lan, 1, "UDP4-RECV:9999");
    let to_h2 = "UDP4-SENDTO:10.77.0.12:9999";
    deliver(&lan, 0, to_h2, &rx, "before");

    lan.partition(1, &[0]);
    for _ in 0..5 {
        send_from(&lan, 0, to_h2, "cut off");
    }
    // h3 still gets through; h1's datagrams were sent first on the same
    // bridge, so had they passed they would be there by now.
    deliver(&lan, 2, to_h2, &rx, "from h3 during partition");
    assert_not_received(&rx, "cut off", "partition let h1's datagrams through");

    lan.heal();
    deliver(&lan, 0, to_h2, &rx, "after heal");

    lan.set_loss(1, 100);
    for _ in 0..5 {
        send_from(&lan, 0, to_h2, "lost");
    }
    deliver(
        &lan,
        1,
        "UDP4-SENDTO:127.0.0.1:9999",
        &rx,
        "loopback is not eth0",
    );
    assert_not_received(&rx, "lost", "100% loss let datagrams through");
    assert!(
        lan.fault_drops(1) >= 5,
        "the loss rule's counter: {}",
        lan.fault_drops(1)
    );
    lan.set_loss(1, 0);
    deliver(&lan, 0, to_h2, &rx, "loss removed");
}

/// h2's IPv6 link-local address on eth0, as socat writes it with a scope.
fn link_local(lan: &Lan, index: usize) -> String {
    let out = lan
        .exec(
            index,
            &[
                &ip(),
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
                "scope",
                "link",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let addr = listing
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on h{} eth0: {listing}", index + 1));
    format!("[{addr}%eth0]")
}

#[test]
fn lan_isolation_partition_by_mac_and_second_interface() {
    let Ok(mut lan) = Lan::new("lan_isolate", 3) else {
        return;
    };
    let eth1 = lan.add_interface(0);
    assert_eq!(eth1.name, "eth1");
    assert_eq!(lan.ifaces(0).len(), 2);

    // The second interface is on the LAN: h2 reaches h1 through it.
    let on_h1 = receiver(&lan, 0, "UDP4-RECV:9999");
    let to_eth1 = format!("UDP4-SENDTO:{}:9999", eth1.addr);
    deliver(&lan, 1, &to_eth1, &on_h1, "to h1's second interface");

    // Cut off at the switch: nothing in, nothing out, on either interface;
    // the others still talk.
    let on_h2 = receiver(&lan, 1, "UDP4-RECV:9999");
    let to_h2 = "UDP4-SENDTO:10.77.0.12:9999";
    deliver(&lan, 0, to_h2, &on_h2, "h1 before the cut");
    lan.isolate(0);
    for _ in 0..5 {
        send_from(&lan, 0, to_h2, "out of the isolated host");
        send_from(&lan, 1, &to_eth1, "into the isolated host");
        send_from(
            &lan,
            1,
            "UDP4-SENDTO:10.77.0.11:9999",
            "into the isolated host",
        );
    }
    deliver(&lan, 2, to_h2, &on_h2, "h3 during the cut");
    deliver(
        &lan,
        1,
        "UDP4-SENDTO:127.0.0.1:9999",
        &on_h2,
        "h2 to itself",
    );
    assert_not_received(
        &on_h2,
        "out of the isolated host",
        "the isolated host's datagrams got out",
    );
    assert_not_received(
        &on_h1,
        "into the isolated host",
        "datagrams reached the isolated host",
    );
    assert!(lan.isolation_drops() > 0, "the switch counted no drops");
    lan.reconnect(0);
    deliver(&lan, 0, to_h2, &on_h2, "h1 reconnected");

    // A partition also cuts IPv6 (mDNS runs on link-local addresses too).
    let v6_on_h2 = receiver(&lan, 1, "UDP6-RECV:9998");
    let to_h2_v6 = format!("UDP6-SENDTO:{}:9998", link_local(&lan, 1));
    deliver(
        &lan,
        2,
        &to_h2_v6,
        &v6_on_h2,
        "IPv6 h3 before the partition",
    );
    lan.partition(1, &[2]);
    for _ in 0..5 {
        send_from(&lan, 2, &to_h2_v6, "IPv6 across the partition");
    }
    deliver(
        &lan,
        0,
        &to_h2_v6,
        &v6_on_h2,
        "IPv6 h1 during the partition",
    );
    assert_not_received(
        &v6_on_h2,
        "IPv6 across the partition",
        "the partition let IPv6 through",
    );
    lan.heal();
    deliver(&lan, 2, &to_h2_v6, &v6_on_h2, "IPv6 after heal");
}
