//! rossipd's command line and its merge with the environment and the
//! config file: flags beat ROSSIP_* variables, which beat the file, which
//! beats the defaults. Run again on SIGHUP (`reload`), with the same flags
//! and environment and the file as it is then.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches, Parser};
use rossipd::config::{self, Config};

use crate::config_file::{self, FileConfig, MaxAge};

/// rossip daemon: finds peers on the LAN by mDNS, tracks who is alive, and
/// gossips messages to every node. Talk to it with `rossipctl`.
///
/// Every flag is also a key of the config file (underscores for dashes);
/// flags beat ROSSIP_* variables, which beat the file, which beats the
/// defaults.
//
// No clap defaults: a value clap does not have came from neither flag nor
// environment, and the file gets its say before the default (the defaults
// are in the help text instead).
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Args {
    /// Config file (TOML) [env: ROSSIP_CONFIG] [default: /etc/rossip/rossipd.toml for the system
    /// daemon (root without XDG_CONFIG_HOME, or on the system socket), else
    /// $XDG_CONFIG_HOME/rossip/rossipd.toml; a missing default file is fine]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Check the configuration (file, environment and flags), print the effective values and exit
    #[arg(long)]
    pub check_config: bool,

    /// Print the rossipd(8) manual page (roff) and exit; the install script uses it
    #[arg(long, hide = true)]
    pub man_page: bool,

    /// Detach from the terminal and run in the background (without systemd); the command
    /// returns once the daemon serves its socket, or fails with the daemon's error. Logs
    /// go to --log-file, else to syslog, else (no syslog socket) to STATE_DIR/rossipd.log
    #[arg(long, env = "ROSSIP_DAEMONIZE")]
    daemonize: bool,

    /// Write the daemon's pid to PATH and hold a lock on it while running (a second
    /// rossipd with the same pid file refuses to start); removed at exit
    #[arg(long, value_name = "PATH", env = "ROSSIP_PID_FILE")]
    pid_file: Option<PathBuf>,

    /// Append log lines to PATH instead of stderr; SIGHUP reopens it (for logrotate)
    // Not clap's `conflicts_with = "syslog"`: clap counts a variable as
    // given, so ROSSIP_SYSLOG=false would make `--log-file` a usage error.
    // `log_destination` decides instead, by source.
    #[arg(long, value_name = "PATH", env = "ROSSIP_LOG_FILE")]
    log_file: Option<PathBuf>,

    /// Log to syslog (facility daemon, the socket /dev/log or $ROSSIP_SYSLOG_SOCKET)
    /// instead of stderr
    #[arg(long, env = "ROSSIP_SYSLOG")]
    syslog: bool,

    /// Node name shown to peers [default: the host name for the system daemon (as for
    /// --config), else HOST-USER, e.g. alpha-ann]
    #[arg(long, env = "ROSSIP_NAME")]
    name: Option<String>,

    /// UDP port for gossip; 0 picks a free one [default: 7465]
    #[arg(long, env = "ROSSIP_PORT")]
    port: Option<u16>,

    /// Address to bind the gossip socket to [default: 0.0.0.0]
    #[arg(long, env = "ROSSIP_BIND")]
    bind: Option<IpAddr>,

    /// Address other nodes should use to reach this one [default: first address of a LAN interface]
    #[arg(long, env = "ROSSIP_ADVERTISE")]
    advertise: Option<IpAddr>,

    /// JSON-RPC socket path [env: ROSSIP_SOCKET] [default: $XDG_RUNTIME_DIR/rossip/rossipd.sock, or
    /// /tmp/rossip-UID/rossipd.sock when XDG_RUNTIME_DIR is unset]
    #[arg(long)]
    socket: Option<PathBuf>,

    /// State directory (node id, sequence numbers); one daemon per directory (it is locked)
    /// [env: ROSSIP_STATE_DIR] [default: $XDG_STATE_HOME/rossip or ~/.local/state/rossip, or
    /// /tmp/rossip-UID/state without HOME]
    #[arg(long)]
    state_dir: Option<PathBuf>,

    /// Contact this node at start and whenever it is not a member (HOST:PORT or HOST; repeatable)
    #[arg(
        long = "join",
        value_name = "HOST:PORT",
        env = "ROSSIP_JOIN",
        value_delimiter = ','
    )]
    join: Option<Vec<String>>,

    /// Cluster label: nodes with different labels never talk to each other [default: rossip]
    #[arg(long, env = "ROSSIP_CLUSTER", value_parser = config_file::parse_cluster)]
    cluster: Option<String>,

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
    ifaces: Option<Vec<String>>,

    /// Messages kept in history (in memory and in the state directory's history.db) [default: 100000]
    #[arg(long, env = "ROSSIP_HISTORY", value_parser = config_file::parse_history)]
    history: Option<usize>,

    /// Oldest messages kept in history, e.g. 12h, 7d, 4w; `none` keeps them regardless of age
    /// [default: 7days]
    #[arg(
        long,
        value_name = "DURATION|none",
        env = "ROSSIP_HISTORY_MAX_AGE",
        value_parser = config_file::parse_max_age
    )]
    history_max_age: Option<MaxAge>,

    /// Payload bytes (text, channel and sender name) kept in history [default: 67108864]
    #[arg(
        long,
        value_name = "BYTES",
        env = "ROSSIP_HISTORY_MAX_BYTES",
        value_parser = config_file::parse_max_bytes
    )]
    history_max_bytes: Option<usize>,

    /// Largest message text `send` accepts, in bytes (at most 983040); larger messages
    /// travel as ~1.3 KB fragments [default: 65536]
    #[arg(
        long,
        value_name = "BYTES",
        env = "ROSSIP_MAX_MESSAGE_BYTES",
        value_parser = config_file::parse_message_bytes
    )]
    max_message_bytes: Option<usize>,

    /// Cluster key file (`rossipctl keygen -o FILE`; mode 600): every datagram is sealed with it
    /// and nothing unsealed is accepted; STATE_DIR/keyring, saved by `rossipctl keys`,
    /// supersedes it [default: $CREDENTIALS_DIRECTORY/rossip.key if it exists, else no
    /// encryption]
    #[arg(long, value_name = "PATH", env = "ROSSIP_KEY_FILE")]
    key_file: Option<PathBuf>,

    /// How long failed and left members stay listed (`peers --all`) before they are
    /// forgotten, e.g. 30m, 1h, 2d [default: 1h]
    #[arg(
        long,
        value_name = "DURATION",
        env = "ROSSIP_REAP_AFTER",
        value_parser = config_file::parse_reap_after
    )]
    reap_after: Option<humantime::Duration>,

    /// Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG overrides it
    /// [default: info]
    #[arg(long, env = "ROSSIP_LOG_LEVEL", value_parser = config_file::parse_log_level)]
    log_level: Option<String>,
}

