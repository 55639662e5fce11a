//! The JSON-RPC socket file: one daemon per path, stale files reclaimed,
//! permissions set, and the file removed on exit.
//!
//! Permissions: a user daemon's socket is 0600 in a 0700 directory. The
//! system daemon's is 0660 owned by group `rossip` (in a 0750 directory of
//! that group), so that members of the group may use it; if that group does
//! not exist, a warning says so and the socket is 0600: nobody else gets in.
//!
//! A lock file beside the socket is held (`flock`) for the daemon's lifetime.
//! Whoever holds it owns the socket path, so a socket file found while holding
//! the lock is stale and safe to remove. Binding with interprocess's
//! `try_overwrite` alone would silently steal a running daemon's socket.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt as _;
use rossip_proto::paths;

use crate::config::SOCKET_GROUP;

/// Holds the lock; removes the socket file when dropped.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    _lock: File,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        // The listener's name reclamation removes the file too; this covers
        // the paths where the listener was never created or leaked.
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %self.path.display(), "cannot remove socket file: {e}"),
        }
    }
}

/// Takes the lock, clears a stale socket, binds and sets the mode. Group
/// bits in `mode` share the socket with [`SOCKET_GROUP`] (see the module
/// documentation).
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<(Listener, SocketGuard)> {
    let access = Access::for_mode(mode);
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    prepare_directory(parent, &access)?;
    check_directory_owner(parent, DirectoryUse::Socket)?;
    let lock_path = lock_path(path);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open lock file {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another rossipd is already running on {} (it holds {}); stop it first, or give this one \
             another --socket",
            path.display(),
            lock_path.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
        }
    }
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed stale socket file"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove stale socket {}", path.display()));
        }
    }
    let name = path
        .to_fs_name::<GenericFilePath>()
        .with_context(|| format!("{} is not a usable socket path", path.display()))?;
    // Owner-only from the first moment (interprocess sets the mode before
    // `bind`); the group gets in only once the file belongs to it.
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    if let Some(gid) = access.gid {
        std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
            format!(
                "cannot give socket {} to group {SOCKET_GROUP}",
                path.display()
            )
        })?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(access.mode))
        .with_context(|| format!("cannot set mode {:o} on {}", access.mode, path.display()))?;
    Ok((
        listener,
        SocketGuard {
            path: path.to_owned(),
            _lock: lock,
        },
    ))
}

/// The socket's mode and group, once the group is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Access {
    /// The socket file's mode.
    mode: u32,
    /// The group to give the socket (and a directory it creates) to.
    gid: Option<u32>,
}

impl Access {
    /// `mode` as asked, with [`SOCKET_GROUP`]'s gid if it has group bits;
    /// without that group, owner-only, with a warning that says what to do.
    fn for_mode(mode: u32) -> Access {
        if mode & 0o077 == 0 {
            return Access { mode, gid: None };
        }
        let owner_only = Access {
            mode: mode & 0o700,
            gid: None,
        };
        match crate::nss::group_id(SOCKET_GROUP) {
            Ok(Some(gid)) => Access {
                mode: mode & 0o770,
                gid: Some(gid),
            },
            Ok(None) => {
                tracing::warn!(
                    "group `{SOCKET_GROUP}` does not exist, so only this daemon's user may use its socket \
                     (mode {:o}); create it (`groupadd -r {SOCKET_GROUP}`), add users to it and restart \
                     rossipd to let them in",
                    owner_only.mode
                );
                owner_only
            }
            Err(e) => {
                tracing::warn!(
                    "cannot look up group `{SOCKET_GROUP}` ({e}), so only this daemon's user may use its \
                     socket (mode {:o})",
                    owner_only.mode
                );
                owner_only
            }
        }
    }

    /// The mode of the socket's directory: searchable by whoever may use the socket.
    fn directory_mode(&self) -> u32 {
        if self.gid.is_some() { 0o750 } else { 0o700 }
    }
}

