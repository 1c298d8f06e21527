//! Criterion benches of the semantic cache's nearest-neighbour index
//! (`shards::cache::nearest`): the flat scan against the HNSW graph (usearch) in one
//! partition, for the choice of the crossover and the graph's parameters. Each case builds
//! both structures once, outside the timed loops, and prints the graph's build cost and
//! recall@1 against the exact scan; criterion times a query that hits (a near-duplicate of
//! a stored entry), one that misses (a new topic), and an insert into the index at its
//! bound (which drops the oldest entry: the steady state of a full cache; the graph's
//! rebuild after as many replacements as it holds, about one more insert per insert, is
//! measured apart, in `churn`).
//!
//! Run: `cargo bench --bench semantic_index` (about 3 minutes on 2 cores, once built).
//! 50k × 1536 is measured flat only: its graph takes over 30 s to build.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shards::cache::nearest::sample::{key, Vectors};
use shards::cache::nearest::NearestIndex;

const SCOPE: [u8; 32] = [7; 32];
const NEVER: u64 = u64::MAX;
const THRESHOLD: f32 = 0.9;
const RECALL_QUERIES: usize = 200;

/// One partition's worth of embeddings and the queries asked of it.
struct Data {
    entries: Vec<Vec<f32>>,
    /// Near-duplicates of stored entries (cosine ≈ 0.995 to one of them).
    hits: Vec<Vec<f32>>,
    /// Unrelated to every entry: nothing is above the threshold.
    misses: Vec<Vec<f32>>,
    /// New entries for the insert bench, of the same topics.
    fresh: Vec<Vec<f32>>,
}

/// What a semantic cache sees: topics of 20 paraphrases (noise 0.3 around a centre, so
/// siblings are at cosine ≈ 0.92), asked again with near-duplicates (noise 0.1).
fn clustered(dimension: usize, n: usize, seed: u64) -> Data {
    let mut vectors = Vectors(seed);
    let centres: Vec<Vec<f32>> = (0..n.div_ceil(20))
        .map(|_| vectors.random(dimension))
        .collect();
    let entries: Vec<Vec<f32>> = (0..n)
        .map(|i| vectors.near(&centres[i % centres.len()], 0.3))
        .collect();
    let hits = (0..RECALL_QUERIES)
        .map(|_| {
            let i = (vectors.next_u64() % n as u64) as usize;
            vectors.near(&entries[i], 0.1)
        })
        .collect();
    let misses = (0..64).map(|_| vectors.random(dimension)).collect();
    let fresh = (0..1024)
        .map(|i| vectors.near(&centres[i % centres.len()], 0.3))
        .collect();
    Data {
        entries,
        hits,
        misses,
        fresh,
    }
}

/// The hard case for a graph: uniform random entries and queries (no hit above any useful
/// threshold, but recall@1 still says how well the graph navigates).
fn random(dimension: usize, n: usize, seed: u64) -> Data {
    let mut vectors = Vectors(seed);
    let mut many =
        |count: usize| -> Vec<Vec<f32>> { (0..count).map(|_| vectors.random(dimension)).collect() };
    Data {
        entries: many(n),
        hits: many(RECALL_QUERIES),
        misses: Vec::new(),
        fresh: Vec::new(),
    }
}

/// The index with `data`'s entries, flat only or graph from the first entry, and the time
/// the inserts took.
fn built(data: &Data, graph: bool) -> (NearestIndex, Duration) {
    let graph_from = if graph { 0 } else { usize::MAX };
    let mut index = NearestIndex::with_graph_from(data.entries.len(), graph_from);
    let start = Instant::now();
    for (i, vector) in data.entries.iter().enumerate() {
        assert!(index.insert(SCOPE, key(i), vector, NEVER));
    }
    (index, start.elapsed())
}

/// recall@1 of `graph` against the exact `flat` on `queries`, and how often both agree on
/// whether there is a hit at the threshold.
fn recall(flat: &NearestIndex, graph: &NearestIndex, queries: &[Vec<f32>]) -> (f64, f64) {
    let (mut same_best, mut same_verdict) = (0, 0);
    for query in queries {
        let exact = flat.nearest(&SCOPE, query, -1.0, 0).map(|(k, _)| k);
        let approximate = graph.nearest(&SCOPE, query, -1.0, 0).map(|(k, _)| k);
        same_best += usize::from(exact == approximate);
        let hit = |index: &NearestIndex| index.nearest(&SCOPE, query, THRESHOLD, 0).is_some();
        same_verdict += usize::from(hit(flat) == hit(graph));
    }
    let n = queries.len() as f64;
    (same_best as f64 / n, same_verdict as f64 / n)
}

