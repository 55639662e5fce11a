//! Test harness for rossip's multi-process and multi-host tests.
//!
//! The tests in `tests/` drive real `rossipd` and `rossipctl` processes (and,
//! for the loopback test, `rossipd::run` in-process) through the same local
//! socket and JSON-RPC a user would. This library holds what they share:
//!
//! - [`bins`]: where the binaries under test are;
//! - [`daemon`]: a `rossipd` process with its own temp dir, log and cleanup;
//! - [`rpc`]: a small synchronous JSON-RPC client over the Unix socket;
//! - [`ctl`]: running `rossipctl`, once or as a long-lived `tail -f`;
//! - [`background`]: a long-running child process with collected output;
//! - [`cluster`]: helpers over several daemons (start, wait for membership);
//! - [`netns`]: a LAN of network namespaces with nftables faults;
//! - [`wait`]: polling with a deadline instead of sleeping;
//! - [`sys`]: process and command helpers.
//!
//! Failures print what is needed to reproduce: the daemons' command lines and
//! the tail of their logs (see [`daemon::Daemon`]'s `Drop`).

pub mod background;
pub mod bins;
pub mod cluster;
pub mod ctl;
pub mod daemon;
pub mod netns;
pub mod rpc;
pub mod sys;
pub mod wait;

pub use daemon::{Daemon, DaemonBuilder};
pub use netns::{Lan, Skip};
pub use rpc::RpcClient;
pub use wait::wait_until;
