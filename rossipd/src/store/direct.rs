//! Direct messages in the store: they are rows of `messages` like any
//! other (with `to_node` set), kept out of the window that feeds the
//! gossip node's history, and loaded on their own; plus the outbox of
//! direct messages this node sent that their recipient has not
//! acknowledged yet (`direct_pending`), so that a restart keeps retrying.
//!
//! `direct_pending` is created when missing (`CREATE TABLE IF NOT
//! EXISTS`): an older build of the same schema version ignores it.

use rossip_proto::node::PendingDirect;
use rossip_proto::{Message, MessageId};
use rusqlite::params;

use super::Store;
use super::encode::{key, message_from_row, unkey};

/// The outbox table.
pub(super) const CREATE_DIRECT_PENDING: &str = "
CREATE TABLE IF NOT EXISTS direct_pending (
    origin BLOB NOT NULL,
    seq INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;";

impl Store {
    /// The direct messages inside the age bound at wall time `now_ms`,
    /// oldest first, each with its delivery number: the newest
    /// `limit` of them.
    pub fn load_direct(&self, now_ms: u64, limit: usize) -> rusqlite::Result<Vec<(u64, Message)>> {
        let mut stmt = self.conn.prepare(
            "SELECT origin, seq, ms, logical, origin_name, channel, text, key, sig, cursor,
                    user, nick, to_node, to_user, proof FROM messages
             WHERE ms >= ?1 AND to_node IS NOT NULL
             ORDER BY ms DESC, logical DESC, origin DESC, seq DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![key(self.retention.cutoff_ms(now_ms)), limit])?;
        let mut newest_first = Vec::new();
        while let Some(row) = rows.next()? {
            let Some(message) = message_from_row(row)? else {
                continue;
            };
            let cursor: Option<i64> = row.get(9)?;
            if let Some(cursor) = cursor.and_then(|c| u64::try_from(c).ok()) {
                newest_first.push((cursor, message));
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Records that direct message `id` waits for its acknowledgement
    /// until `expires_ms`.
    pub fn add_direct_pending(&mut self, id: &MessageId, expires_ms: u64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO direct_pending (origin, seq, expires_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&id.origin.0[..], key(id.seq), key(expires_ms)])?;
        Ok(())
    }

    /// Direct message `id` was acknowledged or given up.
    pub fn remove_direct_pending(&mut self, id: &MessageId) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM direct_pending WHERE origin = ?1 AND seq = ?2")?
            .execute(params![&id.origin.0[..], key(id.seq)])?;
        Ok(())
    }

    /// The direct messages waiting for acknowledgement, with their
    /// messages. A pending entry whose message is not stored (an older
    /// build pruned it) cannot be sent again: it is logged as expired,
    /// counted ([`Store::direct_orphaned`]) and deleted.
    pub fn load_direct_pending(&mut self) -> rusqlite::Result<Vec<PendingDirect>> {
        let mut out = Vec::new();
        let mut orphans = Vec::new();
        {
            let mut stmt = self.conn.prepare(
                "SELECT m.origin, m.seq, m.ms, m.logical, m.origin_name, m.channel, m.text, m.key,
                        m.sig, p.expires_ms, m.user, m.nick, m.to_node, m.to_user,
                        m.proof, p.origin, p.seq
                 FROM direct_pending p LEFT JOIN messages m
                      ON m.origin = p.origin AND m.seq = p.seq",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let stored: Option<Vec<u8>> = row.get(0)?;
                let message = match stored {
                    Some(_) => message_from_row(row)?,
                    None => None,
                };
                let Some(message) = message else {
                    let origin: Vec<u8> = row.get(15)?;
                    let seq: i64 = row.get(16)?;
                    orphans.push((origin, seq));
                    continue;
                };
                let expires_ms: i64 = row.get(9)?;
                out.push(PendingDirect {
                    message,
                    expires_ms: unkey(expires_ms),
                });
            }
        }
        for (origin, seq) in orphans {
            tracing::warn!(
                path = %self.path.display(),
                origin = %hex_prefix(&origin),
                seq = unkey(seq),
                "a direct message waiting for its acknowledgement is missing from the store: \
                 given up as expired"
            );
            self.conn
                .prepare_cached("DELETE FROM direct_pending WHERE origin = ?1 AND seq = ?2")?
                .execute(params![origin, seq])?;
            self.direct_orphaned += 1;
        }
        Ok(out)
    }

    /// Pending direct messages found without their text since open, and
    /// given up (see [`Store::load_direct_pending`]).
    pub fn direct_orphaned(&self) -> u64 {
        self.direct_orphaned
    }
}

/// The first bytes of an id, in hex, for a log line.
fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}
