//! `rossipctl tail -f`: print messages as they arrive, across lags and daemon restarts.
//!
//! The promise is no gap and no duplicate, and it rests on delivery cursors (this node's
//! numbering of what it delivered, in arrival order): the start is read with `history`,
//! whose answer ends with the cursor of the last delivery it covers; the subscription
//! then asks for everything delivered *after* that cursor, and every message carries
//! its own. So:
//! - a lost connection is retried every 0.5 s, and the new subscription goes on after
//!   the last cursor seen, whatever the timestamps of what arrived meanwhile (a node
//!   that was cut off catches up messages older than those it already showed);
//! - a `lagged` notice says how many messages left the daemon's history before this
//!   tail read them (they cannot be fetched any more) and where the stream goes on;
//! - a daemon whose history store is not the one the cursor came from (its state
//!   directory was wiped) refuses the cursor: the tail says so and starts over from
//!   that daemon's history after the last message printed (by id, else by time),
//!   skipping the ids it already printed (a bounded window).
//!
//! With `--peers`, membership changes are interleaved as they arrive. Those cannot be
//! replayed: after a lag or a reconnection a warning says that some may be missing.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;

use rossip_proto::rpc::{
    EventBody, EventKind, HistoryParams, HistoryResult, MessageView, Since, SubscribeParams,
    SubscribeResult, code, method,
};

use super::Ctx;
use super::peer_printer::PeerPrinter;
use super::resubscribe::{Resubscriber, Subscriber};
use super::tail::MessagePrinter;
use crate::cli::TailArgs;
use crate::client::{Client, ClientError};
use crate::output::{Out, warn};
use crate::timefmt::now_ms;

/// How many printed ids are remembered for de-duplication after a start over (a daemon
/// with a new history store): far more than one such replay overlaps with what was
/// already printed.
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
    let mut follower = Follower::new(args.channel.clone(), printer, peers);
    let start = HistoryParams {
        n: args.count(),
        since: args.since.clone(),
        after: None,
        channel: args.channel.clone(),
    };
    // A restarted daemon is looked for where it was found, not searched for again: another
    // daemon elsewhere would not hold the messages to resume from.
    follow(
        &Resubscriber::new(client.path().to_path_buf()),
        out,
        &mut follower,
        client,
        start,
    )
}

/// Prints the history `start` selects, then follows what is delivered after it, across
/// reconnections.
fn follow(
    resubscriber: &Resubscriber,
    out: &mut Out<impl Write>,
    follower: &mut Follower,
    mut client: Client,
    start: HistoryParams,
) -> anyhow::Result<()> {
    let history: HistoryResult = client.call(method::HISTORY, start)?;
    follower.take_history(out, history)?;
    let subscription = follower.subscribe(&mut client)?;
    resubscriber.run(out, follower, client, subscription)
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
    channel: Option<String>,
    /// Wall-clock time of the start, ms since the Unix epoch: where a start over begins
    /// when nothing was printed yet.
    started_ms: u64,
    /// Id and timestamp of the last message printed.
    last: Option<(String, u64)>,
    /// The delivery cursor the stream goes on after.
    cursor: Option<String>,
    seen: SeenIds,
    printer: MessagePrinter,
    /// `--peers`: how to print membership changes; None ignores them.
    peers: Option<PeerPrinter>,
}

