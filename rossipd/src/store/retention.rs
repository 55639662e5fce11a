//! Retention: the store keeps the same window as the node's history (count,
//! payload bytes, age), pruned in batches (see [`super::PRUNE_EVERY_INSERTS`]
//! and the driver's prune tick), never per message; and a bounded number of
//! seen sets.
//!
//! A direct message this node sent and its recipient has not acknowledged
//! yet (a row of `direct_pending`) is never pruned: the outbox needs its
//! text to send it again after a restart. The outbox is bounded, and its
//! rows go when acknowledged or expired.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::encode::key;

/// The SQL condition, on a row of `messages`, that it is no direct message
/// still waiting for its acknowledgement.
const NOT_PENDING: &str = "NOT EXISTS (SELECT 1 FROM direct_pending p
                    WHERE p.origin = messages.origin AND p.seq = messages.seq)";

/// Most origins whose seen ranges are stored. Past it, origins with no
/// stored message go first, then the least recently updated (their old
/// messages could then be delivered again after a restart, should they ever
/// come back: the node's own cap on origins makes the same trade).
pub const MAX_SEEN_ORIGINS: usize = 4096;

/// The bounds of the stored history: the node's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most messages kept (at least 1).
    pub limit: usize,
    /// Most payload bytes kept (text + channel + origin name); the newest
    /// message is kept whatever its size.
    pub max_bytes: usize,
    /// Messages older than this (by their HLC milliseconds against the wall
    /// clock) are deleted; `None`: no age bound.
    pub max_age: Option<Duration>,
}

impl Retention {
    /// The oldest timestamp (ms) inside the window at wall time `now_ms`;
    /// 0 without an age bound.
    pub fn cutoff_ms(&self, now_ms: u64) -> u64 {
        match self.max_age {
            Some(age) => now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            None => 0,
        }
    }
}

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Messages deleted.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Seen sets (origins) deleted.
    pub origins: u64,
}

/// Deletes messages older than `cutoff_ms`.
pub(super) fn by_age(conn: &Connection, cutoff_ms: u64) -> rusqlite::Result<Pruned> {
    if cutoff_ms == 0 {
        return Ok(Pruned::default());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "DELETE FROM messages WHERE ms < ?1 AND {NOT_PENDING} RETURNING bytes"
    ))?;
    sum_deleted(stmt.query(params![key(cutoff_ms)])?)
}

/// Deletes the oldest messages (history order) beyond the newest `limit`.
pub(super) fn by_count(conn: &Connection, count: u64, limit: usize) -> rusqlite::Result<Pruned> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let excess = count.saturating_sub(limit);
    if excess == 0 {
        return Ok(Pruned::default());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "DELETE FROM messages WHERE rowid IN (
             SELECT rowid FROM messages WHERE {NOT_PENDING}
             ORDER BY ms, logical, origin, seq LIMIT ?1
         ) RETURNING bytes"
    ))?;
    sum_deleted(stmt.query(params![i64::try_from(excess).unwrap_or(i64::MAX)])?)
}

/// Deletes the oldest messages until the rest fit in `max_bytes` (the
/// newest always stays). Only run when the total is over, as it reads the
/// whole table.
pub(super) fn by_bytes(conn: &Connection, max_bytes: usize) -> rusqlite::Result<Pruned> {
    let mut stmt = conn.prepare_cached(&format!(
        "DELETE FROM messages WHERE {NOT_PENDING} AND rowid IN (
             SELECT rowid FROM (
                 SELECT rowid,
                        SUM(bytes) OVER newest_first AS kept,
                        ROW_NUMBER() OVER newest_first AS rank
                 FROM messages
                 WINDOW newest_first AS (ORDER BY ms DESC, logical DESC, origin DESC, seq DESC
                                         ROWS UNBOUNDED PRECEDING)
             ) WHERE kept > ?1 AND rank > 1
         ) RETURNING bytes"
    ))?;
    sum_deleted(stmt.query(params![i64::try_from(max_bytes).unwrap_or(i64::MAX)])?)
}

/// Keeps at most `max` seen sets: those of origins without stored messages
/// go first, then the least recently updated.
pub(super) fn seen_origins(conn: &Connection, max: usize) -> rusqlite::Result<Pruned> {
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM seen")?
        .query_row([], |row| row.get(0))?;
    let excess = count.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX));
    if excess <= 0 {
        return Ok(Pruned::default());
    }
    let deleted = conn
        .prepare_cached(
            "DELETE FROM seen WHERE origin IN (
                 SELECT origin FROM seen
                 ORDER BY EXISTS (SELECT 1 FROM messages m WHERE m.origin = seen.origin),
                          updated_ms
                 LIMIT ?1
             )",
        )?
        .execute(params![excess])?;
    Ok(Pruned {
        origins: u64::try_from(deleted).unwrap_or(u64::MAX),
        ..Pruned::default()
    })
}

fn sum_deleted(mut rows: rusqlite::Rows<'_>) -> rusqlite::Result<Pruned> {
    let mut pruned = Pruned::default();
    while let Some(row) = rows.next()? {
        let bytes: i64 = row.get(0)?;
        pruned.messages += 1;
        pruned.bytes += u64::try_from(bytes).unwrap_or(0);
    }
    Ok(pruned)
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Pruned) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.origins += other.origins;
    }
}
