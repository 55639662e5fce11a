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
pub fn run_user_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}"))
}

/// The runtime directory of a user daemon: `$XDG_RUNTIME_DIR` when set and
/// not empty; else [`run_user_dir`] when `is_users_own` says it is a
/// directory of this user's (`su`, `sudo -u` and cron drop the variable while
/// logind's directory is still there), so that a daemon started there and a
/// `rossipctl` run from a login session meet at the same socket; else None,
/// which means the `/tmp` fallback. The check is the caller's, since this
/// crate does no I/O.
pub fn user_runtime_dir(
    xdg_runtime_dir: Option<&Path>,
    uid: u32,
    is_users_own: impl FnOnce(&Path) -> bool,
) -> Option<PathBuf> {
    match xdg_runtime_dir {
        Some(dir) if !dir.as_os_str().is_empty() => Some(dir.to_path_buf()),
        _ => {
            let run_user = run_user_dir(uid);
            is_users_own(&run_user).then_some(run_user)
        }
    }
}

/// A user daemon's socket: `RUNTIME_DIR/rossip/rossipd.sock` for the runtime
/// directory from [`user_runtime_dir`], or without one (cron, `su`,
/// containers) [`tmp_socket_path`].
pub fn user_socket_path(runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    match runtime_dir {
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
/// (when that variable is set), in order: every place a daemon of user `uid`
/// may have put its socket whatever its environment was, then the system
/// service's. A client that was not given a path tries them all, so that a
/// daemon started with or without `XDG_RUNTIME_DIR` is found from a session
/// with or without it.
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
    fn user_socket_prefers_the_runtime_dir() {
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
    fn runtime_dir_is_xdg_else_the_users_own_run_user_dir() {
        let never = |_: &Path| -> bool { panic!("not consulted when XDG_RUNTIME_DIR is set") };
        assert_eq!(
            user_runtime_dir(Some(Path::new("/x")), 1000, never),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(
            user_runtime_dir(None, 1000, |dir| dir == Path::new("/run/user/1000")),
            Some(PathBuf::from("/run/user/1000"))
        );
        assert_eq!(
            user_runtime_dir(Some(Path::new("")), 1000, |_| true),
            Some(PathBuf::from("/run/user/1000"))
        );
        assert_eq!(user_runtime_dir(None, 1000, |_| false), None);
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
