//! Whom a request speaks for: the user the kernel vouches for, never a
//! parameter. Each front end finds the uid its own way (peer credentials on
//! the local socket, the owner of a loopback TCP socket, a login token) and
//! both name the user the same way here.

use rossip_proto::message::is_user_name;

/// Whom a connection speaks for, as the kernel vouches (peer credentials):
/// the author `send` signs, never a parameter a script could set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Speaker {
    /// Effective uid at `connect` time; `None` if the OS did not say.
    pub uid: Option<u32>,
    /// That uid's user name; empty when unknown (no credentials, or a uid
    /// with no entry: then the uid itself, as `uid1234`, is used instead).
    pub user: String,
}

impl Speaker {
    /// Looks up the user name of `uid` (NSS may ask a directory server:
    /// run off the async workers).
    pub async fn of_uid(uid: Option<u32>) -> Speaker {
        let Some(uid) = uid else {
            return Speaker::default();
        };
        let user = tokio::task::spawn_blocking(move || crate::nss::user_name(uid))
            .await
            .ok()
            .and_then(|found| match found {
                Ok(name) => name,
                Err(e) => {
                    tracing::debug!("cannot look up the name of uid {uid}: {e}");
                    None
                }
            })
            .filter(|name| is_user_name(name))
            .unwrap_or_else(|| format!("uid{uid}"));
        Speaker {
            uid: Some(uid),
            user,
        }
    }
}
