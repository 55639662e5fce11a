//! A blocking JSON-RPC 2.0 client for rossipd's local socket.
//!
//! One compact JSON value per line each way. Requests carry increasing ids; while waiting
//! for an answer, `event` notifications of earlier subscriptions are queued, not lost, and
//! [`Client::next_event`] hands them out in arrival order.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Stream};
use rossip_proto::rpc::{ErrorObject, EventParams, MAX_LINE_BYTES, Request, Response, method};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `EX_UNAVAILABLE` from sysexits.h: the daemon cannot be reached.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// `EX_NOPERM` from sysexits.h: not allowed to use the socket.
pub const EXIT_NO_PERMISSION: u8 = 77;
/// The daemon answered with a JSON-RPC error (and the catch-all for other failures).
pub const EXIT_FAILURE: u8 = 1;

/// Why a call did not produce a result. Each kind maps to its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the path: no file, a stale socket file, or not a socket.
    #[error(
        "cannot reach rossipd at {}: {error} (is rossipd running? start it with `rossipd`, \
         or pass --socket)",
        path.display()
    )]
    Unreachable {
        /// The socket path tried.
        path: PathBuf,
        /// What `connect` said.
        error: io::Error,
    },
    /// No path was given, and no daemon answers at any of the places a daemon may put its
    /// socket ([`crate::socket_path`]).
    #[error(
        "cannot reach rossipd: no daemon answers at {} (is rossipd running? start it with \
         `rossipd`, or pass --socket)",
        SearchedDisplay(.searched)
    )]
    NotFound {
        /// Every place tried, in order, and what was there.
        searched: Vec<SearchedSocket>,
    },
    /// The socket exists but this user may not connect to it.
    #[error("permission denied on {}: {hint}", path.display())]
    PermissionDenied {
        /// The socket path tried.
        path: PathBuf,
        /// What `connect` said.
        error: io::Error,
        /// What to do about it ([`permission_hint`]).
        hint: String,
    },
    /// The daemon closed the connection or it broke (a restart, a shutdown after `leave`).
    #[error("lost the connection to rossipd at {}: {reason}", path.display())]
    ConnectionLost {
        /// The socket path.
        path: PathBuf,
        /// End of stream, or the I/O error.
        reason: String,
    },
    /// The daemon answered the request with an error object.
    #[error("{}", RpcErrorDisplay(.0))]
    Rpc(ErrorObject),
    /// The daemon sent something that is not the JSON-RPC this client speaks.
    #[error("rossipd at {} sent an answer rossipctl cannot read: {detail}", path.display())]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl ClientError {
    /// The process exit code this error calls for.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::NotFound { .. }
            | ClientError::ConnectionLost { .. } => EXIT_UNAVAILABLE,
            ClientError::PermissionDenied { .. } => EXIT_NO_PERMISSION,
            ClientError::Rpc(_) | ClientError::Protocol { .. } => EXIT_FAILURE,
        }
    }

    /// The JSON-RPC error code, when the daemon answered with one.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            ClientError::Rpc(e) => Some(e.code),
            _ => None,
        }
    }
}

/// One place the daemon was looked for, and why it did not answer there.
#[derive(Debug)]
pub struct SearchedSocket {
    /// The socket path tried.
    pub path: PathBuf,
    /// What `connect` said (or why the place was not used).
    pub error: io::Error,
}

/// `A (no such file); B (a stale socket: nothing listens); …`.
struct SearchedDisplay<'a>(&'a [SearchedSocket]);

impl fmt::Display for SearchedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, place) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            let why = match place.error.kind() {
                io::ErrorKind::NotFound => "no such file".to_owned(),
                io::ErrorKind::ConnectionRefused => {
                    "nothing listens: a stale socket, or not a socket".to_owned()
                }
                _ => place.error.to_string(),
            };
            write!(f, "{} ({why})", place.path.display())?;
        }
        Ok(())
    }
}

/// The group the system service shares its socket with, unless the socket says otherwise.
const SOCKET_GROUP: &str = "rossip";

/// Mode and owners of a file (the socket, or its directory when the socket cannot be seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileAccess {
    mode: u32,
    uid: u32,
    gid: u32,
}

