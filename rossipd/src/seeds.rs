//! `--join` seeds: resolved and contacted with backoff for as long as the
//! daemon runs. The node ignores a contact to an address that is already an
//! alive member, so steady-state cost is one small datagram per seed every
//! `MAX_BACKOFF`; in exchange a seed that was down at start, or a cluster
//! split by a partition, is found again without a restart.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::Command;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Contacts `spec` (`HOST:PORT` or `HOST`) until cancelled.
pub async fn contact_forever(
    spec: String,
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match crate::rpc::resolve(&spec).await {
            Ok(addrs) => {
                tracing::debug!(seed = %spec, ?addrs, "contacting seed");
                let contact = Command::Contact {
                    seed: spec.clone(),
                    addrs,
                };
                if commands.send(contact).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(seed = %spec, "{}", e.message),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
