//! `rossipctl events`: print membership changes as they happen, across daemon restarts.
//!
//! Unlike messages, membership changes have no history to replay from: what happens while
//! rossipctl is disconnected (or too slow, `lagged`) is lost. So every such gap is said on
//! stderr, and `--snapshot` prints the member list after each (re)connection and each
//! lag, which closes the gap for anyone keeping a view of the cluster. The snapshot is
//! taken after subscribing, on the same connection: changes that race with it are printed
//! after it, so applying the lines in order always ends in the daemon's current view.

use std::io::Write;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use jiff::tz::TimeZone;
use rossip_proto::rpc::{
    EventBody, EventKind, PeersParams, PeersResult, SubscribeParams, SubscribeResult, method,
};

use super::Ctx;
use super::follow::{RETRY_INTERVAL, is_lost};
use super::peer_printer::PeerPrinter;
use crate::cli::EventsArgs;
use crate::client::Client;
use crate::output::{Out, warn};
use crate::timefmt::now_ms;

/// Streams membership changes until stdout closes or a non-recoverable error.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: EventsArgs) -> anyhow::Result<()> {
    // The first connection is not retried: a daemon that is not running is an error now.
    let client = ctx.connect()?;
    let mut watcher = Watcher {
        socket: ctx.socket.clone(),
        printer: PeerPrinter::new(ctx.json, TimeZone::system()),
        snapshot: args.snapshot,
        retry: RETRY_INTERVAL,
        reconnected: false,
    };
    watcher.watch(out, client)
}

/// The state of one `rossipctl events`.
struct Watcher {
    socket: PathBuf,
    printer: PeerPrinter,
    /// `--snapshot`: print the member list after each (re)connection and lag.
    snapshot: bool,
    retry: Duration,
    /// Whether the current connection replaces a lost one (so the gap is worth a note).
    reconnected: bool,
}

impl Watcher {
    fn watch(&mut self, out: &mut Out<impl Write>, mut client: Client) -> anyhow::Result<()> {
        let mut subscription = self.start(out, &mut client)?;
        loop {
            let err = match self.print_events(out, &mut client, subscription) {
                Err(err) if is_lost(&err) => err,
                other => return other,
            };
            warn(format_args!(
                "{err:#}; reconnecting every {} ms",
                self.retry.as_millis()
            ));
            self.reconnected = true;
            (client, subscription) = self.reconnect(out)?;
        }
    }

    /// Subscribes to peer events on `client`, then prints the snapshot if asked for.
    /// Returns the subscription id.
    fn start(&mut self, out: &mut Out<impl Write>, client: &mut Client) -> anyhow::Result<u64> {
        let params = SubscribeParams {
            events: Some(vec![EventKind::Peer]),
            ..SubscribeParams::default()
        };
        let subscribed: SubscribeResult = client.call(method::SUBSCRIBE, params)?;
        if self.reconnected {
            if self.snapshot {
                warn(
                    "reconnected to rossipd; membership changes while it was unreachable are \
                     not shown; the members as it sees them now follow",
                );
            } else {
                warn(
                    "reconnected to rossipd; membership changes while it was unreachable are \
                     not shown (--snapshot lists the members after each reconnection)",
                );
            }
        }
        if self.snapshot {
            self.print_snapshot(out, client)?;
        }
        Ok(subscribed.subscription)
    }

    /// Prints every member the daemon knows, failed and left ones included.
    fn print_snapshot(&self, out: &mut Out<impl Write>, client: &mut Client) -> anyhow::Result<()> {
        let members: PeersResult = client.call(method::PEERS, PeersParams { all: true })?;
        let now = now_ms();
        for peer in &members.peers {
            self.printer.print_snapshot(out, peer, now)?;
        }
        Ok(())
    }

    /// Prints this subscription's changes until the connection ends (an error).
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
                EventBody::Peer { peer, previous } => {
                    self.printer.print_change(out, &peer, previous, now_ms())?;
                }
                EventBody::Lagged { dropped } => {
                    let then = if self.snapshot {
                        "the members as they are now follow"
                    } else {
                        "`rossipctl peers --all` lists the members now"
                    };
                    warn(format_args!(
                        "rossipd skipped {dropped} membership change(s) because this client \
                         fell behind; {then}"
                    ));
                    if self.snapshot {
                        self.print_snapshot(out, client)?;
                    }
                }
                // Not subscribed to; a daemon that sends them anyway is ignored.
                EventBody::Message { .. } => {}
            }
        }
    }

    /// Connects again and resubscribes, retrying until it works.
    fn reconnect(&mut self, out: &mut Out<impl Write>) -> anyhow::Result<(Client, u64)> {
        loop {
            thread::sleep(self.retry);
            let Ok(mut client) = Client::connect(&self.socket) else {
                continue;
            };
            match self.start(out, &mut client) {
                Ok(subscription) => return Ok((client, subscription)),
                // Gone again, or still starting up: keep trying.
                Err(err) if is_lost(&err) => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
