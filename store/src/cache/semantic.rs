//! The semantic cache's columns of the fleet tier (migration 0008): beside a cached answer,
//! the partition and the embedding of the request it answers, so that every node can follow
//! the embeddings any node caches ([`Store::cache_embeddings_since`]) and search them in its
//! own memory; a match is then read like any entry, by its key ([`Store::cache_get`]).
//!
//! An embedding is stored as its f32s, 4 little-endian bytes each: the same bytes whatever
//! the node's architecture, and no text to parse. A stored row that is malformed (a
//! partition not of 32 bytes, an embedding not of whole f32s) is skipped and logged, never
//! an error to the caller; the next put under its key replaces it.

use crate::db::{Row, Value};
use crate::error::Result;
use crate::Store;

use super::key_prefix;

/// What the semantic cache finds a cached answer by.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticKey {
    /// SHA-256 of everything in the request but its last user turn: only requests of one
    /// partition may answer each other.
    pub partition: [u8; 32],
    /// The request's embedding.
    pub embedding: Vec<f32>,
}

/// A cached answer's embedding, as nodes follow them.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedEmbedding {
    /// The answer's key, to read it with [`Store::cache_get`].
    pub key: [u8; 32],
    /// See [`SemanticKey::partition`].
    pub partition: [u8; 32],
    /// The request's embedding.
    pub embedding: Vec<f32>,
    /// When the answer was cached, Unix milliseconds (the clock of the node that cached it).
    pub created_ms: i64,
    /// The answer is served while `now_ms < expires_ms`, Unix milliseconds.
    pub expires_ms: i64,
}

/// `embedding IS NOT NULL` is the predicate of migration 0008's partial index: with it both
/// backends read that index, which holds the rows in the order asked, and stop after the
/// limit.
const SINCE_SQL: &str = "SELECT key, partition, embedding, created_ms, expires_ms \
    FROM response_cache \
    WHERE embedding IS NOT NULL AND created_ms >= $1 AND expires_ms > $2 \
    ORDER BY created_ms, key LIMIT $3";

/// The `partition` and `embedding` columns of an entry: both NULL without a semantic key.
pub(super) fn columns(semantic: Option<&SemanticKey>) -> [Value; 2] {
    match semantic {
        Some(s) => [
            Value::Bytes(s.partition.to_vec()),
            Value::Bytes(encode(&s.embedding)),
        ],
        None => [Value::Null, Value::Null],
    }
}

/// `embedding` as stored: each f32 in 4 little-endian bytes.
fn encode(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The embedding `stored` holds, or `None` if it is not whole f32s.
fn decode(stored: &[u8]) -> Option<Vec<f32>> {
    let floats = stored.chunks_exact(4);
    if !floats.remainder().is_empty() {
        return None;
    }
    floats
        .map(|b| b.try_into().ok().map(f32::from_le_bytes))
        .collect()
}

/// The embedding a row of [`SINCE_SQL`] holds, or `None` (logged) if the row is malformed.
fn from_row(row: &Row) -> Result<Option<CachedEmbedding>> {
    let (key, partition, embedding) = (row.bytes(0)?, row.opt_bytes(1)?, row.bytes(2)?);
    let decoded = (
        <[u8; 32]>::try_from(key).ok(),
        partition.and_then(|p| <[u8; 32]>::try_from(p).ok()),
        decode(embedding),
    );
    let (Some(key), Some(partition), Some(embedding)) = decoded else {
        tracing::warn!(
            key = %key_prefix(key),
            key_bytes = key.len(),
            partition_bytes = ?partition.map(<[u8]>::len),
            embedding_bytes = embedding.len(),
            "response cache: a stored embedding is malformed; skipped"
        );
        return Ok(None);
    };
    Ok(Some(CachedEmbedding {
        key,
        partition,
        embedding,
        created_ms: row.i64(3)?,
        expires_ms: row.i64(4)?,
    }))
}

impl Store {
    /// The embeddings of the answers live at `now_ms` (`expires_ms > now_ms`) and cached at
    /// `since_created_ms` or later, in the order `(created_ms, key)`, `limit` at most;
    /// answers cached without a [`SemanticKey`] are not among them.
    ///
    /// For a node to follow what the fleet caches: `created_ms` is the caching node's clock,
    /// and answers are written a little after they are made, so rows appear out of created
    /// order. A follower asks from a moment before the newest `created_ms` it has seen (an
    /// overlap window wider than clock skew plus write delay), so rows come more than once:
    /// it keeps one embedding per key, the one of the latest `created_ms` (a key put again
    /// comes again, with its new embedding and `created_ms`). A full page (`limit` rows,
    /// malformed ones skipped included) means more may follow: ask again from its last
    /// `created_ms`, whose rows then come again — so `limit` must exceed the answers cached
    /// in any one millisecond.
    pub async fn cache_embeddings_since(
        &self,
        since_created_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<CachedEmbedding>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db()
            .query(
                SINCE_SQL,
                vec![since_created_ms.into(), now_ms.into(), limit.into()],
            )
            .await?;
        rows.iter()
            .filter_map(|r| from_row(r).transpose())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_bit_for_bit() {
        let embedding = [
            0.0,
            -0.0,
            1.0,
            -0.125,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            1e-45, // subnormal
        ];
        let stored = encode(&embedding);
        assert_eq!(stored.len(), 4 * embedding.len());
        assert_eq!(
            &stored[8..12],
            [0x00, 0x00, 0x80, 0x3f],
            "1.0, little-endian"
        );
        let back = decode(&stored).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&embedding));
        assert_eq!(decode(&[]), Some(Vec::new()));
        for len in [1, 2, 3, 5, 35] {
            assert_eq!(decode(&vec![0; len]), None, "{len} bytes");
        }
    }

    #[test]
    fn malformed_rows_are_skipped() {
        let row = |partition: Value, embedding: &[u8]| {
            Row(vec![
                Value::Bytes(vec![7; 32]),
                partition,
                Value::Bytes(embedding.to_vec()),
                Value::I64(1),
                Value::I64(2),
            ])
        };
        let good = from_row(&row(Value::Bytes(vec![9; 32]), &encode(&[0.5, 2.0]))).unwrap();
        assert_eq!(
            good,
            Some(CachedEmbedding {
                key: [7; 32],
                partition: [9; 32],
                embedding: vec![0.5, 2.0],
                created_ms: 1,
                expires_ms: 2,
            })
        );
        for (what, partition, embedding) in [
            (
                "a short partition",
                Value::Bytes(vec![9; 31]),
                &[0u8; 8][..],
            ),
            ("no partition", Value::Null, &[0; 8]),
            ("a partial f32", Value::Bytes(vec![9; 32]), &[0; 7]),
        ] {
            assert_eq!(
                from_row(&row(partition, embedding)).unwrap(),
                None,
                "{what}"
            );
        }
    }

    /// Without its partial index, following would read the whole table every half second.
    #[tokio::test]
    async fn following_reads_the_partial_index_in_order() {
        let store = Store::open_sqlite(":memory:", None).await.unwrap();
        let plan = store
            .db()
            .query(
                &format!("EXPLAIN QUERY PLAN {SINCE_SQL}"),
                vec![Value::I64(0), Value::I64(0), Value::I64(10)],
            )
            .await
            .unwrap();
        let steps: Vec<String> = plan.iter().map(|r| r.text(3).unwrap()).collect();
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert!(
            steps[0].contains("USING INDEX response_cache_embedded_created (created_ms>?)"),
            "{steps:?}"
        );
    }
}