/// The merged configuration: what the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What the daemon itself runs with.
    pub config: Config,
    /// Where log lines go, and which.
    pub log: LogSettings,
    /// Whether to detach (`--daemonize`).
    pub daemonize: bool,
    /// The pid file, if any.
    pub pid_file: Option<PathBuf>,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
}

/// What [`Settings::settle`] changed, for the daemon to say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// `daemonize` was turned off: a service manager waits for this process.
    pub daemonize_ignored: bool,
    /// A detached daemon without a log file found no syslog: it logs to
    /// this file in the state directory instead.
    pub log_fallback: Option<PathBuf>,
}

/// Logging settings (`logging` sets them up, `reload` changes the level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `--log-level`: a level or a tracing filter.
    pub level: String,
    /// `--log-file`.
    pub file: Option<PathBuf>,
    /// `--syslog`.
    pub syslog: bool,
}

/// Where a value came from. A flag beats the environment, which beats the
/// file, which beats the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    #[default]
    Default,
    File,
    Env,
    Flag,
}

/// Where clap found the values the file may still override or compete
/// with: the booleans (a bool has no "absent" of its own, and an absent one
/// lets the file decide) and the log destination.
#[derive(Debug, Clone, Copy)]
pub struct Given {
    no_mdns: Source,
    daemonize: Source,
    syslog: Source,
    log_file: Source,
}

