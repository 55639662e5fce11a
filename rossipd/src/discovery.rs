//! mDNS discovery: advertise this node as `_rossip._udp.local.` and browse
//! for others. mDNS is only a hint: a discovered address is handed to the
//! protocol node, which makes it a member only once it answers over the
//! gossip port. Liveness is never decided here (a killed peer's record
//! lingers for minutes); the SWIM layer does that.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use mdns_sd::{IfKind, IfPredicate, ServiceDaemon, ServiceEvent, ServiceInfo};
use rossip_proto::NodeId;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::interfaces;

/// DNS-SD service type of rossip nodes.
pub const SERVICE_TYPE: &str = "_rossip._udp.local.";

/// Protocol version advertised in TXT (`proto`), so future versions can tell
/// each other apart before speaking.
const TXT_PROTOCOL_VERSION: &str = "1";

/// How long to wait for mdns-sd to send goodbyes and stop on shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// What to advertise.
#[derive(Debug, Clone)]
pub struct Advertisement {
    /// Our node id: the instance name (names can collide, ids cannot).
    pub id: NodeId,
    /// Our node name, in TXT.
    pub name: String,
    /// Cluster label, in TXT; other clusters' records are ignored.
    pub cluster: String,
    /// Gossip UDP port.
    pub port: u16,
    /// Interfaces chosen with `--iface`; empty means the default filter.
    pub ifaces: Vec<String>,
    /// Ids of the cluster keys held, the sealing one first (empty: none),
    /// as they change (`rossipctl keys …`). The first goes in TXT as `key`:
    /// an id, never key material; the record is announced again when it
    /// changes. Nodes whose `key` is not one of these are not contacted.
    pub keys: watch::Receiver<Vec<String>>,
}

/// A running mDNS responder and browser.
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Starts mdns-sd (its own thread), registers us and browses. Discovered
    /// gossip addresses of same-cluster peers are sent on `found`.
    pub fn start(
        ad: Advertisement,
        found: mpsc::Sender<SocketAddr>,
        cancel: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> anyhow::Result<Discovery> {
        let daemon =
            ServiceDaemon::new().context("cannot start mDNS (is UDP port 5353 usable?)")?;
        // The same interface filter for mDNS as for the advertised address.
        let wanted = ad.ifaces.clone();
        daemon
            .disable_interface(IfKind::All)
            .context("mDNS: cannot set interfaces")?;
        daemon
            .enable_interface(IfKind::Predicate(IfPredicate::new(move |intf| {
                if !wanted.is_empty() {
                    return wanted.iter().any(|w| w == &intf.name);
                }
                !intf.is_loopback() && !interfaces::is_virtual_bridge(&intf.name)
            })))
            .context("mDNS: cannot set interfaces")?;

        let instance = ad.id.to_string();
        let keys = ad.keys.clone();
        let info = service_info(&ad, keys.borrow().first().map(String::as_str))?;
        let fullname = info.get_fullname().to_owned();
        daemon
            .register(info)
            .context("mDNS: cannot register the service")?;
        tasks.spawn(reannounce_on_key_change(
            daemon.clone(),
            ad.clone(),
            cancel.clone(),
        ));

        let browser = Browser {
            daemon: daemon.clone(),
            own_id: instance,
            cluster: ad.cluster,
            keys,
            found,
        };
        tasks.spawn(browser.run(cancel));
        Ok(Discovery { daemon, fullname })
    }

    /// Unregisters (peers get goodbye packets) and stops mdns-sd, waiting a
    /// bounded time for both.
    pub async fn shutdown(self) {
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, rx.recv_async()).await;
        }
        match self.daemon.shutdown() {
            Ok(rx) => {
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, rx.recv_async()).await;
            }
            Err(e) => tracing::debug!("mDNS shutdown: {e}"),
        }
    }
}

/// This node's service record, with `key` (the sealing key's id) in TXT.
fn service_info(ad: &Advertisement, key: Option<&str>) -> anyhow::Result<ServiceInfo> {
    let instance = ad.id.to_string();
    let host = format!("{instance}.local.");
    let mut properties = vec![
        ("id", instance.as_str()),
        ("name", ad.name.as_str()),
        ("cluster", ad.cluster.as_str()),
        ("proto", TXT_PROTOCOL_VERSION),
    ];
    if let Some(key) = key {
        properties.push(("key", key));
    }
    let mut info = ServiceInfo::new(
        SERVICE_TYPE,
        &instance,
        &host,
        &[] as &[IpAddr],
        ad.port,
        &properties[..],
    )
    .context("mDNS: cannot build the service record")?
    .enable_addr_auto();
    // Instance names are node ids, unique by construction: skip the
    // conflict probing that would delay the announcement by ~0.8 s.
    info.set_requires_probe(false);
    Ok(info)
}

