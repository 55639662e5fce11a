//! What other tasks ask of the driver: each [`Command`] carries a oneshot
//! for the answer.

use std::net::SocketAddr;
use std::time::Duration;

use rossip_proto::rpc::{
    ErrorObject, JoinResult, LeaveResult, MessageView, PeerView, StatusResult,
};
use tokio::sync::{mpsc, oneshot};

use super::{KeysReply, Subscription};
use crate::history_query::HistoryQuery;

/// Requests from other tasks.
#[derive(Debug)]
pub enum Command {
    /// Publish a message.
    Send {
        /// Channel name.
        channel: String,
        /// Text.
        text: String,
        /// The message, or why not.
        reply: oneshot::Sender<Result<MessageView, ErrorObject>>,
    },
    /// Read history.
    History {
        /// What to read.
        query: HistoryQuery,
        /// Matching messages, oldest first.
        reply: oneshot::Sender<Result<Vec<MessageView>, ErrorObject>>,
    },
    /// Replay history and receive live events, atomically (no gap, no duplicate).
    Subscribe {
        /// Replay, if any.
        replay: Option<HistoryQuery>,
        /// Replayed messages and the live receiver.
        reply: oneshot::Sender<Result<Subscription, ErrorObject>>,
    },
    /// List members.
    Peers {
        /// Include failed and left members.
        all: bool,
        /// The members.
        reply: oneshot::Sender<Vec<PeerView>>,
    },
    /// Status.
    Status {
        /// The status.
        reply: oneshot::Sender<StatusResult>,
    },
    /// Contact addresses; the reply comes when one of them answers.
    Join {
        /// The `HOST:PORT` as given, which names it if it stays silent.
        seed: String,
        /// Resolved addresses of the one `HOST:PORT`.
        addrs: Vec<SocketAddr>,
        /// The node that answered.
        reply: oneshot::Sender<JoinResult>,
    },
    /// Contact addresses, no reply (seeds, retried by their own task).
    Contact {
        /// The seed as given (`HOST:PORT` or `HOST`), which names it if it
        /// stays silent.
        seed: String,
        /// What it resolved to.
        addrs: Vec<SocketAddr>,
    },
    /// Ask every member for its keyring (`keys.list`).
    KeysList {
        /// Who was asked, and where the answers arrive.
        reply: KeysReply,
    },
    /// Change the keyring here and on every member (`keys.install|use|remove`).
    KeyOp {
        /// The change.
        op: rossip_proto::wire::KeyOp,
        /// Who was asked, and where the answers arrive.
        reply: KeysReply,
    },
    /// Install here the keys of the re-read key file (SIGHUP).
    ReloadKeys {
        /// The key file and its keys; `None`: no key file is configured.
        file: crate::hooks::KeyFileContents,
        /// What changed, and what a reload does not do.
        reply: oneshot::Sender<crate::hooks::KeyReloadReport>,
    },
    /// Leave the cluster; the daemon then shuts down.
    Leave {
        /// How many members were told.
        reply: oneshot::Sender<LeaveResult>,
    },
}

impl Command {
    /// Asks the driver for its status; `None` if the driver is gone, or
    /// did not answer within `timeout` (`None`: however long it takes).
    /// The daemon's own tasks use it to learn that the driver runs
    /// (readiness, the systemd watchdog).
    pub async fn ask_status(
        commands: &mpsc::Sender<Command>,
        timeout: Option<Duration>,
    ) -> Option<StatusResult> {
        let (reply, answer) = oneshot::channel();
        commands.send(Command::Status { reply }).await.ok()?;
        match timeout {
            Some(limit) => tokio::time::timeout(limit, answer).await.ok()?.ok(),
            None => answer.await.ok(),
        }
    }
}
