//! The chat's two connections to rossipd, each owned by one thread:
//!
//! - [`Follower`] reads the message stream: the recent history, then a subscription after
//!   its delivery cursor; when the daemon goes away it reconnects with a backoff and
//!   subscribes again after the last cursor it saw, so no line is skipped or shown twice
//!   (a daemon with another history store refuses the cursor: the follower then starts
//!   over after the last message it saw, and the chat drops the ids it already shows);
//! - [`Worker`] makes the calls the person asks for (`send`, `who`, `nick`, …) one at a
//!   time, and holds the connection `presence.set` registered the person on: that
//!   connection is their presence, so after a reconnection it registers them again.
//!
//! Both hand what happened to the chat loop through a callback; a callback that returns
//! false (the loop is gone) ends the thread.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use rossip_proto::rpc::{
    ErrorObject, HistoryParams, HistoryResult, MessageView, PeersParams, PeersResult, Since,
    StatusResult, SubscribeResult, code, method as rpc_method,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{
    self, ChannelsResult, NickParams, NickResult, PresenceParams, PresenceResult, SendParams,
    SendResult, StreamEvent, StreamEventParams, WhoEntry, WhoResult,
};
use super::app::{Me, Target};
use crate::client::{Client, ClientError};
use crate::timefmt::now_ms;

/// First pause before reconnecting; it doubles up to [`MAX_RETRY`] while the daemon stays away.
const MIN_RETRY: Duration = Duration::from_millis(250);
/// Longest pause between reconnection attempts.
const MAX_RETRY: Duration = Duration::from_secs(4);

/// The event kinds to follow, best first: a daemon that refuses a kind it does not know
/// (invalid params) is asked for the next set.
const EVENT_KIND_SETS: [&[&str]; 4] = [
    &["message", "presence", "direct_status"],
    &["message", "presence"],
    &["message", "direct_status"],
    &["message"],
];

/// What the stream brought.
#[derive(Debug, Clone)]
pub enum StreamNews {
    /// A message: from the start's history (`live` false), or delivered since.
    Message {
        /// The message.
        message: MessageView,
        /// Whether it arrived while the chat ran (a bell may ring for it).
        live: bool,
    },
    /// Someone's presence changed.
    Presence {
        /// Them, after the change.
        entry: WhoEntry,
        /// Their state before.
        previous: Option<String>,
    },
    /// A direct message this node sent was delivered, expired or failed.
    DirectStatus {
        /// The message id.
        id: String,
        /// `delivered`, `expired` or `failed`.
        status: String,
        /// Why it failed.
        reason: Option<String>,
    },
    /// Messages left the daemon's history before this chat read them.
    Lagged {
        /// How many.
        dropped: u64,
    },
    /// Subscribed (again).
    Connected {
        /// Whether presence changes are followed (the daemon knows them).
        presence: bool,
        /// A reconnection, not the start.
        resumed: bool,
    },
    /// The daemon's history store is not the one the cursor came from: the stream starts
    /// over after the last message seen.
    StartedOver {
        /// The daemon's refusal.
        reason: String,
    },
    /// The connection broke; reconnecting.
    Lost {
        /// What broke it.
        reason: String,
    },
    /// The stream cannot go on (the daemon refused it for good).
    Failed {
        /// Why.
        reason: String,
    },
}

/// The stream of one chat: where it is, and how to go on after a reconnection.
#[derive(Debug)]
pub struct Follower {
    socket: PathBuf,
    /// How many messages of history to show first; None: only what comes.
    backlog: Option<usize>,
    /// The delivery cursor the stream goes on after.
    cursor: Option<String>,
    /// Id and timestamp of the last message seen: where a start over begins.
    last: Option<(String, u64)>,
    /// When the chat started, ms since the Unix epoch: a start over with nothing seen
    /// begins there.
    started_ms: u64,
    /// Which of [`EVENT_KIND_SETS`] the daemon accepts.
    kinds: usize,
}

impl Follower {
    /// A follower of the daemon at `socket`, showing `backlog` messages of history first.
    pub fn new(socket: PathBuf, backlog: Option<usize>) -> Self {
        Follower {
            socket,
            backlog,
            cursor: None,
            last: None,
            started_ms: now_ms(),
            kinds: 0,
        }
    }

