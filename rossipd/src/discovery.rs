//! mDNS discovery: advertise this node as `_rossip._udp.local.` and browse
//! for others. mDNS is only a hint: a discovered address is handed to the
//! protocol node, which makes it a member only once it answers over the
//! gossip port. Liveness is never decided here (a killed peer's record
//! lingers for minutes); the SWIM layer does that.
//!
//! Anyone on the LAN can multicast records, and mdns-sd caches every record
//! of a service type it browses for as long as the record's TTL says, with
//! no bound (and records that come without a PTR record even where nothing
//! browses). So browsing runs in a ServiceDaemon of its own, apart from the
//! one that announces this node, and that browser is replaced by a fresh
//! one (its cache dropped) whenever it holds more than
//! [`MAX_BROWSED_INSTANCES`] instances or [`MAX_CACHED_RECORDS`] records;
//! the responder is replaced (goodbye, then a new announcement) past
//! [`MAX_CACHED_RECORDS`]. A flood of forged records costs a bounded amount
//! of memory, and real nodes answer the new browser's first query. What the
//! records lead to (hellos) is bounded by the protocol node
//! (`Node::handle_hint`).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mdns_sd::{IfKind, IfPredicate, Receiver, ServiceDaemon, ServiceEvent, ServiceInfo};
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

/// Most instances of our service type the browser holds before it is
/// replaced by a fresh one: well above the nodes of any one LAN cluster,
/// and a few hundred KB of mdns-sd's cache.
pub const MAX_BROWSED_INSTANCES: usize = 512;

/// Most DNS records of any kind the browser's cache may hold (mdns-sd also
/// caches records that come without a PTR) before it is replaced: four a
/// node (PTR, SRV, TXT, A) for [`MAX_BROWSED_INSTANCES`], and a margin.
pub const MAX_CACHED_RECORDS: i64 = 4 * MAX_BROWSED_INSTANCES as i64 + 256;

/// How often a daemon's cache size is checked (mdns-sd's metrics) while it
/// holds more than a quarter of [`MAX_CACHED_RECORDS`]: a flood may be
/// filling it.
const CACHE_CHECK_BUSY_INTERVAL: Duration = Duration::from_millis(250);

/// How often it is checked otherwise. Each check wakes the daemon's thread
/// and this one twice (the request, the answer): at 250 ms, the checks of
/// the two daemons were a third of an idle node's wake-ups. A flood that
/// starts meanwhile is noticed within this, and the browser's count of
/// instances (from its events) still ends it at once.
const CACHE_CHECK_IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// How long the browser waits for mdns-sd's metrics: a thread busy with a
/// flood answers late, and meanwhile events are not read.
const METRICS_WAIT: Duration = Duration::from_millis(500);

/// The pause before browsing again after the browser was replaced or its
/// event channel closed: a flood cannot make it a busy loop.
const REBROWSE_PAUSE: Duration = Duration::from_millis(200);

