//! The fleet tier of the response cache: entries put and read back (bodies compressed in
//! the store), expiry, upserts, purges, the flush, statistics, and damaged bodies read as
//! misses; the semantic cache's embeddings kept beside the answers, followed in created
//! order, and malformed ones skipped.

use store::{CachedEmbedding, CachedResponse, SemanticKey, Store};

use crate::{Place, TestDb};

backend_tests!(
    cache_entries_round_trip_until_they_expire,
    cache_put_replaces_and_batches,
    cache_purge_clear_and_stats,
    cache_damaged_bodies_are_misses,
    cache_semantic_keys_are_kept_beside_answers,
    cache_embeddings_follow_in_created_order,
    cache_malformed_embeddings_are_skipped,
);

const NOW_MS: i64 = 1_718_000_000_000;

fn key(n: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    k[31] = 0xff; // bytes beyond ASCII and a zero byte inside: binary, not text
    k
}

/// A chat completion of `words` words, as a cached body.
fn body(n: u32, words: usize) -> Vec<u8> {
    let text = vec!["lorem"; words].join(" ");
    format!(
        r#"{{"id":"chatcmpl-{n}","object":"chat.completion","model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":12,"completion_tokens":{words},"total_tokens":{}}}}}"#,
        12 + words
    )
    .into_bytes()
}

fn entry(n: u32, ttl_ms: i64) -> CachedResponse {
    CachedResponse {
        key: key(n),
        body: body(n, 50),
        meta: format!(r#"{{"model":"gpt-4o","n":{n}}}"#),
        created_ms: NOW_MS,
        expires_ms: NOW_MS + ttl_ms,
        node_id: (n % 2 == 0).then(|| "node-a".to_owned()),
        semantic: None,
    }
}

/// A semantic key of `dims` dimensions, its values drawn from `n`.
fn semantic(n: u32, dims: usize) -> SemanticKey {
    let mut partition = key(n);
    partition[4] = 0x5e; // not the answer's key
    SemanticKey {
        partition,
        embedding: (0..dims).map(|i| (i as f32 - n as f32) / 7.0).collect(),
    }
}

/// An answer with a semantic key, cached `created` ms after [`NOW_MS`] and served `ttl_ms`.
fn semantic_entry(n: u32, created: i64, ttl_ms: i64) -> CachedResponse {
    CachedResponse {
        created_ms: NOW_MS + created,
        expires_ms: NOW_MS + created + ttl_ms,
        semantic: Some(semantic(n, 8)),
        ..entry(n, 0)
    }
}

/// What following the fleet yields for `e`, an answer with a semantic key.
fn followed(e: &CachedResponse) -> CachedEmbedding {
    let s = e.semantic.clone().expect("an answer with a semantic key");
    CachedEmbedding {
        key: e.key,
        partition: s.partition,
        embedding: s.embedding,
        created_ms: e.created_ms,
        expires_ms: e.expires_ms,
    }
}

async fn cache_entries_round_trip_until_they_expire(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.cache_get(&key(1), NOW_MS).await.unwrap(), None);
    let mut big = entry(1, 60_000);
    big.body = body(1, 100_000); // ~600 KB, compresses well
    let odd = CachedResponse {
        body: (0..=255u8).cycle().take(70_000).collect(), // not text, barely compressible
        ..entry(2, 1)
    };
    let empty = CachedResponse {
        body: Vec::new(),
        meta: String::new(),
        ..entry(3, 60_000)
    };
    s.cache_put(&[big.clone(), odd.clone(), empty.clone()])
        .await
        .unwrap();
    s.cache_put(&[]).await.unwrap();

    for e in [&big, &odd, &empty] {
        assert_eq!(s.cache_get(&e.key, NOW_MS).await.unwrap().as_ref(), Some(e));
    }
    assert_eq!(s.cache_get(&key(4), NOW_MS).await.unwrap(), None);
    // Stored compressed: the big body takes a fraction of its size.
    let (entries, bytes) = s.cache_stats().await.unwrap();
    assert_eq!(entries, 3);
    assert!(
        bytes < (big.body.len() / 20 + odd.body.len() + 100) as u64,
        "{bytes} bytes stored"
    );

    // Served while now < expires_ms.
    assert!(s
        .cache_get(&odd.key, odd.expires_ms - 1)
        .await
        .unwrap()
        .is_some());
    assert_eq!(s.cache_get(&odd.key, odd.expires_ms).await.unwrap(), None);
    assert_eq!(
        s.cache_get(&big.key, big.expires_ms + 1).await.unwrap(),
        None
    );
    // Another node reads what this one put.
    let other = db.another(None).await;
    assert_eq!(other.cache_get(&big.key, NOW_MS).await.unwrap(), Some(big));
}

