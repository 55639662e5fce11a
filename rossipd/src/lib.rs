//! rossipd: the rossip daemon as a library, so tests can embed it.
//!
//! [`run`] binds the JSON-RPC socket and the gossip UDP socket, starts mDNS
//! discovery and seed contact, and drives the protocol [`rossip_proto::Node`]
//! until the `shutdown` future completes (or a client calls `leave`), then
//! leaves the cluster gracefully and cleans up.

mod api;
pub mod config;
pub mod delivery;
mod discovery;
mod driver;
pub mod hooks;
mod http;
pub mod interfaces;
pub mod keyfile;
mod local_socket;
pub mod locked_file;
mod nicks;
mod notify;
mod nss;
mod peer_cache;
mod pins;
mod rpc;
mod seeds;
mod state;
pub mod store;
mod transport;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rossip_proto::message::MAX_NAME_BYTES;
use rossip_proto::{MessageId, NodeConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
/// How loudly misconfiguration is reported, and how much of it is tracked:
/// exported so that tests and tools derive their bounds from these
/// declarations instead of copies.
pub use driver::problems::{MAX_TRACKED, SEED_SILENCE, SWEEP_INTERVAL, WARN_EVERY};
pub use hooks::Hooks;
/// The web login secret's file name in the state directory (the man page
/// lists it).
pub use http::SECRET_FILE as HTTP_SECRET_FILE;
pub use state::create_dir as create_state_dir;

/// Commands queued for the driver before RPC callers wait.
const COMMAND_QUEUE: usize = 1024;
/// Discovery hints queued for the driver.
const DISCOVERY_QUEUE: usize = 256;
/// How long shutdown waits for tasks (connections, mDNS) to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the daemon until `shutdown` completes or a client calls `leave`;
/// then leaves the cluster (peers see `left`), removes the socket and returns.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, shutdown, Hooks::default()).await
}

