//! `rossipd`: merges flags, environment and the config file, sets up
//! logging, detaches if asked to, and runs the daemon until SIGINT/SIGTERM;
//! SIGHUP reloads what can be reloaded.

mod config_file;
mod detach;
mod logging;
mod man_page;
mod reload;
mod settings;
mod syslog;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use clap::CommandFactory as _;
use tokio::sync::{mpsc, oneshot};

use detach::Detached;
use logging::Logging;
use settings::{Args, Settings};

fn main() -> ExitCode {
    let mut args = settings::parse_args();
    if args.man_page {
        return man_page::print(&Args::command());
    }
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            eprintln!("rossipd: error: cannot read the current directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    args.pin_config_path(&cwd);
    // Config errors exit 2, like the usage errors clap reports for flags.
    let mut settings = match args.to_settings().and_then(|s| s.check().map(|()| s)) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("rossipd: error: {e}");
            return ExitCode::from(2);
        }
    };
    settings.pin_paths(&cwd);
    if args.check_config {
        println!("{}", settings.summary());
        return ExitCode::SUCCESS;
    }
    let settled = settings.settle(syslog::reachable);
    if let Some(path) = &settled.log_fallback {
        // Said before detaching, so the starting command's terminal shows
        // where the log went; the log itself says so below.
        eprintln!("rossipd: {}", fallback_notice(path));
        // The fallback file lives in the state directory, which the daemon
        // would create later: made now as it would be, with the same checks.
        if let Some(dir) = path.parent()
            && let Err(e) = rossipd::create_state_dir(dir)
        {
            eprintln!("rossipd: error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let logging = match logging::init(&settings.log) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("rossipd: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if settings.daemonize && std::env::var_os("INVOCATION_ID").is_some() {
        // Started by systemd without NOTIFY_SOCKET: fine for Type=forking.
        tracing::warn!(
            "daemonizing under systemd: the unit needs Type=forking and PIDFile= (rossipd.service \
             runs it in the foreground instead)"
        );
    }
    let detached = if settings.daemonize {
        match detach::detach(logging.file_handle()) {
            Ok(detached) => {
                logging.after_fork();
                Some(Arc::new(Mutex::new(detached)))
            }
            // The starting command's exit (or a failed detach).
            Err(code) => return code,
        }
    } else {
        None
    };
    if let Some(path) = &settled.log_fallback {
        tracing::warn!("{}", fallback_notice(path));
    }
    if settled.daemonize_ignored {
        tracing::warn!(
            "daemonize ignored: the service manager waits for this process to notify it \
             (NOTIFY_SOCKET is set)"
        );
    }
    log_panics(&settings.log, detached.is_some());
    let logs_elsewhere = settings.log.file.is_some() || settings.log.syslog;
    if let Some(file) = &settings.file {
        tracing::info!("config file {}", file.display());
    }
    let result = run(Parts {
        args,
        settings,
        logging,
        cwd,
        detached: detached.clone(),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}");
            if let Some(detached) = &detached {
                detached
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .failed(&message);
            }
            // In the log when that is a file or syslog; on stderr when a
            // terminal or journald reads it (once: logging may be stderr).
            if logs_elsewhere {
                tracing::error!("{message}");
            }
            if detached.is_none() {
                eprintln!("rossipd: error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Where a detached daemon's log went, and why.
fn fallback_notice(path: &std::path::Path) -> String {
    format!(
        "no syslog ({} does not answer): the detached daemon logs to {} (--log-file or \
         --syslog choose otherwise)",
        syslog::socket_path().display(),
        path.display()
    )
}

/// What `run` needs; gathered to keep its signature short.
struct Parts {
    args: Args,
    settings: Settings,
    logging: Logging,
    cwd: PathBuf,
    detached: Option<Arc<Mutex<Detached>>>,
}

fn run(parts: Parts) -> anyhow::Result<()> {
    let Parts {
        args,
        settings,
        logging,
        cwd,
        detached,
    } = parts;
    // One thread: the driver owns all protocol state, so more workers would
    // only add cross-thread wake-ups between it and the connections
    // (measured: lower latency, and 20,000 msg/s
    // from one sender instead of ~17,000 with five daemons on two cores).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        // After the handlers: a `kill -HUP $(cat pid)` (logrotate) as soon
        // as the file exists must reload, not kill. The pid is final (after
        // any fork), and a locked pid file is a refusal to start.
        let _pid_file = settings
            .pid_file
            .as_deref()
            .map(rossipd::locked_file::LockedFile::pid_file)
            .transpose()?;
        let (key_reloads_tx, key_reloads) = mpsc::channel(1);
        let (ready_tx, ready) = oneshot::channel();
        let config = settings.config.clone();
        tokio::spawn(
            reload::Reloader {
                args,
                running: settings,
                logging,
                keys: key_reloads_tx,
                cwd,
            }
            .serve(hangups),
        );
        if let Some(detached) = detached {
            tokio::spawn(async move {
                if ready.await.is_ok() {
                    detached
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .ready();
                }
            });
        }
        let hooks = rossipd::Hooks {
            ready: Some(ready_tx),
            key_reloads: Some(key_reloads),
        };
        rossipd::run_with(config, shutdown, hooks).await
    })
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{which} received; leaving the cluster");
    })
}

/// A panic also goes to the log when that is a file or syslog: a
/// detached daemon's stderr may be /dev/null, and the log is where an
/// operator looks. Written once: a detached daemon with a log file has
/// that file as its stderr too (in the foreground stderr is the terminal
/// or the journal, which keep the default hook's report).
fn log_panics(log: &settings::LogSettings, detached: bool) {
    if log.file.is_none() && !log.syslog {
        return; // stderr is the log: the default hook writes it there.
    }
    let to_file = log.file.is_some() && detached;
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        if !to_file {
            default(info);
        }
    }));
}
