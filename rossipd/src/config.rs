//! Daemon configuration: what `run` needs, with the user-mode defaults that
//! let `rossipd` start with no flags and no config file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rossip_proto::message::{ChannelError, MAX_CHANNEL_BYTES, MAX_NAME_BYTES, validate_channel};
use rossip_proto::paths;

/// UDP port for gossip when `--port` is not given. A fixed default lets nodes
/// on networks without multicast find each other with `--join HOST` alone.
pub const DEFAULT_PORT: u16 = 7465;

/// Cluster label when `--cluster` is not given.
pub const DEFAULT_CLUSTER: &str = "rossip";

/// Why a cluster label is refused. Labels follow the channel-name rule
/// (they are typed on command lines and shown in mDNS records), but the
/// errors must speak of a cluster label: the one a user typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterLabelError {
    /// Empty.
    #[error("a cluster label must not be empty")]
    Empty,
    /// Too long.
    #[error("a cluster label is at most {MAX_CHANNEL_BYTES} bytes, this one is {0}")]
    TooLong(usize),
    /// A character outside the alphabet.
    #[error("a cluster label may contain only letters, digits, '-', '_' and '.', found {0:?}")]
    BadChar(char),
}

/// Checks a cluster label: 1–64 bytes of ASCII letters, digits, `-_.`.
pub fn check_cluster_label(label: &str) -> Result<(), ClusterLabelError> {
    validate_channel(label).map_err(|e| match e {
        ChannelError::Empty => ClusterLabelError::Empty,
        ChannelError::TooLong(n) => ClusterLabelError::TooLong(n),
        ChannelError::BadChar(c) => ClusterLabelError::BadChar(c),
    })
}

/// Messages kept in the in-memory history.
pub const DEFAULT_HISTORY: usize = rossip_proto::node::DEFAULT_HISTORY_LIMIT;

/// The largest `--max-message-bytes`: a text this long still fits one
/// JSON-RPC request line (1 MiB) with room for the JSON around it and some
/// escaping.
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 960 * 1024;

/// Socket mode of a user daemon: only the owner may talk to it.
pub const USER_SOCKET_MODE: u32 = 0o600;

/// Socket mode of the system daemon: its owner and the members of
/// [`SOCKET_GROUP`] may talk to it (0600 if that group does not exist).
pub const SYSTEM_SOCKET_MODE: u32 = 0o660;

/// The group whose members may use the system daemon's socket.
pub const SOCKET_GROUP: &str = "rossip";

/// The socket mode for a daemon running as `uid` on `socket`: the system
/// daemon's ([`SYSTEM_SOCKET_MODE`]) when it runs as root, or on the system
/// service's path (the service may run as its own `rossip` user); else a
/// user daemon's ([`USER_SOCKET_MODE`]).
pub fn socket_mode_for(uid: u32, socket: &Path) -> u32 {
    if is_system_daemon(uid, socket) {
        SYSTEM_SOCKET_MODE
    } else {
        USER_SOCKET_MODE
    }
}

/// Whether a daemon running as `uid` on `socket` is the system daemon: it
/// runs as root, or on the system service's socket path. The system daemon
/// shares its socket with a group and reads `/etc/rossip/rossipd.toml`.
pub fn is_system_daemon(uid: u32, socket: &Path) -> bool {
    uid == 0 || socket == Path::new(paths::SYSTEM_SOCKET_PATH)
}

/// Which of its host's daemons this is, for the defaults that must tell
/// them apart: a host may run the system service and, beside it (or
/// before it was installed), a user's own daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    /// The host's own daemon: the system service, or root's. It is named
    /// after the host and reads `/etc/rossip/rossipd.toml`.
    System,
    /// A user's daemon: named `HOST-USER` (so that it never takes the
    /// host's name, pinned by every peer to the system daemon's key) and
    /// reads the user's config file.
    User,
}

impl DaemonKind {
    /// The kind of a daemon running as `uid` on `socket`: the system daemon
    /// ([`is_system_daemon`]), except that root with `XDG_CONFIG_HOME` set
    /// is a user at a shell (a system service has no such variable), unless
    /// it runs on the system service's socket.
    pub fn of(uid: u32, socket: &Path, xdg_config_home_set: bool) -> DaemonKind {
        let system_socket = socket == Path::new(paths::SYSTEM_SOCKET_PATH);
        if is_system_daemon(uid, socket) && (system_socket || !xdg_config_home_set) {
            DaemonKind::System
        } else {
            DaemonKind::User
        }
    }

    /// The kind of this process's daemon on `socket`.
    pub fn current(socket: &Path) -> DaemonKind {
        let xdg_config_home_set =
            std::env::var_os("XDG_CONFIG_HOME").is_some_and(|v| !v.is_empty());
        DaemonKind::of(current_uid(), socket, xdg_config_home_set)
    }
}

