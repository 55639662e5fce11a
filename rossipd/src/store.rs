//! The durable history: every message this node delivered (sent or
//! received) and, per origin, which sequence numbers it delivered or gave up
//! (the seen ranges), in SQLite at `<state dir>/history.db`.
//!
//! With it a restarted daemon keeps its history and delivers nothing twice:
//! the driver writes what a flush delivers in one transaction and only then
//! hands it to subscribers and answers `send` (see `driver`).
//!
//! Durability: WAL journal with `synchronous=NORMAL`. A commit is in the
//! WAL file before [`Store::commit`] returns, so it survives the process
//! being killed (kill -9, a crash, the OOM killer). It is not fsynced per
//! commit (that is what makes 20,000 messages/s possible): a power loss or a
//! kernel crash may lose the last commits (never corrupt the file), and so
//! messages whose `send` had been answered.
//!
//! A file that is not a database, or fails `PRAGMA quick_check`, is moved
//! aside (`history.db.corrupt-<unix time>`, with its `-wal` and `-shm`) with
//! a warning naming both paths, and a new one is created: never silently
//! wiped. Any other failure to open (permissions, disk full) is a startup
//! error naming the path.
//!
//! Schema (version 3, in `PRAGMA user_version`): `messages` (primary key
//! origin + seq, an index in history order, and its delivery cursor, unique;
//! each with its origin's public key and signature, so it can be served to
//! other nodes as it was signed), `seen` (one row per origin: its ranges as
//! a blob), `meta` (this node's highest clock reading, the store's id and
//! the next delivery number, which outlives pruning). See `encode` for how
//! `u64`s are stored. Version 2 files are migrated: their messages get
//! cursors in history order.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rossip_proto::message::{BatchProof, Hlc};
use rossip_proto::{Message, NodeId};
use rusqlite::{Connection, OptionalExtension, params};

mod direct;
mod encode;
mod retention;
#[cfg(test)]
mod tests;

pub use retention::{MAX_SEEN_ORIGINS, Pruned, Retention};

use encode::{hlc_blob, hlc_from_blob, key, message_from_row, node_id, ranges_blob};

/// File name inside the state directory.
pub const FILE_NAME: &str = "history.db";

/// The schema this build writes; a file with a higher version was written
/// by a newer rossipd and is refused rather than guessed at.
pub const SCHEMA_VERSION: i64 = 6;

/// Version 5 had no batch proofs: every message was signed alone. Migrated
/// in place (its messages have none).
const UNBATCHED_SCHEMA_VERSION: i64 = 5;

/// Version 4 had the same tables, but a build of it would load the direct
/// messages now among the rows of `messages` into its gossip history; the
/// bump keeps such a build from opening this file. Migrated by the bump.
const UNSEPARATED_SCHEMA_VERSION: i64 = 4;

/// Version 3 had no authors and no direct messages; it is migrated in
/// place (its messages have no author).
const UNATTRIBUTED_SCHEMA_VERSION: i64 = 3;

/// Version 2 had no delivery cursors either; it is migrated in place.
const UNNUMBERED_SCHEMA_VERSION: i64 = 2;

/// Version 1 stored messages without their origin's signature; they cannot
/// be served to other nodes (which refuse unsigned messages), so such a
/// file is moved aside whole rather than migrated.
const UNSIGNED_SCHEMA_VERSION: i64 = 1;

/// Inserts after which a prune is due (so the table exceeds its count
/// bound by at most this many between the driver's prune ticks).
pub const PRUNE_EVERY_INSERTS: u64 = 1000;

/// WAL pages (4 KiB each) between automatic checkpoints: 16 MiB.
const WAL_CHECKPOINT_PAGES: u32 = 4096;

/// Bytes the WAL file is truncated to after a checkpoint.
const WAL_SIZE_LIMIT: u64 = 32 * 1024 * 1024;

/// Key of this node's highest clock reading in `meta`.
const OWN_CLOCK_KEY: &str = "own_clock";

