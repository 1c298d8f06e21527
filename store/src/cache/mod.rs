//! The fleet tier of the response cache: answers any node may serve, in the
//! `response_cache` table (migration 0007), each under the 32-byte key the data plane
//! computes (the SHA-256 of its scope and the normalised request), with an opaque `meta`
//! text the data plane writes and reads back, and for the semantic cache the request's
//! partition and embedding ([`semantic`], migration 0008).
//!
//! Bodies are compressed here ([`body`]), so callers put and get plain bytes. A stored body
//! that does not decompress — damaged, truncated, or claiming an impossible size — is a
//! miss, logged, never an error to the caller; the next put under its key replaces it.
//!
//! An entry is served while `now_ms < expires_ms`; [`Store::cache_purge_expired`] (run by
//! the housekeeping) deletes the rest. Puts are batched like the request logs: one
//! transaction of multi-row upserts.

use std::collections::HashSet;

use crate::db::{Row, Stmt, Value};
use crate::error::{Error, Result};
use crate::Store;

mod body;
mod semantic;

pub use semantic::{CachedEmbedding, SemanticKey};

/// One cached answer.
#[derive(Debug, Clone, PartialEq)]
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
    /// What the semantic cache finds the answer by, if it keeps it. Written by
    /// [`Store::cache_put`]; [`Store::cache_get`] leaves it `None` (see there).
    pub semantic: Option<SemanticKey>,
}

const COLS: &str = "key, body, meta, created_ms, expires_ms, node_id, partition, embedding";
const NCOLS: usize = 8;
/// Entries per upsert statement (bodies can be large: fewer rows than the request logs').
const ROWS_PER_STATEMENT: usize = 32;

/// The first bytes of a key in hex, to name an entry in a log line.
fn key_prefix(key: &[u8]) -> String {
    key.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn upsert_sql(rows: usize) -> String {
    let groups = crate::db::placeholder_groups(rows, NCOLS);
    format!(
        "INSERT INTO response_cache ({COLS}) VALUES {groups} ON CONFLICT (key) DO UPDATE SET \
         body = excluded.body, meta = excluded.meta, created_ms = excluded.created_ms, \
         expires_ms = excluded.expires_ms, node_id = excluded.node_id, \
         partition = excluded.partition, embedding = excluded.embedding"
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
                Value::Bytes(body::compress(&e.body)?),
                e.meta.as_str().into(),
                e.created_ms.into(),
                e.expires_ms.into(),
                e.node_id.as_deref().into(),
            ]);
            params.extend(semantic::columns(e.semantic.as_ref()));
        }
        stmts.push(Stmt::new(upsert_sql(chunk.len()), params));
    }
    Ok(stmts)
}

fn from_row(key: &[u8; 32], mut row: Row) -> Result<Option<CachedResponse>> {
    let stored = row.take_bytes(0)?;
    let Some(body) = body::decompress(&stored) else {
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
        semantic: None,
    }))
}

impl Store {
    /// The entry for `key` if it has not expired at `now_ms` (Unix milliseconds). A stored
    /// body that does not decompress is `None` (and logged), not an error.
    ///
    /// Its `semantic` is always `None`: an exact lookup has no use for the embedding, which
    /// is kilobytes to read on every lookup, and a semantic match is found among the
    /// embeddings a node follows ([`Store::cache_embeddings_since`]), which it holds already
    /// when it reads the answer.
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

    /// Inserts or replaces entries (an existing key takes every field of the new entry, its
    /// semantic key or the lack of one too; of several entries with one key, the last), in
    /// one transaction.
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
    /// compressed bodies' bytes in all (embeddings not counted).
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
            semantic: None,
        }
    }

    #[test]
    fn a_batch_keeps_the_last_entry_of_each_key() {
        let stmts = put_stmts(&[entry(1, b"a"), entry(2, b"b"), entry(1, b"c")]).unwrap();
        assert_eq!(stmts.len(), 1);
        let params = &stmts[0].params;
        assert_eq!(params.len(), 2 * NCOLS);
        assert_eq!(params[0], Value::Bytes(vec![1; 32]), "in key order");
        assert_eq!(
            params[1],
            Value::Bytes(body::compress(b"c").unwrap()),
            "the last"
        );
        assert_eq!(params[NCOLS], Value::Bytes(vec![2; 32]));
        assert!(stmts[0]
            .sql
            .contains("($1, $2, $3, $4, $5, $6, $7, $8), ($9,"));

        let many: Vec<_> = (0..=u8::try_from(ROWS_PER_STATEMENT).unwrap())
            .map(|k| entry(k, b"x"))
            .collect();
        let stmts = put_stmts(&many).unwrap();
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[1].params.len(), NCOLS);
        assert!(put_stmts(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_semantic_key_fills_its_columns() {
        let semantic = SemanticKey {
            partition: [5; 32],
            embedding: vec![1.0, -2.0],
        };
        let with = CachedResponse {
            semantic: Some(semantic),
            ..entry(1, b"a")
        };
        let stmts = put_stmts(&[with, entry(2, b"b")]).unwrap();
        let params = &stmts[0].params;
        assert_eq!(params[6], Value::Bytes(vec![5; 32]), "partition");
        assert_eq!(
            params[7],
            Value::Bytes(
                [1.0f32, -2.0]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect()
            ),
            "embedding"
        );
        assert_eq!(params[NCOLS + 6..], [Value::Null, Value::Null], "none");
    }
}
