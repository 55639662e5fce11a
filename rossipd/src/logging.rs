//! Where rossipd's log lines go (stderr, a file, or syslog) and the handles
//! SIGHUP uses: a new level without a restart, and the log file reopened
//! after logrotate moved it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

use crate::settings::LogSettings;
use crate::syslog::Syslog;

/// The log file, in the state directory, of a daemon detached without
/// `--log-file` on a host without syslog.
pub const FALLBACK_LOG_FILE: &str = "rossipd.log";

/// The `log_level` when none is given.
pub const DEFAULT_LEVEL: &str = "info";

/// The running logger's knobs.
#[derive(Debug)]
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    file: Option<LogFile>,
    syslog: Option<Syslog>,
    /// RUST_LOG, which beats `log_level` at start and at every reload.
    rust_log: Option<String>,
}

/// The filter for a `log_level` value. A bare level applies to rossip's own
/// crates; mdns-sd is chatty at debug, so it stays at warn unless asked for
/// by a full filter.
pub fn filter(level: &str) -> Result<EnvFilter, String> {
    let spec = if level.contains('=') || level.contains(',') {
        level.to_owned()
    } else {
        format!("warn,rossipd={level},rossip_proto={level},mdns_sd=warn")
    };
    EnvFilter::try_new(spec).map_err(|e| e.to_string())
}

/// Sets up logging as `settings` say. Called before `--daemonize` detaches,
/// so that a log file or syslog that cannot be opened is reported on the
/// terminal; nothing here starts a thread, so the fork that follows is safe.
pub fn init(settings: &LogSettings) -> anyhow::Result<Logging> {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let initial = match &rust_log {
        Some(spec) => {
            EnvFilter::try_new(spec).with_context(|| format!("invalid RUST_LOG {spec:?}"))?
        }
        None => filter(&settings.level)
            .map_err(|e| anyhow::anyhow!("invalid log_level {:?}: {e}", settings.level))?,
    };
    let (filter, handle) = reload::Layer::new(initial);
    let mut file = None;
    let mut syslog = None;
    let output = if let Some(path) = &settings.file {
        let log_file = LogFile::open(path)?;
        file = Some(log_file.clone());
        tracing_subscriber::fmt::layer()
            .with_writer(log_file)
            .with_ansi(false)
            .boxed()
    } else if settings.syslog {
        let writer = Syslog::connect()?;
        syslog = Some(writer.clone());
        // syslog stamps the time and keeps the priority itself.
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .boxed()
    } else {
        // journald adds its own timestamps; a terminal user wants them.
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed()
    };
    // `try_init` also bridges the `log` records of mdns-sd into tracing.
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    Ok(Logging {
        filter: handle,
        file,
        syslog,
        rust_log,
    })
}

impl Logging {
    /// Applies a new `log_level`; an error says why not (a bad filter, or
    /// RUST_LOG, which overrides it).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if let Some(spec) = &self.rust_log {
            return Err(format!("RUST_LOG={spec:?} overrides log_level"));
        }
        let new = filter(level).map_err(|e| format!("invalid log_level {level:?}: {e}"))?;
        self.filter
            .reload(new)
            .map_err(|e| format!("cannot change the log filter: {e}"))
    }

    /// Reopens the log file (logrotate moved it away); `None` when logging
    /// does not go to a file.
    pub fn reopen(&self) -> Option<(PathBuf, anyhow::Result<()>)> {
        self.file
            .as_ref()
            .map(|file| (file.path.clone(), file.reopen()))
    }

    /// After `--daemonize` forked: syslog lines carry the daemon's pid.
    pub fn after_fork(&self) {
        if let Some(syslog) = &self.syslog {
            syslog.refresh_pid();
        }
    }

    /// The open log file, for stderr to go to after `--daemonize` (panic
    /// messages then land in the log too).
    pub fn file_handle(&self) -> Option<File> {
        let file = self.file.as_ref()?;
        file.lock().try_clone().ok()
    }
}

/// A log file opened for appending, shared by every writer, reopened by
/// path on SIGHUP.
#[derive(Debug, Clone)]
struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    fn open(path: &Path) -> anyhow::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(Self::open_file(path)?)),
        })
    }

    /// Opens `path` for appending. A new file is made mode 640 whatever the
    /// umask (0077 under --daemonize and systemd), so an `adm`-style group
    /// can read it; an existing one keeps the mode its owner gave it. A
    /// symbolic link is refused: a root daemon must not append to whatever
    /// a link points at.
    fn open_file(path: &Path) -> anyhow::Result<File> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let context = || {
            format!(
                "cannot open the log file {} (a symbolic link is refused)",
                path.display()
            )
        };
        let mut options = std::fs::OpenOptions::new();
        options
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW);
        match options.clone().create_new(true).open(path) {
            Ok(file) => {
                file.set_permissions(std::fs::Permissions::from_mode(0o640))
                    .with_context(context)?;
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let file = options.open(path).with_context(context)?;
                use std::os::unix::fs::MetadataExt as _;
                let meta = file.metadata().with_context(context)?;
                // Appending through a hard link writes into another file.
                if !meta.is_file() || meta.nlink() != 1 {
                    anyhow::bail!(
                        "the log file {} is not a plain file of its own (a hard link or a device)",
                        path.display()
                    );
                }
                Ok(file)
            }
            Err(e) => Err(e).with_context(context),
        }
    }

    fn reopen(&self) -> anyhow::Result<()> {
        let fresh = Self::open_file(&self.path)?;
        *self.lock() = fresh;
        Ok(())
    }

    /// A writer that panicked mid-line leaves a usable file behind.
    fn lock(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One log line's writer: the file stays locked while the line is written,
/// so lines of different threads never interleave.
#[derive(Debug)]
pub struct LogFileWriter<'a>(MutexGuard<'a, File>);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_keeps_mdns_quiet_and_a_filter_is_taken_as_is() {
        assert!(filter("debug").is_ok());
        assert!(filter("rossipd=trace,mdns_sd=debug").is_ok());
        assert!(filter("loud[").is_err());
    }

    #[test]
    fn reopening_follows_the_path_after_a_rename() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rossipd.log");
        let log = LogFile::open(&path).expect("open");
        writeln!(log.make_writer(), "first").expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "a new log file is mode 640");
        let rotated = dir.path().join("rossipd.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        writeln!(log.make_writer(), "second").expect("write");
        log.reopen().expect("reopen");
        writeln!(log.make_writer(), "third").expect("write");
        let old = std::fs::read_to_string(&rotated).expect("read rotated");
        let new = std::fs::read_to_string(&path).expect("read new");
        assert_eq!(old, "first\nsecond\n");
        assert_eq!(new, "third\n");
    }
}
