//! rossipd's settings, each declared once in [`SETTINGS`]: its flag, its
//! `ROSSIP_*` variable, its config-file key, the parser that checks it from
//! all three, its `--help` text and default, its `--check-config` field and
//! what SIGHUP does with it all derive from that one declaration
//! ([`setting`] says how). Flags beat variables, which beat the file, which
//! beats the defaults; run again on SIGHUP (`reload`), with the same flags
//! and environment and the file as it is then.
//!
//! To add a setting: declare it here (and list it in [`SETTINGS`]), give
//! [`Config`] (or [`Settings`]) its field and default, and document it in
//! README.md and systemd/rossipd.toml.example (tests check both list it).

mod setting;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use rossipd::config::{self, Config, HttpLogin};
use serde::Deserialize as _;

use crate::config_file::{self, FileValues, MaxAge};
pub use setting::{AnySetting, Live, OnReload};
use setting::{Env, Flag, HelpDefault, Setting, file_count, file_text};

/// Every setting, in the order of `--help`, `--check-config` and the
/// example config file. A table of plain declarations rather than a macro
/// that generates structs: see [`setting`].
pub static SETTINGS: &[&dyn AnySetting] = &[
    &NAME,
    &PORT,
    &BIND,
    &ADVERTISE,
    &SOCKET,
    &STATE_DIR,
    &JOIN,
    &CLUSTER,
    &NO_MDNS,
    &IFACE,
    &HISTORY,
    &HISTORY_MAX_AGE,
    &HISTORY_MAX_BYTES,
    &MAX_MESSAGE_BYTES,
    &KEY_FILE,
    &REAP_AFTER,
    &DIRECT_EXPIRY,
    &HTTP,
    &HTTP_LOGIN,
    &LOG_LEVEL,
    &LOG_FILE,
    &SYSLOG,
    &DAEMONIZE,
    &PID_FILE,
];

static NAME: Setting<String> = Setting {
    key: "name",
    value_name: None,
    help: "Node name shown to peers",
    default: HelpDefault::Described(
        "the host name for the system daemon (as for --config), else HOST-USER, e.g. alpha-ann",
    ),
    env: Env::Clap,
    flag: Flag::Value(|text| Ok(text.to_owned())),
    file: |value| String::deserialize(value),
    apply: |s, name| s.config.name = name,
    show: |s| s.config.name.clone(),
    on_reload: OnReload::Restart,
};

pub static PORT: Setting<u16> = Setting {
    key: "port",
    value_name: None,
    help: "UDP port for gossip; 0 picks a free one",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(parse_port),
    file: |value| u16::deserialize(value),
    apply: |s, port| s.config.port = port,
    show: |s| s.config.port.to_string(),
    on_reload: OnReload::Restart,
};

static BIND: Setting<IpAddr> = Setting {
    key: "bind",
    value_name: None,
    help: "Address to bind the gossip socket to",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(parse_ip),
    file: |value| IpAddr::deserialize(value),
    apply: |s, bind| s.config.bind = bind,
    show: |s| s.config.bind.to_string(),
    on_reload: OnReload::Restart,
};

static ADVERTISE: Setting<IpAddr> = Setting {
    key: "advertise",
    value_name: None,
    help: "Address other nodes should use to reach this one",
    default: HelpDefault::Described("first address of a LAN interface"),
    env: Env::Clap,
    flag: Flag::Value(parse_ip),
    file: |value| IpAddr::deserialize(value),
    apply: |s, advertise| s.config.advertise = Some(advertise),
    show: |s| {
        s.config
            .advertise
            .map_or("auto".to_owned(), |a| a.to_string())
    },
    on_reload: OnReload::Restart,
};

/// Also read before the others: it decides which config file is the
/// default one, and the defaults that follow who runs the daemon.
pub static SOCKET: Setting<PathBuf> = Setting {
    key: "socket",
    value_name: None,
    help: "JSON-RPC socket path",
    default: HelpDefault::Described(
        "$XDG_RUNTIME_DIR/rossip/rossipd.sock, or /tmp/rossip-UID/rossipd.sock when \
         XDG_RUNTIME_DIR is unset",
    ),
    env: Env::EmptyIsUnset,
    flag: Flag::Path(|path| path),
    file: |value| PathBuf::deserialize(value),
    apply: |s, socket| {
        s.config.socket_mode = config::socket_mode_for(config::current_uid(), &socket);
        s.config.socket = socket;
    },
    show: |s| s.config.socket.display().to_string(),
    on_reload: OnReload::Restart,
};

