//! Who is on the other end of an RPC connection, and the audit log of what
//! they change.
//!
//! The peer's uid and pid come from the kernel (`SO_PEERCRED` on Linux) when
//! the connection is accepted, so a caller cannot claim to be someone else.
//! Every call that changes the node or the cluster (`send`, `join`, `leave`,
//! any `keys.*`, `nick`) is logged at info level with them. `send` can come
//! thousands of times a second, so only a connection's first one is logged,
//! and the count when the connection closes.

use std::fmt;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use rossip_proto::rpc::method;

/// Methods whose name starts with this change the keyring (`keys.list`
/// included: which keys a node holds is worth an audit line too).
const KEYS_PREFIX: &str = "keys.";

/// The process behind one connection, and the sends it made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// Effective uid at `connect` time; `None` if the OS did not say.
    pub uid: Option<u32>,
    /// Process id at `connect` time; `None` if the OS did not say.
    pub pid: Option<i32>,
    /// `send` calls made on this connection so far.
    sends: u64,
}

impl Caller {
    /// The peer of a freshly accepted connection. Credentials that cannot be
    /// read (a peer that already hung up) leave the fields unknown: logging
    /// must never refuse a connection.
    pub fn of_stream(stream: &Stream) -> Caller {
        match stream.peer_creds() {
            Ok(creds) => Caller {
                uid: creds.euid(),
                pid: creds.pid(),
                sends: 0,
            },
            Err(e) => {
                tracing::debug!("cannot read an RPC peer's credentials: {e}");
                Caller::default()
            }
        }
    }

    /// Notes a call of `method` (also a notification, and a batch item:
    /// they run too) and logs it if it changes something. Call it before the
    /// method runs, so that a call that hangs or fails is on record too.
    pub fn log_call(&mut self, method: &str) {
        if method == method::SEND {
            self.sends = self.sends.saturating_add(1);
            if self.sends == 1 {
                tracing::info!("RPC {self} calls send");
            }
        } else if is_mutating(method) {
            tracing::info!("RPC {self} calls {method}");
        }
    }

    /// Logs the connection's `send` count, if it sent more than the one
    /// already logged.
    pub fn log_closed(&self) {
        if self.sends > 1 {
            tracing::info!("RPC {self} closed after {} send calls", self.sends);
        }
    }
}

/// `connection from uid 1000 pid 4242`.
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection from uid ")?;
        match self.uid {
            Some(uid) => write!(f, "{uid}")?,
            None => f.write_str("?")?,
        }
        f.write_str(" pid ")?;
        match self.pid {
            Some(pid) => write!(f, "{pid}"),
            None => f.write_str("?"),
        }
    }
}

/// Whether `method` changes the node or the cluster (`send` aside, which
/// [`Caller::log_call`] counts rather than logs each time).
fn is_mutating(method: &str) -> bool {
    method == method::LEAVE
        || method == method::JOIN
        || method.starts_with(KEYS_PREFIX)
        || method == method::NICK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            uid: Some(1000),
            pid: Some(4242),
            sends: 0,
        }
    }

    #[test]
    fn mutating_methods_are_recognised_by_name() {
        for m in [
            "leave",
            "join",
            "keys.list",
            "keys.install",
            "keys.use",
            "keys.remove",
            "nick",
        ] {
            assert!(is_mutating(m), "{m}");
        }
        for m in [
            "status",
            "peers",
            "history",
            "subscribe",
            "unsubscribe",
            "keys",
            "keysx",
        ] {
            assert!(!is_mutating(m), "{m}");
        }
    }

    #[test]
    fn sends_are_counted_not_logged_one_by_one() {
        let mut c = caller();
        for _ in 0..5000 {
            c.log_call("send");
        }
        c.log_call("status");
        c.log_call("leave");
        assert_eq!(c.sends, 5000);
    }

    #[test]
    fn display_names_uid_and_pid_or_says_unknown() {
        assert_eq!(caller().to_string(), "connection from uid 1000 pid 4242");
        assert_eq!(Caller::default().to_string(), "connection from uid ? pid ?");
    }
}
