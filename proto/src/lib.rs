//! rossip's protocol core.
//!
//! - [`rpc`]: JSON-RPC 2.0 types of the local API (daemon, CLI and tests share them).
//! - [`wire`]: the datagram format between nodes: versioned, length-checked,
//!   and total (decoding never panics, whatever the input).
//! - [`node`]: the sans-IO [`Node`]: membership (SWIM, via `foca`) and
//!   dissemination (eager push, de-duplication, bounded history). It takes
//!   `handle_*` inputs carrying `now` and yields `poll_*` outputs; it owns no
//!   socket, clock or OS randomness, so a test can drive many nodes by hand.
//! - [`testing`]: a deterministic in-process network of nodes (virtual time,
//!   latency, loss, crashes) for scenario tests and simulations.

pub mod direct;
pub mod id;
pub mod log_text;
mod merkle;
pub mod message;
pub mod nick;
pub mod node;
pub mod paths;
pub mod presence;
pub mod rpc;
pub mod seal;
pub mod sign;
pub mod testing;
pub mod wire;

pub use id::{MessageId, NodeId};
pub use message::{Hlc, Message};
pub use node::{
    Event, Lost, Member, Mismatch, Node, NodeConfig, PeerChange, PeerState, ProtocolConfig,
    PublishError, Stats, Transmit,
};