fn report(label: &str, data: &Data, flat: &NearestIndex, graph: &NearestIndex, build: Duration) {
    let (at1, verdict) = recall(flat, graph, &data.hits);
    println!(
        "semantic_index {label}: graph build {:.2} s ({:.0} µs/insert), recall@1 {at1:.3}, \
         same hit/miss at {THRESHOLD} {verdict:.3}",
        build.as_secs_f64(),
        build.as_secs_f64() * 1e6 / data.entries.len() as f64,
    );
}

fn one_partition(c: &mut Criterion, dimension: usize, n: usize) {
    let name = format!("{dimension}x{}k", n / 1000);
    let data = clustered(dimension, n, n as u64 ^ dimension as u64);
    let (mut flat, _) = built(&data, false);
    let (mut graph, build) = built(&data, true);
    report(&format!("{name} clustered"), &data, &flat, &graph, build);
    if n <= 10_000 {
        let data = random(dimension, n, 99);
        let (flat, _) = built(&data, false);
        let (graph, build) = built(&data, true);
        report(&format!("{name} random"), &data, &flat, &graph, build);
    }

    let mut group = c.benchmark_group(format!("semantic_index/{name}"));
    for (structure, index) in [("flat", &flat), ("graph", &graph)] {
        for (kind, queries) in [("hit", &data.hits), ("miss", &data.misses)] {
            let mut next = 0;
            group.bench_function(format!("{structure}/query_{kind}"), |b| {
                b.iter(|| {
                    next = (next + 1) % queries.len();
                    black_box(index.nearest(&SCOPE, &queries[next], THRESHOLD, 0))
                })
            });
        }
    }
    for (structure, index) in [("flat", &mut flat), ("graph", &mut graph)] {
        let mut next = n;
        group.bench_function(format!("{structure}/insert"), |b| {
            b.iter(|| {
                next += 1;
                let vector = &data.fresh[next % data.fresh.len()];
                black_box(index.insert(SCOPE, key(next), vector, NEVER))
            })
        });
    }
    group.finish();
}

/// recall@1 as the bound replaces the entries with other topics': after half of them (the
/// graph reuses the removed entries' nodes, and its links degrade), then after all of them,
/// once `purge` has rebuilt the graph a slice at a time (how many calls, how long in all).
fn churn(dimension: usize, n: usize) {
    let old = clustered(dimension, n, 21);
    let new = clustered(dimension, n, 22);
    let (mut flat, _) = built(&old, false);
    let (mut graph, _) = built(&old, true);
    let mut vectors = Vectors(23);
    let mut replaced = 0;
    for step in [n / 2, n] {
        for i in replaced..step {
            assert!(flat.insert(SCOPE, key(n + i), &new.entries[i], NEVER));
            assert!(graph.insert(SCOPE, key(n + i), &new.entries[i], NEVER));
        }
        replaced = step;
        // Near-duplicates of the entries there now: old ones that stayed, and new ones.
        let queries: Vec<Vec<f32>> = (0..RECALL_QUERIES)
            .map(|q| match q % 2 {
                0 if step < n => vectors.near(&old.entries[step + q], 0.1),
                _ => vectors.near(&new.entries[step - 1 - q], 0.1),
            })
            .collect();
        let (at1, verdict) = recall(&flat, &graph, &queries);
        println!(
            "semantic_index {dimension}x{}k after replacing {step}: recall@1 {at1:.3}, \
             same hit/miss at {THRESHOLD} {verdict:.3}",
            n / 1000
        );
        let (mut calls, mut total, mut longest) = (0, Duration::ZERO, Duration::ZERO);
        while graph.upkeep_pending() {
            let start = Instant::now();
            graph.purge(0);
            let took = start.elapsed();
            (calls, total, longest) = (calls + 1, total + took, longest.max(took));
        }
        if calls > 0 {
            let (at1, verdict) = recall(&flat, &graph, &queries);
            println!(
                "semantic_index {dimension}x{}k rebuilt by {calls} purges in {:.2} s (the \
                 longest {:.1} ms): recall@1 {at1:.3}, same hit/miss at {THRESHOLD} \
                 {verdict:.3}",
                n / 1000,
                total.as_secs_f64(),
                longest.as_secs_f64() * 1e3
            );
        }
    }
}