/// [`run`], with `hooks` to be told when the daemon is ready and to reload
/// its key file.
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hooks: Hooks,
) -> anyhow::Result<()> {
    validate(&config)?;
    // First of all: one daemon per state directory, so one per node id (the
    // lock creates the directory, refusing one in a place someone else
    // controls), and the directory is opened before the keyring is read
    // from it.
    let _state_lock = state::lock(&config.state_dir, &config.socket)?;
    let mut state = state::StateDir::open(&config.state_dir)?;
    // Before anything is bound: a bad key file is a refusal to start.
    // The keyring saved by the last `keys` change supersedes --key-file.
    let keyring = keyfile::load_for_start(&config.state_dir, config.key_file.as_deref())?;
    let node_key = state.node_key()?;
    let id = node_key.node_id();
    let reserved_seq = state.start_sequence()?;
    // Resume right after the last number the store committed, so restarts
    // leave no gap (a gap every node would ask about forever) — unless a
    // commit failed in the previous run: then a number may have left this
    // node unrecorded, and only the reservation is safe.
    let resume_after_store = !state.sequence_unsafe();
    let (listener, socket_guard) = local_socket::bind(&config.socket, config.socket_mode)?;
    let http_listener = match config.http {
        Some(addr) => Some(http::bind(addr).await?),
        None => None,
    };
    let udp = transport::bind(config.bind, config.port)?;
    let bound = udp
        .local_addr()
        .context("cannot read the gossip socket's address")?;

    let selected = match interfaces::select(&config.ifaces) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot list network interfaces: {e}");
            Vec::new()
        }
    };
    if !config.ifaces.is_empty() && selected.is_empty() {
        bail!(
            "none of the interfaces given with --iface ({}) exists or has an address",
            config.ifaces.join(", ")
        );
    }
    let advertise_ip = config
        .advertise
        .unwrap_or_else(|| interfaces::advertise_addr(config.bind, &selected));
    let advertise = SocketAddr::new(advertise_ip, bound.port());
    if advertise_ip.is_loopback() && config.mdns {
        tracing::warn!(
            "no LAN interface found; advertising {advertise}, which only this machine can reach"
        );
    }

    let web = match &http_listener {
        Some(listener) => {
            let addr = listener
                .local_addr()
                .context("cannot read the HTTP listener's address")?;
            Some(http::WebAccess::open(
                addr,
                config.http_login,
                &config.state_dir,
                advertise_ip,
            )?)
        }
        None => None,
    };

    let clock = views::WallClock::new();
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
    let mut node_config = NodeConfig::new(
        node_key,
        config.name.clone(),
        config.cluster.clone(),
        advertise,
    );
    node_config.generation = state.next_generation(views::unix_ms_now())?;
    node_config.first_seq = reserved_seq;
    node_config.history_limit = config.history_limit;
    node_config.history_max_bytes = config.history_max_bytes;
    node_config.max_text_bytes = config.max_message_bytes;
    node_config.history_max_age = config.history_max_age;
    node_config.reap_after = config.reap_after;
    node_config.protocol.direct_expiry = config.direct_expiry;
    node_config.rng_seed = u64::from_le_bytes(seed);
    if let Some(keyring) = keyring {
        tracing::info!(
            key = %keyring.primary_id(),
            accepted = keyring.ids().len(),
            "gossip is sealed with the cluster key"
        );
        node_config.keyring = Some(keyring);
    }
    let (node, numbered, store) = restore_node(node_config, &config, resume_after_store)?;

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let counters = Arc::new(driver::SharedCounters::default());
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (found_tx, found_rx) = mpsc::channel(DISCOVERY_QUEUE);
    let info = driver::StaticInfo {
        cluster: config.cluster.clone(),
        name: config.name.clone(),
        bind: bound,
        addr: advertise,
        socket: config.socket.display().to_string(),
        mdns: config.mdns,
        http: web.as_ref().map(http::WebAccess::view),
    };
    let keys = node.key_ids().iter().map(ToString::to_string).collect();
    let mut driver = driver::Driver::new(
        node,
        numbered,
        udp,
        state,
        store,
        clock,
        info,
        counters.clone(),
    );
    let handle = driver.handle(commands_tx);

    // Keyring changes (`keys.*`) and a new id (a copy of this node
    // elsewhere keeps the old one) reach discovery's mDNS record through this.
    let (announced_tx, announced_rx) =
        tokio::sync::watch::channel(discovery::Announced { id, keys });
    let discovery = if config.mdns {
        let ad = discovery::Advertisement {
            name: config.name.clone(),
            cluster: config.cluster.clone(),
            port: advertise.port(),
            ifaces: config.ifaces.clone(),
            announced: announced_rx,
        };
        Some(discovery::Discovery::start(
            ad,
            found_tx,
            counters.discovery.clone(),
            cancel.clone(),
            &tasks,
        )?)
    } else {
        drop(found_tx);
        None
    };
    for spec in &config.join {
        tasks.spawn(seeds::contact_forever(
            spec.clone(),
            handle.clone(),
            cancel.clone(),
        ));
    }
    // systemd (`Type=notify`): READY=1 comes from the monitor once the
    // driver answers, which is after every socket and discovery are up.
    let notifier = notify::Notifier::from_env();
    if let Some(notifier) = &notifier {
        notifier.spawn_monitor(&handle, cancel.clone(), &tasks);
    }
    hooks::spawn(hooks, config.key_file.as_deref(), &handle, &cancel, &tasks);
    if let (Some(listener), Some(web)) = (http_listener, &web) {
        let parts = http::GatewayParts {
            driver: handle.clone(),
            counters: counters.clone(),
            node_name: config.name.clone(),
            tasks: tasks.clone(),
            cancel: cancel.clone(),
        };
        let gateway = Arc::new(http::Gateway::new(parts, web));
        tracing::info!(
            login = web.view().login,
            "web chat at http://{}/",
            web.listen()
        );
        tasks.spawn(http::serve(
            listener,
            gateway,
            cancel.clone(),
            tasks.clone(),
        ));
    }
    let ctx = Arc::new(rpc::RpcContext {
        driver: handle,
        counters: counters.clone(),
        web: web.map(Arc::new),
    });
    tasks.spawn(rpc::serve(listener, ctx, cancel.clone(), tasks.clone()));

    tracing::info!(
        id = %id,
        name = %config.name,
        cluster = %config.cluster,
        gossip = %bound,
        advertise = %advertise,
        socket = %config.socket.display(),
        mdns = config.mdns,
        "rossipd is running"
    );

    driver.publish_announced_to(announced_tx);
    let shutdown_notifier = notifier.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(notifier) = shutdown_notifier {
            notifier.stopping();
        }
    };
    let exit = driver.run(commands_rx, found_rx, shutdown).await;
    tracing::info!(?exit, "shutting down");
    // `leave` and an orphaned driver end the run without the signal.
    if let Some(notifier) = &notifier {
        notifier.stopping();
    }

    cancel.cancel();
    if let Some(discovery) = discovery {
        discovery.shutdown().await;
    }
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections did not close within {} s",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    drop(socket_guard);
    Ok(())
}