/// Parses the command line (exiting on a usage error, as clap does). A bad
/// value from a ROSSIP_* variable is reported as the variable's, not as
/// its flag's: clap names the flag either way.
pub fn parse_args() -> (Args, Given) {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = match Args::command().try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(e) => match variable_at_fault(&e, &argv) {
            Some(message) => {
                eprintln!("rossipd: error: {message}");
                std::process::exit(2);
            }
            None => e.exit(),
        },
    };
    let given = Given {
        no_mdns: source(&matches, "no_mdns"),
        daemonize: source(&matches, "daemonize"),
        syslog: source(&matches, "syslog"),
        log_file: source(&matches, "log_file"),
    };
    match Args::from_arg_matches(&matches) {
        Ok(args) => (args, given),
        Err(e) => e.exit(),
    }
}

/// When clap refused a value that came from a variable, what to say
/// instead of its error: `environment variable ROSSIP_PORT: invalid value
/// "x": …`. The value
/// came from the variable when the command line alone (no variables) does
/// not fail on the same argument.
fn variable_at_fault(e: &clap::Error, argv: &[std::ffi::OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(failing)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let mut command = Args::command();
    // Displaying an argument (as clap's error does) needs the built command.
    command.build();
    let arg = command
        .get_arguments()
        .find(|a| a.to_string() == *failing)?;
    let variable = arg.get_env()?.to_string_lossy().into_owned();
    let without_variables = Args::command().mut_args(|a| a.env(None));
    if let Err(flag_error) = without_variables.try_get_matches_from(argv)
        && flag_error.get(ContextKind::InvalidArg) == e.get(ContextKind::InvalidArg)
    {
        return None; // The flag's own value is at fault: clap's message fits.
    }
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => std::env::var_os(&variable)
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let reason = match (std::error::Error::source(e), e.get(ContextKind::ValidValue)) {
        (Some(source), _) => format!(": {source}"),
        (None, Some(ContextValue::Strings(valid))) => {
            format!(" (possible values: {})", valid.join(", "))
        }
        _ => String::new(),
    };
    Some(format!(
        "environment variable {variable}: invalid value {value:?}{reason}"
    ))
}

fn source(matches: &ArgMatches, id: &str) -> Source {
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => Source::Env,
        _ => Source::Default,
    }
}

/// The log destination from its two competing settings: `syslog = true`
/// and a log file from the same source exclude each other; from different
/// sources the higher one wins.
fn log_destination(
    log_file: Option<(PathBuf, Source)>,
    syslog: (bool, Source),
    file: Option<&Path>,
) -> Result<(Option<PathBuf>, bool), String> {
    let Some((path, file_source)) = log_file else {
        return Ok((None, syslog.0));
    };
    if !syslog.0 {
        return Ok((Some(path), false));
    }
    match syslog.1.cmp(&file_source) {
        std::cmp::Ordering::Greater => Ok((None, true)),
        std::cmp::Ordering::Less => Ok((Some(path), false)),
        std::cmp::Ordering::Equal => Err(match syslog.1 {
            Source::Flag => "--log-file and --syslog exclude each other".to_owned(),
            Source::Env => "ROSSIP_LOG_FILE and ROSSIP_SYSLOG exclude each other".to_owned(),
            Source::File | Source::Default => format!(
                "config file {}: `log_file` and `syslog = true` exclude each other",
                file.map_or("?".into(), |p| p.display().to_string())
            ),
        }),
    }
}