/// Key of the highest sequence number this node sent, in `meta`.
const OWN_SEQ_KEY: &str = "own_seq";

/// Key of this store's random id (see [`crate::delivery`]), in `meta`.
const STORE_ID_KEY: &str = "store_id";

/// Key of the number the next delivery gets, in `meta`: kept past pruning,
/// so that numbers are never reused.
const NEXT_CURSOR_KEY: &str = "next_cursor";

const CREATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    origin BLOB NOT NULL,
    seq INTEGER NOT NULL,
    ms INTEGER NOT NULL,
    logical INTEGER NOT NULL,
    origin_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    text TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    key BLOB NOT NULL,
    sig BLOB NOT NULL,
    cursor INTEGER,
    user TEXT NOT NULL DEFAULT '',
    nick TEXT,
    to_node BLOB,
    to_user TEXT,
    proof BLOB,
    PRIMARY KEY (origin, seq)
);
CREATE INDEX IF NOT EXISTS messages_in_order ON messages (ms, logical, origin, seq);
CREATE TABLE IF NOT EXISTS seen (
    origin BLOB PRIMARY KEY,
    ranges BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// One origin's seen ranges: inclusive `(first, last)`, lowest first.
pub type SeenRanges = (NodeId, Vec<(u64, u64)>);

/// Adds delivery cursors to a version 2 file: numbered in history order
/// (the arrival order is not known), and the next number after them.
const NUMBER_DELIVERIES: &str = "
ALTER TABLE messages ADD COLUMN cursor INTEGER;
UPDATE messages SET cursor = (
    SELECT n FROM (
        SELECT rowid AS r, row_number() OVER (ORDER BY ms, logical, origin, seq) AS n FROM messages
    ) WHERE r = messages.rowid
);
INSERT OR REPLACE INTO meta (key, value)
    SELECT 'next_cursor', (SELECT COUNT(*) FROM messages) + 1;
";

/// Adds the author and direct-message columns to a version 3 file.
const ADD_AUTHORS: &str = "
ALTER TABLE messages ADD COLUMN user TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN nick TEXT;
ALTER TABLE messages ADD COLUMN to_node BLOB;
ALTER TABLE messages ADD COLUMN to_user TEXT;
";

/// Adds the batch proof column to a version 5 file (or older, after its
/// own steps): NULL for a message signed alone.
const ADD_BATCH_PROOFS: &str = "ALTER TABLE messages ADD COLUMN proof BLOB;";

/// The index of deliveries; made after the migration filled the column.
const CREATE_CURSOR_INDEX: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_cursor ON messages (cursor);";

/// What one flush delivered, to be made durable before it is delivered.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Messages delivered for the first time (own and received), with
    /// their delivery numbers.
    pub messages: Vec<(u64, &'a Message)>,
    /// The complete seen ranges of every origin the flush touched (from
    /// `Node::seen_ranges`, which covers lost ranges too).
    pub seen: Vec<SeenRanges>,
}

impl Batch<'_> {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.seen.is_empty()
    }
}

/// What `status` shows of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFigures {
    /// The database file.
    pub path: PathBuf,
    /// Bytes on disk: the database plus its WAL.
    pub size_bytes: u64,
    /// Messages stored.
    pub messages: u64,
}

/// The open history database. Owned by the driver; every call is short
/// (no fsync per commit), so it runs inline on the driver task.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    retention: Retention,
    own: NodeId,
    /// This store's id: the cursors it gives name it.
    id: crate::delivery::StoreId,
    /// The number the next delivery gets.
    next_cursor: u64,
    /// Messages in the table, kept current by inserts and prunes.
    count: u64,
    /// Their payload bytes.
    bytes: u64,
    inserts_since_prune: u64,
    /// Pending direct messages found without their text (see
    /// [`Store::load_direct_pending`]).
    direct_orphaned: u64,
}

/// Why opening failed: damage (move the file aside) or anything else.
enum OpenError {
    Corrupt(String),
    /// Schema version 1: messages without signatures.
    Unsigned,
    Other(anyhow::Error),
}

