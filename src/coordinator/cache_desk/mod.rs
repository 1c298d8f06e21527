//! The cache desk: the shards' way to the fleet's shared tier of the response cache, a table
//! in the fleet's PostgreSQL (`store::CachedResponse`, bodies compressed by the store).
//! Lookups run concurrently on the coordinator's runtime, each answered in the asking
//! shard's reply slot; answers to keep are gathered and written in batches (every
//! [`FLUSH_EVERY`] or [`BATCH`] answers), one multi-row upsert each. Expired rows are
//! purged by the fleet's leader ([`super::housekeeping`]).
//!
//! Runs on a thread of its own, started from the coordinator's so that it shares its CPUs.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use shards::cache::fleet::FleetAsk;
use shards::cache::Entry;
use store::{CachedResponse, Store};

/// Asks the shards may queue before a lookup is answered "unanswered" at once and an
/// answer to keep is dropped.
pub const QUEUE: usize = 4096;
/// Longest an answer waits to be written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Most answers in one write.
const BATCH: usize = 64;

/// Serves the shards' asks until every shard has gone.
pub fn run(
    asks: &Receiver<FleetAsk>,
    store: &Store,
    node_id: &str,
    runtime: &tokio::runtime::Handle,
) {
    let mut pending: Vec<CachedResponse> = Vec::new();
    loop {
        match asks.recv_timeout(FLUSH_EVERY) {
            Ok(FleetAsk::Get { key, reply }) => {
                let store = store.clone();
                runtime.spawn(async move {
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
            Ok(FleetAsk::Put { key, entry }) => {
                pending.push(row_of(key, &entry, node_id));
                if pending.len() >= BATCH {
                    write(store, runtime, std::mem::take(&mut pending));
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if !pending.is_empty() {
                    write(store, runtime, std::mem::take(&mut pending));
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !pending.is_empty() {
                    write(store, runtime, pending);
                }
                return;
            }
        }
    }
}

fn write(store: &Store, runtime: &tokio::runtime::Handle, rows: Vec<CachedResponse>) {
    let store = store.clone();
    runtime.spawn(async move {
        if let Err(e) = store.cache_put(&rows).await {
            // The shared tier is an optimisation: answers it could not keep are only logged.
            tracing::warn!(error = %e, answers = rows.len(), "could not write answers to the shared cache");
        }
    });
}

fn row_of(key: [u8; 32], entry: &Entry, node_id: &str) -> CachedResponse {
    let created_ms = now_ms();
    CachedResponse {
        key,
        body: entry.body.to_vec(),
        meta: entry.meta_json(),
        created_ms,
        expires_ms: i64::try_from(entry.expires_at_ms).unwrap_or(i64::MAX),
        node_id: Some(node_id.to_owned()),
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