impl Args {
    /// Flags and environment (clap's values), then the file, then the
    /// defaults.
    pub fn into_settings(self, given: Given) -> Result<Settings, String> {
        // Read by hand rather than by clap's `env`: an empty variable means
        // unset here, as it does for rossipctl (clap would call it a usage error).
        let socket_given = self
            .socket
            .clone()
            .or_else(|| non_empty_env(rossip_proto::paths::SOCKET_ENV));
        let state_dir_given = self
            .state_dir
            .clone()
            .or_else(|| non_empty_env("ROSSIP_STATE_DIR"));
        let (file, path) = self.read_file(socket_given.as_deref())?;

        let socket = socket_given
            .or(file.socket)
            .unwrap_or_else(config::default_socket);
        let state_dir = state_dir_given
            .or(file.state_dir)
            .unwrap_or_else(config::default_state_dir);
        let mut c = Config::new(socket, state_dir);
        if let Some(name) = self.name.or(file.name) {
            c.name = name;
        }
        c.port = self.port.or(file.port).unwrap_or(config::DEFAULT_PORT);
        if let Some(bind) = self.bind.or(file.bind) {
            c.bind = bind;
        }
        c.advertise = self.advertise.or(file.advertise);
        c.join = self.join.or(file.join).unwrap_or_default();
        if let Some(cluster) = self.cluster.or(file.cluster) {
            c.cluster = cluster;
        }
        let pick = |given: Source, flag: bool, file: Option<bool>| {
            if given > Source::Default {
                flag
            } else {
                file.unwrap_or(false)
            }
        };
        let no_mdns = pick(given.no_mdns, self.no_mdns, file.no_mdns);
        c.mdns = !no_mdns;
        c.ifaces = self.ifaces.or(file.iface).unwrap_or_default();
        if let Some(history) = self.history.or(file.history) {
            c.history_limit = history;
        }
        if let Some(age) = self.history_max_age.or(file.history_max_age) {
            c.history_max_age = age.0;
        }
        if let Some(bytes) = self.history_max_bytes.or(file.history_max_bytes) {
            c.history_max_bytes = bytes;
        }
        if let Some(bytes) = self.max_message_bytes.or(file.max_message_bytes) {
            c.max_message_bytes = bytes;
        }
        c.key_file = self.key_file.or(file.key_file);
        if let Some(reap) = self.reap_after.or(file.reap_after) {
            c.reap_after = reap.into();
        }
        let level = self
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".to_owned());
        let log_file = match (self.log_file, file.log_file) {
            (Some(path), _) => Some((path, given.log_file)),
            (None, Some(path)) => Some((path, Source::File)),
            (None, None) => None,
        };
        let syslog = match (given.syslog, file.syslog) {
            (Source::Default, Some(on)) => (on, Source::File),
            (source, _) => (self.syslog, source),
        };
        let (log_file, syslog) = log_destination(log_file, syslog, path.as_deref())?;
        Ok(Settings {
            config: c,
            log: LogSettings {
                level,
                file: log_file,
                syslog,
            },
            daemonize: pick(given.daemonize, self.daemonize, file.daemonize),
            pid_file: self.pid_file.or(file.pid_file),
            file: path,
        })
    }

    /// The config file named by `--config`/ROSSIP_CONFIG (which must
    /// exist), else the default one for this kind of daemon (which may not).
    fn read_file(&self, socket: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>), String> {
        let named = self
            .config
            .clone()
            .or_else(|| non_empty_env("ROSSIP_CONFIG"));
        let (path, required) = match named {
            Some(path) => (path, true),
            None => {
                let socket = socket.map_or_else(config::default_socket, Path::to_path_buf);
                let system = config::DaemonKind::current(&socket) == config::DaemonKind::System;
                match config_file::default_path(system) {
                    Some(path) => (path, false),
                    None => return Ok((FileConfig::default(), None)),
                }
            }
        };
        Ok(match config_file::load(&path, required)? {
            Some(file) => (file, Some(path)),
            None => (FileConfig::default(), None),
        })
    }
}

impl Settings {
    /// What `--check-config` can check without binding anything: what the
    /// daemon checks at start, and the log filter.
    pub fn check(&self) -> Result<(), String> {
        let c = &self.config;
        config::check_cluster_label(&c.cluster)
            .map_err(|e| format!("invalid cluster label {:?}: {e}", c.cluster))?;
        config_file::check_message_bytes(c.max_message_bytes)
            .map_err(|e| format!("max_message_bytes {e}"))?;
        crate::logging::filter(&self.log.level)
            .map_err(|e| format!("invalid log_level {:?}: {e}", self.log.level))?;
        Ok(())
    }