impl OpenError {
    fn into_anyhow(self) -> anyhow::Error {
        match self {
            OpenError::Corrupt(why) => anyhow::anyhow!(why),
            OpenError::Unsigned => anyhow::anyhow!("schema version 1 (unsigned messages)"),
            OpenError::Other(e) => e,
        }
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(NotADatabase | DatabaseCorrupt) => OpenError::Corrupt(e.to_string()),
            _ => OpenError::Other(e.into()),
        }
    }
}

impl Store {
    /// Opens (creating or migrating) `<dir>/history.db` for node `own`.
    /// A damaged file is moved aside with a warning and replaced.
    pub fn open(dir: &Path, own: NodeId, retention: Retention) -> anyhow::Result<Store> {
        let path = dir.join(FILE_NAME);
        let conn = match open_checked(&path) {
            Ok(conn) => conn,
            Err(OpenError::Unsigned) => {
                let aside = move_aside(&path, "unsigned")?;
                tracing::warn!(
                    "history store {} was written before messages were signed (schema version 1); moved it to {} \
                     and starting with an empty history",
                    path.display(),
                    aside.display()
                );
                open_checked(&path)
                    .map_err(OpenError::into_anyhow)
                    .with_context(|| format!("cannot create history store {}", path.display()))?
            }
            Err(OpenError::Corrupt(why)) => {
                let aside = move_aside(&path, "corrupt")?;
                tracing::warn!(
                    "history store {} is damaged ({why}); moved it to {} and starting with an empty history",
                    path.display(),
                    aside.display()
                );
                open_checked(&path)
                    .map_err(OpenError::into_anyhow)
                    .with_context(|| format!("cannot create history store {}", path.display()))?
            }
            Err(OpenError::Other(e)) => {
                return Err(e)
                    .with_context(|| format!("cannot open history store {}", path.display()));
            }
        };
        let (count, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM messages",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .with_context(|| format!("cannot read history store {}", path.display()))?;
        let (id, next_cursor) = delivery_numbering(&conn)
            .with_context(|| format!("cannot read history store {}", path.display()))?;
        Ok(Store {
            conn,
            path,
            id,
            next_cursor,
            retention: Retention {
                limit: retention.limit.max(1),
                ..retention
            },
            own,
            count: u64::try_from(count).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
            inserts_since_prune: 0,
            direct_orphaned: 0,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This store's id, which its cursors carry.
    pub fn id(&self) -> crate::delivery::StoreId {
        self.id
    }

    /// The number the next delivery gets: one past every number this store
    /// ever gave (kept past pruning), so none is given twice.
    pub fn next_cursor(&self) -> u64 {
        self.next_cursor
    }

    /// The lowest clock reading this run may stamp its messages with: the
    /// highest of this node's stored messages and of the reading recorded
    /// with them (which outlives their pruning).
    pub fn clock_floor(&self) -> rusqlite::Result<Hlc> {
        let recorded: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![OWN_CLOCK_KEY],
                |row| row.get(0),
            )
            .optional()?;
        let newest: Option<(i64, u32)> = self
            .conn
            .query_row(
                "SELECT ms, logical FROM messages WHERE origin = ?1
                 ORDER BY ms DESC, logical DESC LIMIT 1",
                params![&self.own.0[..]],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let recorded = recorded
            .as_deref()
            .and_then(hlc_from_blob)
            .unwrap_or_default();
        let newest = newest
            .map(|(ms, logical)| Hlc {
                ms: encode::unkey(ms),
                logical,
            })
            .unwrap_or_default();
        Ok(recorded.max(newest))
    }

    /// This node took a new id (another node keeps the old one): its own
    /// messages are now the new id's. The own sequence record stays: the
    /// numbers continue under the new id.
    pub fn set_own(&mut self, own: NodeId) {
        self.own = own;
    }

    /// Records, in a transaction of its own, that this node is about to
    /// send its messages up to `seq`: written before the datagrams leave,
    /// so a restart never reuses a number peers may have seen, while the
    /// messages themselves are committed after sending (off the critical
    /// path of delivery).
    pub fn record_own_seq(&mut self, seq: u64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            )?
            .execute(params![OWN_SEQ_KEY, &seq.to_be_bytes()[..]])?;
        Ok(())
    }

    /// The highest sequence number recorded by [`Store::record_own_seq`].
    pub fn own_seq(&self) -> rusqlite::Result<Option<u64>> {
        let value: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![OWN_SEQ_KEY],
                |row| row.get(0),
            )
            .optional()?;
        Ok(value
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes))
    }

    /// The messages inside the window at wall time `now_ms`, oldest first
    /// (history order): the newest `limit` not older than the age bound,
    /// within the byte bound.
    pub fn load_window(&self, now_ms: u64) -> rusqlite::Result<Vec<Message>> {
        Ok(self
            .load_numbered_window(now_ms)?
            .into_iter()
            .map(|(_, message)| message)
            .collect())
    }

    /// [`Store::load_window`], each message with its delivery number.
    /// Channel messages only: direct messages never enter the gossip
    /// node's history (see [`Store::load_direct`]).
    pub fn load_numbered_window(&self, now_ms: u64) -> rusqlite::Result<Vec<(u64, Message)>> {
        let mut stmt = self.conn.prepare(
            "SELECT origin, seq, ms, logical, origin_name, channel, text, key, sig, cursor,
                    user, nick, to_node, to_user, proof FROM messages
             WHERE ms >= ?1 AND to_node IS NULL
             ORDER BY ms DESC, logical DESC, origin DESC, seq DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(self.retention.limit).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![key(self.retention.cutoff_ms(now_ms)), limit])?;
        let mut newest_first = Vec::new();
        let mut bytes = 0usize;
        while let Some(row) = rows.next()? {
            let Some(message) = message_from_row(row)? else {
                continue;
            };
            let cursor: Option<i64> = row.get(9)?;
            let Some(cursor) = cursor.and_then(|c| u64::try_from(c).ok()) else {
                continue;
            };
            bytes = bytes.saturating_add(message.payload_len());
            if bytes > self.retention.max_bytes && !newest_first.is_empty() {
                break;
            }
            newest_first.push((cursor, message));
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Every stored seen set: `(origin, ranges)`. Damaged rows are skipped
    /// with a warning (their origin's old messages could come again).
    pub fn load_seen(&self) -> rusqlite::Result<Vec<SeenRanges>> {
        let mut stmt = self.conn.prepare("SELECT origin, ranges FROM seen")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let origin: Vec<u8> = row.get(0)?;
            let ranges: Vec<u8> = row.get(1)?;
            match (node_id(&origin), encode::ranges_from_blob(&ranges)) {
                (Some(origin), Some(ranges)) => out.push((origin, ranges)),
                _ => tracing::warn!("skipping a damaged seen-set row in {}", self.path.display()),
            }
        }
        Ok(out)
    }

    /// Writes `batch` in one transaction. When this returns `Ok` the batch
    /// survives a kill of the process. `now_ms` stamps the seen sets (the
    /// origin cap drops the least recently updated).
    pub fn commit(&mut self, batch: &Batch<'_>, now_ms: u64) -> rusqlite::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        let mut inserted = 0u64;
        let mut inserted_bytes = 0u64;
        let mut own_clock: Option<Hlc> = None;
        let mut next_cursor = self.next_cursor;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages
                 (origin, seq, ms, logical, origin_name, channel, text, bytes, key, sig, cursor,
                  user, nick, to_node, to_user, proof)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            for &(cursor, message) in &batch.messages {
                next_cursor = next_cursor.max(cursor.saturating_add(1));
                let bytes = message.payload_len();
                let changed = insert.execute(params![
                    &message.id.origin.0[..],
                    key(message.id.seq),
                    key(message.ts.ms),
                    message.ts.logical,
                    message.origin_name,
                    message.channel,
                    message.text,
                    i64::try_from(bytes).unwrap_or(i64::MAX),
                    &message.auth.key.0[..],
                    &message.auth.sig.to_bytes()[..],
                    i64::try_from(cursor).unwrap_or(i64::MAX),
                    message.author.user,
                    message.author.nick,
                    message.to.as_ref().map(|to| to.node.0.to_vec()),
                    message.to.as_ref().and_then(|to| to.user.clone()),
                    message.auth.batch.as_ref().map(BatchProof::to_bytes),
                ])?;
                if changed > 0 {
                    inserted += 1;
                    inserted_bytes += u64::try_from(bytes).unwrap_or(u64::MAX);
                }
                if message.id.origin == self.own {
                    own_clock = own_clock.max(Some(message.ts));
                }
            }
            let mut upsert_seen = tx.prepare_cached(
                "INSERT INTO seen (origin, ranges, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (origin) DO UPDATE
                 SET ranges = excluded.ranges, updated_ms = excluded.updated_ms",
            )?;
            let updated = key(now_ms);
            for (origin, ranges) in &batch.seen {
                upsert_seen.execute(params![&origin.0[..], ranges_blob(ranges), updated])?;
            }
            if let Some(ts) = own_clock {
                tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                )?
                .execute(params![OWN_CLOCK_KEY, &hlc_blob(ts)[..]])?;
            }
            if next_cursor != self.next_cursor {
                tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                    .execute(params![
                        NEXT_CURSOR_KEY,
                        i64::try_from(next_cursor).unwrap_or(i64::MAX)
                    ])?;
            }
        }
        tx.commit()?;
        self.next_cursor = next_cursor;
        self.count += inserted;
        self.bytes += inserted_bytes;
        self.inserts_since_prune += inserted;
        Ok(())
    }

