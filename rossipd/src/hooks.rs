//! What the program around [`crate::run_with`] can ask of a running daemon
//! besides stopping it: to be told when it is ready (`--daemonize` waits for
//! that), and to reload the cluster key file (SIGHUP).

use std::path::PathBuf;
use std::time::Duration;

use rossip_proto::seal::{KeyId, Keyring};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::{Handle, WeakHandle};
use crate::keyfile;

/// How long a reload waits for the driver.
const DRIVER_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Channels into a running daemon; all optional.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Fired once the sockets and discovery are up and the driver answers.
    pub ready: Option<oneshot::Sender<()>>,
    /// Requests to re-read the cluster key file.
    pub key_reloads: Option<mpsc::Receiver<KeyReload>>,
}

/// A request to re-read the cluster key file.
#[derive(Debug)]
pub struct KeyReload {
    /// The configured key file (`--key-file`); `None` falls back to the
    /// systemd credential, as at start.
    pub key_file: Option<PathBuf>,
    /// What happened.
    pub reply: oneshot::Sender<KeyReloadReport>,
}

/// The outcome of a key file reload, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyReloadReport {
    /// What changed.
    pub applied: Vec<String>,
    /// What the file asks for that a reload does not do, and why.
    pub not_applied: Vec<String>,
}

impl KeyReloadReport {
    /// A report of one thing not done.
    pub fn refused(why: String) -> KeyReloadReport {
        KeyReloadReport {
            applied: Vec::new(),
            not_applied: vec![why],
        }
    }
}

/// Starts the tasks that serve `hooks`.
pub(crate) fn spawn(
    hooks: Hooks,
    key_file: Option<&std::path::Path>,
    driver: &Handle,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) {
    if let Some(ready) = hooks.ready {
        // Weak: this task must not keep the driver's queue open.
        let commands = driver.downgrade();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                answered = driver_answers(commands) => {
                    if answered {
                        let _ = ready.send(());
                    }
                }
            }
        });
    }
    if let Some(mut reloads) = hooks.key_reloads {
        let mut last_read = LastRead::at_start(key_file);
        let commands = driver.downgrade();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            loop {
                let request = tokio::select! {
                    () = cancel.cancelled() => return,
                    request = reloads.recv() => match request {
                        Some(request) => request,
                        None => return,
                    },
                };
                let report = reload_keys(request.key_file, &mut last_read, &commands).await;
                let _ = request.reply.send(report);
            }
        });
    }
}

/// Waits until the driver answers `status` (it does once its loop runs).
async fn driver_answers(driver: WeakHandle) -> bool {
    let Some(driver) = driver.upgrade() else {
        return false;
    };
    // The first answer waits for the driver's loop to start: no limit.
    driver.status().await.is_ok()
}

/// Reads the key file and hands its keys to the driver.
async fn reload_keys(
    configured: Option<PathBuf>,
    last_read: &mut LastRead,
    driver: &WeakHandle,
) -> KeyReloadReport {
    let resolved = keyfile::resolve(configured.as_deref());
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty());
    if let Some(credential) = resolved.as_deref().filter(|path| {
        credentials
            .as_ref()
            .is_some_and(|dir| path.starts_with(dir))
    }) {
        // systemd copies credentials when the service starts and never
        // again: re-reading the copy would only ever find the old key.
        return KeyReloadReport::refused(format!(
            "key file: the key comes from systemd's credential {}, which systemd copies when \
             the service starts: `systemctl restart rossipd` reads a new one",
            credential.display()
        ));
    }
    let file = match resolved {
        // A small file, read once per SIGHUP: not worth a blocking task.
        Some(path) => match keyfile::load(&path) {
            Ok(keyring) => Some(KeyFile {
                fresh: last_read.fresh(&path, &keyring),
                path,
                keyring,
            }),
            Err(e) => return KeyReloadReport::refused(format!("key file: {e:#}")),
        },
        None => None,
    };
    let Some(driver) = driver.upgrade() else {
        return KeyReloadReport::refused("key file: the daemon is shutting down".to_owned());
    };
    match tokio::time::timeout(DRIVER_ANSWER_TIMEOUT, driver.reload_keys(file)).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => KeyReloadReport::refused(format!("key file: {e}")),
        Err(_) => KeyReloadReport::refused("key file: the driver did not answer".to_owned()),
    }
}

/// The key file's keyring, as the driver receives it.
pub(crate) type KeyFileContents = Option<KeyFile>;

/// The key file as a reload read it.
#[derive(Debug)]
pub(crate) struct KeyFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its keys, the sealing one first.
    pub keyring: Keyring,
    /// The ids of the keys added to it since it was last read (at start or
    /// by the previous reload): only those may be installed. A key that was
    /// in it all along and that this node lacks was removed with `rossipctl
    /// keys remove`; a stale key file must not bring it back.
    pub fresh: Vec<KeyId>,
}

/// The key ids in the key file the last time it was read, and where it was.
#[derive(Debug, Default)]
struct LastRead {
    path: Option<PathBuf>,
    ids: Vec<KeyId>,
}

impl LastRead {
    /// What the key file held at start (unreadable: nothing).
    fn at_start(configured: Option<&std::path::Path>) -> LastRead {
        let Some(path) = keyfile::resolve(configured) else {
            return LastRead::default();
        };
        let ids = keyfile::load(&path).map(|k| k.ids()).unwrap_or_default();
        LastRead {
            path: Some(path),
            ids,
        }
    }

    /// The ids of `keyring` (read from `path`) that are new since the last
    /// read; remembers this read.
    fn fresh(&mut self, path: &std::path::Path, keyring: &Keyring) -> Vec<KeyId> {
        let ids = keyring.ids();
        let fresh = if self.path.as_deref() == Some(path) {
            ids.iter()
                .copied()
                .filter(|id| !self.ids.contains(id))
                .collect()
        } else {
            ids.clone()
        };
        *self = LastRead {
            path: Some(path.to_path_buf()),
            ids,
        };
        fresh
    }
}
