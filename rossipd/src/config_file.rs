//! The TOML config file (`/etc/rossip/rossipd.toml` for the system daemon,
//! `$XDG_CONFIG_HOME/rossip/rossipd.toml` for a user): one key per flag,
//! checked by the same parsers as the flags, and errors that name the file,
//! the line and the key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The system daemon's config file.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/rossip/rossipd.toml";

/// Every key the file may hold: the flags, with underscores. Values have the
/// types and limits of the flags; a key left out falls back to the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--name`.
    pub name: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--bind`.
    pub bind: Option<IpAddr>,
    /// `--advertise`.
    pub advertise: Option<IpAddr>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--join` (a list).
    pub join: Option<Vec<String>>,
    /// `--cluster`.
    #[serde(default, deserialize_with = "de_cluster")]
    pub cluster: Option<String>,
    /// `--no-mdns`.
    pub no_mdns: Option<bool>,
    /// `--iface` (a list).
    pub iface: Option<Vec<String>>,
    /// `--history`.
    #[serde(default, deserialize_with = "de_history")]
    pub history: Option<usize>,
    /// `--history-max-age` (`"7d"` or `"none"`).
    #[serde(default, deserialize_with = "de_max_age")]
    pub history_max_age: Option<MaxAge>,
    /// `--history-max-bytes`.
    #[serde(default, deserialize_with = "de_max_bytes")]
    pub history_max_bytes: Option<usize>,
    /// `--max-message-bytes`.
    #[serde(default, deserialize_with = "de_message_bytes")]
    pub max_message_bytes: Option<usize>,
    /// `--key-file`.
    pub key_file: Option<PathBuf>,
    /// `--reap-after` (`"1h"`).
    #[serde(default, deserialize_with = "de_reap_after")]
    pub reap_after: Option<humantime::Duration>,
    /// `--log-level`.
    #[serde(default, deserialize_with = "de_log_level")]
    pub log_level: Option<String>,
    /// `--log-file`.
    pub log_file: Option<PathBuf>,
    /// `--syslog`.
    pub syslog: Option<bool>,
    /// `--daemonize`.
    pub daemonize: Option<bool>,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
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
pub fn load(path: &Path, required: bool) -> Result<Option<FileConfig>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(format!("cannot read config file {}: {e}", path.display())),
    };
    parse(&text)
        .map(Some)
        .map_err(|e| format!("config file {}{e}", path.display()))
}

/// Parses the file's text; the error starts with `, line N, key `K`` when
/// toml can say where (so that it follows the file name).
fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let line = line_of(text, span.start);
                match key_at(text, span.start) {
                    Some(key) => format!(", line {line}, key `{key}`: {message}"),
                    None => format!(", line {line}: {message}"),
                }
            }
            None => format!(": {message}"),
        }
    })
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

/// A count or byte size in the file: a TOML integer, checked like the flag.
fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = u64::deserialize(d)?;
    let n = usize::try_from(n).map_err(serde::de::Error::custom)?;
    parse_max_bytes(&n.to_string()).map_err(serde::de::Error::custom)
}

fn de_history<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    positive(d).map(Some)
}

fn de_max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    positive(d).map(Some)
}

/// Also bounded above here: the daemon would refuse a larger one at start,
/// and `--check-config` should say so without starting it.
fn de_message_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = positive(d)?;
    check_message_bytes(n).map_err(serde::de::Error::custom)?;
    Ok(Some(n))
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

fn de_cluster<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    parse_cluster(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn de_log_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    parse_log_level(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn de_max_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MaxAge>, D::Error> {
    let text = String::deserialize(d)?;
    parse_max_age(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn de_reap_after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<humantime::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_reap_after(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
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
        assert_eq!(c.port, Some(7000));
        assert_eq!(
            c.join.as_deref(),
            Some(&["a:7465".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(
            c.history_max_age.and_then(|a| a.0),
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(
            c.reap_after.map(Duration::from),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(c.no_mdns, Some(true));
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
