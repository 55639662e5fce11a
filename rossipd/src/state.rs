//! What a node keeps on disk between runs: its signing key (the node id
//! derives from it), a reservation of
//! message sequence numbers (so message ids stay unique across restarts) and
//! the generation of its last run (so every run outranks the one before).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rossip_proto::sign::{NodeKey, SEED_BYTES};

use crate::local_socket::{DirectoryUse, check_directory_owner};
use crate::locked_file::LockedFile;

/// Sequence numbers reserved per disk write. A crash loses at most this many
/// numbers (a gap, never a reuse); a larger block means fewer fsyncs.
pub const SEQ_BLOCK: u64 = 1024;

/// How far past the previous run's generation a new run starts, at least:
/// a run that was wrongly declared failed renews itself with generation + 1,
/// so the next run must clear such renewals too (1024 is far more than a run
/// makes, and only about a second of a generation in milliseconds).
pub const GENERATION_STEP: u64 = 1024;

/// The node's secret signing key, in the state directory.
pub const NODE_KEY_FILE: &str = "node.key";

/// The lock a running daemon holds on its state directory: one daemon per
/// directory, so one per node identity (two daemons sharing a node key would
/// send under one id, and peers would take them for one node).
pub const LOCK_FILE: &str = "rossipd.lock";

/// Creates the state directory (mode 0700) if needed and locks it for this
/// daemon's life, writing its pid and socket into the lock file so that a
/// second daemon refuses to start and says how to reach this one. Take it
/// before anything else reads or writes the directory.
pub fn lock(dir: &Path, socket: &Path) -> anyhow::Result<LockedFile> {
    create_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let contents = format!("pid {}\nsocket {}\n", std::process::id(), socket.display());
    LockedFile::create(
        &path,
        "the state directory's lock file",
        &contents,
        |held| {
            let (pid, held_socket) = parse_lock(held);
            anyhow::anyhow!(
                "another rossipd (pid {pid}, socket {held_socket}) is running with the state directory {}: \
             one node identity cannot run twice. Talk to it with `rossipctl --socket {held_socket}`, \
             or give this daemon its own --state-dir",
                dir.display()
            )
        },
    )
}

/// The pid and socket a lock file names ("?" for what it lacks: a holder
/// that has not written yet, or an older format).
fn parse_lock(text: &str) -> (&str, &str) {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .unwrap_or("?")
    };
    (field("pid"), field("socket"))
}

/// A node key from the OS's random numbers.
fn new_node_key() -> anyhow::Result<NodeKey> {
    let mut seed = [0u8; SEED_BYTES];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("cannot get random bytes for a node key: {e}"))?;
    Ok(NodeKey::from_seed(&seed))
}

/// Writes `key`'s secret seed to `path` (hex, mode 0600, atomically).
fn save_node_key(path: &Path, key: &NodeKey) -> anyhow::Result<()> {
    let hex: String = key.seed().iter().map(|b| format!("{b:02x}")).collect();
    write_atomically(path, format!("{hex}\n").as_bytes())
}

/// 64 hex digits as 32 bytes.
fn parse_seed(text: &str) -> anyhow::Result<[u8; SEED_BYTES]> {
    if text.len() != SEED_BYTES * 2 || !text.is_ascii() {
        bail!("expected {} hexadecimal digits", SEED_BYTES * 2);
    }
    let mut seed = [0u8; SEED_BYTES];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| anyhow::anyhow!("not hexadecimal"))?;
    }
    Ok(seed)
}

/// Marks that the next run must start after the sequence reservation.
const UNSAFE_FILE: &str = "next_seq.unsafe";

/// The state directory, opened and checked.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Sequence numbers below this are reserved by this run (or were used by
    /// an earlier one); a publish at or past it must reserve first.
    reserved_until: u64,
    /// Whether `next_seq.unsafe` exists (see [`StateDir::sequence_unsafe`]).
    sequence_unsafe: bool,
}

/// Creates the state directory (mode 0700) if needed, refusing one whose
/// parent sits in a directory anyone may write to (`/tmp`) and fails the
/// socket directory's check ([`check_directory_owner`]): without `HOME` and
/// `XDG_STATE_HOME` the state goes to `/tmp/rossip-UID/state`, and whoever
/// made `/tmp/rossip-UID` first could read the node key, plant a keyring or
/// receive the log. That parent is made first, if missing, and then checked
/// (not followed): once it is this user's in a sticky `/tmp`, nobody else can
/// swap it.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let create = |path: &Path| {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create state directory {}", path.display()))
    };
    let in_shared_dir = |parent: &Path| {
        parent
            .parent()
            .and_then(|grandparent| fs::metadata(grandparent).ok())
            .is_some_and(|m| m.mode() & 0o002 != 0)
    };
    if let Some(parent) = dir.parent().filter(|parent| in_shared_dir(parent)) {
        create(parent)?;
        check_directory_owner(parent, DirectoryUse::StateParent)?;
    }
    create(dir)
}