async fn cache_put_replaces_and_batches(db: TestDb) {
    let s = &db.store;
    let first = entry(7, 1_000);
    s.cache_put(std::slice::from_ref(&first)).await.unwrap();
    let replacement = CachedResponse {
        body: body(7, 3),
        meta: r#"{"v":2}"#.into(),
        created_ms: NOW_MS + 500,
        expires_ms: NOW_MS + 90_000,
        node_id: None,
        ..first.clone()
    };
    s.cache_put(std::slice::from_ref(&replacement))
        .await
        .unwrap();
    assert_eq!(
        s.cache_get(&first.key, NOW_MS + 5_000).await.unwrap(),
        Some(replacement.clone()),
        "every field replaced, the expiry too"
    );

    // A batch larger than one statement, with a key given twice (the last one stands) and a
    // key already stored.
    let mut batch: Vec<CachedResponse> = (100..200).map(|n| entry(n, 60_000)).collect();
    let mut again = entry(150, 120_000);
    again.meta = "last".into();
    batch.push(again.clone());
    let mut seven = entry(7, 30_000);
    seven.meta = "batched".into();
    batch.push(seven.clone());
    s.cache_put(&batch).await.unwrap();
    assert_eq!(s.cache_stats().await.unwrap().0, 101);
    assert_eq!(s.cache_get(&key(150), NOW_MS).await.unwrap(), Some(again));
    assert_eq!(s.cache_get(&key(7), NOW_MS).await.unwrap(), Some(seven));
    for n in [100, 131, 132, 199] {
        assert_eq!(
            s.cache_get(&key(n), NOW_MS).await.unwrap(),
            Some(entry(n, 60_000)),
            "{n}"
        );
    }

    // Nodes writing the same keys at once: every write lands, one of them stands.
    let puts = crate::on_two_nodes(&db, |store: Store, i| async move {
        let mut e = entry(500, 60_000);
        e.meta = format!("node {i}");
        store.cache_put(&[e, entry(600 + i as u32, 60_000)]).await
    })
    .await;
    assert!(puts.iter().all(Result::is_ok), "{puts:?}");
    let got = s.cache_get(&key(500), NOW_MS).await.unwrap().unwrap();
    assert!(got.meta.starts_with("node "), "{}", got.meta);
    assert_eq!(s.cache_stats().await.unwrap().0, 101 + 1 + 8);
}

async fn cache_purge_clear_and_stats(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.cache_stats().await.unwrap(), (0, 0));
    assert_eq!(s.cache_purge_expired(NOW_MS).await.unwrap(), 0);
    assert_eq!(s.cache_clear().await.unwrap(), 0);

    // Entries expiring 1 s, 2 s, … 10 s from now.
    let entries: Vec<CachedResponse> = (1..=10).map(|n| entry(n, i64::from(n) * 1_000)).collect();
    s.cache_put(&entries).await.unwrap();
    let (count, bytes) = s.cache_stats().await.unwrap();
    assert_eq!(count, 10);
    assert!(bytes > 0 && bytes < entries.iter().map(|e| e.body.len() as u64).sum::<u64>());

    assert_eq!(s.cache_purge_expired(NOW_MS).await.unwrap(), 0);
    // Expired at now: expires_ms <= now (the entry of 3 s is no longer served at now + 3 s).
    assert_eq!(s.cache_purge_expired(NOW_MS + 3_000).await.unwrap(), 3);
    assert_eq!(s.cache_purge_expired(NOW_MS + 3_000).await.unwrap(), 0);
    let (count, rest) = s.cache_stats().await.unwrap();
    assert_eq!(count, 7);
    assert!(rest < bytes);
    assert_eq!(s.cache_get(&key(3), NOW_MS).await.unwrap(), None);
    assert!(s.cache_get(&key(4), NOW_MS).await.unwrap().is_some());

    assert_eq!(s.cache_clear().await.unwrap(), 7);
    assert_eq!(s.cache_stats().await.unwrap(), (0, 0));
    assert_eq!(s.cache_get(&key(10), NOW_MS).await.unwrap(), None);
}

