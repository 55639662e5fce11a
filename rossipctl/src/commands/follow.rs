//! `rossipctl tail -f`: print messages as they arrive, across lags and daemon restarts.
//!
//! The promise is no gap and no duplicate:
//! - a `lagged` notice (the daemon dropped events for us) is filled from `history` after
//!   the last printed id;
//! - a lost connection is retried every 0.5 s, and the new subscription replays from the
//!   last printed id; if the restarted daemon no longer holds that id, from its timestamp;
//! - every printed id is remembered (a bounded window), so the overlap those replays
//!   produce is never printed twice.
//!
//! With `--peers`, membership changes are interleaved as they arrive. Those cannot be
//! replayed: after a lag or a reconnection a warning says that some may be missing.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use rossip_proto::rpc::{
    EventBody, EventKind, HistoryParams, HistoryResult, MessageView, Since, SubscribeParams,
    SubscribeResult, code, method,
};

use super::Ctx;
use super::peer_printer::PeerPrinter;
use super::tail::MessagePrinter;
use crate::cli::TailArgs;
use crate::client::{Client, ClientError};
use crate::output::{Out, warn};
use crate::timefmt::now_ms;

/// Pause between reconnection attempts.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// How many printed ids are remembered for de-duplication: far more than one replay
/// after a restart or lag can overlap with what was already printed.
const SEEN_CAPACITY: usize = 10_000;

/// Follows the messages `args` selects until stdout closes or a non-recoverable error.
pub fn run(
    ctx: &Ctx,
    out: &mut Out<impl Write>,
    printer: MessagePrinter,
    peers: Option<PeerPrinter>,
    args: &TailArgs,
) -> anyhow::Result<()> {
    // The first connection is not retried: a daemon that is not running is an error now.
    let client = ctx.connect()?;
    let first = SubscribeParams {
        events: Some(event_kinds(peers.is_some())),
        n: args.count(),
        since: args.since.clone(),
        channel: args.channel.clone(),
    };
    let mut follower = Follower {
        socket: ctx.socket.clone(),
        channel: args.channel.clone(),
        start: args.since.clone(),
        started_ms: now_ms(),
        last: None,
        seen: SeenIds::default(),
        printer,
        peers,
        retry: RETRY_INTERVAL,
    };
    follower.follow(out, client, first)
}

/// What to subscribe to: messages, and with `--peers` membership changes.
fn event_kinds(peers: bool) -> Vec<EventKind> {
    if peers {
        vec![EventKind::Message, EventKind::Peer]
    } else {
        vec![EventKind::Message]
    }
}

/// The state of one `tail -f`.
struct Follower {
    socket: PathBuf,
    channel: Option<String>,
    /// Where to resume when nothing was printed yet: `--since`, else [`Self::started_ms`].
    start: Option<Since>,
    /// Wall-clock time of the first subscription, ms since the Unix epoch.
    started_ms: u64,
    /// Id and timestamp of the last message printed.
    last: Option<(String, u64)>,
    seen: SeenIds,
    printer: MessagePrinter,
    /// `--peers`: how to print membership changes; None ignores them.
    peers: Option<PeerPrinter>,
    retry: Duration,
}

impl Follower {
    fn follow(
        &mut self,
        out: &mut Out<impl Write>,
        mut client: Client,
        first: SubscribeParams,
    ) -> anyhow::Result<()> {
        let subscribe: SubscribeResult = client.call(method::SUBSCRIBE, first)?;
        let mut subscription = subscribe.subscription;
        loop {
            let err = match self.print_events(out, &mut client, subscription) {
                Err(err) if is_lost(&err) => err,
                other => return other,
            };
            warn(format_args!(
                "{err:#}; reconnecting every {} ms",
                self.retry.as_millis()
            ));
            (client, subscription) = self.reconnect()?;
            if self.peers.is_some() {
                warn(
                    "reconnected to rossipd; membership changes while it was unreachable \
                     are not shown (`rossipctl peers --all` lists the members now)",
                );
            }
        }
    }

