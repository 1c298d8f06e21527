//! The fleet tier of the exact response cache: answers any node may serve, in the
//! `response_cache` table (migration 0007), each under the 32-byte key the data plane
//! computes (the SHA-256 of its scope and the normalised request), with an opaque `meta`
//! text the data plane writes and reads back.
//!
//! Bodies are compressed here, so callers put and get plain bytes. The codec is LZ4
//! (`lz4_flex`: pure Rust and safe code, no C toolchain), the block format with the
//! uncompressed size prepended. LZ4 rather than zstd: a read of this tier is on a cache
//! lookup's path, where decompression must cost little next to the database round trip it
//! follows, and LZ4 decompresses several times faster than zstd; zstd would store the text
//! smaller, but nothing measured here makes the space worth the time. A stored body that
//! does not decompress — damaged, truncated, or claiming an impossible size — is a miss,
//! logged, never an error to the caller; the next put under its key replaces it.
//!
//! An entry is served while `now_ms < expires_ms`; [`Store::cache_purge_expired`] (run by
//! the housekeeping) deletes the rest. Puts are batched like the request logs: one
//! transaction of multi-row upserts.
//!
//! Cost: compression and decompression run on the calling task. On the development machine
//! (release build, one core) a 13 KB chat completion compressed to about half in ~16 µs and
//! decompressed in ~5 µs.

use std::collections::HashSet;

use crate::db::{Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::Store;

/// One cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// SHA-256 of the scope and the normalised request.
    pub key: [u8; 32],
    /// The canonical response, uncompressed (the store compresses it).
    pub body: Vec<u8>,
    /// Small JSON text the data plane writes; opaque to the store.
    pub meta: String,
    /// When it was cached, Unix milliseconds.
    pub created_ms: i64,
    /// Served while `now_ms < expires_ms`, Unix milliseconds.
    pub expires_ms: i64,
    /// The node that cached it.
    pub node_id: Option<String>,
}

const COLS: &str = "key, body, meta, created_ms, expires_ms, node_id";
const NCOLS: usize = 6;
/// Entries per upsert statement (bodies can be large: fewer rows than the request logs').
const ROWS_PER_STATEMENT: usize = 32;
/// LZ4 cannot expand more than 255 times (a match's length grows by at most 255 a byte); a
/// stored size beyond that is damage, refused before a buffer of that size is allocated.
const MAX_LZ4_RATIO: usize = 255;

/// `body` compressed, its uncompressed size first.
fn compress(body: &[u8]) -> Result<Vec<u8>> {
    if u32::try_from(body.len()).is_err() {
        return Err(Error::OutOfRange("response cache body (4 GiB at most)"));
    }
    Ok(lz4_flex::compress_prepend_size(body))
}

/// The body `stored` holds, or `None` if it is damaged.
fn decompress(stored: &[u8]) -> Option<Vec<u8>> {
    let size = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?);
    let size = usize::try_from(size).ok()?;
    if size > (stored.len() - 4).saturating_mul(MAX_LZ4_RATIO) {
        return None;
    }
    let body = lz4_flex::decompress_size_prepended(stored).ok()?;
    (body.len() == size).then_some(body)
}

