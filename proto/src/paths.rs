//! Where the local socket lives, decided the same way by the daemon and the
//! CLI. Pure functions: the callers read the environment and pass it in.

use std::path::{Path, PathBuf};

/// Environment variable naming the socket, below `--socket`, above the defaults.
pub const SOCKET_ENV: &str = "ROSSIP_SOCKET";

/// Socket of the system service (systemd `RuntimeDirectory=rossip`).
pub const SYSTEM_SOCKET_PATH: &str = "/run/rossip/rossipd.sock";

/// File name of the socket inside its directory.
pub const SOCKET_FILE_NAME: &str = "rossipd.sock";

/// The runtime directory systemd-logind makes for a logged-in user (mode
/// 0700, owned by that user); a login session's `XDG_RUNTIME_DIR` names it.
/// Only clients look here without that variable: a daemon does not choose it
/// on its own, since logind removes it at the user's last logout, socket
/// and all, which would strand a daemon started from `su`, `sudo -u` or cron.
pub fn run_user_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}"))
}

/// A user daemon's socket: `$XDG_RUNTIME_DIR/rossip/rossipd.sock`, or, when
/// `XDG_RUNTIME_DIR` is unset or empty (cron, `su`, containers),
/// [`tmp_socket_path`].
pub fn user_socket_path(xdg_runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("rossip").join(SOCKET_FILE_NAME),
        _ => tmp_socket_path(uid),
    }
}

/// A user daemon's socket when it has no runtime directory: a per-user
/// directory under `/tmp` named by the uid, `/tmp/rossip-UID/rossipd.sock`.
pub fn tmp_socket_path(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/rossip-{uid}")).join(SOCKET_FILE_NAME)
}

/// Where a client looks for a daemon after `$XDG_RUNTIME_DIR/rossip/rossipd.sock`
/// (when that variable is set), in order: where a daemon of user `uid`
/// started in a login session puts its socket (its `XDG_RUNTIME_DIR` is
/// [`run_user_dir`]), where one started without that variable puts it, then
/// the system service's. A client that was not given a path tries them all,
/// so that a daemon started with or without `XDG_RUNTIME_DIR` is found from a
/// session with or without it.
pub fn fixed_socket_candidates(uid: u32) -> [PathBuf; 3] {
    [
        user_socket_path(Some(&run_user_dir(uid)), uid),
        tmp_socket_path(uid),
        PathBuf::from(SYSTEM_SOCKET_PATH),
    ]
}

/// A user daemon's state directory: `$XDG_STATE_HOME/rossip`, else
/// `$HOME/.local/state/rossip`, else a per-user directory under `/tmp`.
pub fn user_state_dir(xdg_state_home: Option<&Path>, home: Option<&Path>, uid: u32) -> PathBuf {
    match (xdg_state_home, home) {
        (Some(dir), _) if dir.is_absolute() => dir.join("rossip"),
        (_, Some(home)) if home.is_absolute() => home.join(".local/state/rossip"),
        _ => PathBuf::from(format!("/tmp/rossip-{uid}/state")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_socket_prefers_xdg_runtime_dir() {
        assert_eq!(
            user_socket_path(Some(Path::new("/run/user/1000")), 1000),
            PathBuf::from("/run/user/1000/rossip/rossipd.sock")
        );
        assert_eq!(
            user_socket_path(None, 1000),
            PathBuf::from("/tmp/rossip-1000/rossipd.sock")
        );
        assert_eq!(
            user_socket_path(Some(Path::new("")), 7),
            PathBuf::from("/tmp/rossip-7/rossipd.sock")
        );
    }

    #[test]
    fn candidates_cover_every_default_in_order() {
        assert_eq!(
            fixed_socket_candidates(1000),
            [
                PathBuf::from("/run/user/1000/rossip/rossipd.sock"),
                PathBuf::from("/tmp/rossip-1000/rossipd.sock"),
                PathBuf::from("/run/rossip/rossipd.sock"),
            ]
        );
    }

    #[test]
    fn user_state_dir_follows_xdg() {
        assert_eq!(
            user_state_dir(Some(Path::new("/s")), Some(Path::new("/h")), 1),
            PathBuf::from("/s/rossip")
        );
        // The XDG spec says relative values are invalid and must be ignored.
        assert_eq!(
            user_state_dir(Some(Path::new("rel")), Some(Path::new("/h")), 1),
            PathBuf::from("/h/.local/state/rossip")
        );
        assert_eq!(
            user_state_dir(None, None, 5),
            PathBuf::from("/tmp/rossip-5/state")
        );
    }
}
