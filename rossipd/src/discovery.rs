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

/// The parts of this node's record that change while it runs, published by
/// the driver: the record is announced again when either changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// Our node id: the instance name (names can collide, ids cannot). It
    /// changes when this node gives up an id that a copy of it elsewhere
    /// keeps; the old record is then withdrawn (goodbye packets).
    pub id: NodeId,
    /// Ids of the cluster keys held, the sealing one first (empty: none),
    /// as they change (`rossipctl keys …`). The first goes in TXT as `key`:
    /// an id, never key material. Nodes whose `key` is not one of these are
    /// not contacted.
    pub keys: Vec<String>,
}

/// What to advertise.
#[derive(Debug, Clone)]
pub struct Advertisement {
    /// Our node name, in TXT.
    pub name: String,
    /// Cluster label, in TXT; other clusters' records are ignored.
    pub cluster: String,
    /// Gossip UDP port.
    pub port: u16,
    /// Interfaces chosen with `--iface`; empty means the default filter.
    pub ifaces: Vec<String>,
    /// Our id and key ids, as they change.
    pub announced: watch::Receiver<Announced>,
}

/// A running mDNS responder and browser.
pub struct Discovery {
    daemon: ServiceDaemon,
    /// The record as last announced, for the goodbye at shutdown.
    announced: watch::Receiver<Announced>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("announced", &*self.announced.borrow())
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

        let announced = ad.announced.borrow().clone();
        daemon
            .register(service_info(&ad, &announced)?)
            .context("mDNS: cannot register the service")?;
        // What the reannouncing task has registered: the goodbye at
        // shutdown names the record that is really out there.
        let (registered_tx, registered) = watch::channel(announced.clone());
        tasks.spawn(reannounce_on_change(
            daemon.clone(),
            ad.clone(),
            announced,
            registered_tx,
            cancel.clone(),
        ));

        let browser = Browser {
            daemon: daemon.clone(),
            cluster: ad.cluster,
            announced: ad.announced,
            found,
        };
        tasks.spawn(browser.run(cancel));
        Ok(Discovery {
            daemon,
            announced: registered,
        })
    }

    /// Unregisters (peers get goodbye packets) and stops mdns-sd, waiting a
    /// bounded time for both.
    pub async fn shutdown(self) {
        let fullname = fullname(&self.announced.borrow().id);
        if let Ok(rx) = self.daemon.unregister(&fullname) {
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

/// The full mDNS name of the record of node `id`.
fn fullname(id: &NodeId) -> String {
    format!("{id}.{SERVICE_TYPE}")
}

/// This node's service record, with `key` (the sealing key's id) in TXT.
fn service_info(ad: &Advertisement, announced: &Announced) -> anyhow::Result<ServiceInfo> {
    let key = announced.keys.first().map(String::as_str);
    let instance = announced.id.to_string();
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
/// find this one; and, when this node took a new id, withdraws the record of
/// the old one (goodbye packets) and announces the new, so that nobody is
/// sent to this address under an id that now belongs to another node.
async fn reannounce_on_change(
    daemon: ServiceDaemon,
    mut ad: Advertisement,
    mut registered: Announced,
    registered_tx: watch::Sender<Announced>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = ad.announced.changed() => if changed.is_err() { return },
        }
        let wanted = ad.announced.borrow_and_update().clone();
        let new_id = wanted.id != registered.id;
        if !new_id && wanted.keys.first() == registered.keys.first() {
            continue;
        }
        if new_id && let Err(e) = daemon.unregister(&fullname(&registered.id)) {
            tracing::warn!(old = %registered.id, "mDNS: cannot withdraw the old record: {e}");
        }
        match service_info(&ad, &wanted).and_then(|info| {
            daemon
                .register(info)
                .context("mDNS: cannot register the service")
        }) {
            Ok(()) => {
                if new_id {
                    tracing::info!(
                        old = %registered.id,
                        new = %wanted.id,
                        "mDNS: announcing this node's new id"
                    );
                } else {
                    tracing::info!(
                        key = wanted.keys.first().map_or("", String::as_str),
                        "mDNS: announcing the new sealing key id"
                    );
                }
                registered = wanted;
                let _ = registered_tx.send(registered.clone());
            }
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
}

struct Browser {
    daemon: ServiceDaemon,
    cluster: String,
    /// Our id and key ids, as they change: a node advertising another key
    /// (or none, when we have one) could not talk to us; it is not
    /// contacted.
    announced: watch::Receiver<Announced>,
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
        let own = id == self.announced.borrow().id.to_string();
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
            let announced = self.announced.borrow();
            let keys = &announced.keys;
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
