//! The semantic cache's nearest-neighbour index on one node: the embeddings of cached
//! requests, grouped in partitions (the hash of everything but the last user turn), each
//! asked for its most similar live entry above a threshold.
//!
//! A partition is scanned whole ([`flat`]) while it is small: exact, an insert is a copy,
//! and most partitions (one per key scope × model × system prompt × earlier turns) stay
//! small. One that grows past [`GRAPH_FROM_ENTRIES`] moves into an HNSW graph ([`graph`],
//! usearch), whose queries visit a few hundred vectors instead of all of them
//! ([`partition`] has the moves); the crossover and the graph's parameters come from
//! `benches/semantic_index.rs`.

mod flat;
mod graph;
mod partition;
#[doc(hidden)]
pub mod sample;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use partition::Partition;

/// A partition moves from the flat scan into a graph when it has more entries than this.
/// Measured at 5k entries on the 2-core bench machine: a hit (a query) costs 0.5–0.6× the
/// flat scan in the graph, a miss (the query, then the insert of the fresh answer and its
/// share of the graph's rebuilds, about one more insert) 1.0× at 1536 dimensions and 1.2×
/// at 256. At 2k a miss costs twice the flat scan in the graph; at 10k, 0.5–1.0×.
pub const GRAPH_FROM_ENTRIES: usize = 5_000;

/// The most time one `purge` spends moving partitions into graphs: the cache desk's other
/// work waits for it.
pub const UPKEEP_BUDGET: Duration = Duration::from_millis(20);

/// One node's index of the semantic cache's request embeddings, owned by one thread (the
/// coordinator's cache desk): no locks inside.
pub struct NearestIndex {
    max_entries: usize,
    graph_from_entries: usize,
    partitions: HashMap<[u8; 32], Partition>,
    owners: HashMap<[u8; 32], Owner>,
    /// Every entry by expiry, then age: purge takes the expired from the front, and the
    /// bound drops from the front too.
    order: BTreeSet<(u64, u64, [u8; 32])>,
    next_seq: u64,
    /// Partitions with a move under way or due, carried on by `purge`.
    upkeep: HashSet<[u8; 32]>,
}

/// Where an entry is, and its place in `order`.
struct Owner {
    partition: [u8; 32],
    expires_at_ms: u64,
    seq: u64,
}

impl NearestIndex {
    /// `max_entries`: the bound; when full, inserting drops the entries that expire soonest
    /// (or the oldest) first.
    pub fn new(max_entries: usize) -> Self {
        Self::with_graph_from(max_entries, GRAPH_FROM_ENTRIES)
    }

    /// As [`NearestIndex::new`], with partitions moving into a graph once they have more
    /// than `graph_from_entries` entries (0: a graph from the first entry; `usize::MAX`:
    /// never). For the bench and the tests, which compare the two structures.
    pub fn with_graph_from(max_entries: usize, graph_from_entries: usize) -> Self {
        Self {
            max_entries,
            graph_from_entries,
            partitions: HashMap::new(),
            owners: HashMap::new(),
            order: BTreeSet::new(),
            next_seq: 0,
            upkeep: HashSet::new(),
        }
    }