/// Everything [`crate::run`] needs. Built from flags and environment by the
/// binary; tests build it directly with [`Config::new`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Node name shown to peers (not unique; the node id is).
    pub name: String,
    /// Cluster label: nodes with different labels ignore each other.
    pub cluster: String,
    /// Address the gossip socket binds to.
    pub bind: IpAddr,
    /// Gossip UDP port; 0 picks a free one.
    pub port: u16,
    /// Address other nodes should use; `None` picks one from the interfaces.
    pub advertise: Option<IpAddr>,
    /// Path of the JSON-RPC socket.
    pub socket: PathBuf,
    /// Permission bits of the socket file; group bits share it with
    /// [`SOCKET_GROUP`] (see [`socket_mode_for`]).
    pub socket_mode: u32,
    /// Where the node id, sequence reservation and history store live.
    pub state_dir: PathBuf,
    /// Seeds to contact, `HOST:PORT` (or `HOST`, meaning the default port).
    pub join: Vec<String>,
    /// Whether to advertise and browse with mDNS.
    pub mdns: bool,
    /// Interfaces to use for mDNS and the advertised address; empty means
    /// every suitable one (see `interfaces`).
    pub ifaces: Vec<String>,
    /// Messages kept in history (in memory and in the store): the count
    /// bound of the history window.
    pub history_limit: usize,
    /// Payload bytes kept in history (text, channel and origin name of
    /// every message); the newest message is kept whatever its size.
    pub history_max_bytes: usize,
    /// The age bound of the history window; `None`: no age bound.
    pub history_max_age: Option<Duration>,
    /// Largest message text `send` accepts, in bytes.
    pub max_message_bytes: usize,
    /// The cluster key file (`None`: a systemd credential if there is one,
    /// else no encryption).
    pub key_file: Option<PathBuf>,
    /// How long failed and left members stay listed before they are
    /// forgotten.
    pub reap_after: Duration,
    /// How long an unacknowledged direct message is kept and retried.
    pub direct_expiry: Duration,
    /// Where the web chat and HTTP API listen; `None`: not at all (the
    /// gateway is opt-in: it opens the node to browsers).
    pub http: Option<SocketAddr>,
    /// When the gateway asks for a login token.
    pub http_login: HttpLogin,
}

/// When the HTTP gateway asks for a login token. On loopback the kernel
/// says who is on the other end of a connection (as it does for the local
/// socket); elsewhere only a token can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpLogin {
    /// A token off loopback; on loopback the connection's owner is the user.
    #[default]
    Auto,
    /// A token always, also on loopback (a host whose users should not
    /// reach each other's chats through a browser).
    Token,
}

impl HttpLogin {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpLogin::Auto => "auto",
            HttpLogin::Token => "token",
        }
    }

    /// Reads `auto` or `token`.
    pub fn parse(text: &str) -> Result<HttpLogin, String> {
        match text {
            "auto" => Ok(HttpLogin::Auto),
            "token" => Ok(HttpLogin::Token),
            other => Err(format!(
                "invalid value {other:?} (possible values: auto, token)"
            )),
        }
    }
}

impl Config {
    /// Defaults with an explicit socket and state directory; the socket
    /// mode ([`socket_mode_for`]) and the name ([`default_name`]) follow
    /// who runs the daemon.
    pub fn new(socket: PathBuf, state_dir: PathBuf) -> Config {
        Config {
            socket_mode: socket_mode_for(current_uid(), &socket),
            name: default_name(DaemonKind::current(&socket)),
            cluster: DEFAULT_CLUSTER.to_owned(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            advertise: None,
            socket,
            state_dir,
            join: Vec::new(),
            mdns: true,
            ifaces: Vec::new(),
            history_limit: DEFAULT_HISTORY,
            history_max_bytes: rossip_proto::node::DEFAULT_HISTORY_MAX_BYTES,
            history_max_age: Some(rossip_proto::node::DEFAULT_HISTORY_MAX_AGE),
            reap_after: rossip_proto::node::DEFAULT_REAP_AFTER,
            direct_expiry: rossip_proto::node::ProtocolConfig::default().direct_expiry,
            max_message_bytes: rossip_proto::node::DEFAULT_MAX_TEXT_BYTES,
            key_file: None,
            http: None,
            http_login: HttpLogin::Auto,
        }
    }
}

/// The default node name: the host name for the system daemon, and
/// `HOST-USER` for a user's daemon (see [`DaemonKind`]). Names are pinned
/// to the first key seen using them, so two daemons of one host (each with
/// its own key) must not share one: peers would flag the second as an
/// impostor.
pub fn default_name(kind: DaemonKind) -> String {
    let host = host_name();
    match kind {
        DaemonKind::System => host,
        DaemonKind::User => {
            let uid = current_uid();
            let user = match crate::nss::user_name(uid) {
                Ok(Some(name)) => name,
                // A uid without an entry (a container, `setpriv`) is
                // still a distinct user: its number names it.
                Ok(None) | Err(_) => uid.to_string(),
            };
            user_daemon_name(&host, &user)
        }
    }
}

/// The short host name; `rossip` if it cannot be read.
fn host_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    // A host name may carry a domain; peers list short names.
    let short = host.split('.').next().unwrap_or_default().trim();
    if short.is_empty() {
        "rossip".to_owned()
    } else {
        truncate(short, MAX_NAME_BYTES).to_owned()
    }
}

