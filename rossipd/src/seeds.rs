//! `--join` seeds: resolved and contacted with backoff for as long as the
//! daemon runs. The node ignores a contact to an address that is already an
//! alive member, so steady-state cost is one small datagram per seed every
//! `MAX_BACKOFF`; in exchange a seed that was down at start, or a cluster
//! split by a partition, is found again without a restart.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::driver::Handle;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long resolving a seed (or a `join` address) may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a `HOST:PORT` gave no address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(String);

/// Contacts `spec` (`HOST:PORT` or `HOST`) until cancelled.
pub async fn contact_forever(spec: String, driver: Handle, cancel: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match resolve(&spec).await {
            Ok(addrs) => {
                tracing::debug!(seed = %spec, ?addrs, "contacting seed");
                if driver.contact(spec.clone(), addrs).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(seed = %spec, "{e}"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Resolves `HOST:PORT`, or `HOST` alone meaning the default port.
pub async fn resolve(spec: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    let fail = |why: String| ResolveError(why);
    let with_port = if spec.parse::<SocketAddr>().is_ok() || has_port(spec) {
        spec.to_owned()
    } else {
        format!("{spec}:{}", crate::config::DEFAULT_PORT)
    };
    let lookup = tokio::net::lookup_host(with_port.clone());
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => return Err(fail(format!("cannot resolve {with_port}: {e}"))),
        Err(_) => return Err(fail(format!("resolving {with_port} timed out"))),
    };
    if addrs.is_empty() {
        return Err(fail(format!("{with_port} resolved to no address")));
    }
    Ok(addrs)
}

/// `host:123` or `[v6]:123` (a bare IPv6 address has colons but no port).
fn has_port(spec: &str) -> bool {
    match spec.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_recognised() {
        assert!(has_port("host:7465"));
        assert!(has_port("[fd00::1]:7465"));
        assert!(!has_port("host"));
        assert!(!has_port("fd00::1"));
    }
}
