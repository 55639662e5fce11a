//! The TOML config file (`/etc/rossip/rossipd.toml` for the system daemon,
//! `$XDG_CONFIG_HOME/rossip/rossipd.toml` for a user): one key per setting
//! (see [`crate::settings`]), checked by the same parsers as the flags, and
//! errors that name the file, the line and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::any::Any;
use std::collections::BTreeMap;

use toml::de::DeTable;

use crate::settings::SETTINGS;

/// The system daemon's config file.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/rossip/rossipd.toml";

/// The file's values, each read and checked by its setting (see
/// [`crate::settings::SETTINGS`]); a key left out falls back to the default.
#[derive(Default)]
pub struct FileValues {
    /// By key; each value has its setting's type.
    values: BTreeMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl FileValues {
    /// The value of `key`, if the file has it and it is a `T` (as it is
    /// when `T` is the type of the setting that read it).
    pub fn get<T: 'static>(&self, key: &str) -> Option<&T> {
        self.values.get(key)?.downcast_ref()
    }
}

impl std::fmt::Debug for FileValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// Where the config comes from when `--config` is not given: the system
/// file for the system daemon (`system`), else the user's
/// (`$XDG_CONFIG_HOME/rossip/rossipd.toml`, or `~/.config/...`); `None` if
/// a user has neither variable.
pub fn default_path(system: bool) -> Option<PathBuf> {
    if system {
        return Some(PathBuf::from(SYSTEM_CONFIG_PATH));
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = non_empty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("rossip").join("rossipd.toml"))
}

/// Reads `path`. A missing file is `Ok(None)` unless `required` (named by
/// `--config`); anything else wrong is an error naming the file (and the
/// line and key when the content is at fault).
pub fn load(path: &Path, required: bool) -> Result<Option<FileValues>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(format!("cannot read config file {}: {e}", path.display())),
    };
    parse(&text)
        .map(Some)
        .map_err(|e| format!("config file {}{e}", path.display()))
}

/// Parses the file's text: every key must be a setting's, and each value
/// is read by its setting. The error starts with `, line N, key `K``
/// when toml can say where (so that it follows the file name).
fn parse(text: &str) -> Result<FileValues, String> {
    let located = |message: &str, span: Option<std::ops::Range<usize>>| {
        let message = message.trim_end();
        match span {
            Some(span) => {
                let line = line_of(text, span.start);
                match key_at(text, span.start) {
                    Some(key) => format!(", line {line}, key `{key}`: {message}"),
                    None => format!(", line {line}: {message}"),
                }
            }
            None => format!(": {message}"),
        }
    };
    let table = DeTable::parse(text).map_err(|e| located(e.message(), e.span()))?;
    // In the file's order, so that the first error is the first one there.
    let mut entries: Vec<_> = table.into_inner().into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut values = FileValues::default();
    for (key, value) in entries {
        let Some(setting) = SETTINGS.iter().find(|s| s.key() == key.get_ref().as_ref()) else {
            let expected: Vec<String> = SETTINGS.iter().map(|s| format!("`{}`", s.key())).collect();
            let message = format!(
                "unknown field `{}`, expected one of {}",
                key.get_ref(),
                expected.join(", ")
            );
            return Err(located(&message, Some(key.span())));
        };
        let span = value.span();
        let read = setting
            .read_file(value)
            .map_err(|e| located(e.message(), e.span().or(Some(span))))?;
        values.values.insert(setting.key(), read);
    }
    Ok(values)
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key whose value holds byte `offset`: the nearest `key =` (or
/// `[table]`) at or above its line. The file is flat, so the nearest key
/// above is the one that owns a value spread over several lines.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let end = offset.min(text.len());
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    text[..line_end].lines().rev().find_map(|line| {
        let line = line.trim_start();
        if let Some(table) = line.strip_prefix('[') {
            let name = table.trim_start_matches('[').split(']').next()?.trim();
            return Some(name.to_owned());
        }
        let (key, _) = line.split_once('=')?;
        let key = key.trim().trim_matches('"');
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        bare.then(|| key.to_owned())
    })
}

/// `--history-max-age`: a duration, or no bound.
#[derive(Debug, Clone, Copy)]
pub struct MaxAge(pub Option<Duration>);

impl std::fmt::Display for MaxAge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(age) => humantime::format_duration(age).fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// A human duration (`90s`, `30m`, `1h`) from one second to ten years.
pub fn parse_reap_after(text: &str) -> Result<humantime::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    if duration > rossip_proto::node::MAX_REAP_AFTER {
        return Err("must be at most 10 years".to_owned());
    }
    Ok(duration.into())
}