/// The first bytes of a key in hex, to name an entry in a log line.
fn key_prefix(key: &[u8; 32]) -> String {
    key[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn upsert_sql(rows: usize) -> String {
    let groups = crate::db::placeholder_groups(rows, NCOLS);
    format!(
        "INSERT INTO response_cache ({COLS}) VALUES {groups} ON CONFLICT (key) DO UPDATE SET \
         body = excluded.body, meta = excluded.meta, created_ms = excluded.created_ms, \
         expires_ms = excluded.expires_ms, node_id = excluded.node_id"
    )
}

/// The statements that upsert `entries`, the last of each key only (one statement may not
/// update a row twice on PostgreSQL, and the last put is the one that stands), in key order:
/// nodes writing overlapping batches at once then lock their rows in one order and cannot
/// deadlock.
fn put_stmts(entries: &[CachedResponse]) -> Result<Vec<Stmt>> {
    let mut seen = HashSet::with_capacity(entries.len());
    let mut latest: Vec<&CachedResponse> = entries
        .iter()
        .rev()
        .filter(|e| seen.insert(e.key))
        .collect();
    latest.sort_unstable_by_key(|e| e.key);
    let mut stmts = Vec::new();
    for chunk in latest.chunks(ROWS_PER_STATEMENT) {
        let mut params = Vec::with_capacity(chunk.len() * NCOLS);
        for e in chunk {
            params.extend([
                Value::Bytes(e.key.to_vec()),
                Value::Bytes(compress(&e.body)?),
                e.meta.as_str().into(),
                e.created_ms.into(),
                e.expires_ms.into(),
                e.node_id.as_deref().into(),
            ]);
        }
        stmts.push(Stmt::new(upsert_sql(chunk.len()), params));
    }
    Ok(stmts)
}

fn from_row(key: &[u8; 32], mut row: Row) -> Result<Option<CachedResponse>> {
    let stored = row.take_bytes(0)?;
    let Some(body) = decompress(&stored) else {
        tracing::warn!(
            key = %key_prefix(key),
            stored_bytes = stored.len(),
            "response cache: a stored body does not decompress; served as a miss"
        );
        return Ok(None);
    };
    Ok(Some(CachedResponse {
        key: *key,
        body,
        meta: row.text(1)?,
        created_ms: row.i64(2)?,
        expires_ms: row.i64(3)?,
        node_id: row.opt_text(4)?,
    }))
}

impl Store {
    /// The entry for `key` if it has not expired at `now_ms` (Unix milliseconds). A stored
    /// body that does not decompress is `None` (and logged), not an error.
    pub async fn cache_get(&self, key: &[u8; 32], now_ms: i64) -> Result<Option<CachedResponse>> {
        let rows = self
            .db()
            .query(
                "SELECT body, meta, created_ms, expires_ms, node_id FROM response_cache \
                 WHERE key = $1 AND expires_ms > $2",
                vec![key.as_slice().into(), now_ms.into()],
            )
            .await?;
        match rows.into_iter().next() {
            Some(row) => from_row(key, row),
            None => Ok(None),
        }
    }

    /// Inserts or replaces entries (an existing key takes every field of the new entry; of
    /// several entries with one key, the last), in one transaction.
    pub async fn cache_put(&self, entries: &[CachedResponse]) -> Result<()> {
        let stmts = put_stmts(entries)?;
        if stmts.is_empty() {
            return Ok(());
        }
        self.db().transaction(stmts).await?;
        Ok(())
    }

    /// Deletes the entries expired at `now_ms` (`expires_ms <= now_ms`); returns how many.
    pub async fn cache_purge_expired(&self, now_ms: i64) -> Result<u64> {
        self.db()
            .execute(
                "DELETE FROM response_cache WHERE expires_ms <= $1",
                vec![now_ms.into()],
            )
            .await
    }

    /// Deletes every entry (the admin's flush); returns how many.
    pub async fn cache_clear(&self) -> Result<u64> {
        self.db()
            .execute("DELETE FROM response_cache", Vec::new())
            .await
    }

    /// How many entries there are (expired ones not yet purged included) and their
    /// compressed bytes in all.
    pub async fn cache_stats(&self) -> Result<(u64, u64)> {
        let rows = self
            .db()
            .query(
                "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(LENGTH(body)), 0) AS BIGINT) \
                 FROM response_cache",
                Vec::new(),
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::Corrupt("an aggregate returned no row".into()))?;
        Ok((row.u64(0)?, row.u64(1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u8, body: &[u8]) -> CachedResponse {
        CachedResponse {
            key: [key; 32],
            body: body.to_vec(),
            meta: "{}".into(),
            created_ms: 1,
            expires_ms: 2,
            node_id: None,
        }
    }

    #[test]
    fn bodies_round_trip_and_damage_is_a_miss() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#.repeat(20);
        let stored = compress(&body).unwrap();
        assert!(
            stored.len() < body.len() / 4,
            "{} of {}",
            stored.len(),
            body.len()
        );
        assert_eq!(decompress(&stored), Some(body.clone()));
        assert_eq!(decompress(&compress(b"").unwrap()), Some(Vec::new()));

        assert_eq!(decompress(b""), None);
        assert_eq!(decompress(b"\x05\x00"), None);
        assert_eq!(decompress(&stored[..stored.len() - 3]), None, "truncated");
        let mut huge = stored.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decompress(&huge), None, "an impossible size");
        let mut short = stored.clone();
        short[..4].copy_from_slice(&u32::try_from(body.len() + 1).unwrap().to_le_bytes());
        assert_eq!(decompress(&short), None, "fewer bytes than stated");
        let mut garbage = stored;
        for b in &mut garbage[4..] {
            *b = 0xff;
        }
        assert_eq!(decompress(&garbage), None);
    }

    #[test]
    fn a_batch_keeps_the_last_entry_of_each_key() {
        let stmts = put_stmts(&[entry(1, b"a"), entry(2, b"b"), entry(1, b"c")]).unwrap();
        assert_eq!(stmts.len(), 1);
        let params = &stmts[0].params;
        assert_eq!(params.len(), 2 * NCOLS);
        assert_eq!(params[0], Value::Bytes(vec![1; 32]), "in key order");
        assert_eq!(params[1], Value::Bytes(compress(b"c").unwrap()), "the last");
        assert_eq!(params[NCOLS], Value::Bytes(vec![2; 32]));
        assert!(stmts[0].sql.contains("($1, $2, $3, $4, $5, $6), ($7,"));

        let many: Vec<_> = (0..=u8::try_from(ROWS_PER_STATEMENT).unwrap())
            .map(|k| entry(k, b"x"))
            .collect();
        let stmts = put_stmts(&many).unwrap();
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[1].params.len(), NCOLS);
        assert!(put_stmts(&[]).unwrap().is_empty());
    }
}