impl FileAccess {
    fn of(path: &Path) -> Option<FileAccess> {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::symlink_metadata(path).ok().map(|m| FileAccess {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    /// Whether the file lets its group in at all.
    fn shared_with_group(self) -> bool {
        self.mode & 0o070 != 0
    }
}

/// What a user who may not use `socket` can find out about it: the socket's own mode and
/// owners, or if its directory is closed to them (`/run/rossip` is 0750, group `rossip`)
/// the directory's, when that directory is shared with a group.
fn visible_access(socket: &Path) -> Option<FileAccess> {
    FileAccess::of(socket).or_else(|| {
        socket
            .parent()
            .and_then(FileAccess::of)
            .filter(|dir| dir.shared_with_group())
    })
}

/// The groups of /etc/group, by name and gid. Groups served only by NSS modules (LDAP,
/// systemd-userdb) are not seen: reading them needs libc's getgrgid_r, which is unsafe
/// code; a group not found here is therefore said to be missing "from /etc/group".
#[derive(Debug, Default)]
struct Groups(Vec<(String, u32)>);

impl Groups {
    fn read() -> Groups {
        std::fs::read_to_string("/etc/group")
            .map_or_else(|_| Groups::default(), |t| Groups::parse(&t))
    }

    fn parse(text: &str) -> Groups {
        Groups(
            text.lines()
                .filter_map(|line| {
                    let mut fields = line.split(':');
                    let name = fields.next()?.trim();
                    let gid = fields.nth(1)?.trim().parse().ok()?;
                    (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_owned(), gid))
                })
                .collect(),
        )
    }

    fn name_of(&self, gid: u32) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, g)| *g == gid)
            .map(|(name, _)| name.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// How to join group `name`.
fn join_group(name: &str) -> String {
    format!(
        "join the `{name}` group (`sudo usermod -aG {name} $USER`, then log in again) or run as root"
    )
}

/// How to get into the system service's socket when its group is not known from the file:
/// join `rossip`, or, when there is no such group, how it comes to be.
fn join_socket_group(groups: &Groups) -> String {
    if groups.has(SOCKET_GROUP) {
        join_group(SOCKET_GROUP)
    } else {
        format!(
            "there is no `{SOCKET_GROUP}` group in /etc/group: installing the system service \
             creates it (systemd-sysusers with rossip's sysusers.d file), or create it with \
             `sudo groupadd -r {SOCKET_GROUP}` and restart rossipd; then {}",
            join_group(SOCKET_GROUP)
        )
    }
}

/// What to do about a socket this user may not use, given what can be seen of it
/// ([`visible_access`]) and the groups there are. A socket shared with a group names that
/// group, by the gid it actually has; a 0600 socket is either the system daemon's after it
/// found no `rossip` group (owner root), or another user's own daemon.
fn permission_hint(access: Option<FileAccess>, groups: &Groups) -> String {
    match access {
        Some(file) if file.shared_with_group() => match groups.name_of(file.gid) {
            Some(name) => join_group(name),
            None => format!(
                "its group is gid {}, which has no name in /etc/group; ask the administrator to \
                 add you to that group, or run as root",
                file.gid
            ),
        },
        Some(FileAccess { mode, uid: 0, .. }) => {
            let then = if groups.has(SOCKET_GROUP) {
                format!(
                    "the group exists now: restart rossipd, then {}",
                    join_group(SOCKET_GROUP)
                )
            } else {
                format!(
                    "create the group (`sudo groupadd -r {SOCKET_GROUP}`) and restart rossipd, \
                     then {}",
                    join_group(SOCKET_GROUP)
                )
            };
            format!(
                "this socket admits root only (mode {mode:o}: rossipd found no `{SOCKET_GROUP}` \
                 group when it started); {then}"
            )
        }
        Some(FileAccess { mode, uid, .. }) => format!(
            "this socket is uid {uid}'s own rossipd (mode {mode:o}), for that user only; start \
             your own `rossipd`, or for the system service's socket {}",
            join_socket_group(groups)
        ),
        None => join_socket_group(groups),
    }
}

/// `rossipd: MESSAGE (code N[, data JSON])`.
struct RpcErrorDisplay<'a>(&'a ErrorObject);

impl fmt::Display for RpcErrorDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "rossipd: {} (code {}", e.message, e.code)?;
        if let Some(data) = &e.data {
            write!(f, ", data {data}")?;
        }
        write!(f, ")")
    }
}

/// A connection to rossipd.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<Stream>,
    next_id: u64,
    /// `params` of event notifications read while waiting for an answer, not yet handed out.
    /// Kept as JSON so that a caller may read kinds [`EventParams`] does not know yet.
    events: VecDeque<Value>,
}

