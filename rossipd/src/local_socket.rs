//! The JSON-RPC socket file: one daemon per path, stale files reclaimed,
//! permissions set, and the file removed on exit.
//!
//! A lock file beside the socket is held (`flock`) for the daemon's lifetime.
//! Whoever holds it owns the socket path, so a socket file found while holding
//! the lock is stale and safe to remove. Binding with interprocess's
//! `try_overwrite` alone would silently steal a running daemon's socket.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};

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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %self.path.display(), "cannot remove socket file: {e}"),
        }
    }
}

/// Takes the lock, clears a stale socket, binds and sets the mode.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<(Listener, SocketGuard)> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            // Only the owner (and, for the system socket, its group) needs to
            // traverse the directory; the socket's own mode does the rest.
            .mode(if mode & 0o070 != 0 { 0o750 } else { 0o700 })
            .create(parent)
            .with_context(|| format!("cannot create socket directory {}", parent.display()))?;
    }
    check_directory_owner(parent)?;
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove stale socket {}", path.display()));
        }
    }
    let name = path
        .to_fs_name::<GenericFilePath>()
        .with_context(|| format!("{} is not a usable socket path", path.display()))?;
    let listener = ListenerOptions::new()
        .name(name)
        .create_tokio()
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
    Ok((
        listener,
        SocketGuard {
            path: path.to_owned(),
            _lock: lock,
        },
    ))
}

/// Refuses a socket directory that another user controls: with the fallback
/// `/tmp/rossip-UID`, someone could create that directory first and then
/// swap the socket for their own. Root-owned directories (`/run/rossip`,
/// `$XDG_RUNTIME_DIR`'s parents) are fine.
fn check_directory_owner(dir: &Path) -> anyhow::Result<()> {
    let meta = fs::metadata(dir)
        .with_context(|| format!("cannot inspect socket directory {}", dir.display()))?;
    let me = crate::config::current_uid();
    if meta.uid() != me && meta.uid() != 0 {
        bail!(
            "socket directory {} belongs to uid {}, not to this user (uid {me}); refusing to put the socket \
             there (remove it, or choose another --socket)",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
        bail!(
            "socket directory {} is world-writable without the sticky bit; choose another --socket",
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