static STATE_DIR: Setting<PathBuf> = Setting {
    key: "state_dir",
    value_name: None,
    help: "State directory (node id, sequence numbers); one daemon per directory (it is locked)",
    default: HelpDefault::Described(
        "$XDG_STATE_HOME/rossip or ~/.local/state/rossip, or /tmp/rossip-UID/state without HOME",
    ),
    env: Env::EmptyIsUnset,
    flag: Flag::Path(|path| path),
    file: |value| PathBuf::deserialize(value),
    apply: |s, dir| s.config.state_dir = dir,
    show: |s| s.config.state_dir.display().to_string(),
    on_reload: OnReload::Restart,
};

static JOIN: Setting<Vec<String>> = Setting {
    key: "join",
    value_name: Some("HOST:PORT"),
    help: "Contact this node at start and whenever it is not a member (HOST:PORT or HOST; \
           repeatable)",
    default: HelpDefault::Unstated,
    env: Env::Clap,
    flag: Flag::List(|seeds| seeds),
    file: |value| Vec::<String>::deserialize(value),
    apply: |s, seeds| s.config.join = seeds,
    show: |s| format!("[{}]", s.config.join.join(",")),
    on_reload: OnReload::Restart,
};

static CLUSTER: Setting<String> = Setting {
    key: "cluster",
    value_name: None,
    help: "Cluster label: nodes with different labels never talk to each other",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_cluster),
    file: |value| file_text(value, config_file::parse_cluster),
    apply: |s, cluster| s.config.cluster = cluster,
    show: |s| s.config.cluster.clone(),
    on_reload: OnReload::Restart,
};

static NO_MDNS: Setting<bool> = Setting {
    key: "no_mdns",
    value_name: None,
    help: "Do not use mDNS (find peers with --join only)",
    default: HelpDefault::Unstated,
    env: Env::Clap,
    flag: Flag::Switch(|on| on),
    file: |value| bool::deserialize(value),
    apply: |s, no_mdns| s.config.mdns = !no_mdns,
    show: |s| (!s.config.mdns).to_string(),
    on_reload: OnReload::Restart,
};

static IFACE: Setting<Vec<String>> = Setting {
    key: "iface",
    value_name: Some("NAME"),
    help: "Network interface to use for mDNS and the advertised address (repeatable)",
    default: HelpDefault::Described("every LAN interface"),
    env: Env::Clap,
    flag: Flag::List(|ifaces| ifaces),
    file: |value| Vec::<String>::deserialize(value),
    apply: |s, ifaces| s.config.ifaces = ifaces,
    show: |s| format!("[{}]", s.config.ifaces.join(",")),
    on_reload: OnReload::Restart,
};

static HISTORY: Setting<usize> = Setting {
    key: "history",
    value_name: None,
    help: "Messages kept in history (in memory and in the state directory's history.db)",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_history),
    file: |value| file_count(value, config_file::parse_history),
    apply: |s, n| s.config.history_limit = n,
    show: |s| s.config.history_limit.to_string(),
    on_reload: OnReload::Restart,
};

static HISTORY_MAX_AGE: Setting<MaxAge> = Setting {
    key: "history_max_age",
    value_name: Some("DURATION|none"),
    help: "Oldest messages kept in history, e.g. 12h, 7d, 4w; `none` keeps them regardless of age",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_max_age),
    file: |value| file_text(value, config_file::parse_max_age),
    apply: |s, age| s.config.history_max_age = age.0,
    show: |s| MaxAge(s.config.history_max_age).to_string(),
    on_reload: OnReload::Restart,
};

static HISTORY_MAX_BYTES: Setting<usize> = Setting {
    key: "history_max_bytes",
    value_name: Some("BYTES"),
    help: "Payload bytes (text, channel and sender name) kept in history",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_max_bytes),
    file: |value| file_count(value, config_file::parse_max_bytes),
    apply: |s, bytes| s.config.history_max_bytes = bytes,
    show: |s| s.config.history_max_bytes.to_string(),
    on_reload: OnReload::Restart,
};