/// One line from the daemon, sorted.
enum Incoming {
    Response(Response),
    /// The `params` of an event notification.
    Event(Value),
    /// Something this client has no use for: a batch answer it never asked for, or a
    /// line that is not an object. Skipped.
    Ignored,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let unreachable = |error: io::Error| match error.kind() {
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                path: path.to_path_buf(),
                error,
                hint: permission_hint(visible_access(path), &Groups::read()),
            },
            _ => ClientError::Unreachable {
                path: path.to_path_buf(),
                error,
            },
        };
        let name = path.to_fs_name::<GenericFilePath>().map_err(unreachable)?;
        let stream = Stream::connect(name).map_err(unreachable)?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The effective uid the daemon listened with (`SO_PEERCRED`): the kernel's word on who
    /// serves this socket, where the socket file's and its directory's owners only say who
    /// made them.
    #[cfg(unix)]
    pub fn server_uid(&self) -> io::Result<u32> {
        self.reader.get_ref().peer_creds()?.euid().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this system does not tell a socket's peer uid",
            )
        })
    }

    /// Calls `method` with `params` and waits for its result.
    pub fn call<R: DeserializeOwned>(
        &mut self,
        method: &str,
        params: impl Serialize,
    ) -> Result<R, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = Request::new(id, method, params)
            .map_err(|e| self.protocol(format!("cannot encode `{method}` params: {e}")))?;
        let mut line = serde_json::to_vec(&request)
            .map_err(|e| self.protocol(format!("cannot encode `{method}` request: {e}")))?;
        line.push(b'\n');
        self.write_line(&line)?;
        loop {
            match self.read_incoming()? {
                Incoming::Event(event) => self.events.push_back(event),
                // A null id is the daemon's answer to a request it could not read: ours.
                Incoming::Response(response) if response.id == id || response.id.is_null() => {
                    if let Some(error) = response.error {
                        return Err(ClientError::Rpc(error));
                    }
                    let result = response.result.unwrap_or(Value::Null);
                    return serde_json::from_value(result)
                        .map_err(|e| self.protocol(format!("unexpected `{method}` result: {e}")));
                }
                Incoming::Response(_) | Incoming::Ignored => {}
            }
        }
    }

    /// The next subscription event, waiting for one if none is queued.
    pub fn next_event(&mut self) -> Result<EventParams, ClientError> {
        self.next_event_as()
    }

    /// The next subscription event that reads as an `E`, waiting for one if none is queued.
    /// Events that do not (a kind newer than `E` knows) are skipped, as the protocol lets
    /// event kinds grow.
    pub fn next_event_as<E: DeserializeOwned>(&mut self) -> Result<E, ClientError> {
        loop {
            let params = match self.events.pop_front() {
                Some(params) => params,
                None => match self.read_incoming()? {
                    Incoming::Event(params) => params,
                    Incoming::Response(_) | Incoming::Ignored => continue,
                },
            };
            if let Ok(event) = serde_json::from_value(params) {
                return Ok(event);
            }
        }
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), ClientError> {
        // `&Stream` implements Write, so the buffered reader and the writer share one socket.
        let mut writer: &Stream = self.reader.get_ref();
        writer
            .write_all(line)
            .and_then(|()| writer.flush())
            .map_err(|e| self.lost(e.to_string()))
    }

    fn read_incoming(&mut self) -> Result<Incoming, ClientError> {
        let value = self.read_value()?;
        if value.get("method").and_then(Value::as_str) == Some(method::EVENT) {
            let params = value.get("params").cloned().unwrap_or(Value::Null);
            return Ok(Incoming::Event(params));
        }
        if value.is_object() {
            let response = serde_json::from_value(value)
                .map_err(|e| self.protocol(format!("not a JSON-RPC response: {e}")))?;
            return Ok(Incoming::Response(response));
        }
        Ok(Incoming::Ignored)
    }

    /// Reads the next non-blank line, at most [`MAX_LINE_BYTES`], as JSON.
    fn read_value(&mut self) -> Result<Value, ClientError> {
        loop {
            let mut line = Vec::new();
            let limit = u64::try_from(MAX_LINE_BYTES)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut line)
                .map_err(|e| self.lost(e.to_string()))?;
            if read == 0 {
                return Err(self.lost("rossipd closed the connection".to_owned()));
            }
            if line.last() != Some(&b'\n') {
                return Err(if line.len() > MAX_LINE_BYTES {
                    self.protocol(format!("a line longer than {MAX_LINE_BYTES} bytes"))
                } else {
                    self.lost("rossipd closed the connection mid-line".to_owned())
                });
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return serde_json::from_slice(&line)
                .map_err(|e| self.protocol(format!("invalid JSON: {e}")));
        }
    }

    fn lost(&self, reason: String) -> ClientError {
        ClientError::ConnectionLost {
            path: self.path.clone(),
            reason,
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETC_GROUP: &str = "root:x:0:\nrossip:x:991:alice\nchat:x:1200:\n";

    fn access(mode: u32, uid: u32, gid: u32) -> Option<FileAccess> {
        Some(FileAccess { mode, uid, gid })
    }

    #[test]
    fn etc_group_is_parsed() {
        let groups = Groups::parse("# comment\nroot:x:0:\nbad line\nrossip:x:991:a,b\n");
        assert_eq!(groups.name_of(991), Some("rossip"));
        assert_eq!(groups.name_of(0), Some("root"));
        assert!(groups.has("rossip") && !groups.has("bad line"));
    }

    #[test]
    fn a_group_socket_names_its_actual_group() {
        let groups = Groups::parse(ETC_GROUP);
        assert_eq!(
            permission_hint(access(0o660, 0, 991), &groups),
            join_group("rossip")
        );
        let hint = permission_hint(access(0o660, 0, 1200), &groups);
        assert!(hint.contains("join the `chat` group"), "{hint}");
        assert!(hint.contains("usermod -aG chat"), "{hint}");
        let hint = permission_hint(access(0o750, 0, 4242), &groups);
        assert!(hint.contains("gid 4242, which has no name"), "{hint}");
    }

    #[test]
    fn an_unseen_socket_calls_for_the_rossip_group_if_there_is_one() {
        let hint = permission_hint(None, &Groups::parse(ETC_GROUP));
        assert_eq!(hint, join_group("rossip"));
        assert!(hint.contains("`rossip` group") && hint.contains("run as root"));
        let hint = permission_hint(None, &Groups::parse("root:x:0:\n"));
        assert!(hint.contains("no `rossip` group in /etc/group"), "{hint}");
        assert!(hint.contains("groupadd -r rossip"), "{hint}");
        assert!(hint.contains("sysusers"), "{hint}");
    }

    #[test]
    fn a_root_only_socket_says_the_group_was_missing() {
        let hint = permission_hint(access(0o600, 0, 0), &Groups::parse("root:x:0:\n"));
        assert!(hint.contains("root only"), "{hint}");
        assert!(hint.contains("groupadd -r rossip"), "{hint}");
        assert!(hint.contains("`rossip` group"), "{hint}");
        let hint = permission_hint(access(0o600, 0, 0), &Groups::parse(ETC_GROUP));
        assert!(
            hint.contains("the group exists now: restart rossipd"),
            "{hint}"
        );
        assert!(!hint.contains("groupadd"), "{hint}");
    }

    #[test]
    fn another_users_socket_is_named_as_theirs() {
        let hint = permission_hint(access(0o600, 1000, 1000), &Groups::parse(ETC_GROUP));
        assert!(hint.contains("uid 1000's own rossipd"), "{hint}");
        assert!(hint.contains("`rossip` group"), "{hint}");
    }

    #[test]
    fn the_message_names_the_path_and_what_to_do() {
        let error = ClientError::PermissionDenied {
            path: PathBuf::from("/run/rossip/rossipd.sock"),
            error: io::Error::from(io::ErrorKind::PermissionDenied),
            hint: permission_hint(None, &Groups::parse(ETC_GROUP)),
        };
        assert_eq!(
            error.to_string(),
            "permission denied on /run/rossip/rossipd.sock: join the `rossip` group (`sudo usermod \
             -aG rossip $USER`, then log in again) or run as root"
        );
        assert_eq!(error.exit_code(), EXIT_NO_PERMISSION);
    }

    #[test]
    fn not_found_names_every_place_and_what_was_there() {
        let error = ClientError::NotFound {
            searched: vec![
                SearchedSocket {
                    path: PathBuf::from("/a.sock"),
                    error: io::ErrorKind::NotFound.into(),
                },
                SearchedSocket {
                    path: PathBuf::from("/b.sock"),
                    error: io::ErrorKind::ConnectionRefused.into(),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "cannot reach rossipd: no daemon answers at /a.sock (no such file), /b.sock (nothing \
             listens: a stale socket, or not a socket) (is rossipd running? start it with \
             `rossipd`, or pass --socket)"
        );
        assert_eq!(error.exit_code(), EXIT_UNAVAILABLE);
    }
}
