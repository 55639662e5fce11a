//! `rossipctl events`: print membership changes as they happen, across daemon restarts.
//!
//! Unlike messages, membership changes have no history to replay from: what happens while
//! rossipctl is disconnected (or too slow, `lagged`) is lost. So every such gap is said on
//! stderr, and `--snapshot` prints the member list after each (re)connection and each
//! lag, which closes the gap for anyone keeping a view of the cluster. The snapshot is
//! taken after subscribing, on the same connection: changes that race with it are printed
//! after it, so applying the lines in order always ends in the daemon's current view.

use std::io::Write;

use jiff::tz::TimeZone;
use rossip_proto::rpc::{
    EventBody, EventKind, PeersParams, PeersResult, SubscribeParams, SubscribeResult, method,
};

use super::Ctx;
use super::peer_printer::PeerPrinter;
use super::resubscribe::{Resubscriber, Subscriber};
use crate::cli::EventsArgs;
use crate::client::Client;
use crate::output::{Out, warn};
use crate::timefmt::now_ms;

/// Streams membership changes until stdout closes or a non-recoverable error.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: EventsArgs) -> anyhow::Result<()> {
    // The first connection is not retried: a daemon that is not running is an error now.
    let client = ctx.connect()?;
    let mut watcher = Watcher {
        printer: PeerPrinter::new(ctx.json, TimeZone::system()),
        snapshot: args.snapshot,
    };
    // A restarted daemon is looked for where it was found, not searched for again.
    watch(
        &Resubscriber::new(client.path().to_path_buf()),
        out,
        &mut watcher,
        client,
    )
}

/// Subscribes on `client`, then follows that subscription and the ones after each
/// reconnection.
fn watch(
    resubscriber: &Resubscriber,
    out: &mut Out<impl Write>,
    watcher: &mut Watcher,
    mut client: Client,
) -> anyhow::Result<()> {
    let subscription = watcher.start(out, &mut client, false)?;
    resubscriber.run(out, watcher, client, subscription)
}

/// The state of one `rossipctl events`.
struct Watcher {
    printer: PeerPrinter,
    /// `--snapshot`: print the member list after each (re)connection and lag.
    snapshot: bool,
}

impl Subscriber for Watcher {
    fn resubscribe(
        &mut self,
        out: &mut Out<impl Write>,
        client: &mut Client,
    ) -> anyhow::Result<u64> {
        self.start(out, client, true)
    }

    /// Prints a change; after a lag says so, and prints the snapshot if asked for.
    fn handle_event(
        &mut self,
        out: &mut Out<impl Write>,
        client: &mut Client,
        event: EventBody,
    ) -> anyhow::Result<()> {
        match event {
            EventBody::Peer { peer, previous } => {
                self.printer.print_change(out, &peer, previous, now_ms())?;
            }
            EventBody::Lagged { dropped, .. } => {
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
            EventBody::Message { .. }
            | EventBody::Presence { .. }
            | EventBody::DirectStatus { .. } => {}
        }
        Ok(())
    }
}

impl Watcher {
    /// Subscribes to peer events on `client`, then prints the snapshot if asked for.
    /// `reconnected`: the connection replaces a lost one, so the gap is worth a note.
    /// Returns the subscription id.
    fn start(
        &self,
        out: &mut Out<impl Write>,
        client: &mut Client,
        reconnected: bool,
    ) -> anyhow::Result<u64> {
        let params = SubscribeParams {
            events: Some(vec![EventKind::Peer]),
            ..SubscribeParams::default()
        };
        let subscribed: SubscribeResult = client.call(method::SUBSCRIBE, params)?;
        if reconnected {
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
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
