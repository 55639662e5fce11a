//! One file per subcommand. Each takes the shared [`Ctx`] and writes its results to an
//! [`Out`](crate::output::Out).

use crate::client::{Client, ClientError};
use crate::socket_path::SocketLocation;

pub mod channels;
pub mod chat;
pub mod completions;
pub mod events;
pub mod follow;
pub mod join;
pub mod keygen;
pub mod keys;
pub mod leave;
pub mod man;
pub mod nick;
pub mod peer_printer;
pub mod peers;
pub mod resubscribe;
pub mod send;
pub mod status;
pub mod tail;
#[cfg(test)]
mod test_daemon;
pub mod web;
pub mod who;

/// What every command needs: where the daemon is, and which output format.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The socket given, or the places to look for one.
    pub socket: SocketLocation,
    /// `--json`: one JSON object per line on stdout.
    pub json: bool,
}

impl Ctx {
    /// Connects to the daemon.
    pub fn connect(&self) -> Result<Client, ClientError> {
        self.socket.connect()
    }
}