    /// Whether enough inserts accumulated ([`PRUNE_EVERY_INSERTS`]) that
    /// the caller should [`Store::prune`] now rather than at its next tick.
    /// (Separate from the commit, so that a failed prune never makes a
    /// committed batch look failed.)
    pub fn prune_due(&self) -> bool {
        self.inserts_since_prune >= PRUNE_EVERY_INSERTS
    }

    /// Applies the retention window at wall time `now_ms` (age, count,
    /// bytes) and the seen-set cap, in one transaction.
    pub fn prune(&mut self, now_ms: u64) -> rusqlite::Result<Pruned> {
        self.inserts_since_prune = 0;
        let tx = self.conn.transaction()?;
        let mut pruned = retention::by_age(&tx, self.retention.cutoff_ms(now_ms))?;
        pruned += retention::by_count(
            &tx,
            self.count.saturating_sub(pruned.messages),
            self.retention.limit,
        )?;
        let max_bytes = u64::try_from(self.retention.max_bytes).unwrap_or(u64::MAX);
        if self.bytes.saturating_sub(pruned.bytes) > max_bytes {
            pruned += retention::by_bytes(&tx, self.retention.max_bytes)?;
        }
        pruned += retention::seen_origins(&tx, MAX_SEEN_ORIGINS)?;
        tx.commit()?;
        self.count = self.count.saturating_sub(pruned.messages);
        self.bytes = self.bytes.saturating_sub(pruned.bytes);
        Ok(pruned)
    }

