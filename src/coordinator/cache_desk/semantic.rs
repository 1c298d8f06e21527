//! The desk's semantic cache: embeds requests' last user turns through the node's own API
//! ([`super::embedder`]), finds the most similar kept request in the node's index
//! (`shards::cache::nearest`), and keeps the index up to date — with the answers this node
//! keeps, and in a fleet with those every node keeps ([`follow`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use shards::cache::desk::{Reply, Similar};
use shards::cache::nearest::NearestIndex;
use shards::cache::NodeCache;
use store::{CachedEmbedding, Store};

use super::embedder::{Embedder, EmbedderPlan};

/// How often expired embeddings leave the index.
const PURGE_EVERY: Duration = Duration::from_secs(5);
/// How often it is called while the index has a partition to move (each call moves at most
/// `shards::cache::nearest::UPKEEP_BUDGET` of it).
const UPKEEP_EVERY: Duration = Duration::from_millis(100);
/// How often a fleet node reads the embeddings the fleet kept.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How far back each read looks again: rows become visible after the time written in
/// them (they wait to be batched, then committed), so each read overlaps the last.
const FOLLOW_OVERLAP_MS: i64 = 2_000;
/// Most rows in one read.
const FOLLOW_PAGE: usize = 1_000;

pub struct SemanticStart {
    pub embedder: EmbedderPlan,
    pub max_entries: usize,
}

/// What the runtime's tasks and the shards hand the index.
pub enum Found {
    /// A request's embedding, to look for its nearest kept request with.
    Embedded {
        partition: [u8; 32],
        vector: Vec<f32>,
        threshold: f32,
        reply: Arc<Reply<Similar>>,
    },
    /// An answer this node kept, with its request's embedding.
    Kept {
        key: [u8; 32],
        partition: [u8; 32],
        vector: Arc<[f32]>,
        expires_at_ms: u64,
    },
    /// Embeddings the fleet kept (this node's among them).
    Followed(Vec<CachedEmbedding>),
}

pub struct SemanticDesk {
    index: NearestIndex,
    embedder: Arc<Embedder>,
    cache: Arc<NodeCache>,
    found: Sender<Found>,
    runtime: tokio::runtime::Handle,
    last_purge: Instant,
}

impl SemanticDesk {
    pub fn new(
        start: SemanticStart,
        cache: Arc<NodeCache>,
        found: Sender<Found>,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        Self {
            index: NearestIndex::new(start.max_entries),
            embedder: Arc::new(Embedder::new(start.embedder)),
            cache,
            found,
            runtime: runtime.clone(),
            last_purge: Instant::now(),
        }
    }

    /// Embeds `text` on the runtime; the index is searched once the embedding is back.
    pub fn embed(
        &self,
        partition: [u8; 32],
        text: String,
        threshold: f32,
        reply: Arc<Reply<Similar>>,
    ) {
        let embedder = self.embedder.clone();
        let found = self.found.clone();
        self.runtime.spawn(async move {
            match embedder.embed(&text).await {
                Ok(vector) => {
                    let _ = found.send(Found::Embedded {
                        partition,
                        vector,
                        threshold,
                        reply,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the semantic cache could not embed a request; a miss");
                    reply.answer(Similar::default());
                }
            }
        });
    }

    pub fn on_found(&mut self, found: Found) {
        match found {
            Found::Embedded {
                partition,
                vector,
                threshold,
                reply,
            } => {
                let nearest = self.index.nearest(&partition, &vector, threshold, now_ms());
                reply.answer(Similar {
                    vector: Some(vector.into()),
                    nearest,
                });
            }
            Found::Kept {
                key,
                partition,
                vector,
                expires_at_ms,
            } => {
                self.index.insert(partition, key, &vector, expires_at_ms);
            }
            Found::Followed(rows) => {
                for row in rows {
                    if self.index.contains(&row.key) {
                        continue;
                    }
                    let expires = u64::try_from(row.expires_ms).unwrap_or(0);
                    self.index
                        .insert(row.partition, row.key, &row.embedding, expires);
                }
            }
        }
        self.cache.set_semantic_entries(self.index.len() as u64);
    }

    pub fn upkeep(&mut self) {
        // A partition moving between structures is moved a slice at a time, by purges.
        let every = if self.index.upkeep_pending() {
            UPKEEP_EVERY
        } else {
            PURGE_EVERY
        };
        if self.last_purge.elapsed() >= every {
            self.index.purge(now_ms());
            self.cache.set_semantic_entries(self.index.len() as u64);
            self.last_purge = Instant::now();
        }
    }
}

/// Reads, every [`FOLLOW_EVERY`], the embeddings the fleet kept since the last read, and
/// hands them to the index. The first read loads every live one.
pub async fn follow(store: Store, found: Sender<Found>) {
    let mut since = 0i64;
    loop {
        let rows = match store
            .cache_embeddings_since(since, super::now_ms(), FOLLOW_PAGE)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the fleet's cached embeddings; retrying");
                tokio::time::sleep(FOLLOW_EVERY).await;
                continue;
            }
        };
        let full = rows.len() == FOLLOW_PAGE;
        if let Some(newest) = rows.last().map(|r| r.created_ms) {
            // A full page goes on from where it stopped; otherwise the next read overlaps.
            since = if full {
                newest.max(since + 1)
            } else {
                since.max(newest - FOLLOW_OVERLAP_MS)
            };
            if found.send(Found::Followed(rows)).is_err() {
                return;
            }
        }
        if !full {
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

fn now_ms() -> u64 {
    shards::clock::unix_now_ms()
}