    /// Prints this subscription's messages until the connection ends (an error).
    fn print_events(
        &mut self,
        out: &mut Out<impl Write>,
        client: &mut Client,
        subscription: u64,
    ) -> anyhow::Result<()> {
        loop {
            let event = client.next_event()?;
            if event.subscription != subscription {
                continue;
            }
            match event.event {
                EventBody::Message { message } => self.print(out, message)?,
                EventBody::Lagged { dropped } => {
                    let peers = if self.peers.is_some() {
                        " (membership changes among them cannot be fetched)"
                    } else {
                        ""
                    };
                    warn(format_args!(
                        "rossipd skipped {dropped} event(s) because this tail fell behind; \
                         fetching the messages from history{peers}"
                    ));
                    self.fill_gap(out, client)?;
                }
                EventBody::Peer { peer, previous } => {
                    if let Some(printer) = &self.peers {
                        printer.print_change(out, &peer, previous, now_ms())?;
                    }
                }
            }
        }
    }

    /// Fetches from history what a `lagged` notice says we missed.
    fn fill_gap(&mut self, out: &mut Out<impl Write>, client: &mut Client) -> anyhow::Result<()> {
        let history: HistoryResult = self.with_resume_point(|since, channel| {
            let params = HistoryParams {
                n: None,
                since: Some(since),
                channel,
            };
            client.call(method::HISTORY, params)
        })?;
        for message in history.messages {
            self.print(out, message)?;
        }
        Ok(())
    }

    /// Connects again and resubscribes from the resume point, retrying until it works.
    fn reconnect(&mut self) -> anyhow::Result<(Client, u64)> {
        loop {
            thread::sleep(self.retry);
            let Ok(mut client) = Client::connect(&self.socket) else {
                continue;
            };
            let subscribed = self.with_resume_point(|since, channel| {
                let params = SubscribeParams {
                    events: Some(event_kinds(self.peers.is_some())),
                    n: None,
                    since: Some(since),
                    channel,
                };
                client.call::<SubscribeResult>(method::SUBSCRIBE, params)
            });
            match subscribed {
                Ok(result) => return Ok((client, result.subscription)),
                // Gone again, or still starting up: keep trying.
                Err(ClientError::ConnectionLost { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Runs `call` with `since` = the last printed id (or the start point); if the daemon
    /// does not know that id, once more with the time of the last printed message (or of
    /// the start). De-duplication hides the overlap a time-based resume brings.
    fn with_resume_point<R>(
        &self,
        mut call: impl FnMut(Since, Option<String>) -> Result<R, ClientError>,
    ) -> Result<R, ClientError> {
        let (by_id, by_time) = match &self.last {
            Some((id, ts)) => (Since::Id(id.clone()), Since::Time(*ts)),
            None => {
                let start = Since::Time(self.started_ms);
                (self.start.clone().unwrap_or(start.clone()), start)
            }
        };
        match call(by_id.clone(), self.channel.clone()) {
            Err(err)
                if err.rpc_code() == Some(code::UNKNOWN_MESSAGE_ID)
                    && matches!(by_id, Since::Id(_)) =>
            {
                call(by_time, self.channel.clone())
            }
            other => other,
        }
    }

    fn print(&mut self, out: &mut Out<impl Write>, message: MessageView) -> anyhow::Result<()> {
        if !self.seen.insert(&message.id) {
            return Ok(());
        }
        self.printer.print(out, &message)?;
        self.last = Some((message.id, message.ts));
        Ok(())
    }
}

/// Whether `err` means the daemon went away (so reconnecting may help).
pub fn is_lost(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<ClientError>(),
        Some(ClientError::ConnectionLost { .. })
    )
}

/// The ids printed most recently, oldest forgotten first.
#[derive(Debug, Default)]
struct SeenIds {
    order: VecDeque<String>,
    set: BTreeSet<String>,
}

impl SeenIds {
    /// Records `id`; false if it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == SEEN_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.set.insert(id.to_owned());
        true
    }
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