impl StateDir {
    /// Creates the directory ([`create_dir`]) if needed.
    pub fn open(dir: &Path) -> anyhow::Result<StateDir> {
        create_dir(dir)?;
        Ok(StateDir {
            dir: dir.to_owned(),
            reserved_until: 0,
            sequence_unsafe: dir.join(UNSAFE_FILE).exists(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The node's Ed25519 key pair, generated on first start and kept in
    /// `node.key` (the secret seed in hex, mode 0600). The node id derives
    /// from it. A key file that others can read is refused, as the cluster
    /// key file is: whoever reads it can sign as this node.
    pub fn node_key(&self) -> anyhow::Result<NodeKey> {
        let path = self.dir.join(NODE_KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mode = fs::metadata(&path)
                    .with_context(|| format!("cannot inspect {}", path.display()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    bail!(
                        "{} is readable by others (mode {:o}): anyone who reads it can sign as this node; \
                         run `chmod 600 {}`",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    );
                }
                parse_seed(text.trim())
                    .map(|seed| NodeKey::from_seed(&seed))
                    .with_context(|| {
                        format!(
                            "{} is corrupt; move it aside to give this node a new identity",
                            path.display()
                        )
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = new_node_key()?;
                save_node_key(&path, &key)?;
                let old = self.dir.join("node_id");
                if old.exists() {
                    // Ids were random before they derived from keys: this
                    // node gets a new id, once.
                    tracing::warn!(
                        old = %old.display(),
                        id = %key.node_id(),
                        "this node now has a signing key, and its id derives from it: peers see a new node"
                    );
                    let _ = fs::rename(&old, self.dir.join("node_id.old"));
                }
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Gives this node a new key (so a new id) and saves it in place of the
    /// old one: another running node uses the old one (a copy of this state
    /// directory) and keeps it. Returns the new key, also when it could not
    /// be saved (with the error): the new identity is then this run's only,
    /// and a restart brings back the shared one.
    pub fn replace_node_key(&self) -> anyhow::Result<(NodeKey, anyhow::Result<()>)> {
        let key = new_node_key()?;
        let saved = save_node_key(&self.dir.join(NODE_KEY_FILE), &key);
        Ok((key, saved))
    }

    /// The generation of this run: the wall clock in milliseconds, but always
    /// past the previous run's (a clock set back, e.g. by NTP at boot, must
    /// not make a restarted node lose to its own earlier run, which the
    /// cluster would keep preferring until it is reaped). Recorded before it
    /// is used. A corrupt record is only a lost floor: warned about and
    /// replaced.
    pub fn next_generation(&self, now_ms: u64) -> anyhow::Result<u64> {
        let path = self.dir.join("generation");
        let previous = match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(previous) => Some(previous),
                Err(_) => {
                    tracing::warn!(
                        "{} is corrupt (expected a number); starting from the clock",
                        path.display()
                    );
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let generation = match previous {
            Some(previous) => now_ms.max(previous.saturating_add(GENERATION_STEP)),
            None => now_ms,
        };
        write_atomically(&path, format!("{generation}\n").as_bytes())?;
        Ok(generation)
    }

    /// Reads the first free sequence number and reserves a block after it.
    /// Returns the first number this run may use.
    pub fn start_sequence(&mut self) -> anyhow::Result<u64> {
        let path = self.seq_path();
        let first = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{} is corrupt (expected a number)", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if first == 0 {
            bail!("{} holds 0; sequence numbers start at 1", path.display());
        }
        self.reserve(first)?;
        Ok(first)
    }

    /// Makes sure `next_seq` is covered by a reservation on disk, writing a
    /// new one when it is not. Call before publishing with that number.
    pub fn ensure_reserved(&mut self, next_seq: u64) -> anyhow::Result<()> {
        if next_seq < self.reserved_until {
            return Ok(());
        }
        self.reserve(next_seq)
    }

    fn reserve(&mut self, from: u64) -> anyhow::Result<()> {
        let until = from.saturating_add(SEQ_BLOCK);
        write_atomically(&self.seq_path(), format!("{until}\n").as_bytes())?;
        self.reserved_until = until;
        Ok(())
    }

    fn seq_path(&self) -> PathBuf {
        self.dir.join("next_seq")
    }

    /// Records that a sequence number may have left this node without
    /// being committed to the store (a commit failed), so the next run must
    /// not resume after the store's last number but after the reservation.
    pub fn mark_sequence_unsafe(&mut self) -> anyhow::Result<()> {
        if self.sequence_unsafe {
            return Ok(());
        }
        write_atomically(&self.unsafe_path(), b"a store commit failed\n")?;
        self.sequence_unsafe = true;
        Ok(())
    }

    /// Whether an earlier run marked its sequence numbers unsafe. The mark
    /// stays until [`StateDir::clear_sequence_unsafe`]: until this run has
    /// committed a number past the reservation, a crash must again start
    /// from the reservation.
    pub fn sequence_unsafe(&self) -> bool {
        self.sequence_unsafe
    }

    /// Removes the mark (the store now records a number past every number
    /// an earlier run may have sent unrecorded).
    pub fn clear_sequence_unsafe(&mut self) -> anyhow::Result<()> {
        let path = self.unsafe_path();
        match fs::remove_file(&path) {
            Ok(()) => {
                self.sequence_unsafe = false;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.sequence_unsafe = false;
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    fn unsafe_path(&self) -> PathBuf {
        self.dir.join(UNSAFE_FILE)
    }
}

/// Writes a file so that a crash leaves either the old or the new content:
/// temp file (mode 0600), fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // `mode` applies only when the file is created: a leftover temp file
    // keeps its own, so set it again.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set mode 600 on {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Some(parent) = path.parent() {
        // Makes the rename itself durable; failure here is not worth refusing to start.
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rossipd-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_unsafe_sequence_mark_lasts_until_cleared_across_opens() {
        let dir = temp_dir("unsafe");
        let mut s = StateDir::open(&dir).expect("open");
        assert!(!s.sequence_unsafe());
        s.mark_sequence_unsafe().expect("mark");
        assert!(s.sequence_unsafe());
        let mut reopened = StateDir::open(&dir).expect("open");
        assert!(reopened.sequence_unsafe(), "the mark survives a restart");
        reopened.clear_sequence_unsafe().expect("clear");
        assert!(!reopened.sequence_unsafe());
        assert!(!StateDir::open(&dir).expect("open").sequence_unsafe());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_lock_on_the_state_directory_names_the_first_holder() {
        let dir = temp_dir("lock");
        let socket = Path::new("/run/user/1/rossip/rossipd.sock");
        let held = lock(&dir, socket).expect("first lock");
        let err = lock(&dir, Path::new("/elsewhere.sock")).expect_err("second lock");
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("pid {}", std::process::id()))
                && message.contains("rossipctl --socket /run/user/1/rossip/rossipd.sock"),
            "{message}"
        );
        drop(held);
        lock(&dir, socket).expect("free again after the holder is gone");
        assert_eq!(parse_lock("garbage"), ("?", "?"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn node_id_is_stable_across_opens() {
        let dir = temp_dir("id");
        let a = StateDir::open(&dir)
            .expect("open")
            .node_key()
            .expect("key")
            .node_id();
        let b = StateDir::open(&dir)
            .expect("open")
            .node_key()
            .expect("key")
            .node_id();
        assert_eq!(a, b);
        let mode = fs::metadata(dir.join(NODE_KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::set_permissions(dir.join(NODE_KEY_FILE), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let err = StateDir::open(&dir)
            .expect("open")
            .node_key()
            .expect_err("readable key");
        assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
        fs::write(dir.join(NODE_KEY_FILE), "garbage").expect("write");
        fs::set_permissions(dir.join(NODE_KEY_FILE), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert!(StateDir::open(&dir).expect("open").node_key().is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_run_outranks_the_previous_even_with_the_clock_set_back() {
        let dir = temp_dir("gen");
        let s = StateDir::open(&dir).expect("open");
        let first = s.next_generation(1_800_000_000_000).expect("first run");
        assert_eq!(first, 1_800_000_000_000);
        let later = s
            .next_generation(1_800_000_500_000)
            .expect("clock moved on");
        assert_eq!(later, 1_800_000_500_000);
        let set_back = s
            .next_generation(1_700_000_000_000)
            .expect("clock set back");
        assert_eq!(set_back, later + GENERATION_STEP);
        fs::write(dir.join("generation"), "soon").expect("write");
        assert_eq!(
            s.next_generation(7).expect("a corrupt record is replaced"),
            7
        );
        assert_eq!(s.next_generation(8).expect("and used"), 7 + GENERATION_STEP);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sequence_numbers_never_repeat_across_restarts() {
        let dir = temp_dir("seq");
        let mut s = StateDir::open(&dir).expect("open");
        let first = s.start_sequence().expect("start");
        assert_eq!(first, 1);
        // Use numbers past the first block: a new reservation is written.
        s.ensure_reserved(first + SEQ_BLOCK).expect("reserve");
        // A "crash" now: the next run starts past everything reserved.
        let mut again = StateDir::open(&dir).expect("open");
        let next = again.start_sequence().expect("start");
        assert!(next > first + SEQ_BLOCK, "next run starts at {next}");
        let _ = fs::remove_dir_all(&dir);
    }
}
