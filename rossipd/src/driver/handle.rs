//! How other tasks talk to the driver: a [`Handle`] that speaks domain
//! types (deliveries, members, cursors) and [`CoreError`]s, over one
//! request/reply helper. Front ends (the JSON-RPC server today, an HTTP
//! gateway tomorrow) are thin clients of it: each maps these types to its
//! own wire format, and nothing here knows of any.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rossip_proto::message::{ChannelError, Draft};
use rossip_proto::rpc::{NameTrust, StatusResult};
use rossip_proto::{Member, MessageId, NodeId, PublishError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::KeysReply;
use super::journal::{ReadFilter, ReadFrom, ReadPage};
use crate::delivery::{Cursor, Delivered, StoreId};
use crate::views::WallClock;

/// Why the driver did not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    /// The driver is gone or going: the daemon is stopping.
    #[error("rossipd is shutting down")]
    ShuttingDown,
    /// The node refused to publish (empty, too large, a bad channel, left,
    /// or the history window stayed full).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The history window stayed full of recent messages: nothing was
    /// accepted; try again after `retry_after`.
    #[error("{why}")]
    Busy {
        /// What was waited for.
        why: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// A bad channel name in a query.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The state directory could not be written (the sequence reservation).
    #[error("cannot write state: {0}")]
    State(String),
    /// The message went out but the history store failed to commit it.
    #[error(
        "the history store failed ({error}): the message {id} went out to the cluster but is \
         not durable here yet; it is held in memory and stored once the store works again (a \
         restart before then loses it on this node)"
    )]
    NotDurable {
        /// The message.
        id: MessageId,
        /// The store's error.
        error: String,
    },
    /// `since` names a message this node does not hold.
    #[error("message {0} is not in this node's history (too old, or never seen here)")]
    UnknownMessage(MessageId),
    /// A cursor of another store.
    #[error(
        "cursor {given} is from another history store (this node's store is {here}: the state \
         directory was wiped, or the cursor is another node's); start again without `after`"
    )]
    ForeignCursor {
        /// The cursor given.
        given: Cursor,
        /// This node's store.
        here: StoreId,
    },
    /// A cursor of this store past its newest delivery (a store restored
    /// from an older copy, say).
    #[error(
        "cursor {given} is past this store's newest delivery ({newest}): the history store was \
         replaced by an older copy; start again without `after`"
    )]
    CursorAhead {
        /// The cursor given.
        given: Cursor,
        /// The newest delivery's number here.
        newest: u64,
    },
    /// The keyring change was refused here (see `keys`).
    #[error(transparent)]
    KeyOp(#[from] rossip_proto::node::KeyOpError),
    /// The keyring changed here but could not be saved.
    #[error(
        "the keyring changed here but could not be saved ({0}); it was not sent to other \
         members, and a restart brings back the old keyring"
    )]
    KeyringNotSaved(String),
    /// A display name that is not valid.
    #[error(transparent)]
    Nick(#[from] rossip_proto::nick::NickError),
    /// The display name table refused the change or could not be saved.
    #[error(transparent)]
    NickTable(#[from] crate::nicks::NickTableError),
    /// The caller's user is not known (no peer credentials), so it has no
    /// display name to set or show.
    #[error("rossipd cannot tell which user is calling (no peer credentials on the socket)")]
    NoUser,
    /// The node refused a direct message.
    #[error(transparent)]
    Direct(#[from] rossip_proto::node::DirectError),
}

/// Where a read of history starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartQuery {
    /// In history order: the newest `n` (all without `n`) after `since`.
    Ordered {
        /// Keep the newest `n`.
        n: Option<usize>,
        /// Start point.
        since: Option<SincePoint>,
    },
    /// In delivery order, after a cursor.
    After(Cursor),
}

/// A start point in history order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SincePoint {
    /// After this message.
    After(MessageId),
    /// At or after this time (ms since the Unix epoch).
    From(u64),
}

/// A read's start: where its first page comes from, and the newest
/// delivery when it began (live reads go on after it).
#[derive(Debug, Clone)]
pub struct ReadStart {
    /// The first page's position; `None`: nothing to read before live.
    pub from: Option<ReadFrom>,
    /// The newest delivery's number when the read began.
    pub snapshot: u64,
    /// Its cursor (the store's, with `snapshot`).
    pub cursor: Cursor,
}