/// A cache reset is logged as a warning at most this often.
const RESET_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Why a resolved mDNS record led to no hint (counted in `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDrop {
    /// Another cluster label in TXT.
    OtherCluster,
    /// Another cluster key id in TXT (or none, when this node has one).
    OtherKey,
    /// An IPv6 link-local address, unusable without a scope id.
    LinkLocal,
    /// The driver's queue of hints was full (the record comes again).
    QueueFull,
}

impl RecordDrop {
    const ALL: [RecordDrop; 4] = [
        RecordDrop::OtherCluster,
        RecordDrop::OtherKey,
        RecordDrop::LinkLocal,
        RecordDrop::QueueFull,
    ];

    /// The snake_case name, as counted in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordDrop::OtherCluster => "other_cluster",
            RecordDrop::OtherKey => "other_key",
            RecordDrop::LinkLocal => "link_local",
            RecordDrop::QueueFull => "queue_full",
        }
    }
}

/// Discovery's counters, shared with the driver's `status`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records of our service type resolved (each may name several
    /// addresses).
    pub records: AtomicU64,
    /// Times the browser was replaced to drop its cache.
    pub cache_resets: AtomicU64,
    dropped: [AtomicU64; RecordDrop::ALL.len()],
}

impl Counters {
    fn count_drop(&self, reason: RecordDrop) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Drops so far, by reason (reasons never counted left out).
    pub fn dropped(&self) -> impl Iterator<Item = (RecordDrop, u64)> + '_ {
        RecordDrop::ALL
            .into_iter()
            .map(|reason| {
                (
                    reason,
                    self.dropped[reason as usize].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, count)| *count > 0)
    }
}

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
    /// The responder in use now: announces this node; never browses, so
    /// the records of others are cached in it only when they come without
    /// a PTR record, and it is replaced when those are too many.
    responder: watch::Receiver<ServiceDaemon>,
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
    /// Starts mdns-sd (threads of its own), registers us and browses.
    /// Discovered gossip addresses of same-cluster peers are sent on
    /// `found`; what happened to records is counted in `counters`.
    pub fn start(
        ad: Advertisement,
        found: mpsc::Sender<SocketAddr>,
        counters: Arc<Counters>,
        cancel: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> anyhow::Result<Discovery> {
        let daemon = start_daemon(&ad.ifaces)?;
        // The browser's first daemon starts here too, so that a failure to
        // start mDNS is reported before the daemon says it runs.
        let browsing = start_daemon(&ad.ifaces)?;
        // Browse before announcing: mdns-sd drops announcements of a type
        // nobody browses for yet. Of two nodes started together, the one
        // that announces last then announces to a browser that is already
        // listening, which greets it at once, and neither waits for a
        // query's random delays (10–50 ms before the query, 10–50 ms before
        // each answer) nor for the query at all.
        let first_events = browsing.browse(SERVICE_TYPE);

        let announced = ad.announced.borrow().clone();
        daemon
            .register(service_info(&ad, &announced)?)
            .context("mDNS: cannot register the service")?;
        // What the responder task has registered, and with which daemon:
        // the goodbye at shutdown names the record that is really out there.
        let (registered_tx, registered) = watch::channel(announced.clone());
        let (responder_tx, responder) = watch::channel(daemon.clone());
        let task = Responder {
            daemon,
            ad: ad.clone(),
            registered: announced,
            registered_tx,
            responder_tx,
            counters: counters.clone(),
        };
        tasks.spawn(task.run(cancel.clone()));

        let browser = Browser {
            ifaces: ad.ifaces,
            cluster: ad.cluster,
            announced: ad.announced,
            found,
            counters,
            last_reset_warning: None,
        };
        tasks.spawn(browser.run(browsing, first_events, cancel));
        Ok(Discovery {
            responder,
            announced: registered,
        })
    }

    /// Unregisters (peers get goodbye packets) and stops mdns-sd, waiting a
    /// bounded time for both.
    pub async fn shutdown(self) {
        let fullname = fullname(&self.announced.borrow().id);
        let daemon = self.responder.borrow().clone();
        if let Ok(rx) = daemon.unregister(&fullname) {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, rx.recv_async()).await;
        }
        stop_daemon(&daemon).await;
    }
}

/// A new mdns-sd daemon (its own thread) on the interfaces chosen with
/// `--iface`, or the default filter: the same as for the advertised address.
fn start_daemon(ifaces: &[String]) -> anyhow::Result<ServiceDaemon> {
    let daemon = ServiceDaemon::new().context("cannot start mDNS (is UDP port 5353 usable?)")?;
    let wanted = ifaces.to_vec();
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
    Ok(daemon)
}

/// Stops an mdns-sd daemon, waiting a bounded time for its thread.
async fn stop_daemon(daemon: &ServiceDaemon) {
    match daemon.shutdown() {
        Ok(rx) => {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, rx.recv_async()).await;
        }
        Err(e) => tracing::debug!("mDNS shutdown: {e}"),
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

/// Keeps this node's record announced: registers it again (mdns-sd
/// replaces and re-announces it) each time the sealing key changes, so that
/// nodes started with the new key find this one; when this node took a new
/// id, withdraws the record of the old one (goodbye packets) and announces
/// the new, so that nobody is sent to this address under an id that now
/// belongs to another node; and replaces the responder daemon when its
/// cache holds more than [`MAX_CACHED_RECORDS`] records (forged ones sent
/// without a PTR record are cached even though nothing browses there).
struct Responder {
    daemon: ServiceDaemon,
    ad: Advertisement,
    /// The record as registered now.
    registered: Announced,
    registered_tx: watch::Sender<Announced>,
    /// The daemon in use, for the goodbye at shutdown.
    responder_tx: watch::Sender<ServiceDaemon>,
    counters: Arc<Counters>,
}

impl Responder {
    async fn run(mut self, cancel: CancellationToken) {
        let mut check = CacheCheck::new();
        let mut last_reset_warning = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = self.ad.announced.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.announce_change();
                }
                () = check.due() => {
                    if check.checked(cached_records(&self.daemon).await) {
                        if !self.replace(&cancel).await {
                            return;
                        }
                        note_reset(&self.counters, &mut last_reset_warning, "responder");
                    }
                }
            }
        }
    }

    /// Registers the record anew after a change of id or sealing key.
    fn announce_change(&mut self) {
        let wanted = self.ad.announced.borrow_and_update().clone();
        let registered = &self.registered;
        let new_id = wanted.id != registered.id;
        if !new_id && wanted.keys.first() == registered.keys.first() {
            return;
        }
        if new_id && let Err(e) = self.daemon.unregister(&fullname(&registered.id)) {
            tracing::warn!(old = %registered.id, "mDNS: cannot withdraw the old record: {e}");
        }
        match service_info(&self.ad, &wanted).and_then(|info| {
            self.daemon
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
                self.registered = wanted;
                let _ = self.registered_tx.send(self.registered.clone());
            }
            Err(e) => tracing::warn!("{e:#}"),
        }
    }

    /// Stops the responder (goodbye packets; under a flood only once the
    /// flood pauses, see [`Browser::run`]) and announces the record from a
    /// fresh one. `false`: cancelled, or mDNS could not start again.
    async fn replace(&mut self, cancel: &CancellationToken) -> bool {
        if let Ok(stopped) = self.daemon.shutdown() {
            tokio::select! {
                () = cancel.cancelled() => return false,
                _ = stopped.recv_async() => {}
            }
        }
        let fresh = start_daemon(&self.ad.ifaces).and_then(|daemon| {
            daemon
                .register(service_info(&self.ad, &self.registered)?)
                .context("mDNS: cannot register the service")?;
            Ok(daemon)
        });
        match fresh {
            Ok(daemon) => {
                self.daemon = daemon.clone();
                let _ = self.responder_tx.send(daemon);
                true
            }
            Err(e) => {
                tracing::warn!("{e:#}; this node is no longer announced by mDNS");
                false
            }
        }
    }
}

/// Browses for other nodes; see the module docs.
struct Browser {
    /// Interfaces for each new browsing daemon.
    ifaces: Vec<String>,
    cluster: String,
    /// Our id and key ids, as they change: a node advertising another key
    /// (or none, when we have one) could not talk to us; it is not
    /// contacted.
    announced: watch::Receiver<Announced>,
    found: mpsc::Sender<SocketAddr>,
    counters: Arc<Counters>,
    /// When a cache reset was last logged as a warning.
    last_reset_warning: Option<Instant>,
}

/// Why one browsing daemon's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrowseEnd {
    /// The daemon shuts down.
    Cancelled,
    /// mdns-sd refused to browse: discovery is off.
    Failed,
    /// Its cache holds more than the bounds allow.
    CacheFull,
    /// mdns-sd closed the event channel (it does when the receiver lags);
    /// events were lost, so the count of cached instances is unknown.
    Closed,
}

impl Browser {
    /// Browses with `daemon` (`first_events`: what its browse call gave),
    /// then with fresh daemons each time one ends (see the module docs),
    /// until cancelled.
    async fn run(
        mut self,
        mut daemon: ServiceDaemon,
        first_events: mdns_sd::Result<Receiver<ServiceEvent>>,
        cancel: CancellationToken,
    ) {
        let mut events = Some(first_events);
        loop {
            let browsed = events.take().unwrap_or_else(|| daemon.browse(SERVICE_TYPE));
            let end = self.browse(&daemon, browsed, &cancel).await;
            match end {
                BrowseEnd::Cancelled | BrowseEnd::Failed => {
                    stop_daemon(&daemon).await;
                    return;
                }
                BrowseEnd::CacheFull => {
                    note_reset(&self.counters, &mut self.last_reset_warning, "browser");
                }
                BrowseEnd::Closed => tracing::debug!("mDNS browse channel closed; browsing again"),
            }
            // The next browser starts only when this one's thread is gone:
            // mdns-sd reads packets as long as they come, so under a flood
            // it takes commands (the shutdown) only when the flood pauses,
            // and browsers started meanwhile would each hold a cache.
            // (An error means its thread is gone already.)
            if let Ok(stopped) = daemon.shutdown() {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = stopped.recv_async() => {}
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(REBROWSE_PAUSE) => {}
            }
            daemon = match start_daemon(&self.ifaces) {
                Ok(daemon) => daemon,
                Err(e) => {
                    tracing::warn!("{e:#}; mDNS discovery is off (use --join)");
                    return;
                }
            };
        }
    }

    /// One browsing daemon's run; `browsed` is what its browse call gave.
    async fn browse(
        &self,
        daemon: &ServiceDaemon,
        browsed: mdns_sd::Result<Receiver<ServiceEvent>>,
        cancel: &CancellationToken,
    ) -> BrowseEnd {
        let events = match browsed {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!("mDNS browse failed: {e}; discovery is off (use --join)");
                return BrowseEnd::Failed;
            }
        };
        // Instance names cached now, counted from the events (bounded:
        // the browser is replaced past the limit).
        let mut instances: HashSet<String> = HashSet::new();
        let mut check = CacheCheck::new();
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return BrowseEnd::Cancelled,
                () = check.due() => {
                    if check.checked(cached_records(daemon).await) {
                        return BrowseEnd::CacheFull;
                    }
                    continue;
                }
                event = events.recv_async() => event,
            };
            match event {
                Ok(ServiceEvent::ServiceFound(_, fullname)) => {
                    instances.insert(fullname);
                    if instances.len() > MAX_BROWSED_INSTANCES {
                        return BrowseEnd::CacheFull;
                    }
                }
                Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                    instances.remove(&fullname);
                }
                Ok(ServiceEvent::ServiceResolved(service)) => {
                    self.counters.records.fetch_add(1, Ordering::Relaxed);
                    self.resolved(&service);
                }
                Ok(other) => tracing::trace!(?other, "mDNS event"),
                Err(_) => return BrowseEnd::Closed,
            }
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
            self.counters.count_drop(RecordDrop::OtherCluster);
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
            self.counters.count_drop(RecordDrop::OtherKey);
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
                self.counters.count_drop(RecordDrop::LinkLocal);
                continue;
            }
            let addr = SocketAddr::new(ip, service.get_port());
            tracing::debug!(peer = name, peer_id, %addr, own, "mDNS: discovered");
            if self.found.try_send(addr).is_err() {
                self.counters.count_drop(RecordDrop::QueueFull);
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

/// When a daemon's cache size is checked next: every
/// [`CACHE_CHECK_BUSY_INTERVAL`] while it holds many records, else every
/// [`CACHE_CHECK_IDLE_INTERVAL`].
#[derive(Debug)]
struct CacheCheck {
    next: tokio::time::Instant,
}

impl CacheCheck {
    fn new() -> CacheCheck {
        CacheCheck {
            next: tokio::time::Instant::now() + CACHE_CHECK_BUSY_INTERVAL,
        }
    }

    /// Completes when the next check is due.
    async fn due(&self) {
        tokio::time::sleep_until(self.next).await;
    }

    /// Takes the `records` a check found and sets the next one; whether
    /// they are more than [`MAX_CACHED_RECORDS`].
    fn checked(&mut self, records: i64) -> bool {
        let interval = if records > MAX_CACHED_RECORDS / 4 {
            CACHE_CHECK_BUSY_INTERVAL
        } else {
            CACHE_CHECK_IDLE_INTERVAL
        };
        self.next = tokio::time::Instant::now() + interval;
        records > MAX_CACHED_RECORDS
    }
}

/// DNS records of every kind in `daemon`'s cache (mdns-sd's metrics); 0 if
/// it does not answer within [`METRICS_WAIT`] (the count of instances from
/// the events still bounds the cache then).
async fn cached_records(daemon: &ServiceDaemon) -> i64 {
    let Ok(rx) = daemon.get_metrics() else {
        return 0;
    };
    match tokio::time::timeout(METRICS_WAIT, rx.recv_async()).await {
        Ok(Ok(metrics)) => metrics
            .iter()
            .filter(|(name, _)| name.starts_with("cached-"))
            .map(|(_, count)| *count)
            .sum(),
        _ => 0,
    }
}

/// Counts a cache reset of the `which` daemon, and says so (a warning at
/// most every [`RESET_WARNING_INTERVAL`]: a flood resets it often).
fn note_reset(counters: &Counters, last_warning: &mut Option<Instant>, which: &str) {
    let resets = counters.cache_resets.fetch_add(1, Ordering::Relaxed) + 1;
    let now = Instant::now();
    if last_warning.is_some_and(|at| now.duration_since(at) < RESET_WARNING_INTERVAL) {
        tracing::debug!(resets, which, "mDNS: cache reset");
        return;
    }
    *last_warning = Some(now);
    tracing::warn!(
        resets,
        which,
        max_instances = MAX_BROWSED_INSTANCES,
        max_records = MAX_CACHED_RECORDS,
        "mDNS: more {SERVICE_TYPE} records than any real cluster has (forged ones?); \
         dropped them all and started mDNS again (status: discovery.cache_resets)"
    );
}