static MAX_MESSAGE_BYTES: Setting<usize> = Setting {
    key: "max_message_bytes",
    value_name: Some("BYTES"),
    help: "Largest message text `send` accepts, in bytes (at most 983040); larger messages travel \
           as ~1.3 KB fragments",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_message_bytes),
    // Also bounded above here: the daemon would refuse a larger one at
    // start, and `--check-config` should say so without starting it.
    file: |value| file_count(value, config_file::parse_message_bytes),
    apply: |s, bytes| s.config.max_message_bytes = bytes,
    show: |s| s.config.max_message_bytes.to_string(),
    on_reload: OnReload::Restart,
};

static KEY_FILE: Setting<PathBuf> = Setting {
    key: "key_file",
    value_name: Some("PATH"),
    help: "Cluster key file (`rossipctl keygen -o FILE`; mode 600): every datagram is sealed with \
           it and nothing unsealed is accepted; STATE_DIR/keyring, saved by `rossipctl keys`, \
           supersedes it",
    default: HelpDefault::Described(
        "$CREDENTIALS_DIRECTORY/rossip.key if it exists, else no encryption",
    ),
    env: Env::Clap,
    flag: Flag::Path(|path| path),
    file: |value| PathBuf::deserialize(value),
    apply: |s, path| s.config.key_file = Some(path),
    show: |s| show_path(s.config.key_file.as_deref()),
    on_reload: OnReload::Apply(Live::KeyFile),
};

static REAP_AFTER: Setting<humantime::Duration> = Setting {
    key: "reap_after",
    value_name: Some("DURATION"),
    help: "How long failed and left members stay listed (`peers --all`) before they are \
           forgotten, e.g. 30m, 1h, 2d",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_reap_after),
    file: |value| file_text(value, config_file::parse_reap_after),
    apply: |s, after| s.config.reap_after = after.into(),
    show: |s| humantime::format_duration(s.config.reap_after).to_string(),
    on_reload: OnReload::Restart,
};

static DIRECT_EXPIRY: Setting<humantime::Duration> = Setting {
    key: "direct_expiry",
    value_name: Some("DURATION"),
    help: "How long a direct message (`send --to`) to a member that is offline is kept and \
           retried before it is given up, e.g. 1h, 24h, 7d",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_reap_after),
    file: |value| file_text(value, config_file::parse_reap_after),
    apply: |s, expiry| s.config.direct_expiry = expiry.into(),
    show: |s| humantime::format_duration(s.config.direct_expiry).to_string(),
    on_reload: OnReload::Restart,
};

static HTTP: Setting<SocketAddr> = Setting {
    key: "http",
    value_name: Some("ADDR"),
    help: "Serve the web chat and the HTTP/WebSocket API at ADDR (IP:PORT, e.g. 127.0.0.1:7466; \
           port 0 picks a free one). On a loopback address no login is needed; on any other a \
           token is (`rossipctl web` prints the link)",
    default: HelpDefault::Described("off"),
    env: Env::Clap,
    flag: Flag::Value(parse_socket_addr),
    file: |value| file_text(value, parse_socket_addr),
    apply: |s, addr| s.config.http = Some(addr),
    show: |s| s.config.http.map_or("off".to_owned(), |a| a.to_string()),
    on_reload: OnReload::Restart,
};

static HTTP_LOGIN: Setting<HttpLogin> = Setting {
    key: "http_login",
    value_name: Some("auto|token"),
    help: "When the web gateway asks for a login token: `auto`, only off loopback; `token`, \
           always (also on 127.0.0.1)",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(parse_http_login),
    file: |value| file_text(value, parse_http_login),
    apply: |s, login| s.config.http_login = login,
    show: |s| s.config.http_login.as_str().to_owned(),
    on_reload: OnReload::Restart,
};

static LOG_LEVEL: Setting<String> = Setting {
    key: "log_level",
    value_name: None,
    help: "Log level (error, warn, info, debug, trace) or a tracing filter; RUST_LOG overrides it",
    default: HelpDefault::Shown,
    env: Env::Clap,
    flag: Flag::Value(config_file::parse_log_level),
    file: |value| file_text(value, config_file::parse_log_level),
    apply: |s, level| s.log.level = level,
    show: |s| s.log.level.clone(),
    on_reload: OnReload::Apply(Live::LogLevel),
};

