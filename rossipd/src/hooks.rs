//! What the program around [`crate::run_with`] can ask of a running daemon
//! besides stopping it: to be told when it is ready (`--daemonize` waits for
//! that), and to reload the cluster key file (SIGHUP).

use std::path::PathBuf;
use std::time::Duration;

use rossip_proto::seal::Keyring;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::Command;
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
    commands: &mpsc::Sender<Command>,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) {
    if let Some(ready) = hooks.ready {
        // Weak: this task must not keep the driver's queue open.
        let commands = commands.downgrade();
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
        let commands = commands.downgrade();
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
                let report = reload_keys(request.key_file, &commands).await;
                let _ = request.reply.send(report);
            }
        });
    }
}

/// Waits until the driver answers `status` (it does once its loop runs).
async fn driver_answers(commands: mpsc::WeakSender<Command>) -> bool {
    let Some(commands) = commands.upgrade() else {
        return false;
    };
    let (reply, answer) = oneshot::channel();
    if commands.send(Command::Status { reply }).await.is_err() {
        return false;
    }
    drop(commands);
    answer.await.is_ok()
}

/// Reads the key file and hands its keys to the driver.
async fn reload_keys(
    configured: Option<PathBuf>,
    commands: &mpsc::WeakSender<Command>,
) -> KeyReloadReport {
    if configured.is_none()
        && let Some(credential) = keyfile::resolve(None)
    {
        // systemd copies credentials when the service starts and never
        // again: re-reading the copy would only ever find the old key.
        return KeyReloadReport::refused(format!(
            "key file: the key comes from systemd's credential {}, which systemd copies when \
             the service starts: `systemctl restart rossipd` reads a new one",
            credential.display()
        ));
    }
    let file = match keyfile::resolve(configured.as_deref()) {
        // A small file, read once per SIGHUP: not worth a blocking task.
        Some(path) => match keyfile::load(&path) {
            Ok(keyring) => Some((path, keyring)),
            Err(e) => return KeyReloadReport::refused(format!("key file: {e:#}")),
        },
        None => None,
    };
    let Some(commands) = commands.upgrade() else {
        return KeyReloadReport::refused("key file: the daemon is shutting down".to_owned());
    };
    let (reply, answer) = oneshot::channel();
    if commands
        .send(Command::ReloadKeys { file, reply })
        .await
        .is_err()
    {
        return KeyReloadReport::refused("key file: the daemon is shutting down".to_owned());
    }
    drop(commands);
    match tokio::time::timeout(DRIVER_ANSWER_TIMEOUT, answer).await {
        Ok(Ok(report)) => report,
        _ => KeyReloadReport::refused("key file: the driver did not answer".to_owned()),
    }
}

/// The key file's keyring, as the driver receives it.
pub(crate) type KeyFileContents = Option<(PathBuf, Keyring)>;