/// Registers the record again (mdns-sd replaces and re-announces it) each
/// time the sealing key changes, so that nodes started with the new key
/// find this one.
async fn reannounce_on_key_change(
    daemon: ServiceDaemon,
    mut ad: Advertisement,
    cancel: CancellationToken,
) {
    let mut announced = ad.keys.borrow_and_update().first().cloned();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = ad.keys.changed() => if changed.is_err() { return },
        }
        let key = ad.keys.borrow_and_update().first().cloned();
        if key == announced {
            continue;
        }
        match service_info(&ad, key.as_deref()).and_then(|info| {
            daemon
                .register(info)
                .context("mDNS: cannot register the service")
        }) {
            Ok(()) => {
                tracing::info!(
                    key = key.as_deref().unwrap_or(""),
                    "mDNS: announcing the new sealing key id"
                );
                announced = key;
            }
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
}

struct Browser {
    daemon: ServiceDaemon,
    own_id: String,
    cluster: String,
    /// Our key ids, as they change: a node advertising another key (or
    /// none, when we have one) could not talk to us; it is not contacted.
    keys: watch::Receiver<Vec<String>>,
    found: mpsc::Sender<SocketAddr>,
}

impl Browser {
    async fn run(self, cancel: CancellationToken) {
        loop {
            let events = match self.daemon.browse(SERVICE_TYPE) {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::warn!("mDNS browse failed: {e}; discovery is off (use --join)");
                    return;
                }
            };
            loop {
                let event = tokio::select! {
                    () = cancel.cancelled() => return,
                    event = events.recv_async() => event,
                };
                match event {
                    Ok(ServiceEvent::ServiceResolved(service)) => self.resolved(&service),
                    Ok(other) => tracing::trace!(?other, "mDNS event"),
                    // mdns-sd closes a subscription that lags; browse again.
                    Err(_) => break,
                }
            }
            if cancel.is_cancelled() {
                return;
            }
            tracing::debug!("mDNS browse channel closed; browsing again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn resolved(&self, service: &mdns_sd::ResolvedService) {
        let id = service.get_property_val_str("id").unwrap_or_default();
        let cluster = service.get_property_val_str("cluster").unwrap_or_default();
        // Our own id: our own record (contacting our own address is
        // skipped), or a copy of this node on another machine (a copied
        // state directory), which the hello lets the protocol find out.
        let own = id == self.own_id;
        // For logs only: what the node calls itself (unverified until it
        // answers), and the short form of its id, as membership logs it.
        let name = service
            .get_property_val_str("name")
            .map(|name| tracing::field::display(rossip_proto::log_text::LogText(name)));
        // Unverified bytes from the network: cut on a character boundary
        // and escaped like names.
        let short = id
            .char_indices()
            .nth(NodeId::SHORT_LEN)
            .map_or(id, |(end, _)| &id[..end]);
        let peer_id = tracing::field::display(rossip_proto::log_text::LogText(short));
        if cluster != self.cluster {
            tracing::debug!(
                peer = name,
                peer_id,
                cluster,
                "mDNS: ignoring a node of another cluster"
            );
            return;
        }
        let key = service.get_property_val_str("key").unwrap_or_default();
        let compatible = {
            let keys = self.keys.borrow();
            if keys.is_empty() {
                key.is_empty()
            } else {
                keys.iter().any(|k| k == key)
            }
        };
        if !compatible {
            tracing::debug!(
                peer = name,
                peer_id,
                key,
                "mDNS: ignoring a node that uses another cluster key (or none)"
            );
            return;
        }
        for ip in service.get_addresses() {
            let ip = ip.to_ip_addr();
            // Link-local IPv6 needs a scope id to be usable; IPv4 and global
            // IPv6 do not. Keep to what a plain SocketAddr can reach.
            if let IpAddr::V6(v6) = ip
                && (v6.segments()[0] & 0xffc0) == 0xfe80
            {
                continue;
            }
            let addr = SocketAddr::new(ip, service.get_port());
            tracing::debug!(peer = name, peer_id, %addr, own, "mDNS: discovered");
            if self.found.try_send(addr).is_err() {
                // The driver is busy; mDNS re-announces, so a hint lost now comes again.
                tracing::debug!(
                    peer = name,
                    peer_id,
                    %addr,
                    "mDNS: discovery queue full; dropping a hint"
                );
            }
        }
    }
}