/// Competes with [`SYSLOG`]: see [`log_destination`].
// Not clap's `conflicts_with = "syslog"`: clap counts a variable as given,
// so ROSSIP_SYSLOG=false would make `--log-file` a usage error.
static LOG_FILE: Setting<PathBuf> = Setting {
    key: "log_file",
    value_name: Some("PATH"),
    help: "Append log lines to PATH instead of stderr; SIGHUP reopens it (for logrotate)",
    default: HelpDefault::Unstated,
    env: Env::Clap,
    flag: Flag::Path(|path| path),
    file: |value| PathBuf::deserialize(value),
    apply: |s, path| s.log.file = Some(path),
    show: |s| show_path(s.log.file.as_deref()),
    on_reload: OnReload::Restart,
};

/// Competes with [`LOG_FILE`]: see [`log_destination`].
static SYSLOG: Setting<bool> = Setting {
    key: "syslog",
    value_name: None,
    help: "Log to syslog (facility daemon, the socket /dev/log or $ROSSIP_SYSLOG_SOCKET) instead \
           of stderr",
    default: HelpDefault::Unstated,
    env: Env::Clap,
    flag: Flag::Switch(|on| on),
    file: |value| bool::deserialize(value),
    apply: |s, on| s.log.syslog = on,
    show: |s| s.log.syslog.to_string(),
    on_reload: OnReload::Restart,
};

static DAEMONIZE: Setting<bool> = Setting {
    key: "daemonize",
    value_name: None,
    help: "Detach from the terminal and run in the background (without systemd); the command \
           returns once the daemon serves its socket, or fails with the daemon's error. Logs go \
           to --log-file, else to syslog, else (no syslog socket) to STATE_DIR/rossipd.log",
    default: HelpDefault::Unstated,
    env: Env::Clap,
    flag: Flag::Switch(|on| on),
    file: |value| bool::deserialize(value),
    apply: |s, on| s.daemonize = on,
    show: |s| s.daemonize.to_string(),
    on_reload: OnReload::Restart,
};

static PID_FILE: Setting<PathBuf> = Setting {
    key: "pid_file",
    value_name: Some("PATH"),
    help: "Write the daemon's pid to PATH and hold a lock on it while running (a second rossipd \
           with the same pid file refuses to start); removed at exit",
    default: HelpDefault::Unstated,
    env: Env::Clap,
    flag: Flag::Path(|path| path),
    file: |value| PathBuf::deserialize(value),
    apply: |s, path| s.pid_file = Some(path),
    show: |s| show_path(s.pid_file.as_deref()),
    on_reload: OnReload::Restart,
};

/// `--port`: what clap's own `u16` parser says, for the flag and the
/// variable (the file's integer is checked by serde).
fn parse_port(text: &str) -> Result<u16, String> {
    let n: i64 = text
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    u16::try_from(n).map_err(|_| format!("{n} is not in 0..=65535"))
}

/// `--bind`, `--advertise`: an IPv4 or IPv6 address.
fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|e: std::net::AddrParseError| e.to_string())
}

/// `--http`: an `IP:PORT` (a host name would make the bound address, and
/// so whether it is loopback, depend on the resolver).
fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e: std::net::AddrParseError| {
        format!("{e} (expected IP:PORT, e.g. 127.0.0.1:7466 or [::1]:7466)")
    })
}

/// `--http-login`.
fn parse_http_login(text: &str) -> Result<HttpLogin, String> {
    HttpLogin::parse(text)
}

/// A path setting as `--check-config` shows it.
fn show_path(path: Option<&Path>) -> String {
    path.map_or("none".to_owned(), |p| p.display().to_string())
}

/// The variable naming the config file, read by hand (an empty one counts
/// as unset).
const CONFIG_ENV: &str = "ROSSIP_CONFIG";

/// The variables read by hand and the flags they stand for: the man page
/// lists them beside clap's.
pub fn variables_read_by_hand() -> Vec<(String, String)> {
    std::iter::once((CONFIG_ENV.to_owned(), "config".to_owned()))
        .chain(SETTINGS.iter().filter_map(|s| s.variable_read_by_hand()))
        .collect()
}