/// A human duration of at least a second, or `none` (no age bound). Zero is
/// refused rather than read as "none", so that there is one way to say it.
pub fn parse_max_age(text: &str) -> Result<MaxAge, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(MaxAge(None));
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e} (a duration such as 12h or 7d, or `none`)"))?;
    if duration < Duration::from_secs(1) {
        return Err("must be at least 1s; `none` removes the age bound".to_owned());
    }
    Ok(MaxAge(Some(duration)))
}

/// `--cluster`: a cluster label ([`rossipd::config::check_cluster_label`]).
pub fn parse_cluster(text: &str) -> Result<String, String> {
    rossipd::config::check_cluster_label(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// `--max-message-bytes`: a byte count of at least 1 and at most
/// [`rossipd::config::MAX_MESSAGE_BYTES_LIMIT`], checked here rather than
/// after the merge so that the error names the flag, variable or key.
pub fn parse_message_bytes(text: &str) -> Result<usize, String> {
    let n = parse_max_bytes(text)?;
    check_message_bytes(n)?;
    Ok(n)
}

/// `--log-level`: a level or a tracing filter that parses.
pub fn parse_log_level(text: &str) -> Result<String, String> {
    crate::logging::filter(text)?;
    Ok(text.to_owned())
}

/// A byte count of at least 1.
pub fn parse_max_bytes(text: &str) -> Result<usize, String> {
    parse_positive(text, "a number of bytes, e.g. 67108864")
}

/// `--history`: a message count, at least 1.
pub fn parse_history(text: &str) -> Result<usize, String> {
    parse_positive(text, "a number of messages, e.g. 100000")
}

fn parse_positive(text: &str, what: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} ({what})")),
    }
}

/// The `--max-message-bytes` upper bound ([`rossipd::config::MAX_MESSAGE_BYTES_LIMIT`]).
pub fn check_message_bytes(n: usize) -> Result<(), String> {
    let limit = rossipd::config::MAX_MESSAGE_BYTES_LIMIT;
    if n > limit {
        return Err(format!(
            "must be at most {limit} (a message must fit one request line)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses() {
        let c = parse(
            r#"
name = "n1"
port = 7000
bind = "127.0.0.1"
advertise = "127.0.0.2"
socket = "/tmp/s.sock"
state_dir = "/tmp/state"
join = ["a:7465", "b"]
cluster = "lab"
no_mdns = true
iface = ["eth0"]
history = 10
history_max_age = "7d"
history_max_bytes = 1000
max_message_bytes = 2000
key_file = "/etc/rossip/rossip.key"
reap_after = "30m"
log_level = "debug"
"#,
        )
        .expect("a full file parses");
        assert_eq!(c.get::<u16>("port"), Some(&7000));
        assert_eq!(
            c.get::<Vec<String>>("join").map(Vec::as_slice),
            Some(&["a:7465".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(
            c.get::<MaxAge>("history_max_age").and_then(|a| a.0),
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(
            c.get::<humantime::Duration>("reap_after")
                .map(|&d| Duration::from(d)),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(c.get::<bool>("no_mdns"), Some(&true));
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let e = parse("port = 1\n\nbogus = 3\n").expect_err("unknown key");
        assert!(e.contains("line 3, key `bogus`"), "{e}");
        let e = parse("port = 1\nreap_after = \"500ms\"\n").expect_err("bad value");
        assert!(e.contains("line 2, key `reap_after`"), "{e}");
        assert!(e.contains("at least 1s"), "{e}");
        let e = parse("join = [\n  \"a\",\n  3,\n]\n").expect_err("bad element");
        assert!(e.contains("line 3, key `join`"), "{e}");
        let e = parse("max_message_bytes = 99999999\n").expect_err("too large");
        assert!(e.contains("at most"), "{e}");
        let e = parse("port = 1\ncluster = \"lab a\"\n").expect_err("bad label");
        assert!(e.contains("line 2, key `cluster`"), "{e}");
        assert!(e.contains("cluster label"), "{e}");
        assert!(!e.contains("channel"), "{e}");
    }
}