/// A member as the driver reports it: with its name checked against the
/// pins.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    /// The member.
    pub member: Member,
    /// Whether its name goes with its key.
    pub name_trust: NameTrust,
}

/// A member changed state.
#[derive(Debug, Clone)]
pub struct PeerChange {
    /// The member after the change.
    pub peer: PeerSnapshot,
    /// Its state before, `None` when it is new here.
    pub previous: Option<rossip_proto::PeerState>,
}

/// The node that answered a `join`.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Where it answered from.
    pub addr: SocketAddr,
}

/// Requests to the driver; each carries the sender of its answer.
#[derive(Debug)]
pub enum Command {
    /// Publish a message; answered once it is committed.
    Send {
        /// What to publish.
        draft: Draft,
        /// The delivery, or why not.
        reply: oneshot::Sender<Result<Arc<Delivered>, CoreError>>,
    },
    /// Resolve where a read starts.
    Start {
        /// Where.
        query: StartQuery,
        /// Only this channel (for `n`).
        filter: ReadFilter,
        /// The start.
        reply: oneshot::Sender<Result<ReadStart, CoreError>>,
    },
    /// One page of a read.
    Read {
        /// Where the page starts.
        from: ReadFrom,
        /// Which messages.
        filter: ReadFilter,
        /// Most deliveries in the page.
        limit: usize,
        /// About the most bytes in the page.
        max_bytes: usize,
        /// The page.
        reply: oneshot::Sender<ReadPage>,
    },
    /// List members.
    Peers {
        /// Include failed and left members.
        all: bool,
        /// The members, sorted by name.
        reply: oneshot::Sender<Vec<PeerSnapshot>>,
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
        reply: oneshot::Sender<Joined>,
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
        reply: oneshot::Sender<u64>,
    },
    /// The channels of this node's history.
    Channels {
        /// Most recently active first.
        reply: oneshot::Sender<Vec<super::ChannelSummary>>,
    },
    /// Show, set or clear a local user's display name.
    Nick {
        /// The user, as the socket's peer credentials say.
        user: String,
        /// What to do.
        change: super::NickChange,
        /// The display name after the change.
        reply: oneshot::Sender<Result<Option<String>, CoreError>>,
    },
    /// Register (or change) a connection's user as in a chat.
    PresenceSet {
        /// Who and what.
        request: super::PresenceRequest,
        /// The user's presence here now.
        reply: oneshot::Sender<super::LocalPresence>,
    },
    /// A connection that registered presence closed.
    PresenceEnd {
        /// The connection.
        session: super::PresenceSession,
    },
    /// Everyone in a chat, on every node.
    Who {
        /// Sorted by node name, node id, then user.
        reply: oneshot::Sender<Vec<super::PresenceEntry>>,
    },
    /// Send a direct message (`draft.to` set); answered once the sender's
    /// own copy is committed.
    SendDirect {
        /// What to send, and to whom.
        draft: Draft,
        /// The sender's own delivery, or why not.
        reply: oneshot::Sender<Result<Arc<Delivered>, CoreError>>,
        /// Told when the recipient acknowledges it, or it expires.
        outcome: oneshot::Sender<rossip_proto::node::DirectOutcome>,
    },
    /// Nodes known by their pinned names (members or not): who a direct
    /// message may go to.
    KnownNodes {
        /// Their ids and names.
        reply: oneshot::Sender<Vec<(rossip_proto::NodeId, String)>>,
    },
}

/// A `send` handed to the driver, whose answer comes after the commit.
#[derive(Debug)]
pub struct SendTicket(oneshot::Receiver<Result<Arc<Delivered>, CoreError>>);

impl SendTicket {
    /// The delivery, once committed.
    pub async fn outcome(self) -> Result<Arc<Delivered>, CoreError> {
        self.0.await.map_err(|_| CoreError::ShuttingDown)?
    }
}

/// The typed way to the driver. Cheap to clone: every connection has one.
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    newest: watch::Receiver<u64>,
    peers: broadcast::Sender<Arc<PeerChange>>,
    presence: broadcast::Sender<Arc<super::PresenceUpdate>>,
    direct_statuses: broadcast::Sender<Arc<super::DirectStatusUpdate>>,
    clock: WallClock,
}

