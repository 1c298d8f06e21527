use super::sample::{key, Vectors};
use super::*;

const SCOPE: [u8; 32] = [1; 32];
const NEVER: u64 = u64::MAX;

#[test]
fn an_exact_match_is_found_with_similarity_one() {
    let mut index = NearestIndex::new(100);
    let mut vectors = Vectors(1);
    for i in 0..20 {
        assert!(index.insert(SCOPE, key(i), &vectors.random(32), NEVER));
    }
    let mut vectors = Vectors(1);
    let seventh = (0..8).map(|_| vectors.random(32)).last().unwrap();
    // Normalised on the way in: a scaled copy is the same direction.
    let scaled: Vec<f32> = seventh.iter().map(|x| x * 3.5).collect();
    let (found, similarity) = index.nearest(&SCOPE, &scaled, 0.9, 0).unwrap();
    assert_eq!(found, key(7));
    assert!((similarity - 1.0).abs() < 1e-5, "{similarity}");
}

#[test]
fn below_the_threshold_is_a_miss() {
    let mut index = NearestIndex::new(100);
    index.insert(SCOPE, key(1), &[1.0, 0.0], NEVER);
    // cos 45° ≈ 0.707
    assert!(index.nearest(&SCOPE, &[1.0, 1.0], 0.9, 0).is_none());
    let (found, similarity) = index.nearest(&SCOPE, &[1.0, 1.0], 0.7, 0).unwrap();
    assert_eq!(found, key(1));
    assert!((similarity - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
}

#[test]
fn partitions_never_mix() {
    let mut index = NearestIndex::new(100);
    index.insert([1; 32], key(1), &[1.0, 0.0, 0.0], NEVER);
    index.insert([2; 32], key(2), &[0.0, 1.0, 0.0], NEVER);
    assert_eq!(
        index
            .nearest(&[1; 32], &[0.0, 1.0, 0.0], -1.0, 0)
            .unwrap()
            .0,
        key(1)
    );
    assert_eq!(
        index
            .nearest(&[2; 32], &[1.0, 0.0, 0.0], -1.0, 0)
            .unwrap()
            .0,
        key(2)
    );
    assert!(index.nearest(&[3; 32], &[1.0, 0.0, 0.0], -1.0, 0).is_none());
}

#[test]
fn expired_entries_are_never_returned_and_are_purged() {
    let mut index = NearestIndex::new(100);
    index.insert(SCOPE, key(1), &[1.0, 0.0], 1_000);
    index.insert(SCOPE, key(2), &[1.0, 0.1], 2_000);
    assert_eq!(
        index.nearest(&SCOPE, &[1.0, 0.0], 0.9, 999).unwrap().0,
        key(1)
    );
    // Expired at its expiry, as the exact cache's entries are.
    assert_eq!(
        index.nearest(&SCOPE, &[1.0, 0.0], 0.9, 1_000).unwrap().0,
        key(2)
    );
    assert!(index.nearest(&SCOPE, &[1.0, 0.0], 0.9, 2_000).is_none());
    assert_eq!(index.len(), 2);
    index.purge(1_500);
    assert_eq!(index.len(), 1);
    index.purge(2_000);
    assert!(index.is_empty());
}

#[test]
fn inserting_a_key_again_replaces_it() {
    let mut index = NearestIndex::new(100);
    index.insert(SCOPE, key(1), &[1.0, 0.0], 1_000);
    index.insert(SCOPE, key(1), &[0.0, 1.0], 5_000);
    assert_eq!(index.len(), 1);
    assert!(index.contains(&key(1)) && !index.contains(&key(2)));
    assert!(index.nearest(&SCOPE, &[1.0, 0.0], 0.9, 0).is_none());
    assert_eq!(
        index.nearest(&SCOPE, &[0.0, 1.0], 0.9, 2_000).unwrap().0,
        key(1)
    );
    // The old expiry went with the old vector.
    index.purge(1_000);
    assert_eq!(index.len(), 1);
    // Into another partition: it leaves the first.
    index.insert([2; 32], key(1), &[0.0, 1.0], 5_000);
    assert!(index.nearest(&SCOPE, &[0.0, 1.0], 0.9, 0).is_none());
    assert_eq!(index.len(), 1);
}

#[test]
fn the_bound_drops_the_soonest_to_expire_then_the_oldest() {
    let mut index = NearestIndex::new(3);
    index.insert(SCOPE, key(1), &[1.0, 0.0], 9_000);
    index.insert(SCOPE, key(2), &[0.0, 1.0], 3_000);
    index.insert([2; 32], key(3), &[1.0, 0.0], 9_000);
    index.insert(SCOPE, key(4), &[1.0, 1.0], 9_000);
    assert_eq!(index.len(), 3);
    assert!(
        index.nearest(&SCOPE, &[0.0, 1.0], 0.99, 0).is_none(),
        "key 2 expired soonest"
    );
    index.insert(SCOPE, key(5), &[-1.0, 0.0], 9_000);
    assert!(
        index.nearest(&SCOPE, &[1.0, 0.0], 0.99, 0).is_none(),
        "key 1 was the oldest"
    );
    assert_eq!(
        index.nearest(&[2; 32], &[1.0, 0.0], 0.99, 0).unwrap().0,
        key(3)
    );
    assert!(!NearestIndex::new(0).insert(SCOPE, key(1), &[1.0], NEVER));
}

#[test]
fn a_new_dimension_replaces_the_partition() {
    let mut index = NearestIndex::new(100);
    index.insert(SCOPE, key(1), &[1.0, 0.0], NEVER);
    index.insert(SCOPE, key(2), &[0.0, 1.0], NEVER);
    index.insert([2; 32], key(3), &[0.0, 1.0], NEVER);
    index.insert(SCOPE, key(4), &[0.0, 0.0, 1.0], NEVER);
    assert_eq!(index.len(), 2);
    assert!(
        index.nearest(&SCOPE, &[1.0, 0.0], -1.0, 0).is_none(),
        "the old model's"
    );
    assert_eq!(
        index.nearest(&SCOPE, &[0.0, 0.0, 1.0], 0.9, 0).unwrap().0,
        key(4)
    );
    assert_eq!(
        index.nearest(&[2; 32], &[0.0, 1.0], 0.9, 0).unwrap().0,
        key(3)
    );
}

#[test]
fn zero_and_nan_vectors_are_refused() {
    let mut index = NearestIndex::new(100);
    assert!(!index.insert(SCOPE, key(1), &[0.0, 0.0], NEVER));
    assert!(!index.insert(SCOPE, key(1), &[1.0, f32::NAN], NEVER));
    assert!(!index.insert(SCOPE, key(1), &[1.0, f32::INFINITY], NEVER));
    assert!(!index.insert(SCOPE, key(1), &[], NEVER));
    assert!(index.is_empty());
    assert!(
        index.insert(SCOPE, key(1), &[1e30, 1e30], NEVER),
        "large but finite"
    );
    assert!(index.nearest(&SCOPE, &[0.0, 0.0], -1.0, 0).is_none());
    assert!(index.nearest(&SCOPE, &[f32::NAN, 1.0], -1.0, 0).is_none());
    assert!(
        index.nearest(&SCOPE, &[1.0, 1.0, 1.0], -1.0, 0).is_none(),
        "wrong dimension"
    );
    index.clear();
    assert!(index.is_empty());
}

/// Topics of 20 paraphrases (noise 0.3 around a centre: siblings at cosine ≈ 0.92), asked
/// with near-duplicates of stored entries (noise 0.1): what a semantic cache sees.
fn clustered(dimension: usize, entries: usize, seed: u64) -> (Vec<Vec<f32>>, Vectors) {
    let mut vectors = Vectors(seed);
    let centres: Vec<Vec<f32>> = (0..entries.div_ceil(20))
        .map(|_| vectors.random(dimension))
        .collect();
    let stored = (0..entries)
        .map(|i| vectors.near(&centres[i % centres.len()], 0.3))
        .collect();
    (stored, vectors)
}

#[test]
fn the_graph_finds_what_the_flat_scan_finds_on_near_duplicates() {
    let (dimension, entries) = (64, 2_000);
    let (stored, mut vectors) = clustered(dimension, entries, 7);
    let mut flat = NearestIndex::with_graph_from(entries, usize::MAX);
    let mut graph = NearestIndex::with_graph_from(entries, 0);
    for (i, vector) in stored.iter().enumerate() {
        assert!(flat.insert(SCOPE, key(i), vector, NEVER));
        assert!(graph.insert(SCOPE, key(i), vector, NEVER));
    }
    assert!(graph.partitions[&SCOPE].is_graph());
    assert!(!flat.partitions[&SCOPE].is_graph());
    for i in (0..entries).step_by(37) {
        let query = vectors.near(&stored[i], 0.1);
        let exact = flat.nearest(&SCOPE, &query, 0.9, 0).unwrap();
        let approximate = graph.nearest(&SCOPE, &query, 0.9, 0).unwrap();
        assert_eq!(approximate.0, exact.0, "query near entry {i}");
        assert!((approximate.1 - exact.1).abs() < 1e-4);
    }
}

/// Calls `purge` until no partition is moving, as the cache desk does; how many calls.
fn settle(index: &mut NearestIndex, now_ms: u64) -> usize {
    let mut calls = 0;
    while index.upkeep_pending() {
        index.purge(now_ms);
        calls += 1;
        assert!(calls < 1_000, "upkeep never ends");
    }
    calls
}

#[test]
fn a_growing_partition_moves_into_a_graph_and_back_when_it_shrinks() {
    let dimension = 16;
    // A graph from 100 entries.
    let mut index = NearestIndex::with_graph_from(1_000, 100);
    let (stored, _) = clustered(dimension, 400, 3);
    // The first 350 expire at 1 000, the rest never.
    for (i, vector) in stored.iter().take(200).enumerate() {
        assert!(index.insert(SCOPE, key(i), vector, 1_000));
    }
    // Past the crossover, the partition answers from its flat scan until purge has filled
    // the graph, entries inserted meanwhile included.
    assert!(index.upkeep_pending());
    assert!(!index.partitions[&SCOPE].is_graph());
    index.purge(0);
    for (i, vector) in stored.iter().enumerate().skip(200) {
        let expires_at_ms = if i < 350 { 1_000 } else { NEVER };
        assert!(index.insert(SCOPE, key(i), vector, expires_at_ms));
    }
    settle(&mut index, 0);
    assert!(index.partitions[&SCOPE].is_graph());
    for i in [10, 199, 360, 399] {
        let found = index.nearest(&SCOPE, &stored[i], 0.99, 999).unwrap();
        assert_eq!(found.0, key(i));
    }

    // 50 entries left, half the crossover: purge makes the partition flat again.
    index.purge(1_000);
    assert_eq!(index.len(), 50);
    assert!(!index.partitions[&SCOPE].is_graph());
    for (i, vector) in stored.iter().enumerate().skip(350) {
        let found = index.nearest(&SCOPE, vector, 0.99, 2_000).unwrap();
        assert_eq!(found.0, key(i));
    }
    let found = index.nearest(&SCOPE, &stored[10], 0.99, 2_000);
    assert!(found.map(|f| f.0) != Some(key(10)));
}

#[test]
fn a_graph_that_replaced_all_its_entries_is_rebuilt() {
    let (dimension, entries) = (32, 500);
    let mut index = NearestIndex::with_graph_from(entries, 0);
    let (old, _) = clustered(dimension, entries, 8);
    let (new, mut vectors) = clustered(dimension, entries, 9);
    for (i, vector) in old.iter().chain(&new).enumerate() {
        // The bound drops an old entry for each new one.
        assert!(index.insert(SCOPE, key(i), vector, NEVER));
        if i < 2 * entries - 2 {
            assert!(!index.upkeep_pending(), "{i}");
        }
    }
    assert!(index.upkeep_pending());
    assert!(settle(&mut index, 0) >= 1);
    assert_eq!(index.len(), entries);
    assert!(index.partitions[&SCOPE].is_graph());
    for (i, vector) in new.iter().enumerate().step_by(25) {
        let query = vectors.near(vector, 0.1);
        assert_eq!(
            index.nearest(&SCOPE, &query, 0.9, 0).unwrap().0,
            key(entries + i)
        );
    }
    // Replaced and expired entries never come back from the new graph.
    assert!(index.nearest(&SCOPE, &old[3], 0.99, 0).is_none());
}

#[test]
fn the_dot_product_matches_a_plain_sum_at_every_tail_length() {
    let mut vectors = Vectors(5);
    for dimension in [1, 15, 16, 17, 33, 1536] {
        let (a, b) = (vectors.random(dimension), vectors.random(dimension));
        let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
        assert!(
            (f64::from(flat::dot(&a, &b)) - plain).abs() < 1e-5,
            "{dimension}"
        );
    }
}
