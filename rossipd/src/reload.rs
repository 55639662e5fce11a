//! SIGHUP: reopen the log file, read the configuration again (the file as
//! it is now, the same flags and environment), apply what a running daemon
//! can change (the settings declared [`OnReload::Apply`]: the log level,
//! the key file's keys) and say, by name, what it could not (every other
//! setting needs a restart).

use rossipd::hooks::{KeyReload, KeyReloadReport};
use tokio::sync::{mpsc, oneshot};

use crate::logging::Logging;
use crate::settings::{Args, Live, OnReload, SETTINGS, Settings};

/// Everything a reload needs; owned by the SIGHUP task.
#[derive(Debug)]
pub struct Reloader {
    /// The command line as parsed at start.
    pub args: Args,
    /// The configuration in effect (updated by what a reload applies).
    pub running: Settings,
    /// The logger's knobs.
    pub logging: Logging,
    /// The daemon's key-file reload hook.
    pub keys: mpsc::Sender<KeyReload>,
    /// The directory rossipd started in: relative paths are taken from it.
    pub cwd: std::path::PathBuf,
}

impl Reloader {
    /// Reloads on every SIGHUP until the runtime ends.
    pub async fn serve(mut self, mut hangups: tokio::signal::unix::Signal) {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the configuration");
            self.reload().await;
        }
    }

    async fn reload(&mut self) {
        let mut applied = Vec::new();
        let mut not_applied = Vec::new();
        // First, so that what follows lands in the new file.
        let mut reopened = false;
        match self.logging.reopen() {
            Some((path, Ok(()))) => {
                reopened = true;
                applied.push(format!("reopened the log file {}", path.display()))
            }
            Some((path, Err(e))) => not_applied.push(format!(
                "log file {}: {e:#}; logging to the old file",
                path.display()
            )),
            None => {}
        }
        let new = match self.args.to_settings().and_then(|mut new| {
            new.pin_paths(&self.cwd);
            // The log destination a detached daemon chose at start
            // stands: syslog if it took it, else the fallback file.
            let syslog = self.running.log.syslog;
            new.settle(|| syslog);
            new.check().map(|()| new)
        }) {
            Ok(new) => new,
            Err(e) => {
                // No "reload done" line: nothing of the configuration was
                // applied, whatever the log file did. This line is the last.
                log_changes(&applied, &not_applied);
                let only = if reopened {
                    " (only the log file was reopened)"
                } else {
                    ""
                };
                tracing::error!("reload failed, the running configuration is unchanged{only}: {e}");
                return;
            }
        };

        // What can change while running, in the table's order; then what
        // cannot, named.
        for setting in SETTINGS {
            match setting.on_reload() {
                OnReload::Apply(Live::LogLevel) => {
                    self.apply_log_level(&new, &mut applied, &mut not_applied);
                }
                OnReload::Apply(Live::KeyFile) => {
                    let keys = self.reload_keys(&new).await;
                    applied.extend(keys.applied);
                    not_applied.extend(keys.not_applied);
                    self.running.config.key_file = new.config.key_file.clone();
                }
                OnReload::Restart => {} // Named below.
            }
        }
        for (what, old, wanted) in restart_only_changes(&self.running, &new) {
            not_applied.push(format!("{what} {old} -> {wanted} (needs a restart)"));
        }
        log_outcome(&applied, &not_applied);
    }

    /// A new `log_level`, in force at once (RUST_LOG still beats it).
    fn apply_log_level(
        &mut self,
        new: &Settings,
        applied: &mut Vec<String>,
        not_applied: &mut Vec<String>,
    ) {
        if new.log.level == self.running.log.level {
            return;
        }
        match self.logging.set_level(&new.log.level) {
            Ok(()) => {
                applied.push(format!(
                    "log_level {} -> {}",
                    self.running.log.level, new.log.level
                ));
                self.running.log.level = new.log.level.clone();
            }
            Err(e) => not_applied.push(format!("log_level {}: {e}", new.log.level)),
        }
    }

    async fn reload_keys(&self, new: &Settings) -> KeyReloadReport {
        let (reply, answer) = oneshot::channel();
        let request = KeyReload {
            key_file: new.config.key_file.clone(),
            reply,
        };
        if self.keys.send(request).await.is_err() {
            return KeyReloadReport::refused("key file: the daemon is shutting down".to_owned());
        }
        answer.await.unwrap_or_else(|_| {
            KeyReloadReport::refused("key file: the daemon is shutting down".to_owned())
        })
    }
}

/// One line per change and per refusal (the log target, `rossipd::reload`,
/// says what they are about).
fn log_changes(applied: &[String], not_applied: &[String]) {
    for change in applied {
        tracing::info!("{change}");
    }
    for refusal in not_applied {
        tracing::warn!("not applied: {refusal}");
    }
}

/// The changes and refusals of a reload that read the configuration, then
/// its last line.
fn log_outcome(applied: &[String], not_applied: &[String]) {
    log_changes(applied, not_applied);
    // Last, so that a script (or a test) waiting for it has the whole story.
    tracing::info!(
        "reload done: {} applied, {} not applied",
        applied.len(),
        not_applied.len()
    );
}

/// The settings a running daemon keeps until it restarts, where `new`
/// differs from `running`: (key, running value, new value).
fn restart_only_changes(running: &Settings, new: &Settings) -> Vec<(&'static str, String, String)> {
    restart_only(running, new)
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .collect()
}

/// Every setting a running daemon keeps until it restarts
/// ([`OnReload::Restart`]): (key, running value, new value), as
/// `--check-config` shows them.
fn restart_only(running: &Settings, new: &Settings) -> Vec<(&'static str, String, String)> {
    SETTINGS
        .iter()
        .filter(|setting| setting.on_reload() == OnReload::Restart)
        .map(|setting| (setting.key(), setting.show(running), setting.show(new)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory as _;

    use super::*;
    use crate::settings::LogSettings;

    /// A new flag must be either reloaded or named as needing a restart:
    /// a reload that silently ignores it would mislead.
    #[test]
    fn every_flag_is_reloaded_or_named_as_needing_a_restart() {
        let settings = Settings {
            config: rossipd::config::Config::new(PathBuf::from("/s"), PathBuf::from("/d")),
            log: LogSettings {
                level: "info".to_owned(),
                file: None,
                syslog: false,
            },
            daemonize: false,
            pid_file: None,
            file: None,
        };
        let named: Vec<&str> = restart_only(&settings, &settings)
            .into_iter()
            .map(|(key, ..)| key)
            .collect();
        let reloaded_or_one_shot = [
            "log_level",
            "key_file",
            "config",
            "check_config",
            "man_page",
        ];
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let key = long.replace('-', "_");
            if key == "help" || key == "version" || reloaded_or_one_shot.contains(&key.as_str()) {
                continue;
            }
            assert!(
                named.contains(&key.as_str()),
                "--{long} is neither reloaded nor named by restart_only_changes"
            );
        }
        assert!(
            restart_only_changes(&settings, &settings).is_empty(),
            "the same settings differ"
        );
    }
}
