//! Request logs written over many batches, as a node writes them: every search and every
//! purge agrees with a reference (the logs filtered and sorted in memory), whatever the
//! batches' sizes and however their times overlap. On SQLite each batch is a segment, and a
//! search must combine them; on PostgreSQL they are rows of one table. Also: the rows an
//! older version kept in SQLite's `request_logs` table are moved into segments on open.

use store::{CacheFilter, LogQuery, RequestLog, Store};
use vocab::{CacheKind, NanoUsd};

use crate::TestDb;

backend_tests!(searches_over_many_batches_match_a_reference);

const BASE_MS: i64 = 1_718_000_000_000;

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn pick(dice: &mut Dice, names: &[&'static str]) -> &'static str {
    names[dice.roll(names.len() as u64) as usize]
}

fn varied(i: u64, dice: &mut Dice) -> RequestLog {
    let status = [200, 200, 200, 429, 500, 404][dice.roll(6) as usize];
    let cache = [
        None,
        None,
        Some(CacheKind::Exact),
        Some(CacheKind::Semantic),
    ][dice.roll(4) as usize];
    RequestLog {
        id: format!("{:016x}{i:016x}", dice.roll(3)),
        client_request_id: (dice.roll(4) == 0).then(|| format!("client-{}", dice.roll(40))),
        // Overlapping batches: each row up to 5 s either side of its place, on a 100-ms
        // grid so that many rows, and batches' newest rows, share a timestamp.
        ts_ms: BASE_MS + ((i as i64) * 20 + dice.roll(10_000) as i64 - 5_000) / 100 * 100,
        key_id: (dice.roll(5) != 0).then(|| pick(dice, &["key-a", "key-b", "key-c"]).to_owned()),
        team_id: (dice.roll(3) != 0).then(|| pick(dice, &["team-a", "team-b"]).to_owned()),
        customer_id: (dice.roll(4) == 0).then(|| "customer-a".to_owned()),
        provider: pick(dice, &["openai", "anthropic"]).to_owned(),
        model: pick(dice, &["gpt-4o", "claude", "llama"]).to_owned(),
        status,
        prompt_tokens: dice.roll(1000),
        completion_tokens: dice.roll(1000),
        cost_nanos: NanoUsd::from_nanos(dice.roll(1 << 40)),
        latency_us: dice.roll(1 << 30),
        overhead_us: dice.roll(100),
        stream: dice.roll(2) == 0,
        error_code: (status >= 400).then(|| format!("code-{status}")),
        usage_estimated: dice.roll(7) == 0,
        cache,
        saved_tokens: cache.map(|_| dice.roll(500)),
        saved_cost_nanos: cache.map(|_| NanoUsd::from_nanos(dice.roll(5000))),
    }
}

/// Every row `q` selects, following the cursors `limit` rows at a time.
async fn every_page(s: &Store, q: &LogQuery, limit: u32) -> Vec<RequestLog> {
    let mut out = Vec::new();
    let mut q = q.clone();
    q.limit = limit;
    for _ in 0..10_000 {
        let page = s.query_request_logs(&q).await.unwrap();
        out.extend(page.data);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("paging does not end");
}

fn reference(logs: &[RequestLog], q: &LogQuery) -> Vec<RequestLog> {
    let same = |want: &Option<String>, have: Option<&String>| {
        want.as_ref().is_none_or(|w| have == Some(w))
    };
    let mut v: Vec<RequestLog> = logs
        .iter()
        .filter(|l| {
            same(&q.key_id, l.key_id.as_ref())
                && same(&q.team_id, l.team_id.as_ref())
                && same(&q.customer_id, l.customer_id.as_ref())
                && same(&q.provider, Some(&l.provider))
                && same(&q.model, Some(&l.model))
                && same(&q.error_code, l.error_code.as_ref())
                && q.status.is_none_or(|s| {
                    s.to_string()
                        .chars()
                        .zip(l.status.to_string().chars())
                        .all(|(f, c)| f == 'x' || f == c)
                })
                && match q.cache {
                    Some(CacheFilter::Kind(k)) => l.cache == Some(k),
                    Some(CacheFilter::Any) => l.cache.is_some(),
                    None => true,
                }
                && q.request_id
                    .as_ref()
                    .is_none_or(|r| &l.id == r || l.client_request_id.as_ref() == Some(r))
                && q.since_ms.is_none_or(|t| l.ts_ms >= t)
                && q.until_ms.is_none_or(|t| l.ts_ms < t)
        })
        .cloned()
        .collect();
    v.sort_by(|a, b| (b.ts_ms, &b.id).cmp(&(a.ts_ms, &a.id)));
    v
}

fn queries(logs: &[RequestLog]) -> Vec<LogQuery> {
    let some = |s: &str| Some(s.to_owned());
    let mut out = vec![LogQuery::default()];
    let mut add = |set: &dyn Fn(&mut LogQuery)| {
        let mut q = LogQuery::default();
        set(&mut q);
        out.push(q);
    };
    add(&|q| q.key_id = some("key-b"));
    add(&|q| q.team_id = some("team-a"));
    add(&|q| q.customer_id = some("customer-a"));
    add(&|q| q.provider = some("anthropic"));
    add(&|q| q.model = some("llama"));
    add(&|q| q.error_code = some("code-429"));
    add(&|q| q.key_id = some("no-such-key"));
    add(&|q| q.status = Some("5xx".parse().unwrap()));
    add(&|q| q.status = Some("404".parse().unwrap()));
    add(&|q| q.cache = Some(CacheFilter::Any));
    add(&|q| q.cache = Some(CacheFilter::Kind(CacheKind::Semantic)));
    add(&|q| {
        q.key_id = some("key-a");
        q.model = some("gpt-4o");
        q.status = Some("2xx".parse().unwrap());
    });
    add(&|q| {
        q.since_ms = Some(BASE_MS + 3_000);
        q.until_ms = Some(BASE_MS + 9_000);
    });
    add(&|q| q.until_ms = Some(BASE_MS));
    let (id, client) = (logs[77].id.clone(), logs[3].clone());
    add(&|q| q.request_id = Some(id.clone()));
    if let Some(c) = &client.client_request_id {
        add(&|q| q.request_id = Some(c.clone()));
    }
    add(&|q| q.request_id = some("absent"));
    out
}

async fn check_all(s: &Store, logs: &[RequestLog]) {
    for q in queries(logs) {
        let want = reference(logs, &q);
        for limit in [1, 7, 1000] {
            if limit == 1 && want.len() > 300 {
                continue; // a page per row: slow, and the 7-row pages cover the same ground
            }
            assert_eq!(every_page(s, &q, limit).await, want, "{q:?}, limit {limit}");
        }
    }
}

async fn searches_over_many_batches_match_a_reference(db: TestDb) {
    let s = &db.store;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut logs: Vec<RequestLog> = Vec::new();
    let mut next = 0u64;
    // 25 batches of 1 to 80 rows.
    for _ in 0..25 {
        let n = 1 + dice.roll(80);
        let batch: Vec<RequestLog> = (next..next + n).map(|i| varied(i, &mut dice)).collect();
        next += n;
        s.insert_request_logs(&batch).await.unwrap();
        logs.extend(batch);
    }
    check_all(s, &logs).await;

    // A purge in the middle of the batches' times: whole batches go, others are cut.
    let before = BASE_MS + (next as i64) * 10;
    let (old, kept): (Vec<RequestLog>, Vec<RequestLog>) =
        logs.iter().cloned().partition(|l| l.ts_ms < before);
    assert!(!old.is_empty() && !kept.is_empty());
    assert_eq!(
        s.purge_request_logs(before).await.unwrap(),
        old.len() as u64
    );
    check_all(s, &kept).await;
    assert_eq!(s.purge_request_logs(before).await.unwrap(), 0);

    // A repeated id is refused, whichever batch holds it.
    let mut again = varied(next, &mut dice);
    again.id = kept[kept.len() / 2].id.clone();
    assert!(s.insert_request_logs(&[again]).await.is_err());
    assert_eq!(
        every_page(s, &LogQuery::default(), 1000).await.len(),
        kept.len()
    );
}

/// A database an older version wrote (a row per request in `request_logs`) opens with its
/// logs moved into segments, and they are found as before.
#[tokio::test]
async fn sqlite_rows_of_an_older_version_are_moved_into_segments() {
    let db = TestDb::sqlite().await;
    let crate::Place::File(path) = &db.place else {
        unreachable!("an SQLite test database is a file")
    };
    let mut dice = Dice(42);
    let logs: Vec<RequestLog> = (0..5000).map(|i| varied(i, &mut dice)).collect();
    {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE request_logs (id TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, \
             key_id TEXT, team_id TEXT, customer_id TEXT, provider TEXT NOT NULL, \
             model TEXT NOT NULL, status INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, \
             completion_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL, \
             latency_us INTEGER NOT NULL, overhead_us INTEGER NOT NULL, stream INTEGER NOT NULL, \
             error_code TEXT, usage_estimated INTEGER NOT NULL DEFAULT 0, client_request_id TEXT, \
             cache TEXT, saved_tokens INTEGER, saved_cost_nanos INTEGER)",
        )
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO request_logs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)")
            .unwrap();
        for l in &logs {
            let n = |v: u64| i64::try_from(v).unwrap();
            insert
                .execute(rusqlite::params![
                    l.id,
                    l.ts_ms,
                    l.key_id,
                    l.team_id,
                    l.customer_id,
                    l.provider,
                    l.model,
                    l.status,
                    n(l.prompt_tokens),
                    n(l.completion_tokens),
                    n(l.cost_nanos.nanos()),
                    n(l.latency_us),
                    n(l.overhead_us),
                    l.stream,
                    l.error_code,
                    l.usage_estimated,
                    l.client_request_id,
                    l.cache.map(CacheKind::as_str),
                    l.saved_tokens.map(n),
                    l.saved_cost_nanos.map(|c| n(c.nanos())),
                ])
                .unwrap();
        }
    }
    let reopened = db.another(None).await;
    check_all(&reopened, &logs).await;
    let conn = rusqlite::Connection::open(path).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'request_logs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the old table is dropped");
    let segments: i64 = conn
        .query_row("SELECT count(*) FROM request_log_segments", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(segments, 3, "2,048 rows a segment");
    db.cleanup().await;
}