impl Subscriber for Follower {
    /// Subscribes after the last cursor, and says that membership changes may be missing.
    fn resubscribe(
        &mut self,
        out: &mut Out<impl Write>,
        client: &mut Client,
    ) -> anyhow::Result<u64> {
        let subscription = match self.subscribe(client) {
            Err(err)
                if err
                    .downcast_ref::<ClientError>()
                    .and_then(ClientError::rpc_code)
                    == Some(code::FOREIGN_CURSOR) =>
            {
                warn(format_args!(
                    "{err:#}; starting over from this daemon's history after the last message \
                     printed, skipping messages already printed"
                ));
                self.cursor = None;
                let history = self.with_resume_point(|since, channel| {
                    let params = HistoryParams {
                        n: None,
                        since: Some(since),
                        after: None,
                        channel,
                    };
                    client.call::<HistoryResult>(method::HISTORY, params)
                })?;
                self.take_history(out, history)?;
                self.subscribe(client)?
            }
            other => other?,
        };
        if self.peers.is_some() {
            warn(
                "reconnected to rossipd; membership changes while it was unreachable \
                 are not shown (`rossipctl peers --all` lists the members now)",
            );
        }
        Ok(subscription)
    }

    /// Prints a message, says what a lag lost, and prints membership changes with
    /// `--peers`.
    fn handle_event(
        &mut self,
        out: &mut Out<impl Write>,
        _client: &mut Client,
        event: EventBody,
    ) -> anyhow::Result<()> {
        match event {
            EventBody::Message { message } => self.print(out, message)?,
            EventBody::Lagged { dropped, cursor } => {
                let peers = if self.peers.is_some() {
                    " (membership changes among them)"
                } else {
                    ""
                };
                warn(format_args!(
                    "this tail fell so far behind that {dropped} event(s){peers} left \
                     rossipd's history before it read them; they are not shown"
                ));
                if cursor.is_some() {
                    self.cursor = cursor;
                }
            }
            EventBody::Peer { peer, previous } => {
                if let Some(printer) = &self.peers {
                    printer.print_change(out, &peer, previous, now_ms())?;
                }
            }
            // Not subscribed to; a daemon that sends them anyway is ignored.
            EventBody::Presence { .. } | EventBody::DirectStatus { .. } => {}
        }
        Ok(())
    }
}

impl Follower {
    fn new(channel: Option<String>, printer: MessagePrinter, peers: Option<PeerPrinter>) -> Self {
        Follower {
            channel,
            started_ms: now_ms(),
            last: None,
            cursor: None,
            seen: SeenIds::default(),
            printer,
            peers,
        }
    }

    /// Subscribes to what comes after the cursor.
    fn subscribe(&mut self, client: &mut Client) -> anyhow::Result<u64> {
        let params = SubscribeParams {
            events: Some(event_kinds(self.peers.is_some())),
            n: None,
            since: None,
            after: self.cursor.clone(),
            channel: self.channel.clone(),
        };
        let subscribed: SubscribeResult = client.call(method::SUBSCRIBE, params)?;
        if self.cursor.is_none() {
            self.cursor = subscribed.cursor;
        }
        Ok(subscribed.subscription)
    }

    /// Prints what a `history` answer holds, and goes on after its cursor.
    fn take_history(
        &mut self,
        out: &mut Out<impl Write>,
        history: HistoryResult,
    ) -> anyhow::Result<()> {
        for message in history.messages {
            self.print(out, message)?;
        }
        if history.cursor.is_some() {
            self.cursor = history.cursor;
        }
        Ok(())
    }

    /// Runs `call` with `since` = the last printed id (or the start time); if the daemon
    /// does not know that id, once more with the time of the last printed message.
    /// De-duplication hides the overlap a time-based start brings.
    fn with_resume_point<R>(
        &self,
        mut call: impl FnMut(Since, Option<String>) -> Result<R, ClientError>,
    ) -> Result<R, ClientError> {
        let (by_id, by_time) = match &self.last {
            Some((id, ts)) => (Since::Id(id.clone()), Since::Time(*ts)),
            None => {
                let start = Since::Time(self.started_ms);
                (start.clone(), start)
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
        if !message.cursor.is_empty() {
            self.cursor = Some(message.cursor.clone());
        }
        if !self.seen.insert(&message.id) {
            return Ok(());
        }
        self.printer.print(out, &message)?;
        self.last = Some((message.id, message.ts));
        Ok(())
    }
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
