//! A big partition's entries in an HNSW graph (usearch): a query visits a few hundred
//! vectors instead of all of them, for an insert that costs a search of its own.
//!
//! usearch removes by tombstone and reuses a removed entry's node for the next insert: the
//! graph keeps its size without a rebuild, but its links degrade as nodes are reused, so
//! the partition rebuilds it once it has replaced as many entries as it holds
//! ([`Graph::replaced`]).

use std::collections::HashMap;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Links per node (HNSW's M). 16 with the two expansions below gave recall@1 = 1.0 against
/// the exact scan on near-duplicate data at 10k × 1536 (`benches/semantic_index.rs`).
const CONNECTIVITY: usize = 16;
/// Candidates an insert considers (efConstruction): 40 costs under a third of the insert
/// time of 100 at 10k × 1536, and kept recall@1 at 1.0 on near-duplicates with ef 64 (0.995
/// with ef 32).
const EXPANSION_ADD: usize = 40;
/// Candidates a query considers (ef): 64 where 32 took half the time but missed 1 in 200
/// of the near-duplicates that the exact scan found.
const EXPANSION_SEARCH: usize = 64;

/// One partition's entries; usearch's keys are our labels, so that a reused cache key does
/// not meet its own tombstone.
pub(super) struct Graph {
    index: Index,
    /// label → the cache key and its expiry.
    entries: HashMap<u64, ([u8; 32], u64)>,
    labels: HashMap<[u8; 32], u64>,
    next_label: u64,
    /// Entries removed since the graph was made.
    replaced: usize,
}

impl Graph {
    /// An empty graph with room for `capacity` entries; `None` when usearch cannot allocate.
    pub(super) fn new(dimension: usize, capacity: usize) -> Option<Self> {
        let options = IndexOptions {
            dimensions: dimension,
            metric: MetricKind::IP,
            quantization: ScalarKind::F32,
            connectivity: CONNECTIVITY,
            expansion_add: EXPANSION_ADD,
            expansion_search: EXPANSION_SEARCH,
            multi: false,
        };
        let made = Index::new(&options).and_then(|index| {
            // One thread ever uses it: one search context instead of one per core.
            index.reserve_capacity_and_threads(capacity.max(1), 1)?;
            Ok(index)
        });
        match made {
            Ok(index) => Some(Self {
                index,
                entries: HashMap::with_capacity(capacity),
                labels: HashMap::with_capacity(capacity),
                next_label: 0,
                replaced: 0,
            }),
            Err(e) => {
                tracing::warn!(error = %e, dimension, capacity, "semantic cache: no graph index");
                None
            }
        }
    }

    pub(super) fn dimension(&self) -> usize {
        self.index.dimensions()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds an entry whose key is not in the partition, its vector normalised; false when
    /// usearch refused it (out of memory).
    pub(super) fn insert(&mut self, key: [u8; 32], vector: &[f32], expires_at_ms: u64) -> bool {
        let full = self.index.size() >= self.index.capacity();
        if full {
            let room = (self.index.capacity() * 2).max(64);
            if let Err(e) = self.index.reserve_capacity_and_threads(room, 1) {
                tracing::warn!(error = %e, room, "semantic cache: graph index cannot grow");
                return false;
            }
        }
        let label = self.next_label;
        if let Err(e) = self.index.add(label, vector) {
            tracing::warn!(error = %e, "semantic cache: graph index refused an entry");
            return false;
        }
        self.next_label += 1;
        self.entries.insert(label, (key, expires_at_ms));
        self.labels.insert(key, label);
        true
    }

    pub(super) fn remove(&mut self, key: &[u8; 32]) {
        let Some(label) = self.labels.remove(key) else {
            return;
        };
        self.entries.remove(&label);
        self.replaced += 1;
        if let Err(e) = self.index.remove(label) {
            // The node stays, but `nearest` steps over labels it does not know.
            tracing::debug!(error = %e, "semantic cache: graph index kept a removed entry");
        }
    }

    pub(super) fn nearest(
        &self,
        vector: &[f32],
        threshold: f32,
        now_ms: u64,
    ) -> Option<([u8; 32], f32)> {
        // Expired entries not yet purged are stepped over, not returned.
        let live = |label: u64| {
            self.entries
                .get(&label)
                .is_some_and(|(_, expires_at_ms)| *expires_at_ms > now_ms)
        };
        let found = self.index.filtered_search(vector, 1, live).ok()?;
        let (label, distance) = found.keys.first().zip(found.distances.first())?;
        // The inner-product distance of unit vectors is 1 − cosine.
        let similarity = 1.0 - distance;
        let (key, _) = self.entries.get(label)?;
        (similarity >= threshold).then_some((*key, similarity))
    }

    pub(super) fn contains(&self, key: &[u8; 32]) -> bool {
        self.labels.contains_key(key)
    }

    /// An entry's normalised vector (read back from usearch, which keeps it unquantised)
    /// and expiry.
    pub(super) fn get(&self, key: &[u8; 32]) -> Option<(Vec<f32>, u64)> {
        let label = self.labels.get(key)?;
        let (_, expires_at_ms) = self.entries.get(label)?;
        let mut vector = vec![0f32; self.dimension()];
        match self.index.get(*label, &mut vector) {
            Ok(1) => Some((vector, *expires_at_ms)),
            _ => None,
        }
    }

    /// Entries removed since the graph was made, each having left a node to reuse.
    pub(super) fn replaced(&self) -> usize {
        self.replaced
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.labels.keys()
    }
}