/// Sets the stored `column` (a binary one) of `key` to `stored`, behind the store's back.
async fn overwrite_column(db: &TestDb, key: &[u8; 32], column: &str, stored: Option<Vec<u8>>) {
    match &db.place {
        Place::File(path) => {
            let path = path.clone();
            let key = *key;
            let sql = format!("UPDATE response_cache SET {column} = ?1 WHERE key = ?2");
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                let n = conn
                    .execute(&sql, rusqlite::params![stored, key.as_slice()])
                    .unwrap();
                assert_eq!(n, 1);
            })
            .await
            .unwrap();
        }
        Place::Schema { url, schema } => {
            let client = crate::admin_client(url).await;
            let sql = format!("UPDATE {schema}.response_cache SET {column} = $1 WHERE key = $2");
            let n = client
                .execute(&sql, &[&stored, &key.as_slice()])
                .await
                .unwrap();
            assert_eq!(n, 1);
        }
    }
}

async fn cache_damaged_bodies_are_misses(db: TestDb) {
    let s = &db.store;
    let good = entry(1, 60_000);
    s.cache_put(std::slice::from_ref(&good)).await.unwrap();
    let mut huge_size = vec![0xff, 0xff, 0xff, 0xff];
    huge_size.extend_from_slice(b"\x10abc");
    let damaged: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("shorter than its size prefix", vec![7, 0]),
        (
            "not LZ4",
            b"\x40\x00\x00\x00this is not lz4 at all, just text".to_vec(),
        ),
        ("an impossible size", huge_size),
        ("the body stored plainly", good.body.clone()),
    ];
    for (n, (what, stored)) in (10..).zip(damaged) {
        let e = entry(n, 60_000);
        s.cache_put(std::slice::from_ref(&e)).await.unwrap();
        overwrite_column(&db, &e.key, "body", Some(stored)).await;
        assert_eq!(s.cache_get(&e.key, NOW_MS).await.unwrap(), None, "{what}");
        // A put under the key heals it.
        s.cache_put(std::slice::from_ref(&e)).await.unwrap();
        assert_eq!(
            s.cache_get(&e.key, NOW_MS).await.unwrap(),
            Some(e),
            "{what}"
        );
    }
    assert_eq!(s.cache_get(&good.key, NOW_MS).await.unwrap(), Some(good));
}

async fn cache_semantic_keys_are_kept_beside_answers(db: TestDb) {
    let s = &db.store;
    let plain = entry(1, 60_000);
    let mut big = semantic(2, 1536);
    big.embedding[..6].copy_from_slice(&[-0.0, f32::MIN_POSITIVE, f32::MAX, -1e-45, 0.1, 3.0]);
    let with = CachedResponse {
        semantic: Some(big),
        ..entry(2, 60_000)
    };
    s.cache_put(&[plain.clone(), with.clone()]).await.unwrap();

    // A lookup reads the answer, not its embedding.
    assert_eq!(s.cache_get(&plain.key, NOW_MS).await.unwrap(), Some(plain));
    let answer = CachedResponse {
        semantic: None,
        ..with.clone()
    };
    assert_eq!(
        s.cache_get(&with.key, NOW_MS).await.unwrap(),
        Some(answer.clone())
    );

    // Only the answer with an embedding is followed, its vector bit for bit.
    let got = s.cache_embeddings_since(0, NOW_MS, 10).await.unwrap();
    assert_eq!(got, [followed(&with)]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&got[0].embedding),
        bits(&with.semantic.as_ref().unwrap().embedding)
    );
    let other = db.another(None).await;
    assert_eq!(
        other.cache_embeddings_since(0, NOW_MS, 10).await.unwrap(),
        got,
        "another node follows it"
    );
    assert_eq!(
        other.cache_get(&with.key, NOW_MS).await.unwrap(),
        Some(answer)
    );

    assert_eq!(s.cache_stats().await.unwrap().0, 2);
    assert_eq!(s.cache_clear().await.unwrap(), 2);
    assert_eq!(s.cache_embeddings_since(0, NOW_MS, 10).await.unwrap(), []);
}