/// 50k × 1536: the flat scan only (300 MB of vectors), to show what it costs there.
fn flat_only(c: &mut Criterion, dimension: usize, n: usize) {
    let data = clustered(dimension, n, 5);
    let (flat, _) = built(&data, false);
    let mut group = c.benchmark_group(format!("semantic_index/{dimension}x{}k", n / 1000));
    let mut next = 0;
    group.bench_function("flat/query_hit", |b| {
        b.iter(|| {
            next = (next + 1) % data.hits.len();
            black_box(flat.nearest(&SCOPE, &data.hits[next], THRESHOLD, 0))
        })
    });
    group.finish();
}

/// The common shape: many small partitions (one per scope × model × system prompt), each
/// scanned flat; the lookup is a hash and a few dot products.
fn small_partitions(c: &mut Criterion) {
    let (dimension, partitions, per_partition) = (1536, 1000, 8);
    let mut vectors = Vectors(11);
    let mut index = NearestIndex::new(partitions * per_partition);
    for p in 0..partitions {
        let mut partition = [0u8; 32];
        partition[..8].copy_from_slice(&(p as u64).to_le_bytes());
        for i in 0..per_partition {
            let vector = vectors.random(dimension);
            assert!(index.insert(partition, key(p * per_partition + i), &vector, NEVER));
        }
    }
    let query = vectors.random(dimension);
    let mut p = 0u64;
    c.bench_function("semantic_index/1000_partitions_of_8x1536/query", |b| {
        b.iter(|| {
            p = (p + 1) % partitions as u64;
            let mut partition = [0u8; 32];
            partition[..8].copy_from_slice(&p.to_le_bytes());
            black_box(index.nearest(&partition, &query, THRESHOLD, 0))
        })
    });
}

/// `purge` at 100k entries (100 partitions of 1000 × 256, flat): with nothing expired (the
/// call every few seconds), timed by criterion, and dropping a tenth of them, timed once
/// per fresh index (filling one takes longer than the purge).
fn purge(c: &mut Criterion) {
    let (dimension, partitions, per_partition) = (256, 100, 1000);
    let mut vectors = Vectors(13);
    let pool: Vec<Vec<f32>> = (0..512).map(|_| vectors.random(dimension)).collect();
    let fill = || {
        let mut index = NearestIndex::new(partitions * per_partition);
        for i in 0..partitions * per_partition {
            let mut partition = [0u8; 32];
            partition[0] = (i % partitions) as u8;
            // Expiries 1..=100_000 ms: purge(10_000) drops the first tenth.
            index.insert(partition, key(i), &pool[i % pool.len()], i as u64 + 1);
        }
        index
    };
    let fastest = (0..3)
        .map(|_| {
            let mut index = fill();
            let start = Instant::now();
            index.purge(10_000);
            start.elapsed()
        })
        .min()
        .unwrap_or_default();
    println!(
        "semantic_index 100k entries: purge of 10k expired {:.2} ms",
        fastest.as_secs_f64() * 1e3
    );
    let mut index = fill();
    c.bench_function("semantic_index/100k_entries/purge_nothing_expired", |b| {
        b.iter(|| index.purge(0))
    });
}

fn benches(c: &mut Criterion) {
    for (dimension, n) in [
        (256, 1_000),
        (256, 2_000),
        (256, 5_000),
        (256, 10_000),
        (256, 50_000),
        (1536, 1_000),
        (1536, 2_000),
        (1536, 5_000),
        (1536, 10_000),
    ] {
        one_partition(c, dimension, n);
    }
    churn(256, 10_000);
    churn(1536, 10_000);
    flat_only(c, 1536, 50_000);
    small_partitions(c);
    purge(c);
}

criterion_group! {
    name = semantic_index;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(semantic_index);
