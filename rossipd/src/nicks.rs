//! The display names (`nick`) this node's users chose: one per local user,
//! kept in `<state dir>/nicks` and added by the driver to every message
//! the user sends (which its signature then covers).
//!
//! File format: a JSON object, user name → display name, written whole and
//! atomically on each change (changes are rare and made by people). A
//! damaged file, or an entry that is no longer a valid display name, is
//! skipped with a warning: display names are a courtesy, never a reason
//! to refuse to start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rossip_proto::nick::normalize_nick;

/// File name in the state directory.
pub const FILE_NAME: &str = "nicks";

/// Most users with a display name on one node: a host has a bounded number
/// of users, and this keeps the file small whatever happens.
pub const MAX_NICKS: usize = 10_000;

/// Why a display name could not be set.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NickTableError {
    /// [`MAX_NICKS`] users already have one.
    #[error("{MAX_NICKS} users of this node already have a display name")]
    Full,
    /// The file could not be written; nothing changed.
    #[error("cannot save display names: {0}")]
    NotSaved(String),
}

/// The table, in memory and on disk.
#[derive(Debug)]
pub struct Nicks {
    path: PathBuf,
    by_user: BTreeMap<String, String>,
}

impl Nicks {
    /// Loads `<dir>/nicks` (none yet: an empty table); what cannot be read
    /// is skipped with a warning.
    pub fn load_or_empty(dir: &Path) -> Nicks {
        let path = dir.join(FILE_NAME);
        let by_user = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), "starting without display names: cannot read: {e}");
                BTreeMap::new()
            }
        };
        Nicks { path, by_user }
    }

    /// `user`'s display name, if it has one.
    pub fn get(&self, user: &str) -> Option<&str> {
        self.by_user.get(user).map(String::as_str)
    }

    /// Sets (`Some`) or removes (`None`) `user`'s display name, already
    /// normalized, and saves the table; on error nothing changed.
    pub fn set(&mut self, user: &str, nick: Option<String>) -> Result<(), NickTableError> {
        // Saving is two fsyncs on the driver's task: a repeated call that
        // changes nothing (a script looping `nick`) writes nothing.
        if self.by_user.get(user) == nick.as_ref() {
            return Ok(());
        }
        let mut next = self.by_user.clone();
        match nick {
            Some(nick) => {
                if !next.contains_key(user) && next.len() >= MAX_NICKS {
                    return Err(NickTableError::Full);
                }
                next.insert(user.to_owned(), nick);
            }
            None => {
                if next.remove(user).is_none() {
                    return Ok(());
                }
            }
        }
        save(&self.path, &next).map_err(|e| NickTableError::NotSaved(format!("{e:#}")))?;
        self.by_user = next;
        Ok(())
    }
}

fn parse(text: &str, path: &Path) -> BTreeMap<String, String> {
    let raw: BTreeMap<String, String> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(file = %path.display(), "starting without display names: not a JSON object of strings: {e}");
            return BTreeMap::new();
        }
    };
    raw.into_iter()
        .filter_map(|(user, nick)| match normalize_nick(&nick) {
            Ok(nick) => Some((user, nick)),
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    user = %rossip_proto::log_text::LogText(&user),
                    "skipping a display name: {e}"
                );
                None
            }
        })
        .take(MAX_NICKS)
        .collect()
}

fn save(path: &Path, table: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(table).context("cannot encode display names")?;
    text.push(b'\n');
    crate::state::write_atomically(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_survive_a_reload_and_bad_entries_are_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nicks = Nicks::load_or_empty(dir.path());
        assert_eq!(nicks.get("ann"), None);
        nicks.set("ann", Some("Ann S.".into())).expect("set");
        nicks.set("bob", Some("Bob".into())).expect("set");
        nicks.set("bob", None).expect("clear");
        nicks.set("carl", None).expect("clearing nothing is fine");
        let again = Nicks::load_or_empty(dir.path());
        assert_eq!(again.get("ann"), Some("Ann S."));
        assert_eq!(again.get("bob"), None);

        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"ann": "Ann", "eve": "root@alpha", "zed": " Zed "}"#,
        )
        .expect("write");
        let edited = Nicks::load_or_empty(dir.path());
        assert_eq!(edited.get("ann"), Some("Ann"));
        assert_eq!(edited.get("eve"), None, "invalid entries are skipped");
        assert_eq!(edited.get("zed"), Some("Zed"));

        std::fs::write(dir.path().join(FILE_NAME), "not json").expect("write");
        assert_eq!(Nicks::load_or_empty(dir.path()).get("ann"), None);
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let gone = dir.path().join("gone");
        let mut nicks = Nicks::load_or_empty(&gone);
        let err = nicks
            .set("ann", Some("Ann".into()))
            .expect_err("no directory");
        assert!(matches!(err, NickTableError::NotSaved(_)), "{err}");
        assert_eq!(nicks.get("ann"), None);
    }
}