    /// Adds (or replaces, when `key` is already there) the embedding of one cached request.
    /// `partition`: the 32-byte hash of everything but the last user turn (scope, model,
    /// parameters, earlier messages): only entries of the same partition are ever compared.
    /// `key`: the exact cache key of the answer (the caller serves the answer by it).
    /// The vector is L2-normalised here (cosine similarity = dot product). A zero vector or
    /// one with a NaN is refused (returns false). A vector whose dimension differs from the
    /// partition's existing entries replaces the partition's content (the embedding model
    /// changed).
    pub fn insert(
        &mut self,
        partition: [u8; 32],
        key: [u8; 32],
        vector: &[f32],
        expires_at_ms: u64,
    ) -> bool {
        let Some(vector) = normalised(vector) else {
            return false;
        };
        if self.max_entries == 0 {
            return false;
        }
        self.remove(&key);
        let dimension = vector.len();
        if self
            .partitions
            .get(&partition)
            .is_some_and(|p| p.dimension() != dimension)
        {
            self.drop_partition(&partition);
        }
        while self.owners.len() >= self.max_entries {
            let Some(&(_, _, soonest)) = self.order.first() else {
                break;
            };
            self.remove(&soonest);
        }

        let graph_from = self.graph_from_entries;
        let store = self
            .partitions
            .entry(partition)
            .or_insert_with(|| Partition::new(dimension, graph_from));
        if !store.insert(key, &vector, expires_at_ms) {
            if store.len() == 0 {
                self.partitions.remove(&partition);
            }
            return false;
        }
        if store.needs_upkeep(graph_from) {
            self.upkeep.insert(partition);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert((expires_at_ms, seq, key));
        let owner = Owner {
            partition,
            expires_at_ms,
            seq,
        };
        self.owners.insert(key, owner);
        true
    }

    /// The most similar live (not expired at `now_ms`) entry of `partition` whose cosine
    /// similarity with `vector` is at least `threshold`: its key and the similarity. None
    /// when none is.
    pub fn nearest(
        &self,
        partition: &[u8; 32],
        vector: &[f32],
        threshold: f32,
        now_ms: u64,
    ) -> Option<([u8; 32], f32)> {
        let store = self.partitions.get(partition)?;
        let query = normalised(vector)?;
        if query.len() != store.dimension() {
            return None;
        }
        store.nearest(&query, threshold, now_ms)
    }

    /// Drops the entries expired at `now_ms` (called every few seconds), then spends up to
    /// [`UPKEEP_BUDGET`] moving partitions into the structure their size calls for: into a
    /// graph past the crossover, into a fresh graph once a graph has replaced as many
    /// entries as it holds, back into a flat scan under half the crossover. While
    /// [`NearestIndex::upkeep_pending`], call it again soon (every 100 ms or so): a partition
    /// keeps answering from its old structure until its new one has every entry.
    pub fn purge(&mut self, now_ms: u64) {
        while let Some(&(expires_at_ms, _, key)) = self.order.first() {
            if expires_at_ms > now_ms {
                break;
            }
            self.remove(&key);
        }
        let deadline = Instant::now() + UPKEEP_BUDGET;
        let (partitions, graph_from) = (&mut self.partitions, self.graph_from_entries);
        self.upkeep.retain(|partition| {
            let Some(store) = partitions.get_mut(partition) else {
                return false;
            };
            store.upkeep(graph_from, deadline);
            store.needs_upkeep(graph_from)
        });
    }

    /// Whether a partition is moving (or due to move) into another structure, which
    /// further calls to [`NearestIndex::purge`] carry on.
    pub fn upkeep_pending(&self) -> bool {
        !self.upkeep.is_empty()
    }

    /// Drops everything (the admin API's flush).
    pub fn clear(&mut self) {
        self.partitions.clear();
        self.owners.clear();
        self.order.clear();
        self.upkeep.clear();
    }

    /// Entries held: live ones and expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Whether `key` has an entry (live or not yet purged), in whichever partition.
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.owners.contains_key(key)
    }

    fn remove(&mut self, key: &[u8; 32]) {
        let Some(owner) = self.owners.remove(key) else {
            return;
        };
        self.order.remove(&(owner.expires_at_ms, owner.seq, *key));
        let Some(store) = self.partitions.get_mut(&owner.partition) else {
            return;
        };
        store.remove(key);
        if store.len() == 0 {
            self.partitions.remove(&owner.partition);
        } else if store.needs_upkeep(self.graph_from_entries) {
            self.upkeep.insert(owner.partition);
        }
    }

    fn drop_partition(&mut self, partition: &[u8; 32]) {
        let Some(store) = self.partitions.remove(partition) else {
            return;
        };
        for key in store.keys() {
            if let Some(owner) = self.owners.remove(&key) {
                self.order.remove(&(owner.expires_at_ms, owner.seq, key));
            }
        }
    }
}

/// `vector` scaled to unit length, so that cosine similarity is a dot product; `None` for
/// an empty or zero vector or one with a NaN or an infinity. The norm is summed in f64 so
/// that large components do not overflow it.
fn normalised(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return None;
    }
    Some(
        vector
            .iter()
            .map(|&x| (f64::from(x) / norm) as f32)
            .collect(),
    )
}

#[cfg(test)]
mod tests;