/// What `-h` says (the package's description).
const ABOUT: &str = env!("CARGO_PKG_DESCRIPTION");

/// What `--help` and the man page's DESCRIPTION say.
const LONG_ABOUT: &str = "rossip daemon: finds peers on the LAN by mDNS, tracks who is alive, and \
     gossips messages to every node. Talk to it with `rossipctl`.\n\n\
     Every flag is also a key of the config file (underscores for dashes); flags beat ROSSIP_* \
     variables, which beat the file, which beats the defaults.";

/// rossipd's command line: the settings' flags and variables as clap
/// parsed them (kept, so that a reload merges them again with the file as
/// it is then), and the flags that are no settings.
#[derive(Debug, Clone)]
pub struct Args {
    /// What clap parsed; each setting reads its own flag and variable.
    matches: ArgMatches,
    /// `--config`, made absolute by [`Args::pin_config_path`].
    config: Option<PathBuf>,
    /// `--check-config`.
    pub check_config: bool,
    /// `--man-page`.
    pub man_page: bool,
}

/// By hand rather than derived: the settings' arguments come from
/// [`SETTINGS`].
impl CommandFactory for Args {
    fn command() -> Command {
        // Clap has no defaults of its own (a value clap does not have came
        // from neither flag nor environment, and the file gets its say
        // before the default): the help states them instead.
        let defaults = Settings::defaults(config::default_socket(), config::default_state_dir());
        Command::new(env!("CARGO_PKG_NAME"))
            .version(env!("CARGO_PKG_VERSION"))
            .about(ABOUT)
            .long_about(LONG_ABOUT)
            .arg(
                clap::Arg::new("config")
                    .long("config")
                    .value_name("PATH")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(format!(
                        "Config file (TOML) [env: {CONFIG_ENV}] [default: {} for the system \
                         daemon (root without XDG_CONFIG_HOME, or on the system socket), else \
                         $XDG_CONFIG_HOME/rossip/rossipd.toml; a missing default file is fine]",
                        config_file::SYSTEM_CONFIG_PATH
                    )),
            )
            .arg(
                clap::Arg::new("check_config")
                    .long("check-config")
                    .action(ArgAction::SetTrue)
                    .help(
                        "Check the configuration (file, environment and flags), print the \
                         effective values and exit",
                    ),
            )
            .arg(
                clap::Arg::new("man_page")
                    .long("man-page")
                    .action(ArgAction::SetTrue)
                    .hide(true)
                    .help(
                        "Print the rossipd(8) manual page (roff) and exit; the install script \
                         uses it",
                    ),
            )
            .args(SETTINGS.iter().map(|setting| setting.arg(&defaults)))
    }

    fn command_for_update() -> Command {
        Self::command()
    }
}

impl FromArgMatches for Args {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Args {
            matches: matches.clone(),
            config: matches.get_one::<PathBuf>("config").cloned(),
            check_config: matches.get_flag("check_config"),
            man_page: matches.get_flag("man_page"),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
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
pub enum Source {
    /// Nobody said.
    #[default]
    Default,
    /// The config file.
    File,
    /// A `ROSSIP_*` variable.
    Env,
    /// A flag.
    Flag,
}

/// Parses the command line (exiting on a usage error, as clap does). A bad
/// value from a ROSSIP_* variable is reported as the variable's, not as
/// its flag's: clap names the flag either way.
pub fn parse_args() -> Args {
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
    match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    }
}

impl Args {
    /// Flags and environment, then the file, then the defaults: every
    /// setting of [`SETTINGS`] in turn, then the rule between the two log
    /// destinations.
    pub fn to_settings(&self) -> Result<Settings, String> {
        let socket_given = SOCKET.on_command_line(self)?.map(|(socket, _)| socket);
        let (file, path) = self.read_file(socket_given.as_deref())?;
        // The defaults that follow who runs the daemon (the socket's mode,
        // the node name) follow the socket it will have.
        let socket = socket_given
            .or_else(|| SOCKET.in_file(&file))
            .unwrap_or_else(config::default_socket);
        let mut settings = Settings::defaults(socket, config::default_state_dir());
        for setting in SETTINGS {
            setting.merge(self, &file, &mut settings)?;
        }
        let syslog = SYSLOG
            .given(self, &file)?
            .unwrap_or((false, Source::Default));
        let (log_file, syslog) =
            log_destination(LOG_FILE.given(self, &file)?, syslog, path.as_deref())?;
        settings.log.file = log_file;
        settings.log.syslog = syslog;
        settings.file = path;
        Ok(settings)
    }