    /// Follows the stream on `client`, then on new connections after each loss, until
    /// `notify` returns false or the daemon refuses the stream.
    pub fn run(mut self, client: Client, mut notify: impl FnMut(StreamNews) -> bool) {
        let mut client = Some(client);
        let mut resumed = false;
        let mut retry = MIN_RETRY;
        loop {
            let mut connection = match client.take() {
                Some(connection) => connection,
                None => {
                    thread::sleep(retry);
                    retry = (retry * 2).min(MAX_RETRY);
                    match Client::connect(&self.socket) {
                        Ok(connection) => connection,
                        Err(_) => continue,
                    }
                }
            };
            let subscription = match self.start(&mut connection, resumed, &mut notify) {
                Ok(subscription) => subscription,
                Err(StartError::Stopped) => return,
                // Gone again, or still starting up: keep trying.
                Err(StartError::Client(ClientError::ConnectionLost { .. })) => continue,
                Err(StartError::Client(err)) => {
                    notify(StreamNews::Failed {
                        reason: err.to_string(),
                    });
                    return;
                }
            };
            retry = MIN_RETRY;
            let presence = EVENT_KIND_SETS[self.kinds].contains(&"presence");
            if !notify(StreamNews::Connected { presence, resumed }) {
                return;
            }
            resumed = true;
            let lost = loop {
                match connection.next_event_as::<StreamEventParams>() {
                    Ok(params) if params.subscription == subscription => {
                        if !self.handle(params.event, &mut notify) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => break err,
                }
            };
            if !notify(StreamNews::Lost {
                reason: lost.to_string(),
            }) {
                return;
            }
        }
    }

    /// The first history (at the start), then a subscription after the cursor.
    fn start(
        &mut self,
        client: &mut Client,
        resumed: bool,
        notify: &mut impl FnMut(StreamNews) -> bool,
    ) -> Result<u64, StartError> {
        if !resumed && let Some(n) = self.backlog {
            let history: HistoryResult = client.call(
                rpc_method::HISTORY,
                HistoryParams {
                    n: Some(n),
                    ..HistoryParams::default()
                },
            )?;
            self.take_history(history, false, notify)?;
        }
        match self.subscribe(client) {
            Err(err) if err.rpc_code() == Some(code::FOREIGN_CURSOR) => {
                if !notify(StreamNews::StartedOver {
                    reason: err.to_string(),
                }) {
                    return Err(StartError::Stopped);
                }
                self.cursor = None;
                let history = self.resume_history(client)?;
                self.take_history(history, true, notify)?;
                Ok(self.subscribe(client)?)
            }
            other => Ok(other?),
        }
    }

    /// Subscribes to what comes after the cursor, with the richest set of event kinds the
    /// daemon accepts.
    fn subscribe(&mut self, client: &mut Client) -> Result<u64, ClientError> {
        loop {
            let mut params = json!({ "events": EVENT_KIND_SETS[self.kinds] });
            if let Some(cursor) = &self.cursor {
                params["after"] = Value::String(cursor.clone());
            }
            match client.call::<SubscribeResult>(rpc_method::SUBSCRIBE, params) {
                Err(err)
                    if err.rpc_code() == Some(code::INVALID_PARAMS)
                        && self.kinds + 1 < EVENT_KIND_SETS.len() =>
                {
                    self.kinds += 1;
                }
                Err(err) => return Err(err),
                Ok(subscribed) => {
                    if self.cursor.is_none() {
                        self.cursor = subscribed.cursor;
                    }
                    return Ok(subscribed.subscription);
                }
            }
        }
    }

    /// The history after the last message seen (by id, or by time when the daemon does not
    /// hold that id), for a start over.
    fn resume_history(&self, client: &mut Client) -> Result<HistoryResult, ClientError> {
        let by_time = Since::Time(self.last.as_ref().map_or(self.started_ms, |(_, ts)| *ts));
        let history = |since| HistoryParams {
            since: Some(since),
            ..HistoryParams::default()
        };
        match &self.last {
            Some((id, _)) => match client.call(rpc_method::HISTORY, history(Since::Id(id.clone())))
            {
                Err(err) if err.rpc_code() == Some(code::UNKNOWN_MESSAGE_ID) => {
                    client.call(rpc_method::HISTORY, history(by_time))
                }
                other => other,
            },
            None => client.call(rpc_method::HISTORY, history(by_time)),
        }
    }

    fn take_history(
        &mut self,
        history: HistoryResult,
        live: bool,
        notify: &mut impl FnMut(StreamNews) -> bool,
    ) -> Result<(), StartError> {
        for message in history.messages {
            if !self.deliver(message, live, notify) {
                return Err(StartError::Stopped);
            }
        }
        if history.cursor.is_some() {
            self.cursor = history.cursor;
        }
        Ok(())
    }

    /// Hands one event on; false when the chat is gone.
    fn handle(&mut self, event: StreamEvent, notify: &mut impl FnMut(StreamNews) -> bool) -> bool {
        match event {
            StreamEvent::Message { message } => self.deliver(message, true, notify),
            StreamEvent::Presence { presence, previous } => notify(StreamNews::Presence {
                entry: presence,
                previous,
            }),
            StreamEvent::DirectStatus { id, status, reason } => {
                notify(StreamNews::DirectStatus { id, status, reason })
            }
            StreamEvent::Lagged { dropped, cursor } => {
                if cursor.is_some() {
                    self.cursor = cursor;
                }
                notify(StreamNews::Lagged { dropped })
            }
            StreamEvent::Other => true,
        }
    }

    fn deliver(
        &mut self,
        message: MessageView,
        live: bool,
        notify: &mut impl FnMut(StreamNews) -> bool,
    ) -> bool {
        if !message.cursor.is_empty() {
            self.cursor = Some(message.cursor.clone());
        }
        self.last = Some((message.id.clone(), message.ts));
        notify(StreamNews::Message { message, live })
    }
}

/// Why a (re)start of the stream did not get to a subscription.
enum StartError {
    /// The chat is gone.
    Stopped,
    /// The daemon went away or refused.
    Client(ClientError),
}

impl From<ClientError> for StartError {
    fn from(err: ClientError) -> Self {
        StartError::Client(err)
    }
}

/// A call the person asked for.
#[derive(Debug, Clone)]
pub enum Request {
    /// `presence.set`.
    Presence(PresenceParams),
    /// `nick`.
    Nick(NickParams),
    /// `who`.
    Who,
    /// `channels`.
    Channels,
    /// `peers`: shown (`/peers`), or only to learn the nodes' names.
    Peers {
        /// Whether the list is shown.
        shown: bool,
    },
    /// `send`, typed in the window `from`.
    Send {
        /// What to send.
        params: SendParams,
        /// The window it was typed in.
        from: Target,
    },
    /// `history` of one channel, for a window just joined.
    History {
        /// The channel.
        channel: String,
        /// How many messages.
        n: usize,
    },
}

/// The answer to a [`Request`].
#[derive(Debug)]
pub enum Reply {
    /// To [`Request::Presence`].
    Presence {
        /// What was asked.
        params: PresenceParams,
        /// The answer.
        result: Result<PresenceResult, CallError>,
    },
    /// To [`Request::Nick`].
    Nick {
        /// What was asked.
        params: NickParams,
        /// The answer.
        result: Result<NickResult, CallError>,
    },
    /// To [`Request::Who`].
    Who(Result<WhoResult, CallError>),
    /// To [`Request::Channels`].
    Channels(Result<ChannelsResult, CallError>),
    /// To [`Request::Peers`].
    Peers {
        /// Whether the list is shown.
        shown: bool,
        /// The answer.
        result: Result<PeersResult, CallError>,
    },
    /// To [`Request::Send`].
    Sent {
        /// What was sent.
        params: SendParams,
        /// The window it was typed in.
        from: Target,
        /// The answer.
        result: Result<SendResult, CallError>,
    },
    /// To [`Request::History`].
    History {
        /// The channel.
        channel: String,
        /// The answer.
        result: Result<HistoryResult, CallError>,
    },
}

/// Why a call did not work, in the terms the chat shows.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The daemon does not know the method (an older rossipd).
    Unsupported {
        /// The method.
        method: &'static str,
    },
    /// The daemon answered with an error.
    Rpc(ErrorObject),
    /// The daemon cannot be reached (or sent something unreadable).
    Unreachable(String),
}