/// Creates the socket's directory if missing, with [`Access::directory_mode`]
/// and the socket's group. The system service's directory (`/run/rossip`,
/// perhaps made by systemd's `RuntimeDirectory=` with another mode, or by an
/// earlier run before the group existed) is brought in line too when this
/// user owns it; any other existing directory is left alone (it may be
/// `/tmp`).
fn prepare_directory(dir: &Path, access: &Access) -> anyhow::Result<()> {
    let mode = access.directory_mode();
    let created = if dir.exists() {
        false
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("cannot create socket directory {}", dir.display()))?;
        true
    };
    let system_dir = Path::new(paths::SYSTEM_SOCKET_PATH).parent();
    let ours = fs::metadata(dir).is_ok_and(|m| m.uid() == crate::config::current_uid());
    let ours_to_set = created || (Some(dir) == system_dir && ours);
    if !ours_to_set {
        return Ok(());
    }
    if let Some(gid) = access.gid {
        std::os::unix::fs::chown(dir, None, Some(gid)).with_context(|| {
            format!(
                "cannot give socket directory {} to group {SOCKET_GROUP}",
                dir.display()
            )
        })?;
    }
    // Explicitly: the umask may have taken bits from the created mode.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", dir.display()))
}

/// What a directory checked by [`check_directory_owner`] holds, to name it
/// and the setting that moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryUse {
    /// The directory of the JSON-RPC socket.
    Socket,
    /// The directory holding the state directory (`/tmp/rossip-UID` for the
    /// fallback `/tmp/rossip-UID/state`).
    StateParent,
}

impl DirectoryUse {
    fn name(self) -> &'static str {
        match self {
            DirectoryUse::Socket => "socket directory",
            DirectoryUse::StateParent => "the state directory's parent",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            DirectoryUse::Socket => "--socket",
            DirectoryUse::StateParent => "--state-dir",
        }
    }
}

/// Refuses a directory that another user controls: with the fallbacks
/// under `/tmp/rossip-UID`, someone could create that directory first and
/// then swap the socket for their own, or read and plant state files.
/// Root-owned directories (`/run/rossip`, `$XDG_RUNTIME_DIR`'s parents) are
/// fine.
pub fn check_directory_owner(dir: &Path, holds: DirectoryUse) -> anyhow::Result<()> {
    let (name, flag) = (holds.name(), holds.flag());
    // Not followed: a symlink planted at `/tmp/rossip-UID` pointing to a
    // root-owned directory would pass the owner check.
    let meta = fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect {name} {}", dir.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "{name} {} is a symbolic link; refusing to use it (remove it, or choose another {flag})",
            dir.display()
        );
    }
    let me = crate::config::current_uid();
    if meta.uid() != me && meta.uid() != 0 {
        bail!(
            "{name} {} belongs to uid {}, not to this user (uid {me}); refusing to use it (remove \
             it, or choose another {flag})",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
        bail!(
            "{name} {} is world-writable without the sticky bit; choose another {flag}",
            dir.display()
        );
    }
    Ok(())
}

/// `rossipd.sock` → `rossipd.sock.lock`.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    socket.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_only_modes_need_no_group() {
        assert_eq!(
            Access::for_mode(0o600),
            Access {
                mode: 0o600,
                gid: None
            }
        );
        assert_eq!(Access::for_mode(0o600).directory_mode(), 0o700);
    }

    #[test]
    fn group_modes_get_the_group_or_fall_back_to_owner_only() {
        let access = Access::for_mode(0o660);
        match crate::nss::group_id(SOCKET_GROUP).expect("lookup") {
            Some(gid) => {
                assert_eq!(access.mode, 0o660);
                assert_eq!(access.gid, Some(gid));
                assert_eq!(access.directory_mode(), 0o750);
            }
            None => assert_eq!(access, Access::for_mode(0o600)),
        }
        // Never more than the group: no world bits, whatever was asked.
        assert_eq!(Access::for_mode(0o666).mode & 0o007, 0);
    }

    #[tokio::test]
    async fn sockets_get_their_mode_and_created_directories_theirs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub").join("rossipd.sock");
        let (listener, guard) = bind(&path, 0o600).expect("bind");
        let mode = |p: &Path| fs::metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("parent")), 0o700);
        drop(listener);
        drop(guard);
        assert!(!path.exists(), "the socket file is removed on exit");

        let path = dir.path().join("shared").join("rossipd.sock");
        let (_listener, _guard) = bind(&path, 0o660).expect("bind");
        let expected = Access::for_mode(0o660);
        assert_eq!(mode(&path), expected.mode);
        assert_eq!(
            mode(path.parent().expect("parent")),
            expected.directory_mode()
        );
        if let Some(gid) = expected.gid {
            assert_eq!(fs::metadata(&path).expect("stat").gid(), gid);
        }
    }
}
