//! `rossipd`: parses flags and environment, sets up logging, and runs the
//! daemon until SIGINT/SIGTERM.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rossipd::config::{self, Config};

/// rossip daemon: finds peers on the LAN by mDNS, tracks who is alive, and
/// gossips messages to every node. Talk to it with `rossipctl`.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Node name shown to peers [default: the host name]
    #[arg(long, env = "ROSSIP_NAME")]
    name: Option<String>,

    /// UDP port for gossip; 0 picks a free one
    #[arg(long, env = "ROSSIP_PORT", default_value_t = config::DEFAULT_PORT)]
    port: u16,

    /// Address to bind the gossip socket to
    #[arg(long, env = "ROSSIP_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,

    /// Address other nodes should use to reach this one [default: first address of a LAN interface]
    #[arg(long, env = "ROSSIP_ADVERTISE")]
    advertise: Option<IpAddr>,

    /// JSON-RPC socket path [env: ROSSIP_SOCKET] [default: $XDG_RUNTIME_DIR/rossip/rossipd.sock, or
    /// /tmp/rossip-UID/rossipd.sock]
    #[arg(long)]
    socket: Option<PathBuf>,

    /// State directory (node id, sequence numbers) [env: ROSSIP_STATE_DIR] [default: $XDG_STATE_HOME/rossip or
    /// ~/.local/state/rossip]
    #[arg(long)]
    state_dir: Option<PathBuf>,

    /// Contact this node at start and whenever it is not a member (HOST:PORT or HOST; repeatable)
    #[arg(
        long = "join",
        value_name = "HOST:PORT",
        env = "ROSSIP_JOIN",
        value_delimiter = ','
    )]
    join: Vec<String>,

    /// Cluster label: nodes with different labels never talk to each other
    #[arg(long, env = "ROSSIP_CLUSTER", default_value = config::DEFAULT_CLUSTER)]
    cluster: String,

    /// Do not use mDNS (find peers with --join only)
    #[arg(long, env = "ROSSIP_NO_MDNS")]
    no_mdns: bool,

    /// Network interface to use for mDNS and the advertised address (repeatable) [default: every LAN interface]
    #[arg(
        long = "iface",
        value_name = "NAME",
        env = "ROSSIP_IFACE",
        value_delimiter = ','
    )]
    ifaces: Vec<String>,

    /// Messages kept in history (in memory and in the state directory's history.db)
    #[arg(long, env = "ROSSIP_HISTORY", default_value_t = config::DEFAULT_HISTORY)]
    history: usize,

    /// Oldest messages kept in history, e.g. 12h, 7d, 4w; `none` keeps them regardless of age
    #[arg(
        long,
        value_name = "DURATION|none",
        env = "ROSSIP_HISTORY_MAX_AGE",
        default_value_t = MaxAge(Some(rossip_proto::node::DEFAULT_HISTORY_MAX_AGE)),
        value_parser = parse_max_age
    )]
    history_max_age: MaxAge,

    /// Payload bytes (text, channel and sender name) kept in history
    #[arg(
        long,
        value_name = "BYTES",
        env = "ROSSIP_HISTORY_MAX_BYTES",
        default_value_t = rossip_proto::node::DEFAULT_HISTORY_MAX_BYTES,
        value_parser = parse_max_bytes
    )]
    history_max_bytes: usize,

    /// Largest message text `send` accepts, in bytes (at most 983040); larger messages
    /// travel as ~1.3 KB fragments
    #[arg(
        long,
        value_name = "BYTES",
        env = "ROSSIP_MAX_MESSAGE_BYTES",
        default_value_t = rossip_proto::node::DEFAULT_MAX_TEXT_BYTES,
        value_parser = parse_max_bytes
    )]
    max_message_bytes: usize,

    /// Cluster key file (`rossipctl keygen`; mode 600): every datagram is sealed with it
    /// and nothing unsealed is accepted; STATE_DIR/keyring, saved by `rossipctl keys`,
    /// supersedes it [default: $CREDENTIALS_DIRECTORY/rossip.key if it exists, else no
    /// encryption]
    #[arg(long, value_name = "PATH", env = "ROSSIP_KEY_FILE")]
    key_file: Option<PathBuf>,

    /// How long failed and left members stay listed (`peers --all`) before they are
    /// forgotten, e.g. 30m, 1h, 2d
    #[arg(
        long,
        value_name = "DURATION",
        env = "ROSSIP_REAP_AFTER",
        default_value_t = humantime::Duration::from(rossip_proto::node::REMOVE_DOWN_AFTER),
        value_parser = parse_reap_after
    )]
    reap_after: humantime::Duration,

    /// Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG overrides it
    #[arg(long, env = "ROSSIP_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

