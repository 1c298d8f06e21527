//! A partition's vectors in one contiguous block, scanned whole on every query: exact, and
//! an insert is a copy. The scan reads `entries × dimension × 4` bytes, so it is the right
//! structure until the partition outgrows the crossover ([`super::GRAPH_FROM_ENTRIES`]).

use std::collections::HashMap;

/// Lanes summed independently in [`dot`]: enough independent accumulators for the compiler
/// to keep several SIMD registers busy (SSE2 on the baseline target: 4 registers of 4
/// lanes). Against 8 and 32 lanes, 16 scanned fastest at 1536 dimensions and within 10 % of
/// 8 at 256; past a few MiB of vectors the scan is bound by memory, not by the lanes.
const LANES: usize = 16;

/// The dot product of two vectors of the same length, written so that it auto-vectorises:
/// a float sum in one accumulator is a dependency chain the compiler may not reorder.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let whole = a.len() / LANES * LANES;
    let mut lanes = [0f32; LANES];
    for (x, y) in a[..whole]
        .chunks_exact(LANES)
        .zip(b[..whole].chunks_exact(LANES))
    {
        for lane in 0..LANES {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// One partition's entries, row `i` of each column being entry `i`.
pub(super) struct Flat {
    dimension: usize,
    /// Row-major: entry `i` is `vectors[i * dimension..(i + 1) * dimension]`, L2-normalised.
    vectors: Vec<f32>,
    keys: Vec<[u8; 32]>,
    expiries: Vec<u64>,
    rows: HashMap<[u8; 32], usize>,
}

impl Flat {
    pub(super) fn new(dimension: usize) -> Self {
        Self {
            dimension,
            vectors: Vec::new(),
            keys: Vec::new(),
            expiries: Vec::new(),
            rows: HashMap::new(),
        }
    }

    pub(super) fn dimension(&self) -> usize {
        self.dimension
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Adds an entry whose key is not in the partition, its vector normalised.
    pub(super) fn insert(&mut self, key: [u8; 32], vector: &[f32], expires_at_ms: u64) {
        debug_assert_eq!(vector.len(), self.dimension);
        self.rows.insert(key, self.keys.len());
        self.vectors.extend_from_slice(vector);
        self.keys.push(key);
        self.expiries.push(expires_at_ms);
    }

    /// Drops an entry by moving the last one into its row.
    pub(super) fn remove(&mut self, key: &[u8; 32]) {
        let Some(row) = self.rows.remove(key) else {
            return;
        };
        let last = self.keys.len() - 1;
        if row != last {
            let (dimension, moved) = (self.dimension, self.keys[last]);
            self.vectors
                .copy_within(last * dimension..(last + 1) * dimension, row * dimension);
            self.rows.insert(moved, row);
        }
        self.vectors.truncate(last * self.dimension);
        self.keys.swap_remove(row);
        self.expiries.swap_remove(row);
    }

    pub(super) fn nearest(
        &self,
        vector: &[f32],
        threshold: f32,
        now_ms: u64,
    ) -> Option<([u8; 32], f32)> {
        let mut best: Option<(usize, f32)> = None;
        for (row, candidate) in self.vectors.chunks_exact(self.dimension).enumerate() {
            let similarity = dot(candidate, vector);
            // The expiry is read only for the rare row that would win.
            if similarity >= threshold
                && best.is_none_or(|(_, top)| similarity > top)
                && self.expiries[row] > now_ms
            {
                best = Some((row, similarity));
            }
        }
        best.map(|(row, similarity)| (self.keys[row], similarity))
    }

    /// An entry's normalised vector and expiry.
    pub(super) fn get(&self, key: &[u8; 32]) -> Option<(&[f32], u64)> {
        let row = *self.rows.get(key)?;
        let vector = &self.vectors[row * self.dimension..(row + 1) * self.dimension];
        Some((vector, self.expiries[row]))
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.keys.iter()
    }
}
