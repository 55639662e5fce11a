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
        channel: args.channel.clone(),
        start: args.since.clone(),
        started_ms: now_ms(),
        last: None,
        seen: SeenIds::default(),
        printer,
        peers,
    };
    // A restarted daemon is looked for where it was found, not searched for again: another
    // daemon elsewhere would not hold the messages to resume from.
    follow(
        &Resubscriber::new(client.path().to_path_buf()),
        out,
        &mut follower,
        client,
        first,
    )
}

/// Subscribes with `first` on `client`, then follows that subscription and the ones
/// after each reconnection.
fn follow(
    resubscriber: &Resubscriber,
    out: &mut Out<impl Write>,
    follower: &mut Follower,
    mut client: Client,
    first: SubscribeParams,
) -> anyhow::Result<()> {
    let subscribed: SubscribeResult = client.call(method::SUBSCRIBE, first)?;
    resubscriber.run(out, follower, client, subscribed.subscription)
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
}

impl Subscriber for Follower {
    /// Resubscribes from the resume point, and says that membership changes may be missing.
    fn resubscribe(
        &mut self,
        _out: &mut Out<impl Write>,
        client: &mut Client,
    ) -> anyhow::Result<u64> {
        let subscribed = self.with_resume_point(|since, channel| {
            let params = SubscribeParams {
                events: Some(event_kinds(self.peers.is_some())),
                n: None,
                since: Some(since),
                channel,
            };
            client.call::<SubscribeResult>(method::SUBSCRIBE, params)
        })?;
        if self.peers.is_some() {
            warn(
                "reconnected to rossipd; membership changes while it was unreachable \
                 are not shown (`rossipctl peers --all` lists the members now)",
            );
        }
        Ok(subscribed.subscription)
    }

    /// Prints a message, fills a lag's gap from history, and prints membership changes
    /// with `--peers`.
    fn handle_event(
        &mut self,
        out: &mut Out<impl Write>,
        client: &mut Client,
        event: EventBody,
    ) -> anyhow::Result<()> {
        match event {
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
        Ok(())
    }
}

impl Follower {
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
