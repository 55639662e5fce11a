//! The loop that `tail -f` and `events` share: read one subscription's events, and when
//! the daemon goes away, say so, reconnect every [`RETRY_INTERVAL`] and subscribe again.
//!
//! What to subscribe to after a reconnection, and what to do with each event, is the
//! command's own business: it implements [`Subscriber`].

use std::io::Write;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use rossip_proto::rpc::EventBody;

use crate::client::{Client, ClientError};
use crate::output::{Out, warn};

/// Pause between reconnection attempts.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// A following command, as the shared loop sees it.
pub trait Subscriber {
    /// Subscribes on `client`, a new connection replacing a lost one, and does whatever
    /// must come before the first event (a note, a snapshot). Returns the subscription id.
    /// A lost connection here means "try again"; any other error ends the command.
    fn resubscribe(
        &mut self,
        out: &mut Out<impl Write>,
        client: &mut Client,
    ) -> anyhow::Result<u64>;

    /// Handles one event of the current subscription; `client` is there for the calls an
    /// event may need (a gap fill after a lag, a snapshot).
    fn handle_event(
        &mut self,
        out: &mut Out<impl Write>,
        client: &mut Client,
        event: EventBody,
    ) -> anyhow::Result<()>;
}

/// Where the daemon is, and how long to wait between attempts to reach it again.
#[derive(Debug, Clone)]
pub struct Resubscriber {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// Pause between reconnection attempts: [`RETRY_INTERVAL`], shorter in tests.
    pub retry: Duration,
}

impl Resubscriber {
    /// Reconnects to `socket` every [`RETRY_INTERVAL`].
    pub fn new(socket: PathBuf) -> Self {
        Resubscriber {
            socket,
            retry: RETRY_INTERVAL,
        }
    }

    /// Feeds `subscriber` the events of `subscription` on `client`, then of each new
    /// subscription after a lost connection, until stdout closes or another error.
    pub fn run(
        &self,
        out: &mut Out<impl Write>,
        subscriber: &mut impl Subscriber,
        mut client: Client,
        mut subscription: u64,
    ) -> anyhow::Result<()> {
        loop {
            let err = match read_events(out, subscriber, &mut client, subscription) {
                Err(err) if is_lost(&err) => err,
                other => return other,
            };
            warn(format_args!(
                "{err:#}; reconnecting every {} ms",
                self.retry.as_millis()
            ));
            (client, subscription) = self.reconnect(out, subscriber)?;
        }
    }

    /// Connects again and resubscribes, retrying until it works.
    fn reconnect(
        &self,
        out: &mut Out<impl Write>,
        subscriber: &mut impl Subscriber,
    ) -> anyhow::Result<(Client, u64)> {
        loop {
            thread::sleep(self.retry);
            let Ok(mut client) = Client::connect(&self.socket) else {
                continue;
            };
            match subscriber.resubscribe(out, &mut client) {
                Ok(subscription) => return Ok((client, subscription)),
                // Gone again, or still starting up: keep trying.
                Err(err) if is_lost(&err) => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

/// Hands `subscription`'s events to `subscriber` until the connection ends (an error).
fn read_events(
    out: &mut Out<impl Write>,
    subscriber: &mut impl Subscriber,
    client: &mut Client,
    subscription: u64,
) -> anyhow::Result<()> {
    loop {
        let event = client.next_event()?;
        if event.subscription != subscription {
            continue;
        }
        subscriber.handle_event(out, client, event.event)?;
    }
}

/// Whether `err` means the daemon went away (so reconnecting may help).
fn is_lost(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<ClientError>(),
        Some(ClientError::ConnectionLost { .. })
    )
}