    /// The config file named by `--config`/ROSSIP_CONFIG (which must
    /// exist), else the default one for this kind of daemon (which may not).
    fn read_file(&self, socket: Option<&Path>) -> Result<(FileValues, Option<PathBuf>), String> {
        let named = self.config.clone().or_else(|| non_empty_env(CONFIG_ENV));
        let (path, required) = match named {
            Some(path) => (path, true),
            None => {
                let socket = socket.map_or_else(config::default_socket, Path::to_path_buf);
                let system = config::DaemonKind::current(&socket) == config::DaemonKind::System;
                match config_file::default_path(system) {
                    Some(path) => (path, false),
                    None => return Ok((FileValues::default(), None)),
                }
            }
        };
        Ok(match config_file::load(&path, required)? {
            Some(file) => (file, Some(path)),
            None => (FileValues::default(), None),
        })
    }

    /// Makes `--config` (or ROSSIP_CONFIG) absolute against `cwd`, so that
    /// a reload after `--daemonize` moved to "/" reads the same file.
    pub fn pin_config_path(&mut self, cwd: &Path) {
        if let Some(path) = self.config.clone().or_else(|| non_empty_env(CONFIG_ENV)) {
            self.config = Some(cwd.join(path));
        }
    }
}

impl Settings {
    /// What a daemon on `socket` with `state_dir` runs with when nothing
    /// else is said.
    pub fn defaults(socket: PathBuf, state_dir: PathBuf) -> Settings {
        Settings {
            config: Config::new(socket, state_dir),
            log: LogSettings {
                level: crate::logging::DEFAULT_LEVEL.to_owned(),
                file: None,
                syslog: false,
            },
            daemonize: false,
            pid_file: None,
            file: None,
        }
    }

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
        let mut line = format!("config ok: file={}", show_path(self.file.as_deref()));
        for setting in SETTINGS {
            line.push_str(&format!(" {}={}", setting.key(), setting.show(self)));
        }
        line
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
            format!(
                "[default: {}]",
                humantime::format_duration(defaults.direct_expiry)
            ),
        ] {
            assert!(help.contains(&want), "help lacks {want}:\n{help}");
        }
    }

    /// Names derive from the key: no two settings may share one, and clap
    /// checks the command built from them.
    #[test]
    fn every_setting_has_a_key_of_its_own() {
        let mut keys = std::collections::BTreeSet::new();
        for setting in SETTINGS {
            let key = setting.key();
            assert!(
                key.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{key}: a key is lower case with underscores"
            );
            assert!(keys.insert(key), "{key} is declared twice");
        }
        Args::command().debug_assert();
    }

    /// Every path setting is made absolute (a detached daemon moves to
    /// "/", and a reload must compare like with like).
    #[test]
    fn every_path_setting_is_pinned() {
        let mut argv = vec![
            "rossipd".to_owned(),
            "--config".to_owned(),
            "/dev/null".to_owned(),
        ];
        let paths: Vec<_> = SETTINGS.iter().filter(|s| s.takes_path()).collect();
        assert!(paths.len() >= 5, "the path settings: {}", paths.len());
        for setting in &paths {
            argv.push(format!("--{}", setting.flag()));
            argv.push(format!("relative-{}", setting.key()));
        }
        let matches = Args::command()
            .try_get_matches_from(&argv)
            .expect("the command line parses");
        let args = Args::from_arg_matches(&matches).expect("the arguments");
        let mut settings = args.to_settings().expect("the settings merge");
        settings.pin_paths(Path::new("/started/here"));
        for setting in paths {
            assert_eq!(
                setting.show(&settings),
                format!("/started/here/relative-{}", setting.key()),
                "--{} is not made absolute by pin_paths",
                setting.flag()
            );
        }
    }

    /// The README's daemon reference lists every setting's flag.
    #[test]
    fn the_readme_lists_every_setting() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("read README.md");
        for setting in SETTINGS {
            let row = format!("| `--{}", setting.flag());
            assert!(readme.contains(&row), "README.md has no row {row}…");
        }
    }
}
