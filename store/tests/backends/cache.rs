//! The fleet tier of the response cache: entries put and read back (bodies compressed in
//! the store), expiry, upserts, purges, the flush, statistics, and damaged bodies read as
//! misses.

use store::{CachedResponse, Store};

use crate::{Place, TestDb};

backend_tests!(
    cache_entries_round_trip_until_they_expire,
    cache_put_replaces_and_batches,
    cache_purge_clear_and_stats,
    cache_damaged_bodies_are_misses,
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

/// Sets the stored (compressed) body of `key` to `stored`, behind the store's back.
async fn overwrite_stored_body(db: &TestDb, key: &[u8; 32], stored: Vec<u8>) {
    match &db.place {
        Place::File(path) => {
            let path = path.clone();
            let key = *key;
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                let n = conn
                    .execute(
                        "UPDATE response_cache SET body = ?1 WHERE key = ?2",
                        rusqlite::params![stored, key.as_slice()],
                    )
                    .unwrap();
                assert_eq!(n, 1);
            })
            .await
            .unwrap();
        }
        Place::Schema { url, schema } => {
            let client = crate::admin_client(url).await;
            let sql = format!("UPDATE {schema}.response_cache SET body = $1 WHERE key = $2");
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
        overwrite_stored_body(&db, &e.key, stored).await;
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