impl CallError {
    fn from_client(method: &'static str, err: ClientError) -> Self {
        match err {
            ClientError::Rpc(e) if e.code == code::METHOD_NOT_FOUND => {
                CallError::Unsupported { method }
            }
            ClientError::Rpc(e) => CallError::Rpc(e),
            other => CallError::Unreachable(other.to_string()),
        }
    }
}

/// The connection for the person's calls, and their presence on it.
#[derive(Debug)]
pub struct Worker {
    socket: PathBuf,
    client: Option<Client>,
    /// The presence last set: set again on a new connection, since a connection's close
    /// is the person leaving.
    presence: Option<PresenceParams>,
}

impl Worker {
    /// A worker calling the daemon at `socket` through `client`.
    pub fn new(socket: PathBuf, client: Client) -> Self {
        Worker {
            socket,
            client: Some(client),
            presence: None,
        }
    }

    /// Answers requests until `requests` ends or `reply` returns false.
    pub fn run(
        mut self,
        requests: std::sync::mpsc::Receiver<Request>,
        mut reply: impl FnMut(Reply) -> bool,
    ) {
        for request in requests {
            if !reply(self.answer(request)) {
                return;
            }
        }
    }

    /// Sends one message (the pipe mode's only call).
    pub fn send(&mut self, params: &SendParams) -> Result<SendResult, CallError> {
        self.call(rpc_method::SEND, params)
    }