async fn cache_embeddings_follow_in_created_order(db: TestDb) {
    let s = &db.store;
    let early = semantic_entry(1, -5_000, 60_000);
    let first = semantic_entry(9, 0, 60_000);
    // Three in one millisecond: in key order, not in the order put.
    let (same_a, same_b, same_c) = (
        semantic_entry(2, 10, 60_000),
        semantic_entry(5, 10, 60_000),
        semantic_entry(7, 10, 60_000),
    );
    let short_lived = semantic_entry(3, 20, 1_000);
    let last = semantic_entry(4, 30, 60_000);
    let plain = CachedResponse {
        created_ms: NOW_MS + 15,
        ..entry(6, 60_000)
    };
    s.cache_put(&[last.clone(), same_c.clone(), plain, first.clone()])
        .await
        .unwrap();
    s.cache_put(&[
        same_b.clone(),
        short_lived.clone(),
        early.clone(),
        same_a.clone(),
    ])
    .await
    .unwrap();
    let follow = |since: i64, now: i64, limit: usize| async move {
        s.cache_embeddings_since(NOW_MS + since, NOW_MS + now, limit)
            .await
            .unwrap()
    };
    let expect =
        |entries: &[&CachedResponse]| entries.iter().map(|e| followed(e)).collect::<Vec<_>>();

    assert_eq!(
        follow(0, 0, 100).await,
        expect(&[&first, &same_a, &same_b, &same_c, &short_lived, &last]),
        "created order, then key order; the answer without an embedding not among them"
    );
    assert_eq!(
        follow(-60_000, 0, 100).await,
        expect(&[
            &early,
            &first,
            &same_a,
            &same_b,
            &same_c,
            &short_lived,
            &last
        ])
    );
    // Since is inclusive.
    assert_eq!(
        follow(10, 0, 100).await,
        expect(&[&same_a, &same_b, &same_c, &short_lived, &last])
    );
    assert_eq!(follow(11, 0, 100).await, expect(&[&short_lived, &last]));
    assert_eq!(follow(31, 0, 100).await, []);
    // Live while now < expires_ms.
    assert_eq!(follow(20, 1_019, 100).await, expect(&[&short_lived, &last]));
    assert_eq!(follow(20, 1_020, 100).await, expect(&[&last]));
    // A page at a time, the next from the last one's millisecond.
    assert_eq!(follow(0, 0, 2).await, expect(&[&first, &same_a]));
    assert_eq!(follow(10, 0, 3).await, expect(&[&same_a, &same_b, &same_c]));
    assert_eq!(follow(0, 0, 0).await, []);

    // A key put again comes again, with its new embedding; put without one, it is no longer
    // followed but still served.
    let moved = CachedResponse {
        created_ms: NOW_MS + 40,
        semantic: Some(semantic(100, 3)),
        ..first.clone()
    };
    let unembedded = CachedResponse {
        semantic: None,
        ..same_b.clone()
    };
    s.cache_put(&[moved.clone(), unembedded.clone()])
        .await
        .unwrap();
    assert_eq!(
        follow(0, 0, 100).await,
        expect(&[&same_a, &same_c, &short_lived, &last, &moved])
    );
    assert_eq!(
        s.cache_get(&same_b.key, NOW_MS).await.unwrap(),
        Some(unembedded)
    );
}

async fn cache_malformed_embeddings_are_skipped(db: TestDb) {
    let s = &db.store;
    let good = semantic_entry(1, 0, 60_000);
    let damage: [(&str, &str, Option<Vec<u8>>); 4] = [
        ("a short partition", "partition", Some(vec![7; 31])),
        ("a long partition", "partition", Some(vec![7; 33])),
        ("no partition", "partition", None),
        ("a partial f32", "embedding", Some(vec![0; 4 * 8 - 1])),
    ];
    for (n, (what, column, stored)) in (10..).zip(damage) {
        let e = semantic_entry(n, 10, 60_000);
        s.cache_put(&[good.clone(), e.clone()]).await.unwrap();
        overwrite_column(&db, &e.key, column, stored).await;
        assert_eq!(
            s.cache_embeddings_since(NOW_MS, NOW_MS, 10).await.unwrap(),
            [followed(&good)],
            "{what}"
        );
        // The answer is still served, and a put under the key heals the row.
        assert!(
            s.cache_get(&e.key, NOW_MS).await.unwrap().is_some(),
            "{what}"
        );
        s.cache_put(std::slice::from_ref(&e)).await.unwrap();
        assert_eq!(
            s.cache_embeddings_since(NOW_MS, NOW_MS, 10).await.unwrap(),
            [followed(&good), followed(&e)],
            "{what}"
        );
        assert_eq!(s.cache_clear().await.unwrap(), 2);
    }
}