    /// Path, size on disk and message count, for `status`.
    pub fn figures(&self) -> StoreFigures {
        let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        StoreFigures {
            path: self.path.clone(),
            size_bytes: size(&self.path) + size(&sibling(&self.path, "-wal")),
            messages: self.count,
        }
    }
}

/// Opens the file, sets WAL and `synchronous=NORMAL`, checks it, and
/// creates or migrates the schema.
fn open_checked(path: &Path) -> Result<Connection, OpenError> {
    // Checked before SQLite sees the file: on a foreign file it would
    // discard the `-wal` beside it, which is evidence worth keeping.
    if has_foreign_header(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(OpenError::Other)?
    {
        return Err(OpenError::Corrupt(
            "not an SQLite database (wrong file header)".to_owned(),
        ));
    }
    let conn = Connection::open(path)?;
    // The first statement to read the file: a non-database fails here.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Other(anyhow::anyhow!(
            "cannot switch to WAL mode (journal mode stays {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A checkpoint (the only fsyncs in WAL mode) runs inside the commit that
    // crosses this many WAL pages; SQLite's default (1,000) puts one every
    // ~200 single-message commits and halves the commit rate.
    let _: i64 = conn.query_row(
        &format!("PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}"),
        [],
        |row| row.get(0),
    )?;
    // After a checkpoint the WAL is cut back to this size.
    let _: i64 = conn.query_row(
        &format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"),
        [],
        |row| row.get(0),
    )?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(OpenError::Corrupt(format!("quick_check: {check}")));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(OpenError::Other(anyhow::anyhow!(
            "schema version {version} was written by a newer rossipd (this one knows {SCHEMA_VERSION})"
        )));
    }
    if version == UNSIGNED_SCHEMA_VERSION {
        return Err(OpenError::Unsigned);
    }
    if version == UNNUMBERED_SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN; {NUMBER_DELIVERIES} {CREATE_CURSOR_INDEX} {ADD_AUTHORS} {ADD_BATCH_PROOFS} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
    } else if version == UNATTRIBUTED_SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN; {ADD_AUTHORS} {ADD_BATCH_PROOFS} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
    } else if version == UNSEPARATED_SCHEMA_VERSION || version == UNBATCHED_SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN; {ADD_BATCH_PROOFS} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
    } else if version < SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN; {CREATE_SCHEMA} {CREATE_CURSOR_INDEX} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
    }
    conn.execute_batch(direct::CREATE_DIRECT_PENDING)?;
    Ok(conn)
}

