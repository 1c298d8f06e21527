//! Request logs: batched inserts, purges, and the search behind `GET /admin/request-logs` —
//! every filter, status classes, the request id matching both ids, keyset paging, and the
//! rows of requests the response cache answered.

use std::collections::HashSet;

use store::{CacheFilter, Error, LogPage, LogQuery, RequestLog, Store};
use vocab::{CacheHit, CacheKind, NanoUsd, TokenUsage, UsageRecord};

use crate::TestDb;

backend_tests!(
    request_logs_batch_and_purge,
    request_log_filters,
    request_log_status_classes,
    request_log_request_id_matches_both_ids,
    request_log_paging_through_equal_timestamps,
    request_log_paging_with_any_id_text,
    request_log_bad_cursors_are_errors,
    request_log_cache_hits,
);

const BASE_MS: i64 = 1_718_000_000_000;

/// A 32-hex-digit id, like the gateway's, not in the order of `n` (so that the id tie-break
/// is exercised). Hex digits sort the same under any collation.
fn hex_id(n: u64) -> String {
    format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A successful request `i` at `ts_ms`, under `id`, with no owner.
fn log_at(id: String, ts_ms: i64) -> RequestLog {
    RequestLog {
        id,
        client_request_id: None,
        ts_ms,
        key_id: None,
        team_id: None,
        customer_id: None,
        provider: "openai".into(),
        model: "gpt-4o".into(),
        status: 200,
        prompt_tokens: 10,
        completion_tokens: 20,
        cost_nanos: NanoUsd::from_nanos(1_000),
        latency_us: 1_500,
        overhead_us: 40,
        stream: false,
        error_code: None,
        usage_estimated: false,
        cache: None,
        saved_tokens: None,
        saved_cost_nanos: None,
    }
}

/// `logs` in the listing's order: newest first, then by id descending.
fn newest_first(logs: &[RequestLog]) -> Vec<RequestLog> {
    let mut v = logs.to_vec();
    v.sort_by(|a, b| (b.ts_ms, &b.id).cmp(&(a.ts_ms, &a.id)));
    v
}

fn ids(logs: &[RequestLog]) -> Vec<&str> {
    logs.iter().map(|l| l.id.as_str()).collect()
}

/// One page (up to 1000 rows) of the logs a query selects: `query(s, |q| q.x = …)`.
async fn query(s: &Store, set: impl FnOnce(&mut LogQuery)) -> LogPage {
    let mut q = LogQuery {
        limit: 1000,
        ..LogQuery::default()
    };
    set(&mut q);
    s.query_request_logs(&q).await.unwrap()
}

/// Every row a query selects, `limit` rows a page, following `next_cursor` (through its text
/// form, as an HTTP client would); also the number of pages. After the first page, `between`
/// runs once (to write rows while a client is paging).
async fn all_pages(
    s: &Store,
    limit: u32,
    set: impl Fn(&mut LogQuery),
    between: impl std::future::Future<Output = ()>,
) -> (Vec<RequestLog>, usize) {
    let mut out: Vec<RequestLog> = Vec::new();
    let mut cursor = None;
    let mut pages = 0usize;
    let mut between = Some(between);
    loop {
        let mut q = LogQuery::default();
        set(&mut q);
        q.limit = limit;
        q.cursor = cursor.take();
        let page = s.query_request_logs(&q).await.unwrap();
        assert!(page.data.len() <= limit as usize);
        pages += 1;
        out.extend(page.data);
        if let Some(between) = between.take() {
            between.await;
        }
        match page.next_cursor {
            Some(c) => {
                assert_eq!(
                    out.len(),
                    pages * limit as usize,
                    "only the last page is short"
                );
                cursor = Some(c.to_string().parse().unwrap());
            }
            None => break,
        }
        assert!(pages <= 10_000, "paging does not end");
    }
    (out, pages)
}

async fn request_logs_batch_and_purge(db: TestDb) {
    let s = &db.store;
    let logs: Vec<RequestLog> = (0..150)
        .map(|i| {
            let mut l = log_at(format!("req-{i:04}"), BASE_MS + i);
            l.client_request_id = (i % 2 == 0).then(|| format!("client-{i}"));
            l.key_id = Some("key-1".into());
            l.team_id = (i % 2 == 0).then(|| "team-1".to_owned());
            l.customer_id = (i % 4 == 0).then(|| "customer-1".to_owned());
            l.status = if i % 10 == 0 { 502 } else { 200 };
            l.error_code = (i % 10 == 0).then(|| "upstream_error".to_owned());
            l.stream = i % 3 == 0;
            l.usage_estimated = i % 5 == 0;
            l.prompt_tokens = i as u64;
            l.cost_nanos = NanoUsd::from_nanos(1_000 * i as u64);
            l
        })
        .collect();
    s.insert_request_logs(&logs).await.unwrap();
    s.insert_request_logs(&[]).await.unwrap();

    // Every column reads back as written.
    let page = query(s, |q| {
        q.limit = 10;
    })
    .await;
    assert_eq!(page.data, newest_first(&logs)[..10]);
    assert!(page.next_cursor.is_some());
    let all = query(s, |_| {}).await;
    assert_eq!(all.data, newest_first(&logs));
    assert_eq!(all.next_cursor, None);

    // The default page is 100 rows; 0 is taken as 1, and more than 1000 as 1000.
    let page = s.query_request_logs(&LogQuery::default()).await.unwrap();
    assert_eq!(page.data.len(), 100);
    let page = query(s, |q| {
        q.limit = 0;
    })
    .await;
    assert_eq!(page.data.len(), 1);
    let page = query(s, |q| {
        q.limit = u32::MAX;
    })
    .await;
    assert_eq!(page.data.len(), 150);

    // A batch with a duplicate id is rejected whole.
    let batch = vec![log_at("req-0500".into(), BASE_MS), logs[3].clone()];
    assert!(matches!(
        s.insert_request_logs(&batch).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(query(s, |_| {}).await.data.len(), 150);

    // Purging old rows while a client pages: the next page is what is left after its cursor.
    let first = query(s, |q| {
        q.limit = 30;
    })
    .await;
    assert_eq!(s.purge_request_logs(BASE_MS + 100).await.unwrap(), 100);
    assert_eq!(query(s, |_| {}).await.data, newest_first(&logs)[..50]);
    let rest = query(s, |q| {
        q.cursor = first.next_cursor.clone();
    })
    .await;
    assert_eq!(rest.data, newest_first(&logs)[30..50]);
    assert_eq!(rest.next_cursor, None);
}

/// 60 requests over keys, teams, customers, providers, models, statuses and error codes,
/// 10 ms apart (every 6th shares its timestamp with the one before).
fn varied_logs() -> Vec<RequestLog> {
    const MODELS: [&str; 3] = ["gpt-4o", "openai/gpt-4o-mini", "llama3:70b-instruct/q4 v2"];
    const STATUSES: [u16; 7] = [200, 200, 429, 500, 502, 404, 201];
    (0..60u64)
        .map(|i| {
            let ts = BASE_MS + 10 * (i as i64) - if i % 6 == 5 { 10 } else { 0 };
            let mut l = log_at(hex_id(i), ts);
            l.key_id = (i % 7 != 0).then(|| format!("key-{}", i % 3));
            l.team_id = (i % 5 != 0).then(|| format!("team-{}", i % 2));
            l.customer_id = (i % 4 == 0).then(|| "customer-1".to_owned());
            l.provider = ["openai", "anthropic"][(i % 2) as usize].to_owned();
            l.model = MODELS[((i / 2) % 3) as usize].to_owned();
            l.status = STATUSES[(i % 7) as usize];
            l.error_code = match l.status {
                429 => Some("rate_limited".to_owned()),
                404 => Some("model_not_found".to_owned()),
                500.. => Some("upstream_error".to_owned()),
                _ => None,
            };
            l.client_request_id = (i % 3 == 0).then(|| format!("client-{}", i % 9));
            l
        })
        .collect()
}

async fn request_log_filters(db: TestDb) {
    let s = &db.store;
    let logs = varied_logs();
    s.insert_request_logs(&logs).await.unwrap();
    let expect = |keep: &dyn Fn(&RequestLog) -> bool| {
        let v: Vec<RequestLog> = newest_first(&logs).into_iter().filter(keep).collect();
        assert!(
            !v.is_empty() && v.len() < logs.len(),
            "a filter that selects some"
        );
        v
    };
    let some = |v: &str| Some(v.to_owned());

    let got = query(s, |q| {
        q.key_id = some("key-1");
    })
    .await;
    assert_eq!(got.data, expect(&|l| l.key_id.as_deref() == Some("key-1")));
    let got = query(s, |q| {
        q.team_id = some("team-0");
    })
    .await;
    assert_eq!(
        got.data,
        expect(&|l| l.team_id.as_deref() == Some("team-0"))
    );
    let got = query(s, |q| {
        q.customer_id = some("customer-1");
    })
    .await;
    assert_eq!(got.data, expect(&|l| l.customer_id.is_some()));
    let got = query(s, |q| {
        q.provider = some("anthropic");
    })
    .await;
    assert_eq!(got.data, expect(&|l| l.provider == "anthropic"));
    for model in ["openai/gpt-4o-mini", "llama3:70b-instruct/q4 v2", "gpt-4o"] {
        let got = query(s, |q| {
            q.model = some(model);
        })
        .await;
        assert_eq!(got.data, expect(&|l| l.model == model), "{model}");
    }
    let got = query(s, |q| {
        q.status = Some("429".parse().unwrap());
    })
    .await;
    assert_eq!(got.data, expect(&|l| l.status == 429));
    let got = query(s, |q| {
        q.error_code = some("upstream_error");
    })
    .await;
    assert_eq!(
        got.data,
        expect(&|l| l.error_code.as_deref() == Some("upstream_error"))
    );

    // since is inclusive, until exclusive: both bounds are timestamps of rows.
    let (since, until) = (logs[12].ts_ms, logs[40].ts_ms);
    let got = query(s, |q| {
        q.since_ms = Some(since);
    })
    .await;
    assert_eq!(got.data, expect(&|l| l.ts_ms >= since));
    assert!(got.data.iter().any(|l| l.ts_ms == since));
    let got = query(s, |q| {
        q.until_ms = Some(until);
    })
    .await;
    assert_eq!(got.data, expect(&|l| l.ts_ms < until));
    assert!(got.data.iter().all(|l| l.ts_ms != until));
    let got = query(s, |q| {
        q.since_ms = Some(until);
        q.until_ms = Some(since);
    })
    .await;
    assert_eq!(got.data, Vec::<RequestLog>::new());

    // Filters combine with AND.
    let got = query(s, |q| {
        q.key_id = some("key-2");
        q.status = Some("5xx".parse().unwrap());
        q.since_ms = Some(since);
        q.until_ms = Some(until);
    })
    .await;
    assert_eq!(
        got.data,
        expect(&|l| l.key_id.as_deref() == Some("key-2")
            && l.status >= 500
            && (since..until).contains(&l.ts_ms))
    );

    // Values are matched exactly, never as SQL or patterns.
    for v in ["key-%", "key-1' OR '1'='1", "KEY-1", "key-1 ", ""] {
        let got = query(s, |q| {
            q.key_id = some(v);
        })
        .await;
        assert_eq!(got.data, Vec::<RequestLog>::new(), "{v:?}");
    }
    let got = query(s, |q| {
        q.model = some("gpt-4o%");
    })
    .await;
    assert_eq!(got.data, Vec::<RequestLog>::new());
}

async fn request_log_status_classes(db: TestDb) {
    let s = &db.store;
    let statuses = [
        100u16, 199, 200, 204, 299, 300, 399, 400, 404, 429, 499, 500, 502, 599,
    ];
    let logs: Vec<RequestLog> = (0..statuses.len())
        .map(|i| {
            let mut l = log_at(hex_id(i as u64), BASE_MS + i as i64);
            l.status = statuses[i];
            l
        })
        .collect();
    s.insert_request_logs(&logs).await.unwrap();
    let statuses_of = |data: &[RequestLog]| {
        let mut v: Vec<u16> = data.iter().map(|l| l.status).collect();
        v.sort_unstable();
        v
    };
    for (class, want) in [
        ("1xx", vec![100, 199]),
        ("2xx", vec![200, 204, 299]),
        ("3XX", vec![300, 399]),
        ("4xx", vec![400, 404, 429, 499]),
        ("5xx", vec![500, 502, 599]),
        ("6xx", vec![]),
        ("404", vec![404]),
        ("200", vec![200]),
        ("201", vec![]),
    ] {
        let got = query(s, |q| {
            q.status = Some(class.parse().unwrap());
        })
        .await;
        assert_eq!(statuses_of(&got.data), want, "{class}");
    }
}

async fn request_log_request_id_matches_both_ids(db: TestDb) {
    let s = &db.store;
    let mut logs: Vec<RequestLog> = (0..10)
        .map(|i| log_at(hex_id(i), BASE_MS + i as i64))
        .collect();
    // Two requests sent with one x-request-id (a client retry), and a client that sent
    // another request's gateway id as its own x-request-id.
    logs[2].client_request_id = Some("client-retried".into());
    logs[7].client_request_id = Some("client-retried".into());
    logs[5].client_request_id = Some(logs[1].id.clone());
    logs[9].client_request_id = Some("client-9".into());
    s.insert_request_logs(&logs).await.unwrap();

    let by = |rid: &str| {
        let rid = rid.to_owned();
        async move {
            query(s, |q| {
                q.request_id = Some(rid);
            })
            .await
            .data
        }
    };
    assert_eq!(by(&logs[3].id).await, [logs[3].clone()], "the gateway's id");
    assert_eq!(by("client-9").await, [logs[9].clone()], "the client's id");
    assert_eq!(
        by("client-retried").await,
        [logs[7].clone(), logs[2].clone()]
    );
    assert_eq!(
        by(&logs[1].id).await,
        [logs[5].clone(), logs[1].clone()],
        "either column"
    );
    assert_eq!(by("client").await, Vec::<RequestLog>::new());
    assert_eq!(by(&logs[3].id[..31]).await, Vec::<RequestLog>::new());
    // Combined with another filter.
    let got = query(s, |q| {
        q.request_id = Some(logs[1].id.clone());
        q.until_ms = Some(logs[5].ts_ms);
    })
    .await;
    assert_eq!(got.data, [logs[1].clone()]);
}

async fn request_log_paging_through_equal_timestamps(db: TestDb) {
    let s = &db.store;
    // 250 rows on 7 timestamps (groups of 40, the last of 10), ids out of insertion order;
    // every other row in team-a.
    let logs: Vec<RequestLog> = (0..250u64)
        .map(|i| {
            let mut l = log_at(hex_id(i), BASE_MS + (i / 40) as i64);
            l.team_id = Some(["team-a", "team-b"][(i % 2) as usize].to_owned());
            l
        })
        .collect();
    for chunk in logs.chunks(100) {
        s.insert_request_logs(chunk).await.unwrap();
    }
    let want = newest_first(&logs);

    for (limit, pages) in [(7u32, 36), (1, 250), (40, 7), (249, 2), (250, 1), (1000, 1)] {
        let (got, n) = all_pages(s, limit, |_| {}, async {}).await;
        assert_eq!(ids(&got), ids(&want), "limit {limit}");
        assert_eq!(n, pages, "limit {limit}");
        let unique: HashSet<&str> = got.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(unique.len(), 250, "no duplicates at limit {limit}");
    }

    // Paging a filtered listing.
    let (got, _) = all_pages(
        s,
        9,
        |q| {
            q.team_id = Some("team-a".into());
        },
        async {},
    )
    .await;
    let team_a: Vec<RequestLog> = want
        .iter()
        .filter(|l| l.team_id.as_deref() == Some("team-a"))
        .cloned()
        .collect();
    assert_eq!(got, team_a);
    let (got, _) = all_pages(
        s,
        11,
        |q| {
            q.since_ms = Some(BASE_MS + 2);
            q.until_ms = Some(BASE_MS + 5);
        },
        async {},
    )
    .await;
    assert_eq!(ids(&got), ids(&want[50..170]));

    // Rows written while a client pages (newer than any) neither shift the pages nor repeat
    // a row: the client sees exactly the rows that followed its cursor.
    let (got, _) = all_pages(s, 30, |_| {}, async {
        let late: Vec<RequestLog> = (1000..1005u64)
            .map(|i| log_at(hex_id(i), BASE_MS + 100))
            .collect();
        s.insert_request_logs(&late).await.unwrap();
    })
    .await;
    assert_eq!(ids(&got), ids(&want));
}

async fn request_log_paging_with_any_id_text(db: TestDb) {
    let s = &db.store;
    let odd = [
        "a:b:c",
        ":",
        "",
        "ü-ñ",
        "x y",
        "%2F/?&=",
        "'; DROP TABLE request_logs; --",
        "+",
        "Z",
        "a",
        "A",
        "0",
        "🦀",
        "tab\there",
        "dot.dot",
    ];
    let logs: Vec<RequestLog> = odd
        .iter()
        .enumerate()
        .map(|(i, id)| log_at((*id).to_owned(), BASE_MS + (i % 2) as i64))
        .collect();
    s.insert_request_logs(&logs).await.unwrap();
    // The order of ids within a timestamp is the database's collation: compare with one
    // unpaged read.
    let whole = query(s, |_| {}).await.data;
    assert_eq!(whole.len(), odd.len());
    for limit in [1u32, 2, 4] {
        let (got, _) = all_pages(s, limit, |_| {}, async {}).await;
        assert_eq!(got, whole, "limit {limit}");
    }
}

async fn request_log_bad_cursors_are_errors(db: TestDb) {
    let s = &db.store;
    let logs: Vec<RequestLog> = (0..5)
        .map(|i| log_at(hex_id(i), BASE_MS + i as i64))
        .collect();
    s.insert_request_logs(&logs).await.unwrap();
    let mut q = LogQuery::default();
    for bad in ["", "not a cursor", "!!!!", "MTIz", "eDp5", "MTIzOmFi="] {
        // "MTIz" is base64 of "123" (no id), "eDp5" of "x:y" (no timestamp).
        let parsed = bad.parse().map(|c| q.cursor = Some(c));
        let err = parsed.expect_err(bad);
        assert!(err.to_string().contains("cursor"), "{err}");
    }
    assert_eq!(q.cursor, None);
    // The query is still usable and pages as usual.
    q.limit = 2;
    let first = s.query_request_logs(&q).await.unwrap();
    assert_eq!(ids(&first.data), [logs[4].id.as_str(), logs[3].id.as_str()]);
    q.cursor = first.next_cursor;
    let second = s.query_request_logs(&q).await.unwrap();
    assert_eq!(
        ids(&second.data),
        [logs[2].id.as_str(), logs[1].id.as_str()]
    );
}

/// Rows of requests a cache answered keep which cache it was and what it saved (their own
/// tokens and cost are 0), and `cache` selects them: one kind, or any.
async fn request_log_cache_hits(db: TestDb) {
    let s = &db.store;
    let hit = |kind, prompt, completion, nanos| CacheHit {
        kind,
        saved: TokenUsage {
            prompt,
            completion,
            cached: 0,
        },
        saved_cost: NanoUsd::from_nanos(nanos),
    };
    // A row made from a usage record, as the coordinator makes it.
    let record = UsageRecord {
        id: String::new(),
        client_request_id: None,
        ts_ms: BASE_MS as u64,
        key_id: Some("key-1".into()),
        team_id: None,
        customer_id: None,
        provider: "openai".into(),
        model: "gpt-4o".into(),
        status: 200,
        usage: TokenUsage::default(),
        cost: NanoUsd::ZERO,
        latency_us: 300,
        stream: false,
        estimated: false,
        overhead_us: 300,
        error_code: None,
        admitted: true,
        cache: Some(hit(CacheKind::Exact, 1_200, 340, 9_876_543)),
        budget_generations: [None; 3],
    };
    let from_record = RequestLog::new(hex_id(1000), &record);
    assert_eq!(from_record.cache, Some(CacheKind::Exact));
    assert_eq!(from_record.saved_tokens, Some(1_540));
    assert_eq!(
        from_record.saved_cost_nanos,
        Some(NanoUsd::from_nanos(9_876_543))
    );
    assert_eq!(
        (from_record.prompt_tokens, from_record.cost_nanos),
        (0, NanoUsd::ZERO)
    );
    let miss = RequestLog::new(
        hex_id(1001),
        &UsageRecord {
            cache: None,
            ..record.clone()
        },
    );
    assert_eq!(
        (miss.cache, miss.saved_tokens, miss.saved_cost_nanos),
        (None, None, None)
    );

    // 40 more: every 3rd an exact hit, every 5th (not an exact one) a semantic hit.
    let mut logs: Vec<RequestLog> = (0..40u64)
        .map(|i| {
            let mut l = log_at(hex_id(i), BASE_MS + i as i64);
            l.key_id = Some(format!("key-{}", i % 2));
            let kind = if i % 3 == 0 {
                Some(CacheKind::Exact)
            } else if i % 5 == 0 {
                Some(CacheKind::Semantic)
            } else {
                None
            };
            if let Some(kind) = kind {
                l.cache = Some(kind);
                l.saved_tokens = Some(100 + i);
                l.saved_cost_nanos = Some(NanoUsd::from_nanos(u64::from(u32::MAX) * 3 + i));
                l.prompt_tokens = 0;
                l.completion_tokens = 0;
                l.cost_nanos = NanoUsd::ZERO;
            }
            l
        })
        .collect();
    logs.push(from_record);
    logs.push(miss);
    s.insert_request_logs(&logs).await.unwrap();

    // Every column reads back as written.
    assert_eq!(query(s, |_| {}).await.data, newest_first(&logs));

    let want = |keep: &dyn Fn(&RequestLog) -> bool| -> Vec<RequestLog> {
        newest_first(&logs).into_iter().filter(keep).collect()
    };
    let exact = query(s, |q| {
        q.cache = Some(CacheFilter::Kind(CacheKind::Exact));
    })
    .await;
    assert_eq!(exact.data, want(&|l| l.cache == Some(CacheKind::Exact)));
    assert_eq!(exact.data.len(), 15);
    let semantic = query(s, |q| {
        q.cache = Some("semantic".parse().unwrap());
    })
    .await;
    assert_eq!(
        semantic.data,
        want(&|l| l.cache == Some(CacheKind::Semantic))
    );
    assert_eq!(semantic.data.len(), 5);
    let any = query(s, |q| {
        q.cache = Some(CacheFilter::Any);
    })
    .await;
    assert_eq!(any.data, want(&|l| l.cache.is_some()));
    assert_eq!(any.data.len(), 20);

    // With other filters, and paged.
    let got = query(s, |q| {
        q.cache = Some(CacheFilter::Any);
        q.key_id = Some("key-1".into());
        q.since_ms = Some(BASE_MS + 10);
    })
    .await;
    assert_eq!(
        got.data,
        want(&|l| l.cache.is_some()
            && l.key_id.as_deref() == Some("key-1")
            && l.ts_ms >= BASE_MS + 10)
    );
    let (paged, pages) = all_pages(
        s,
        3,
        |q| {
            q.cache = Some(CacheFilter::Kind(CacheKind::Exact));
        },
        async {},
    )
    .await;
    assert_eq!(paged, exact.data);
    assert_eq!(pages, 5);
}
