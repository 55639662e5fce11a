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
            ClientError::Unreachable { .. } | ClientError::ConnectionLost { .. } => {
                EXIT_UNAVAILABLE
            }
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

/// How to join the group that may use the system service's socket.
const JOIN_GROUP: &str = "join the `rossip` group (`sudo usermod -aG rossip $USER`, then log in \
                          again) or run as root";

/// The mode and owner uid of the socket file, if this user may look at it
/// (not when its directory is closed to them: `/run/rossip` is 0750).
fn socket_owner(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.mode() & 0o7777, m.uid()))
}

/// What to do about a socket this user may not use, given its mode and
/// owner when known. The system service shares its socket with the
/// `rossip` group (mode 0660); a 0600 socket is either the system daemon's
/// after it found no such group (owner root), or another user's own daemon.
fn permission_hint(socket: Option<(u32, u32)>) -> String {
    match socket {
        Some((mode, 0)) if mode & 0o060 == 0 => format!(
            "this socket admits root only (mode {mode:o}: rossipd found no `rossip` group when it \
             started); create the group (`sudo groupadd -r rossip`) and restart rossipd, then {JOIN_GROUP}"
        ),
        Some((mode, uid)) if mode & 0o060 == 0 => format!(
            "this socket is uid {uid}'s own rossipd (mode {mode:o}), for that user only; start your \
             own `rossipd`, or for the system service's socket {JOIN_GROUP}"
        ),
        _ => JOIN_GROUP.to_owned(),
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
    events: VecDeque<EventParams>,
}

/// One line from the daemon, sorted.
enum Incoming {
    Response(Response),
    Event(EventParams),
    /// Something this client has no use for: an event of a kind newer than this client,
    /// or a batch answer it never asked for. Skipped, as the protocol lets fields grow.
    Ignored,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let unreachable = |error: io::Error| match error.kind() {
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                path: path.to_path_buf(),
                error,
                hint: permission_hint(socket_owner(path)),
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
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        loop {
            if let Incoming::Event(event) = self.read_incoming()? {
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
            return Ok(serde_json::from_value(params).map_or(Incoming::Ignored, Incoming::Event));
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

    #[test]
    fn a_group_socket_or_an_unseen_one_calls_for_joining_the_group() {
        for socket in [None, Some((0o660, 0)), Some((0o660, 991))] {
            assert_eq!(permission_hint(socket), JOIN_GROUP);
        }
        assert!(JOIN_GROUP.contains("`rossip` group") && JOIN_GROUP.contains("run as root"));
    }

    #[test]
    fn a_root_only_socket_says_the_group_is_missing() {
        let hint = permission_hint(Some((0o600, 0)));
        assert!(hint.contains("root only"), "{hint}");
        assert!(hint.contains("groupadd -r rossip"), "{hint}");
        assert!(hint.contains("`rossip` group"), "{hint}");
    }

    #[test]
    fn another_users_socket_is_named_as_theirs() {
        let hint = permission_hint(Some((0o600, 1000)));
        assert!(hint.contains("uid 1000's own rossipd"), "{hint}");
        assert!(hint.contains("`rossip` group"), "{hint}");
    }

    #[test]
    fn the_message_names_the_path_and_what_to_do() {
        let error = ClientError::PermissionDenied {
            path: PathBuf::from("/run/rossip/rossipd.sock"),
            error: io::Error::from(io::ErrorKind::PermissionDenied),
            hint: permission_hint(None),
        };
        assert_eq!(
            error.to_string(),
            "permission denied on /run/rossip/rossipd.sock: join the `rossip` group (`sudo usermod \
             -aG rossip $USER`, then log in again) or run as root"
        );
        assert_eq!(error.exit_code(), EXIT_NO_PERMISSION);
    }
}
