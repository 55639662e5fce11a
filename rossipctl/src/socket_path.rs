//! Which socket to talk to when `--socket` and `ROSSIP_SOCKET` are not given.
//!
//! The daemon runs either as the system service (`/run/rossip/rossipd.sock`) or as the
//! user's own daemon (`$XDG_RUNTIME_DIR/rossip/rossipd.sock`); the CLI picks whichever
//! exists, preferring the user's, and otherwise names the user path so that the "cannot
//! reach" error points where a `rossipd` started by this user would listen.

use std::io;
use std::path::{Path, PathBuf};

use rossip_proto::paths;

/// The socket to use when neither `--socket` nor `ROSSIP_SOCKET` is set.
pub fn default_socket_path() -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    choose(xdg.as_deref(), current_uid(), socket_file_present)
}

/// The decision itself, with the environment passed in so tests can vary it.
fn choose(xdg_runtime_dir: Option<&Path>, uid: u32, present: impl Fn(&Path) -> bool) -> PathBuf {
    let user = paths::user_socket_path(xdg_runtime_dir, uid);
    let system = Path::new(paths::SYSTEM_SOCKET_PATH);
    if present(&user) {
        user
    } else if present(system) {
        system.to_path_buf()
    } else {
        user
    }
}

/// Whether something sits at `path`. A path we may not even look at (a user not yet in
/// the `rossip` group, facing `/run/rossip` mode 0750) counts as present, so that the
/// connection attempt fails with "permission denied" and its hint instead of an error
/// about a different path.
fn socket_file_present(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::PermissionDenied,
    }
}

/// The real user id, which names the per-user fallback directory `/tmp/rossip-UID`.
///
/// On Linux the owner of `/proc/self` is this process's uid, which needs no `unsafe`.
#[cfg(target_os = "linux")]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    // /proc is always mounted where rossip runs; if it is not, uid 0's path is merely a
    // wrong guess that the "cannot reach" error will name, not a security decision.
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// The real user id, which names the per-user fallback directory `/tmp/rossip-UID`.
#[cfg(all(unix, not(target_os = "linux")))]
#[allow(unsafe_code)]
fn current_uid() -> u32 {
    // SAFETY: getuid(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::getuid() }
}

/// Without Unix users the uid only names a fallback path; 0 is as good as any.
#[cfg(not(unix))]
fn current_uid() -> u32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "/run/user/1000/rossip/rossipd.sock";
    const XDG: &str = "/run/user/1000";

    #[test]
    fn prefers_the_users_socket() {
        let p = choose(Some(Path::new(XDG)), 1000, |_| true);
        assert_eq!(p, PathBuf::from(USER));
    }

    #[test]
    fn falls_back_to_the_system_socket() {
        let p = choose(Some(Path::new(XDG)), 1000, |p| {
            p == Path::new(paths::SYSTEM_SOCKET_PATH)
        });
        assert_eq!(p, PathBuf::from(paths::SYSTEM_SOCKET_PATH));
    }

    #[test]
    fn names_the_user_path_when_nothing_exists() {
        assert_eq!(
            choose(Some(Path::new(XDG)), 1000, |_| false),
            PathBuf::from(USER)
        );
        assert_eq!(
            choose(None, 1234, |_| false),
            PathBuf::from("/tmp/rossip-1234/rossipd.sock")
        );
    }

    #[cfg(unix)]
    #[test]
    fn uid_matches_the_owner_of_a_new_file() {
        use std::os::unix::fs::MetadataExt as _;
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let owner = file.as_file().metadata().expect("metadata").uid();
        assert_eq!(current_uid(), owner);
    }
}