    /// One line with every effective value, for `--check-config`.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let show = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("none".to_owned(), |p| p.display().to_string())
        };
        format!(
            "config ok: file={} name={} port={} bind={} advertise={} socket={} state_dir={} \
             join=[{}] cluster={} no_mdns={} iface=[{}] history={} history_max_age={} \
             history_max_bytes={} max_message_bytes={} key_file={} reap_after={} log_level={} \
             log_file={} syslog={} daemonize={} pid_file={}",
            show(&self.file),
            c.name,
            c.port,
            c.bind,
            c.advertise.map_or("auto".to_owned(), |a| a.to_string()),
            c.socket.display(),
            c.state_dir.display(),
            c.join.join(","),
            c.cluster,
            !c.mdns,
            c.ifaces.join(","),
            c.history_limit,
            MaxAge(c.history_max_age),
            c.history_max_bytes,
            c.max_message_bytes,
            show(&c.key_file),
            humantime::format_duration(c.reap_after),
            self.log.level,
            show(&self.log.file),
            self.log.syslog,
            self.daemonize,
            show(&self.pid_file),
        )
    }
}

impl Args {
    /// Makes `--config` (or ROSSIP_CONFIG) absolute against `cwd`, so that
    /// a reload after `--daemonize` moved to "/" reads the same file.
    pub fn pin_config_path(&mut self, cwd: &Path) {
        if let Some(path) = self
            .config
            .clone()
            .or_else(|| non_empty_env("ROSSIP_CONFIG"))
        {
            self.config = Some(cwd.join(path));
        }
    }
}

impl Settings {
    /// What a running daemon makes of these settings (at start and at every
    /// reload, so that a reload compares like with like): under a service
    /// manager that waits for READY=1 from this process (NOTIFY_SOCKET),
    /// forking would end its tracking, so `daemonize` is off; a detached
    /// daemon without a log file logs to syslog, or, when
    /// `syslog_reachable` says there is none, to
    /// [`FALLBACK_LOG_FILE`](crate::logging::FALLBACK_LOG_FILE) in the state
    /// directory. A forking unit (`Type=forking`, no NOTIFY_SOCKET) may
    /// still daemonize.
    pub fn settle(&mut self, syslog_reachable: impl FnOnce() -> bool) -> Settled {
        let daemonize_ignored = self.daemonize && std::env::var_os("NOTIFY_SOCKET").is_some();
        if daemonize_ignored {
            self.daemonize = false;
        }
        let mut log_fallback = None;
        // An explicit `syslog` stays: whoever asked for it hears that it
        // is missing.
        if self.daemonize && self.log.file.is_none() && !self.log.syslog {
            if syslog_reachable() {
                self.log.syslog = true;
            } else {
                let path = self
                    .config
                    .state_dir
                    .join(crate::logging::FALLBACK_LOG_FILE);
                self.log.file = Some(path.clone());
                log_fallback = Some(path);
            }
        }
        Settled {
            daemonize_ignored,
            log_fallback,
        }
    }

    /// Makes every path absolute against `cwd` (the directory rossipd was
    /// started in): `--daemonize` moves to "/", and a reload must compare
    /// like with like.
    pub fn pin_paths(&mut self, cwd: &Path) {
        let c = &mut self.config;
        for path in [&mut c.socket, &mut c.state_dir] {
            *path = cwd.join(&*path);
        }
        for path in [&mut c.key_file, &mut self.log.file, &mut self.pid_file]
            .into_iter()
            .flatten()
        {
            *path = cwd.join(&*path);
        }
    }
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are written into the help text (clap has none, so that
    /// the config file comes before them): they must say what the code does.
    #[test]
    fn the_help_states_the_real_defaults() {
        // Wrapped to the terminal: compare with single spaces.
        let help = Args::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let defaults = Config::new(PathBuf::from("/s"), PathBuf::from("/d"));
        for want in [
            format!("[default: {}]", defaults.port),
            format!("[default: {}]", defaults.bind),
            format!("[default: {}]", defaults.cluster),
            format!("[default: {}]", defaults.history_limit),
            format!("[default: {}]", MaxAge(defaults.history_max_age)),
            format!("[default: {}]", defaults.history_max_bytes),
            format!("[default: {}]", defaults.max_message_bytes),
            format!(
                "[default: {}]",
                humantime::format_duration(defaults.reap_after)
            ),
        ] {
            assert!(help.contains(&want), "help lacks {want}:\n{help}");
        }
    }
}
