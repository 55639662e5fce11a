//! The chaos test: five namespaced hosts, traffic from every host, a raw
//! JSON-RPC subscriber on every node and `rossipctl tail -f --json` on one,
//! while seeded faults hit the LAN and the daemons (inbound loss, 2|3, 1|4
//! and bridge-shaped partitions, kill -9 and restart, SIGSTOP for up to 8 s,
//! SIGTERM and restart, a late joiner). After the heal, every node holds
//! every acknowledged send, and each of its streams shows each message of its
//! history exactly once, nothing else, in the node's delivery order.
//!
//! Needs root, iproute2 and nftables; without them it prints one line and
//! passes, except with `CI=true`, where it must run. `ROSSIP_CHAOS_SEED`
//! replays a run's faults, `ROSSIP_CHAOS_SECS` makes the run longer (see
//! `rossip_tests::chaos`).

use rossip_tests::chaos::{Chaos, Settings};

#[test]
fn every_stream_shows_each_delivered_message_once_in_delivery_order_through_chaos() {
    let Ok(mut chaos) = Chaos::start("chaos", Settings::from_env()) else {
        return;
    };
    chaos.run_faults();
    chaos.settle_and_judge();
}
