//! Trust on first use: each node name is pinned to the first public key
//! seen using it, in `<state dir>/known_names`, and a name that shows up
//! under another key is reported loudly.
//!
//! Node ids derive from keys and every message is signed, so who sent a
//! message is never in doubt; its *name* is only what that node calls
//! itself. Pinning makes a name mean "the node first seen under it": a
//! second node calling itself `web1` (or `web1` reinstalled with a new
//! key) is flagged in `tail`, `peers` and the log until the operator
//! removes the old pin (a line of `known_names`) and restarts.
//!
//! File format: one pin per line, `<public key hex> <name>` (the name is
//! the rest of the line; a name containing a line break is not pinned).
//! Bounded by [`MAX_PINS`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rossip_proto::NodeId;
use rossip_proto::rpc::NameTrust;
use rossip_proto::sign::PublicKey;

/// File name in the state directory.
pub const FILE_NAME: &str = "known_names";

/// Most names pinned; past it new names are not pinned (logged once), so a
/// flood of invented names cannot grow the file without bound.
pub const MAX_PINS: usize = 10_000;

/// Distinct (name, key) conflicts logged one by one.
const MAX_WARNED: usize = 1024;

/// The pins, loaded and kept in memory; appended to the file on every new
/// pin.
#[derive(Debug)]
pub struct Pins {
    path: PathBuf,
    pins: BTreeMap<String, PublicKey>,
    /// (name, key) pairs already warned about, so each conflict is logged
    /// once per run, not once per message.
    warned: BTreeSet<(String, PublicKey)>,
    conflicts: u64,
    full_logged: bool,
}

impl Pins {
    /// Loads `<dir>/known_names` (none yet: no pins). Unreadable lines are
    /// skipped with a warning.
    pub fn load(dir: &Path) -> anyhow::Result<Pins> {
        let path = dir.join(FILE_NAME);
        let mut pins = BTreeMap::new();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let bad = parse_file(&text, &mut pins);
                for line in bad {
                    tracing::warn!(file = %path.display(), line, "skipping an unreadable pin");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        Ok(Pins {
            path,
            pins,
            warned: BTreeSet::new(),
            conflicts: 0,
            full_logged: false,
        })
    }

    /// Loads the pins, or starts with none if the file cannot be read (a
    /// warning: pins are a safeguard, not a reason to refuse to start).
    pub fn load_or_empty(dir: &Path) -> Pins {
        Pins::load(dir).unwrap_or_else(|e| {
            tracing::warn!("starting without pinned names: {e:#}");
            Pins {
                path: dir.join(FILE_NAME),
                pins: BTreeMap::new(),
                warned: BTreeSet::new(),
                conflicts: 0,
                full_logged: false,
            }
        })
    }

    /// Checks `name` against its pin, pinning it to `key` if it has none.
    /// A conflict is logged as a warning (once per name and key), naming
    /// the node `id` that used it.
    pub fn observe(&mut self, name: &str, key: &PublicKey, id: &NodeId) -> NameTrust {
        match self.pins.get(name) {
            Some(pinned) if pinned == key => NameTrust::Pinned,
            Some(pinned) => {
                let pair = (name.to_owned(), *key);
                if self.warned.len() >= MAX_WARNED && !self.warned.contains(&pair) {
                    // Keys are free to make: past this many, conflicts are
                    // still flagged and counted, no longer each logged.
                    self.conflicts += 1;
                    if self.warned.len() == MAX_WARNED {
                        tracing::warn!(
                            "NAME CHANGED KEY for more than {MAX_WARNED} names and keys: no longer logging each"
                        );
                        self.warned.insert(pair);
                    }
                } else if self.warned.insert(pair) {
                    self.conflicts += 1;
                    tracing::warn!(
                        peer = %rossip_proto::log_text::LogText(name),
                        peer_id = %id.short(),
                        key = %key.fingerprint(),
                        pinned = %pinned.fingerprint(),
                        file = %self.path.display(),
                        "NAME CHANGED KEY: a node calls itself {name:?}, but that name was first seen with another \
                         key. It may be impersonating, or {name:?} was reinstalled. If it is legitimate, remove the \
                         old line from the file and restart rossipd"
                    );
                }
                NameTrust::Changed
            }
            None => self.pin(name, key, id),
        }
    }

    /// This node took a new key (a copy of it elsewhere keeps the old one):
    /// its own name, if pinned to `old`, is pinned to `new` instead, so it
    /// does not flag itself. Appended: a later line for a name wins when
    /// the file is read.
    pub fn repin_own(&mut self, name: &str, old: &PublicKey, new: &PublicKey) {
        if self.pins.get(name) != Some(old) {
            return;
        }
        self.pins.insert(name.to_owned(), *new);
        if let Err(e) = self.append(name, new) {
            tracing::warn!("cannot save pins: {e:#}");
        }
    }

    /// How `name` relates to its pin, without pinning anything.
    pub fn trust(&self, name: &str, key: &PublicKey) -> NameTrust {
        match self.pins.get(name) {
            Some(pinned) if pinned == key => NameTrust::Pinned,
            Some(_) => NameTrust::Changed,
            None => NameTrust::Unchecked,
        }
    }

    /// Distinct (name, key) conflicts seen this run.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// Names pinned.
    pub fn pinned(&self) -> usize {
        self.pins.len()
    }

    /// Every pinned name and its key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.pins.iter().map(|(name, key)| (name.as_str(), key))
    }

