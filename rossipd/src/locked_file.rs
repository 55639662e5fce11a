//! A file the daemon holds an `flock` on while it runs, with a few lines
//! that say who holds it: `--pid-file` (its pid, for scripts) and the state
//! directory's lock (its pid and socket, so a second rossipd refuses to start
//! and names the running one). A stale file (its process gone, so no lock)
//! is taken over; the file is removed at exit.

use std::fs::{File, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// A locked file, removed when dropped.
#[derive(Debug)]
pub struct LockedFile {
    path: PathBuf,
    /// What the file is, for messages ("the pid file").
    what: &'static str,
    /// Held open: the lock lasts as long as the file descriptor.
    file: File,
}

impl LockedFile {
    /// `--pid-file`: creates (or takes over) `path`, locks it and writes this process's
    /// pid. A file locked by a running process is an error naming its pid.
    pub fn pid_file(path: &Path) -> anyhow::Result<LockedFile> {
        LockedFile::create(
            path,
            "the pid file",
            &format!("{}\n", std::process::id()),
            |held| {
                anyhow::anyhow!(
                    "the pid file {} is locked: another rossipd (pid {}) is running with it",
                    path.display(),
                    held.trim()
                )
            },
        )
    }

    /// Creates (or takes over) `path`, locks it and writes `contents`. A
    /// file locked by a running process is the error `held` makes of what
    /// that file says; a stale one (its process gone, so no lock) is taken
    /// over. A symbolic link is refused: a daemon running as root must not
    /// truncate what a link in a writable directory points at.
    pub fn create(
        path: &Path,
        what: &'static str,
        contents: &str,
        held: impl Fn(&str) -> anyhow::Error,
    ) -> anyhow::Result<LockedFile> {
        for _ in 0..ATTEMPTS {
            let Some(file) = Self::lock(path, what, &held)? else {
                continue;
            };
            return Self::write(path, what, file, contents);
        }
        bail!(
            "{what} {} kept being removed while rossipd locked it (another rossipd \
             stopping at the same time?); try again",
            path.display()
        )
    }

    /// Opens and locks `path`; `None` if the file locked is no longer the
    /// one at `path` (its holder removed it between the open and the lock).
    fn lock(
        path: &Path,
        what: &str,
        held: &impl Fn(&str) -> anyhow::Error,
    ) -> anyhow::Result<Option<File>> {
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot open {what} {} (a symbolic link is refused)",
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(held(&text));
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {what} {}", path.display()));
            }
        }
        let ours = file
            .metadata()
            .with_context(|| format!("cannot read {what} {}", path.display()))?;
        // A hard link to another file (or a device) would be truncated too.
        if !ours.is_file() || ours.nlink() != 1 {
            bail!(
                "{what} {} is not a plain file of its own (a hard link or a device); \
                 refusing to overwrite it",
                path.display()
            );
        }
        Ok(same_file(path, &ours).then_some(file))
    }

    fn write(
        path: &Path,
        what: &'static str,
        mut file: File,
        contents: &str,
    ) -> anyhow::Result<LockedFile> {
        use std::os::unix::fs::PermissionsExt as _;
        // Readable by everyone whatever the umask (0077 under --daemonize
        // and systemd): scripts of other users look up the pid.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .and_then(|()| file.set_len(0))
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(contents.as_bytes()))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {what} {}", path.display()))?;
        Ok(LockedFile {
            path: path.to_path_buf(),
            what,
            file,
        })
    }
}

/// How often a file removed under rossipd's lock is opened again.
const ATTEMPTS: usize = 5;

/// Whether `path` still names the file `ours` describes.
fn same_file(path: &Path, ours: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .is_ok_and(|there| there.dev() == ours.dev() && there.ino() == ours.ino())
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        // Removed while still locked, and only if the path still names our
        // file (someone may have replaced it: theirs stays).
        let ours = self.file.metadata();
        if ours.is_ok_and(|ours| same_file(&self.path, &ours))
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!("cannot remove {} {}: {e}", self.what, self.path.display());
        }
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_written_locked_and_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rossipd.pid");
        std::fs::write(&path, "999999999\nstale and longer\n").expect("stale file");
        let pid_file = LockedFile::pid_file(&path).expect("create");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("{}\n", std::process::id()));

        let err = LockedFile::pid_file(&path).expect_err("a second holder is refused");
        let message = format!("{err:#}");
        assert!(
            message.contains("is locked") && message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(pid_file);
        assert!(!path.exists(), "the pid file outlived its holder");
    }

    #[test]
    fn a_symbolic_link_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me\n").expect("target");
        let link = dir.path().join("rossipd.pid");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = LockedFile::pid_file(&link).expect_err("a symlink is refused");
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me\n");

        let hard = dir.path().join("hard.pid");
        std::fs::hard_link(&target, &hard).expect("hard link");
        let err = LockedFile::pid_file(&hard).expect_err("a hard link is refused");
        assert!(format!("{err:#}").contains("hard link"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me\n");

        let plain = dir.path().join("plain.pid");
        let pid_file = LockedFile::pid_file(&plain).expect("create");
        let mode = std::fs::metadata(&plain)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "the pid file is readable by all");
        drop(pid_file);
    }
}