/// `HOST-USER`, within the name length limit. The user part keeps only
/// letters, digits and `_.-` (others become `_`): `rossipctl` quotes names
/// with `@`, `:`, `#`, spaces or quotes (an LDAP `user@domain`, a Windows
/// `DOMAIN\user`), and a default name should print plainly. The host part
/// is shortened first when both do not fit, since the user part tells the
/// daemons of one host apart.
fn user_daemon_name(host: &str, user: &str) -> String {
    let user: String = user
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let user = truncate(&user, MAX_NAME_BYTES / 2);
    let host = truncate(host, MAX_NAME_BYTES - 1 - user.len());
    format!("{host}-{user}")
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The current user's uid, read without unsafe code: `/proc/self` is owned by
/// the process's effective uid.
pub fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// Socket path when `--socket` and `ROSSIP_SOCKET` are not given:
/// `$XDG_RUNTIME_DIR/rossip/rossipd.sock`, else `/tmp/rossip-UID/rossipd.sock`.
/// Never `/run/user/UID` on its own: logind deletes that directory at the
/// user's last logout, so a daemon started from `su`, `sudo -u` or cron
/// would lose its socket (root would land in `/run/user/0`).
pub fn default_socket() -> PathBuf {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    paths::user_socket_path(runtime.as_deref(), current_uid())
}

/// State directory when `--state-dir` is not given.
pub fn default_state_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    paths::user_state_dir(
        state.as_deref(),
        home.as_deref().filter(|h| h != &Path::new("")),
        current_uid(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_system_path_share_the_socket_with_the_group() {
        let system = Path::new(paths::SYSTEM_SOCKET_PATH);
        let mine = Path::new("/run/user/1000/rossip/rossipd.sock");
        assert_eq!(socket_mode_for(0, mine), SYSTEM_SOCKET_MODE);
        assert_eq!(socket_mode_for(0, system), SYSTEM_SOCKET_MODE);
        assert_eq!(socket_mode_for(991, system), SYSTEM_SOCKET_MODE);
        assert_eq!(socket_mode_for(1000, mine), USER_SOCKET_MODE);
    }

    #[test]
    fn cluster_label_errors_speak_of_a_cluster_label() {
        assert_eq!(check_cluster_label("lab-a.2"), Ok(()));
        for bad in ["", "two words", &"x".repeat(65)] {
            let e = check_cluster_label(bad).expect_err(bad).to_string();
            assert!(e.contains("cluster label"), "{e}");
            assert!(!e.contains("channel"), "{e}");
        }
    }

    /// The quick start (a user's daemon) and the system service on one
    /// host must not claim the same default name.
    #[test]
    fn only_the_system_daemon_is_named_after_the_host() {
        let system = Path::new(paths::SYSTEM_SOCKET_PATH);
        let mine = Path::new("/run/user/1000/rossip/rossipd.sock");
        let root_tmp = Path::new("/tmp/rossip-0/rossipd.sock");
        // The service user on the system socket, and root (sudo, a unit
        // that runs as root, an init script).
        assert_eq!(DaemonKind::of(991, system, false), DaemonKind::System);
        assert_eq!(DaemonKind::of(0, root_tmp, false), DaemonKind::System);
        assert_eq!(DaemonKind::of(0, system, true), DaemonKind::System);
        // A user at a shell, and root at a shell with its own config home.
        assert_eq!(DaemonKind::of(1000, mine, false), DaemonKind::User);
        assert_eq!(DaemonKind::of(1000, mine, true), DaemonKind::User);
        assert_eq!(DaemonKind::of(0, root_tmp, true), DaemonKind::User);
    }

    #[test]
    fn a_user_daemons_name_is_host_and_user_within_the_limit() {
        assert_eq!(user_daemon_name("alpha", "ann"), "alpha-ann");
        assert_eq!(
            user_daemon_name("alpha", "ann@corp.example"),
            "alpha-ann_corp.example"
        );
        assert_eq!(user_daemon_name("alpha", "CORP\\ann"), "alpha-CORP_ann");
        assert_eq!(user_daemon_name("alpha", "1000"), "alpha-1000");
        let long_host = "h".repeat(64);
        let name = user_daemon_name(&long_host, "ann");
        assert_eq!(name.len(), MAX_NAME_BYTES);
        assert!(name.ends_with("h-ann"), "{name}");
        let name = user_daemon_name("alpha", &"é".repeat(40));
        assert!(name.len() <= MAX_NAME_BYTES, "{name}");
        assert!(name.starts_with("alpha-é"), "{name}");
        // Nothing rossipctl would quote.
        let name = user_daemon_name("alpha", "a b:c#d\"e'f@g");
        assert!(!name.contains(['@', ':', '#', ' ', '"', '\'']), "{name}");
    }
}