/// The store's id and the number of its next delivery; an id is made (at
/// random) the first time.
fn delivery_numbering(conn: &Connection) -> anyhow::Result<(crate::delivery::StoreId, u64)> {
    let stored: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![STORE_ID_KEY],
            |row| row.get(0),
        )
        .optional()?;
    let id = match stored.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()) {
        Some(bytes) => u64::from_be_bytes(bytes),
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes)
                .map_err(|e| anyhow::anyhow!("no randomness for the store's id: {e}"))?;
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![STORE_ID_KEY, &bytes[..]],
            )?;
            u64::from_be_bytes(bytes)
        }
    };
    let recorded: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![NEXT_CURSOR_KEY],
            |row| row.get(0),
        )
        .optional()?;
    let highest: Option<i64> =
        conn.query_row("SELECT MAX(cursor) FROM messages", [], |row| row.get(0))?;
    let next = recorded
        .unwrap_or(1)
        .max(highest.map_or(1, |h| h.saturating_add(1)))
        .max(1);
    Ok((
        crate::delivery::StoreId(id),
        u64::try_from(next).unwrap_or(1),
    ))
}

/// The 16 bytes every SQLite database file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether `path` exists, is not empty (SQLite makes an empty file a new
/// database) and does not start like a database.
fn has_foreign_header(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    file.take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut head)?;
    Ok(!head.is_empty() && head != SQLITE_HEADER)
}

/// Renames a damaged database and its `-wal`/`-shm` to
/// `history.db.<why>-<unix time>[-wal|-shm]`; returns the new main path.
fn move_aside(path: &Path, why: &str) -> anyhow::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = sibling(path, &format!(".{why}-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = sibling(path, suffix);
        let to = sibling(&aside, suffix);
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "history store {} is damaged and cannot be moved to {}",
                        from.display(),
                        to.display()
                    )
                });
            }
        }
    }
    if !aside.exists() {
        bail!(
            "moving {} aside left no {}",
            path.display(),
            aside.display()
        );
    }
    Ok(aside)
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
