//! Test harness for rossip's multi-process and multi-host tests.
//!
//! The tests in `tests/` drive real `rossipd` and `rossipctl` processes (and,
//! for the loopback test, `rossipd::run` in-process) through the same local
//! socket and JSON-RPC a user would. This library holds what they share:
//!
//! - [`bench`](mod@bench): the membership benchmark behind `membership-bench`;
//! - [`bins`]: where the binaries under test are;
//! - [`browser`]: a real headless Chromium inside a test host, driven over
//!   WebDriver, for the web chat's tests;
//! - [`chaos`](mod@chaos): the multi-host chaos run (seeded faults, traffic,
//!   streams checked against each node's delivery order);
//! - [`daemon`]: a `rossipd` process with its own temp dir, log and cleanup;
//! - [`delivery`]: recording message arrivals at a daemon with receive times;
//! - [`delivery_bench`], [`delivery_send`], [`delivery_table`]: the delivery
//!   benchmark behind `delivery-bench` (latency, throughput), its paced
//!   senders and its tables;
//! - [`rpc`]: a small synchronous JSON-RPC client over the Unix socket;
//! - [`ctl`]: running `rossipctl`, once or as a long-lived `tail -f`;
//! - [`background`]: a long-running child process with collected output;
//! - [`cluster`]: helpers over several daemons (start, wait for membership);
//! - [`compare`](mod@compare): rossip and HashiCorp Serf side by side on
//!   one namespaced LAN, behind `compare-bench` (writes BENCHMARKS.md);
//! - [`events`]: recording a daemon's peer events with receive times;
//! - [`memory_bench`]: the memory benchmark behind `memory-bench` (the
//!   daemon's RSS under stalled subscribers, a full `history`, an mDNS flood);
//! - [`history`]: a daemon's message history as a user sees it, and sends
//!   through the real `rossipctl`, for the durable-history tests;
//! - [`mdns_flood`]: a flood of forged mDNS records, and the memory
//!   figures of a daemon receiving it (`mdns-flood-bench`, `memory-bench`);
//! - [`netns`]: a LAN of network namespaces with nftables faults (loss,
//!   partitions, hosts cut off at the switch, extra interfaces);
//! - [`nscluster`]: a namespaced LAN with a daemon and a recorder per host;
//! - [`netns_forward`]: a loopback port of the test process that reaches a
//!   port inside a test host (a daemon's HTTP port, a chromedriver);
//! - [`plain_http`]: one HTTP/1.1 request exactly as written, for checks of
//!   status codes and headers;
//! - [`wait`]: polling with a deadline instead of sleeping;
//! - [`stream`]: a subscription read with its delivery cursors, and the
//!   node's delivery order read back with `history {after}`, to compare;
//! - [`sys`]: process and command helpers;
//! - [`sniff`]: a capture of every frame on the test LAN's switch.
//! - [`tmux`]: a real terminal (tmux) for `rossipctl chat`, typed into and read.
//! - [`ws_fanout_bench`], [`ws_follower`]: the WebSocket fan-out benchmark
//!   behind `ws-fanout-bench` (latency from `send` to each of N WebSocket
//!   clients of the HTTP gateway, the daemon's memory and CPU, a slow
//!   reader) and its clients.
//!
//! Failures print what is needed to reproduce: the daemons' command lines and
//! the tail of their logs (see [`daemon::Daemon`]'s `Drop`).

pub mod background;
pub mod bench;
pub mod bins;
pub mod browser;
pub mod chaos;
pub mod cluster;
pub mod compare;
pub mod cpu;
pub mod ctl;
pub mod daemon;
pub mod delivery;
pub mod delivery_bench;
pub mod delivery_send;
pub mod delivery_table;
pub mod events;
pub mod history;
pub mod mdns_flood;
pub mod memory_bench;
pub mod netns;
pub mod netns_forward;
pub mod nscluster;
pub mod plain_http;
pub mod rng;
pub mod rpc;
pub mod sniff;
pub mod stream;
pub mod sys;
pub mod tmux;
pub mod wait;
pub mod ws_fanout_bench;
pub mod ws_follower;

pub use daemon::{Daemon, DaemonBuilder};
pub use events::PeerRecorder;
pub use netns::{Lan, Skip};
pub use rpc::RpcClient;
pub use wait::wait_until;
