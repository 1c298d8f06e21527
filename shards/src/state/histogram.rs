//! Latency histograms a shard records into with no lock and no allocation, read by the
//! coordinator when `/metrics` is scraped.
//!
//! The layout is HdrHistogram's (log-linear: each power of two split into
//! [`SUB_BUCKETS`] equal buckets, so every value is kept within 12.5 %), but the counts are
//! single-writer atomics rather than the `hdrhistogram` crate's plain integers: that crate's
//! histogram cannot be read while its shard writes it, and handing copies to the coordinator
//! would cost the shard a copy per scrape and the reader a scrape's delay. Here a record is
//! a leading-zero count, a shift and one relaxed load and store; a reader sums buckets.

use super::stats::Counter;

/// Buckets per power of two (a power of two itself).
pub const SUB_BUCKETS: u64 = 8;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Values up to 2^`MAX_EXP` microseconds (about 19 hours) are told apart; larger ones fall
/// in the last bucket.
const MAX_EXP: u32 = 36;
/// Buckets 0..SUB_BUCKETS hold the values 0..SUB_BUCKETS exactly; each power of two above
/// adds SUB_BUCKETS more.
pub const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 1) as usize) * SUB_BUCKETS as usize;

/// A histogram of microsecond values with one writer.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[Counter; BUCKETS]>,
    sum: Counter,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: Box::new(std::array::from_fn(|_| Counter::default())),
            sum: Counter::default(),
        }
    }
}

/// The bucket a value falls in.
pub fn bucket_of(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // v in [2^exp, 2^(exp+1))
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) & (SUB_BUCKETS - 1);
    ((shift + 1) as usize) * SUB_BUCKETS as usize + sub as usize
}

/// The smallest value above bucket `i` (its exclusive upper edge).
pub fn upper_edge(i: usize) -> u64 {
    let sub_buckets = SUB_BUCKETS as usize;
    if i < sub_buckets {
        return i as u64 + 1;
    }
    let shift = (i / sub_buckets - 1) as u32;
    let sub = (i % sub_buckets) as u64;
    (SUB_BUCKETS + sub + 1) << shift
}

impl Histogram {
    pub fn record(&self, micros: u64) {
        self.buckets[bucket_of(micros)].incr();
        self.sum.add(micros);
    }

    /// Adds this histogram's counts to `into` (the coordinator merging shards).
    pub fn add_to(&self, into: &mut Counts) {
        for (total, b) in into.buckets.iter_mut().zip(self.buckets.iter()) {
            *total += b.get();
        }
        into.sum += self.sum.get();
    }
}

/// A histogram's counts as read at one moment (several shards' merged).
#[derive(Debug, Clone)]
pub struct Counts {
    pub buckets: Vec<u64>,
    /// Sum of the recorded values, microseconds.
    pub sum: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            sum: 0,
        }
    }
}

impl Counts {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// How many values were below `edge` microseconds; `edge` should be a bucket edge (see
    /// [`upper_edge`]), else the bucket holding it counts whole.
    pub fn below(&self, edge: u64) -> u64 {
        let last = bucket_of(edge.saturating_sub(1));
        self.buckets[..=last].iter().sum()
    }

    /// The value at quantile `q` (0..=1), interpolated within its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let low = if i == 0 { 0 } else { upper_edge(i - 1) } as f64;
                let high = upper_edge(i) as f64;
                let within = (rank - seen as f64) / n as f64;
                return low + (high - low) * within;
            }
            seen += n;
        }
        upper_edge(BUCKETS - 1) as f64
    }

    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_within_an_eighth() {
        let mut prev_edge = 0;
        for i in 0..BUCKETS - 1 {
            let edge = upper_edge(i);
            assert!(edge > prev_edge, "bucket {i}");
            assert_eq!(bucket_of(edge - 1), i, "top of bucket {i}");
            assert_eq!(bucket_of(edge), i + 1, "edge of bucket {i}");
            let low = prev_edge;
            if low >= SUB_BUCKETS {
                assert!((edge - low) * SUB_BUCKETS <= low, "bucket {i} too wide");
            }
            prev_edge = edge;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let mut counts = Counts::default();
        h.add_to(&mut counts);
        assert_eq!(counts.count(), 1000);
        assert_eq!(counts.sum, 500_500);
        for (q, want) in [(0.5, 500.0), (0.99, 990.0), (0.01, 10.0)] {
            let got = counts.quantile(q);
            assert!((got - want).abs() <= want / 8.0, "q{q}: {got} vs {want}");
        }
        assert_eq!(counts.below(16), 15);
        assert_eq!(counts.below(1024), 1000);
    }
}