    /// The key pinned for node `id` (under any name), if any.
    pub fn key_of(&self, id: &NodeId) -> Option<PublicKey> {
        self.pins.values().find(|key| key.node_id() == *id).copied()
    }

    fn pin(&mut self, name: &str, key: &PublicKey, id: &NodeId) -> NameTrust {
        if self.pins.len() >= MAX_PINS || name.contains(['\n', '\r']) {
            if !self.full_logged {
                self.full_logged = true;
                tracing::warn!(
                    file = %self.path.display(),
                    "not pinning more names ({MAX_PINS} pinned, or a name with a line break)"
                );
            }
            return NameTrust::Unchecked;
        }
        self.pins.insert(name.to_owned(), *key);
        tracing::info!(
            peer = %rossip_proto::log_text::LogText(name),
            peer_id = %id.short(),
            key = %key.fingerprint(),
            "pinned a new name to its key"
        );
        if let Err(e) = self.append(name, key) {
            // The pin holds for this run; the next run pins again.
            tracing::warn!("cannot save pins: {e:#}");
        }
        NameTrust::Pinned
    }

    /// Appends one pin (a line; the file is created with its header). No
    /// fsync: a pin lost to a crash is pinned again on next sight, and the
    /// driver must not wait for the disk for every new name.
    fn append(&self, name: &str, key: &PublicKey) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        let mut text = String::new();
        if file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
            text.push_str(
                "# rossipd's pinned node names (trust on first use): <public key> <name>\n\
                 # Remove a line to accept a name's new key (then restart rossipd).\n",
            );
        }
        text.push_str(&format!("{key} {name}\n"));
        file.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Adds the pins of a file's `text` to `pins`; returns the (1-based)
/// numbers of the lines that are neither pins, comments nor blank.
fn parse_file(text: &str, pins: &mut BTreeMap<String, PublicKey>) -> Vec<usize> {
    let mut bad = Vec::new();
    for (number, line) in text.lines().enumerate() {
        match parse_line(line) {
            Some((key, name)) => {
                pins.insert(name, key);
            }
            // The header every saved file starts with.
            None if line.trim().is_empty() || line.starts_with('#') => {}
            None => bad.push(number + 1),
        }
    }
    bad
}

fn parse_line(line: &str) -> Option<(PublicKey, String)> {
    if line.starts_with('#') {
        return None;
    }
    let (hex, name) = line.split_once(' ')?;
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((PublicKey(key), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::sign::NodeKey;

    #[test]
    fn first_use_pins_and_a_new_key_is_flagged_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let alice = NodeKey::for_testing(1).public();
        let mallory = NodeKey::for_testing(2).public();
        let (a, m) = (NodeId([1; 16]), NodeId([2; 16]));
        let mut pins = Pins::load(dir.path()).expect("load");
        assert_eq!(pins.pinned(), 0);
        assert_eq!(pins.trust("alice", &alice), NameTrust::Unchecked);
        assert_eq!(pins.observe("alice", &alice, &a), NameTrust::Pinned);
        assert_eq!(pins.observe("alice", &alice, &a), NameTrust::Pinned);
        assert_eq!(pins.observe("alice", &mallory, &m), NameTrust::Changed);
        assert_eq!(pins.observe("alice", &mallory, &m), NameTrust::Changed);
        assert_eq!(pins.conflicts(), 1, "one conflict, however many messages");
        assert_eq!(pins.observe("mallory", &mallory, &m), NameTrust::Pinned);

        let again = Pins::load(dir.path()).expect("reload");
        assert_eq!(again.pinned(), 2);
        assert_eq!(again.trust("alice", &alice), NameTrust::Pinned);
        assert_eq!(again.trust("alice", &mallory), NameTrust::Changed);
        assert_eq!(again.trust("mallory", &mallory), NameTrust::Pinned);
    }

    #[test]
    fn a_node_with_a_new_key_repins_its_own_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = NodeKey::for_testing(4).public();
        let new = NodeKey::for_testing(5).public();
        let mut pins = Pins::load(dir.path()).expect("load");
        pins.observe("web1", &old, &NodeId([4; 16]));
        pins.repin_own("web1", &old, &new);
        assert_eq!(pins.trust("web1", &new), NameTrust::Pinned);
        let again = Pins::load(dir.path()).expect("reload");
        assert_eq!(again.trust("web1", &new), NameTrust::Pinned);
        assert_eq!(again.trust("web1", &old), NameTrust::Changed);
    }

    #[test]
    fn names_with_spaces_survive_and_garbage_lines_are_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = NodeKey::for_testing(3).public();
        let mut pins = Pins::load(dir.path()).expect("load");
        pins.observe("build box 2", &key, &NodeId([3; 16]));
        let path = dir.path().join(FILE_NAME);
        let mut text = fs::read_to_string(&path).expect("read");
        text.push_str("not a pin\nzz short\n");
        fs::write(&path, text).expect("write");
        let again = Pins::load(dir.path()).expect("reload");
        assert_eq!(again.pinned(), 1);
        assert_eq!(again.trust("build box 2", &key), NameTrust::Pinned);
    }
}