impl Args {
    fn into_config(self) -> Config {
        // Read by hand rather than by clap's `env`: an empty variable means
        // unset here, as it does for rossipctl (clap would call it a usage error).
        let socket = self
            .socket
            .or_else(|| non_empty_env(rossip_proto::paths::SOCKET_ENV))
            .unwrap_or_else(config::default_socket);
        let state_dir = self
            .state_dir
            .or_else(|| non_empty_env("ROSSIP_STATE_DIR"))
            .unwrap_or_else(config::default_state_dir);
        let mut c = Config::new(socket, state_dir);
        if let Some(name) = self.name {
            c.name = name;
        }
        c.port = self.port;
        c.bind = self.bind;
        c.advertise = self.advertise;
        c.join = self.join;
        c.cluster = self.cluster;
        c.mdns = !self.no_mdns;
        c.ifaces = self.ifaces;
        c.history_limit = self.history;
        c.history_max_age = self.history_max_age.0;
        c.history_max_bytes = self.history_max_bytes;
        c.max_message_bytes = self.max_message_bytes;
        c.key_file = self.key_file;
        c.reap_after = self.reap_after.into();
        c
    }
}

/// A human duration (`90s`, `30m`, `1h`) from one second to ten years.
fn parse_reap_after(text: &str) -> Result<humantime::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < std::time::Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    if duration > rossip_proto::node::MAX_REAP_AFTER {
        return Err("must be at most 10 years".to_owned());
    }
    Ok(duration.into())
}

/// `--history-max-age`: a duration, or no bound.
#[derive(Debug, Clone, Copy)]
struct MaxAge(Option<std::time::Duration>);

impl std::fmt::Display for MaxAge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(age) => humantime::format_duration(age).fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// A human duration of at least a second, or `none` (no age bound). Zero is
/// refused rather than read as "none", so that there is one way to say it.
fn parse_max_age(text: &str) -> Result<MaxAge, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(MaxAge(None));
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e} (a duration such as 12h or 7d, or `none`)"))?;
    if duration < std::time::Duration::from_secs(1) {
        return Err("must be at least 1s; `none` removes the age bound".to_owned());
    }
    Ok(MaxAge(Some(duration)))
}

/// A byte count of at least 1.
fn parse_max_bytes(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(bytes) => Ok(bytes),
        Err(e) => Err(format!("{e} (a number of bytes, e.g. 67108864)")),
    }
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_logging(&args.log_level) {
        eprintln!("rossipd: error: {e:#}");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr: journald and terminals both see it.
            eprintln!("rossipd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = args.into_config();
    // One thread: the driver owns all protocol state, so more workers would
    // only add cross-thread wake-ups between it, the connections and the
    // subscription forwarders (measured: lower latency, and 20,000 msg/s
    // from one sender instead of ~17,000 with five daemons on two cores).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        rossipd::run(config, shutdown).await
    })
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{which} received; leaving the cluster");
    })
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).with_context(|| format!("invalid RUST_LOG {spec:?}"))?
        }
        _ => EnvFilter::try_new(default_filter(level))
            .with_context(|| format!("invalid --log-level {level:?}"))?,
    };
    // `try_init` also bridges the `log` records of mdns-sd into tracing.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // journald adds its own timestamps; a terminal user wants them.
        .with_ansi(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// A bare level applies to rossip's own crates; mdns-sd is chatty at debug,
/// so it stays at warn unless asked for by a full filter.
fn default_filter(level: &str) -> String {
    if level.contains('=') || level.contains(',') {
        level.to_owned()
    } else {
        format!("warn,rossipd={level},rossip_proto={level},mdns_sd=warn")
    }
}