    /// Who this chat is: the node (`status`), and the user the daemon sees on this socket,
    /// registered as available when the daemon knows presence (`presence.set`), with their
    /// display name (`nick`). Only `status` must work: the others are newer methods.
    pub fn identify(&mut self) -> Result<Me, ClientError> {
        let status: StatusResult = match self.call(rpc_method::STATUS, json!({})) {
            Ok(status) => status,
            Err(CallError::Unreachable(reason)) => {
                return Err(ClientError::ConnectionLost {
                    path: self.socket.clone(),
                    reason,
                });
            }
            Err(CallError::Rpc(e)) => return Err(ClientError::Rpc(e)),
            Err(CallError::Unsupported { method }) => {
                return Err(ClientError::Rpc(ErrorObject::new(
                    code::METHOD_NOT_FOUND,
                    format!("no `{method}` method"),
                )));
            }
        };
        let mut me = Me {
            node_id: status.id,
            node_name: status.name,
            ..Me::default()
        };
        let available = PresenceParams {
            state: api::PresenceState::Available,
            status: None,
        };
        if let Reply::Presence {
            result: Ok(presence),
            ..
        } = self.answer(Request::Presence(available))
        {
            me.user = Some(presence.user);
            me.presence = true;
        }
        if let Reply::Nick {
            result: Ok(nick), ..
        } = self.answer(Request::Nick(NickParams::default()))
        {
            me.user = Some(nick.user);
            me.nick = nick.nick;
        }
        if me.user.is_none() {
            // A daemon from before these methods: this uid's name is the best guess of the
            // name it puts on this chat's messages (for mentions and the status bar).
            me.user = Some(login_name());
        }
        Ok(me)
    }

    fn answer(&mut self, request: Request) -> Reply {
        match request {
            Request::Presence(params) => {
                let result = self.call(api::method::PRESENCE_SET, &params);
                if result.is_ok() {
                    self.presence = Some(params.clone());
                }
                Reply::Presence { params, result }
            }
            Request::Nick(params) => {
                let result = self.call(api::method::NICK, &params);
                Reply::Nick { params, result }
            }
            Request::Who => Reply::Who(self.call(api::method::WHO, json!({}))),
            Request::Channels => Reply::Channels(self.call(api::method::CHANNELS, json!({}))),
            Request::Peers { shown } => Reply::Peers {
                shown,
                result: self.call(rpc_method::PEERS, PeersParams { all: true }),
            },
            Request::Send { params, from } => {
                let result = self.call(rpc_method::SEND, &params);
                Reply::Sent {
                    params,
                    from,
                    result,
                }
            }
            Request::History { channel, n } => {
                let params = HistoryParams {
                    n: Some(n),
                    channel: Some(channel.clone()),
                    ..HistoryParams::default()
                };
                let result = self.call(rpc_method::HISTORY, params);
                Reply::History { channel, result }
            }
        }
    }

    /// Calls `method`; on a lost connection, connects again (registering the presence
    /// again) and retries once.
    fn call<R: DeserializeOwned>(
        &mut self,
        method: &'static str,
        params: impl Serialize,
    ) -> Result<R, CallError> {
        let params = serde_json::to_value(params)
            .map_err(|e| CallError::Unreachable(format!("cannot encode `{method}`: {e}")))?;
        let mut last_error = None;
        for _ in 0..2 {
            let client = match self.client.as_mut() {
                Some(client) => client,
                None => match self.reconnect() {
                    Ok(client) => client,
                    Err(err) => return Err(CallError::from_client(method, err)),
                },
            };
            match client.call(method, &params) {
                Err(err @ ClientError::ConnectionLost { .. }) => {
                    self.client = None;
                    last_error = Some(err);
                }
                other => return other.map_err(|err| CallError::from_client(method, err)),
            }
        }
        Err(last_error.map_or_else(
            || CallError::Unreachable("rossipd is not reachable".to_owned()),
            |err| CallError::from_client(method, err),
        ))
    }

    fn reconnect(&mut self) -> Result<&mut Client, ClientError> {
        let mut client = Client::connect(&self.socket)?;
        if let Some(presence) = &self.presence {
            // Best effort: the daemon may have lost presence support, or refuse for a
            // reason the next explicit call will show.
            let _ = client.call::<Value>(api::method::PRESENCE_SET, presence);
        }
        Ok(self.client.insert(client))
    }
}

/// This process's user name as the daemon names a caller: the /etc/passwd entry of the uid,
/// else `uidN` (users served only by NSS modules are not seen: reading them needs libc).
fn login_name() -> String {
    let uid = rustix::process::getuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
                (entry_uid == uid && !name.is_empty()).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}