/// The node an earlier run's store gave back, with the delivery numbers of
/// the messages it holds, and the store.
type Restored = (rossip_proto::Node, Vec<(u64, MessageId)>, store::Store);

/// Opens the history store and creates the node from it: its clock floor
/// (this node's newest stored reading, so a clock set back cannot order new
/// messages before old ones), the messages of the window and every seen set
/// (so nothing delivered before is delivered again).
fn restore_node(
    mut node_config: NodeConfig,
    config: &Config,
    resume_after_store: bool,
) -> anyhow::Result<Restored> {
    let retention = store::Retention {
        limit: config.history_limit,
        max_bytes: config.history_max_bytes,
        max_age: config.history_max_age,
    };
    let path = config.state_dir.join(store::FILE_NAME);
    let store = store::Store::open(&config.state_dir, node_config.id, retention)?;
    let read_error =
        |e: rusqlite::Error| anyhow::anyhow!("cannot read history store {}: {e}", path.display());
    node_config.clock_floor = store.clock_floor().map_err(read_error)?;
    let now = Instant::now();
    let wall_ms = views::unix_ms_now();
    node_config.wall_ms_at_start = wall_ms;
    let messages = store.load_numbered_window(wall_ms).map_err(read_error)?;
    let seen = store.load_seen().map_err(read_error)?;
    // Every number this node sent was recorded first (the driver records
    // its highest before the datagrams leave), so the next one is free.
    let last_seen = seen
        .iter()
        .find(|(origin, _)| *origin == node_config.id)
        .and_then(|(_, ranges)| ranges.last().map(|&(_, last)| last));
    let last_sent = store.own_seq().map_err(read_error)?;
    let last_used = last_seen.max(last_sent);
    if resume_after_store && let Some(last) = last_used {
        node_config.first_seq = last.saturating_add(1);
    }
    let mut node = rossip_proto::Node::new(node_config, now);
    tracing::info!(
        path = %path.display(),
        messages = messages.len(),
        origins = seen.len(),
        "history restored"
    );
    let numbered = messages
        .iter()
        .map(|(number, message)| (*number, message.id))
        .collect();
    node.restore_history(messages.into_iter().map(|(_, message)| message));
    for (origin, ranges) in seen {
        node.restore_seen(origin, &ranges);
    }
    // Direct messages sent and not acknowledged: retried until they are,
    // or expire.
    let mut store = store;
    let pending = store.load_direct_pending().map_err(read_error)?;
    if !pending.is_empty() {
        tracing::info!(count = pending.len(), "direct messages still to deliver");
    }
    node.restore_direct(pending, now);
    Ok((node, numbered, store))
}

fn validate(config: &Config) -> anyhow::Result<()> {
    if config.name.is_empty() || config.name.len() > MAX_NAME_BYTES {
        bail!(
            "node name must be 1 to {MAX_NAME_BYTES} bytes, got {} bytes",
            config.name.len()
        );
    }
    if config.name.chars().any(char::is_control) {
        bail!("node name must not contain control characters");
    }
    config::check_cluster_label(&config.cluster)
        .map_err(|e| anyhow::anyhow!("invalid cluster label {:?}: {e}", config.cluster))?;
    if config.history_limit == 0 {
        bail!("--history must be at least 1");
    }
    if config.history_max_bytes == 0 {
        bail!("--history-max-bytes must be at least 1");
    }
    if config.max_message_bytes == 0 || config.max_message_bytes > config::MAX_MESSAGE_BYTES_LIMIT {
        bail!(
            "--max-message-bytes must be between 1 and {} (a message must fit one request line)",
            config::MAX_MESSAGE_BYTES_LIMIT
        );
    }
    if config.history_max_age.is_some_and(|age| age.is_zero()) {
        bail!("--history-max-age must be at least 1s (`none` removes the age bound)");
    }
    Ok(())
}
