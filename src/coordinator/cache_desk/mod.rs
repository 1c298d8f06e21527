//! The cache desk: the response cache's work that must not run on a shard.
//!
//! - The fleet's shared tier, a table in the fleet's PostgreSQL (`store::CachedResponse`,
//!   bodies compressed by the store): lookups run concurrently on the coordinator's runtime,
//!   each answered in the asking shard's reply slot; answers to keep are gathered and
//!   written in batches (every [`FLUSH_EVERY`] or [`BATCH`] answers), one multi-row upsert
//!   each. Expired rows are purged by the fleet's leader ([`super::housekeeping`]).
//! - The semantic cache ([`semantic`]): the embedding of a request's last user turn, asked
//!   of the node's own API ([`embedder`]), and the node's index of the embeddings of the
//!   requests whose answers are kept; in a fleet the embeddings are stored with the answers
//!   and every node's index follows the table.
//!
//! The index belongs to the desk's thread alone; the runtime's tasks hand it what they
//! fetched through a channel. Runs on a thread of its own, started from the coordinator's
//! so that it shares its CPUs.

pub mod embedder;
mod semantic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use shards::cache::desk::DeskAsk;
use shards::cache::{Entry, NodeCache};
use store::{CachedResponse, Store};

pub use semantic::SemanticStart;
use semantic::{Found, SemanticDesk};

/// Asks the shards may queue before a lookup is answered "unanswered" at once and an
/// answer to keep is dropped.
pub const QUEUE: usize = 4096;
/// Longest an answer waits to be written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Most answers in one write.
const BATCH: usize = 64;

/// What the desk is started with.
pub struct DeskStart {
    pub asks: Receiver<DeskAsk>,
    pub cache: Arc<NodeCache>,
    pub semantic: Option<SemanticStart>,
}

/// The fleet's shared tier, when the node is one of a fleet.
pub struct FleetTier {
    pub store: Store,
    pub node_id: String,
}

struct Desk<'a> {
    runtime: &'a tokio::runtime::Handle,
    fleet: Option<FleetTier>,
    semantic: Option<SemanticDesk>,
    /// Answers waiting to be written to the shared tier, since when.
    pending: Vec<CachedResponse>,
    oldest_pending: Instant,
}

/// Serves the shards' asks until every shard has gone.
pub fn run(start: DeskStart, fleet: Option<FleetTier>, runtime: &tokio::runtime::Handle) {
    let (found_tx, found_rx) = crossbeam_channel::unbounded();
    let mut desk = Desk {
        runtime,
        semantic: start
            .semantic
            .map(|s| SemanticDesk::new(s, start.cache.clone(), found_tx.clone(), runtime)),
        fleet,
        pending: Vec::new(),
        oldest_pending: Instant::now(),
    };
    if let (Some(fleet), Some(_)) = (&desk.fleet, &desk.semantic) {
        runtime.spawn(semantic::follow(fleet.store.clone(), found_tx));
    } else {
        drop(found_tx);
    }
    loop {
        select! {
            recv(start.asks) -> ask => match ask {
                Ok(ask) => desk.on_ask(ask),
                Err(_) => {
                    desk.write_pending();
                    return;
                }
            },
            recv(found_rx) -> found => {
                if let (Ok(found), Some(semantic)) = (found, &mut desk.semantic) {
                    semantic.on_found(found);
                }
            },
            default(FLUSH_EVERY) => {},
        }
        desk.upkeep();
    }
}

impl Desk<'_> {
    fn on_ask(&mut self, ask: DeskAsk) {
        match ask {
            DeskAsk::Get { key, reply } => {
                let Some(fleet) = &self.fleet else {
                    reply.answer(None);
                    return;
                };
                let store = fleet.store.clone();
                self.runtime.spawn(async move {
                    let now = now_ms();
                    let entry = match store.cache_get(&key, now).await {
                        Ok(Some(row)) => entry_of(row),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::debug!(error = %e, "shared cache lookup failed; a miss");
                            None
                        }
                    };
                    reply.answer(entry.map(Arc::new));
                });
            }
            DeskAsk::Put {
                key,
                entry,
                semantic,
            } => {
                if let (Some(desk), Some(s)) = (&mut self.semantic, &semantic) {
                    desk.on_found(Found::Kept {
                        key,
                        partition: s.partition,
                        vector: s.vector.clone(),
                        expires_at_ms: entry.expires_at_ms,
                    });
                }
                if let Some(fleet) = &self.fleet {
                    if self.pending.is_empty() {
                        self.oldest_pending = Instant::now();
                    }
                    self.pending
                        .push(row_of(key, &entry, semantic.as_ref(), &fleet.node_id));
                }
            }
            DeskAsk::Similar {
                partition,
                text,
                threshold,
                reply,
            } => match &self.semantic {
                Some(desk) => desk.embed(partition, text, threshold, reply),
                None => reply.answer(Default::default()),
            },
        }
    }

    /// Writes the answers that waited long enough or fill a batch, and tends the index.
    fn upkeep(&mut self) {
        if self.pending.len() >= BATCH
            || (!self.pending.is_empty() && self.oldest_pending.elapsed() >= FLUSH_EVERY)
        {
            self.write_pending();
        }
        if let Some(semantic) = &mut self.semantic {
            semantic.upkeep();
        }
    }

    fn write_pending(&mut self) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.pending);
        let store = fleet.store.clone();
        self.runtime.spawn(async move {
            if let Err(e) = store.cache_put(&rows).await {
                // The shared tier is an optimisation: answers it could not keep are only logged.
                tracing::warn!(error = %e, answers = rows.len(), "could not write answers to the shared cache");
            }
        });
    }
}

fn row_of(
    key: [u8; 32],
    entry: &Entry,
    semantic: Option<&shards::cache::desk::SemanticKey>,
    node_id: &str,
) -> CachedResponse {
    CachedResponse {
        key,
        body: entry.body.to_vec(),
        meta: entry.meta_json(),
        created_ms: now_ms(),
        expires_ms: i64::try_from(entry.expires_at_ms).unwrap_or(i64::MAX),
        node_id: Some(node_id.to_owned()),
        semantic: semantic.map(|s| store::SemanticKey {
            partition: s.partition,
            embedding: s.vector.to_vec(),
        }),
    }
}

fn entry_of(row: CachedResponse) -> Option<Entry> {
    let expires = u64::try_from(row.expires_ms).ok()?;
    let entry = Entry::from_row(row.body, &row.meta, expires);
    if entry.is_none() {
        tracing::warn!("a shared cache entry's meta cannot be read; a miss");
    }
    entry
}

fn now_ms() -> i64 {
    i64::try_from(shards::clock::unix_now_ms()).unwrap_or(i64::MAX)
}