impl Handle {
    /// A handle on the driver that takes `commands`.
    pub(super) fn new(
        commands: mpsc::Sender<Command>,
        newest: watch::Receiver<u64>,
        peers: broadcast::Sender<Arc<PeerChange>>,
        presence: broadcast::Sender<Arc<super::PresenceUpdate>>,
        direct_statuses: broadcast::Sender<Arc<super::DirectStatusUpdate>>,
        clock: WallClock,
    ) -> Handle {
        Handle {
            commands,
            newest,
            peers,
            presence,
            direct_statuses,
            clock,
        }
    }

    /// A handle that does not keep the driver running: the daemon's own
    /// background tasks hold one, so that the driver ends when every
    /// client is gone.
    pub fn downgrade(&self) -> WeakHandle {
        WeakHandle {
            commands: self.commands.downgrade(),
            newest: self.newest.clone(),
            peers: self.peers.clone(),
            presence: self.presence.clone(),
            direct_statuses: self.direct_statuses.clone(),
            clock: self.clock,
        }
    }

    /// Hands a command to the driver (waiting for room in its queue: the
    /// back-pressure of a busy daemon) and returns where its answer comes.
    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<oneshot::Receiver<T>, CoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| CoreError::ShuttingDown)?;
        Ok(answer)
    }

    /// Sends a command and waits for its answer: the one round trip every
    /// request below is.
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CoreError> {
        self.submit(make)
            .await?
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// Publishes; the ticket gives the delivery once committed, so that a
    /// connection can read its next request meanwhile.
    pub async fn send(&self, draft: Draft) -> Result<SendTicket, CoreError> {
        self.submit(|reply| Command::Send { draft, reply })
            .await
            .map(SendTicket)
    }

    /// Sends a direct message (`draft.to` set): the ticket gives the
    /// sender's own delivery once committed, and the receiver what became
    /// of the message (acknowledged or expired; dropped if the daemon
    /// stops first).
    pub async fn send_direct(
        &self,
        draft: Draft,
    ) -> Result<
        (
            SendTicket,
            oneshot::Receiver<rossip_proto::node::DirectOutcome>,
        ),
        CoreError,
    > {
        let (outcome, outcome_rx) = oneshot::channel();
        let ticket = self
            .submit(|reply| Command::SendDirect {
                draft,
                reply,
                outcome,
            })
            .await
            .map(SendTicket)?;
        Ok((ticket, outcome_rx))
    }

    /// Nodes known by their pinned names, members now or not.
    pub async fn known_nodes(&self) -> Result<Vec<(rossip_proto::NodeId, String)>, CoreError> {
        self.request(|reply| Command::KnownNodes { reply }).await
    }

    /// Where a read starts.
    pub async fn start(
        &self,
        query: StartQuery,
        filter: ReadFilter,
    ) -> Result<ReadStart, CoreError> {
        self.request(|reply| Command::Start {
            query,
            filter,
            reply,
        })
        .await?
    }

    /// One page of a read.
    pub async fn read(
        &self,
        from: ReadFrom,
        filter: ReadFilter,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ReadPage, CoreError> {
        self.request(|reply| Command::Read {
            from,
            filter,
            limit,
            max_bytes,
            reply,
        })
        .await
    }

    /// Members (with failed and left ones if `all`).
    pub async fn peers(&self, all: bool) -> Result<Vec<PeerSnapshot>, CoreError> {
        self.request(|reply| Command::Peers { all, reply }).await
    }

    /// The status.
    pub async fn status(&self) -> Result<StatusResult, CoreError> {
        self.request(|reply| Command::Status { reply }).await
    }

    /// The status, or `None` if the driver did not answer within
    /// `timeout`: the daemon's own tasks use it to learn that the driver
    /// runs (readiness, the systemd watchdog).
    pub async fn status_within(&self, timeout: Duration) -> Option<StatusResult> {
        tokio::time::timeout(timeout, self.status())
            .await
            .ok()?
            .ok()
    }

    /// Contacts `addrs` (what `seed` resolved to); the answer comes when a
    /// node answers there (the caller bounds the wait).
    pub async fn join(
        &self,
        seed: String,
        addrs: Vec<SocketAddr>,
    ) -> Result<oneshot::Receiver<Joined>, CoreError> {
        self.submit(|reply| Command::Join { seed, addrs, reply })
            .await
    }

    /// Contacts `addrs` without waiting for an answer.
    pub async fn contact(&self, seed: String, addrs: Vec<SocketAddr>) -> Result<(), CoreError> {
        self.commands
            .send(Command::Contact { seed, addrs })
            .await
            .map_err(|_| CoreError::ShuttingDown)
    }

    /// Asks every member for its keyring.
    pub async fn keys_list(&self) -> Result<super::KeysStarted, CoreError> {
        self.request(|reply| Command::KeysList { reply }).await?
    }

    /// Changes the keyring here and on every member.
    pub async fn key_op(
        &self,
        op: rossip_proto::wire::KeyOp,
    ) -> Result<super::KeysStarted, CoreError> {
        self.request(|reply| Command::KeyOp { op, reply }).await?
    }

    /// Installs the keys of a re-read key file.
    pub async fn reload_keys(
        &self,
        file: crate::hooks::KeyFileContents,
    ) -> Result<crate::hooks::KeyReloadReport, CoreError> {
        self.request(|reply| Command::ReloadKeys { file, reply })
            .await
    }

    /// Leaves the cluster; the daemon then stops. How many members were told.
    pub async fn leave(&self) -> Result<u64, CoreError> {
        self.request(|reply| Command::Leave { reply }).await
    }

    /// The channels of this node's history, most recently active first.
    pub async fn channels(&self) -> Result<Vec<super::ChannelSummary>, CoreError> {
        self.request(|reply| Command::Channels { reply }).await
    }

    /// Shows, sets or clears `user`'s display name; the name after it.
    pub async fn nick(
        &self,
        user: String,
        change: super::NickChange,
    ) -> Result<Option<String>, CoreError> {
        self.request(|reply| Command::Nick {
            user,
            change,
            reply,
        })
        .await?
    }

    /// The newest delivery's number, which changes with every delivery:
    /// followers wait on it.
    pub fn deliveries(&self) -> watch::Receiver<u64> {
        self.newest.clone()
    }

    /// Member changes from now on.
    pub fn peer_changes(&self) -> broadcast::Receiver<Arc<PeerChange>> {
        self.peers.subscribe()
    }

    /// The clock the driver's times (member `since`, `last_seen`) follow.
    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// Registers (or changes) a connection's user as in a chat; their
    /// presence here now.
    pub async fn presence_set(
        &self,
        request: super::PresenceRequest,
    ) -> Result<super::LocalPresence, CoreError> {
        self.request(|reply| Command::PresenceSet { request, reply })
            .await
    }

    /// Ends a connection's presence registration without waiting: for a
    /// drop (a closed or panicked connection), which cannot wait. When the
    /// driver's queue is full the command is handed to a small task that
    /// waits for room (it ends as soon as the driver takes it or is gone).
    pub fn presence_end_detached(&self, session: super::PresenceSession) {
        match self.commands.try_send(Command::PresenceEnd { session }) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let commands = self.commands.clone();
                    runtime.spawn(async move {
                        let _ = commands.send(command).await;
                    });
                }
            }
        }
    }

    /// Everyone in a chat, on every node.
    pub async fn who(&self) -> Result<Vec<super::PresenceEntry>, CoreError> {
        self.request(|reply| Command::Who { reply }).await
    }

    /// Presence changes from now on.
    pub fn presence_changes(&self) -> broadcast::Receiver<Arc<super::PresenceUpdate>> {
        self.presence.subscribe()
    }

    /// What becomes of direct messages sent here, from now on.
    pub fn direct_statuses(&self) -> broadcast::Receiver<Arc<super::DirectStatusUpdate>> {
        self.direct_statuses.subscribe()
    }
}

/// A [`Handle`] that does not keep the driver running (see
/// [`Handle::downgrade`]).
#[derive(Debug, Clone)]
pub struct WeakHandle {
    commands: mpsc::WeakSender<Command>,
    newest: watch::Receiver<u64>,
    peers: broadcast::Sender<Arc<PeerChange>>,
    presence: broadcast::Sender<Arc<super::PresenceUpdate>>,
    direct_statuses: broadcast::Sender<Arc<super::DirectStatusUpdate>>,
    clock: WallClock,
}

impl WeakHandle {
    /// The handle, while the driver runs.
    pub fn upgrade(&self) -> Option<Handle> {
        Some(Handle {
            commands: self.commands.upgrade()?,
            newest: self.newest.clone(),
            peers: self.peers.clone(),
            presence: self.presence.clone(),
            direct_statuses: self.direct_statuses.clone(),
            clock: self.clock,
        })
    }
}
