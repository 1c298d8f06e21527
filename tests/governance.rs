//! Virtual keys, limits and budgets end to end: keys made through the admin API, limits that
//! hold exactly across shards under concurrency, budgets that stop spending, and usage that
//! survives a restart and a `kill -9`. Every scenario runs on embedded SQLite and on the real
//! PostgreSQL (`DATABASE_URL`, else 127.0.0.1:5432/test — scripts/test.sh ensures one).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::fleet::{admin, create_key, postgres_url, ADMIN_TOKEN};
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = ADMIN_TOKEN;

/// A mock, and a gateway with governance on the given database.
struct Node {
    gw: Gateway,
    _mock: MockLlm,
    database: Database,
}

/// `patch` is laid over [`config`].
fn node_with(database: &Database, patch: Value) -> Node {
    let mock = MockLlm::start(&[]);
    std::env::set_var("RG_TEST_ADMIN_TOKEN", ADMIN);
    let gw = Gateway::start(merged(config(&mock, database), patch));
    Node {
        gw,
        _mock: mock,
        database: database.clone(),
    }
}

/// Where a scenario keeps its data: an SQLite file, or a PostgreSQL schema of its own, so that
/// tests never see each other's keys, counters or notifications.
#[derive(Clone)]
struct Database {
    url: String,
    schema: Option<String>,
}

impl Database {
    fn postgres() -> Database {
        Database {
            url: postgres_url(),
            schema: Some(common::fleet::unique_schema("gov")),
        }
    }
}

/// Drops a scenario's PostgreSQL schema when the scenario ends (passed or not).
struct DropSchema(Database);

impl Drop for DropSchema {
    fn drop(&mut self) {
        if let Some(schema) = &self.0.schema {
            common::fleet::psql(
                &self.0.url,
                &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            );
        }
    }
}

fn config(mock: &MockLlm, database: &Database) -> Value {
    json!({
        "shards": 2,
        "governance": {
            "database": database.url,
            "database_schema": database.schema,
            "require_virtual_key": true,
            "admin_token": "env.RG_TEST_ADMIN_TOKEN",
            "flush_interval_ms": 100,
            "prices": {"gpt-4o-mini": {"input": "1000", "output": "1000"}},
        },
        "providers": {"mock": {"base_url": mock.base_url()}},
    })
}

/// Waits until the node knows the key (`/v1/models` stops answering 401), without using any
/// of its limits. Reloads can queue behind others when many nodes share one database.
fn wait_known(gw: &Gateway, secret: &str) {
    let auth = format!("Bearer {secret}");
    poll_until(Duration::from_secs(5), || {
        let resp = gw.request(&build_request(
            "GET",
            "/v1/models",
            &[("authorization", &auth)],
            None,
            true,
        ));
        (resp.status != 401).then_some(())
    })
    .expect("the node learns the key");
}

/// The key's usage once the store holds at least `requests` of its requests (usage reaches
/// it in batches, every `flush_interval_ms`).
fn usage_after(gw: &Gateway, id: &str, requests: u64) -> Value {
    poll_until(Duration::from_secs(5), || {
        let (_, usage) = admin(gw, "GET", &format!("/admin/usage/key/{id}"), None);
        (usage["requests"].as_u64()? >= requests).then_some(usage)
    })
    .unwrap_or_else(|| panic!("the usage of {requests} requests never reached the store"))
}

/// Per-minute limits count in UTC minutes: near a minute's end, wait for the next one so a
/// burst of requests stays inside one window. The one deliberate sleep here: what is awaited
/// is the clock itself.
fn within_one_minute_window() {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 > 50 {
        std::thread::sleep(Duration::from_secs(61 - secs % 60));
    }
}

/// A chat request carrying `body`, authorised by the key `secret`: every request these
/// tests make as a key holder.
fn keyed_chat(secret: &str, body: &str, close: bool) -> Vec<u8> {
    let auth = format!("Bearer {secret}");
    chat_request(body, &[("authorization", &auth)], close)
}

fn chat_with(gw: &Gateway, secret: &str, stream: bool) -> Response {
    let body = chat_body("mock/gpt-4o-mini", "hello", stream);
    gw.request(&keyed_chat(secret, &body, true))
}

/// The status of one keyed chat request on a new connection: concurrent ones spread over
/// both shards. A 503 says "retry shortly" (on a loaded machine the coordinator's answer to
/// a dry lease can be late): retried, as a client is told to.
fn keyed_status(addr: SocketAddr, secret: &str, body: &str) -> u16 {
    let req = keyed_chat(secret, body, true);
    (0..20)
        .map(|_| http_request(addr, &req, Duration::from_secs(10)).unwrap().0)
        .find(|status| *status != 503)
        .expect("an answer within 20 tries")
}

/// The statuses of 10 keyed chat requests from each of `threads` threads at once, the
/// request `i` of thread `t` carrying `body(t, i)`, each on a new connection (so they spread
/// over both shards). Every one is admitted (200) or limited (429).
fn concurrent_statuses(
    addr: SocketAddr,
    secret: &str,
    threads: usize,
    body: fn(usize, usize) -> String,
) -> Vec<u16> {
    let threads: Vec<_> = (0..threads)
        .map(|t| {
            let secret = secret.to_owned();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| keyed_status(addr, &secret, &body(t, i)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    for status in &statuses {
        assert!(*status == 200 || *status == 429, "status {status}");
    }
    statuses
}

/// A new key named after its one limit, `kind` (`rpm`, `tpm` …) at `limit`, once the node
/// knows it, at the start of a minute window: the rate-limit tests begin here.
fn limited_key(gw: &Gateway, kind: &str, limit: u64) -> (String, String) {
    let body = json!({"name": kind, "limits": {kind: limit}, "active": true}).to_string();
    let (id, secret) = create_key(gw, &body);
    wait_known(gw, &secret);
    within_one_minute_window();
    (id, secret)
}

fn sqlite_path(tag: &str) -> (TempDir, Database) {
    let dir = TempDir::new(tag);
    let url = dir.path().join("ringgate.db").display().to_string();
    (dir, Database { url, schema: None })
}

fn keys_and_auth(database: &Database) {
    let node = node_with(database, json!({}));
    let gw = &node.gw;
    // No key, a wrong key: 401 in OpenAI's shape.
    let resp = gw.post_json(
        "/v1/chat/completions",
        &chat_body("mock/gpt-4o-mini", "x", false),
        &[],
    );
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"]["code"], "missing_api_key");
    let resp = chat_with(gw, "rg-not-a-key", false);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"]["type"], "authentication_error");
    // A key made through the admin API works within 100 ms.
    let (_, secret) = create_key(gw, r#"{"name":"fresh","active":true}"#);
    let mut last = String::new();
    poll_until(Duration::from_millis(100), || {
        let resp = chat_with(gw, &secret, false);
        last = resp.text();
        (resp.status == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("not usable in time: {last}"));
    // Every way of presenting it works, on every route.
    let resp = gw.post_json(
        "/v1/chat/completions",
        &chat_body("mock/gpt-4o-mini", "x", false),
        &[("x-ringgate-key", &secret)],
    );
    assert_eq!(resp.status, 200);
    let resp = gw.post_json(
        "/anthropic/v1/messages",
        r#"{"model":"mock/gpt-4o-mini","max_tokens":8,"messages":[{"role":"user","content":"x"}]}"#,
        &[("x-api-key", &secret)],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = gw.post_json(
        "/anthropic/v1/messages",
        r#"{"model":"mock/gpt-4o-mini","max_tokens":8,"messages":[]}"#,
        &[],
    );
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.json()["type"],
        "error",
        "Anthropic error shape: {}",
        resp.text()
    );
    // Model restrictions, expiry and deactivation: 403.
    let (_, limited) = create_key(
        gw,
        r#"{"name":"only-other","allowed_models":["mock/other"],"active":true}"#,
    );
    let (_, expired) = create_key(gw, r#"{"name":"old","expires_at":1,"active":true}"#);
    let (_, inactive) = create_key(gw, r#"{"name":"off","active":false}"#);
    for secret in [&limited, &expired, &inactive] {
        wait_known(gw, secret);
    }
    for (secret, code) in [
        (&limited, "model_not_allowed"),
        (&expired, "key_not_usable"),
        (&inactive, "key_not_usable"),
    ] {
        let resp = chat_with(gw, secret, false);
        assert_eq!(resp.status, 403, "{}", resp.text());
        assert_eq!(resp.json()["error"]["code"], code);
    }
}

fn exact_request_limit_across_shards(database: &Database) {
    let node = node_with(database, json!({}));
    let gw = &node.gw;
    const LIMIT: usize = 50;
    let (_, secret) = limited_key(gw, "rpm", LIMIT as u64);
    let statuses = concurrent_statuses(gw.addr, &secret, 16, |t, i| {
        chat_body("mock/gpt-4o-mini", "go", (t + i) % 3 == 0)
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, LIMIT, "exactly the limit is admitted");
    assert_eq!(statuses.len() - ok, 160 - LIMIT);
    let metrics = gw.metrics();
    for shard in 0..2 {
        let line = format!("ringgate_responses_total{{class=\"2xx\",shard=\"{shard}\"}}");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
            "both shards served: {metrics}"
        );
    }
}

fn budget_stops_spending_and_usage_survives_kill_9(database: &Database) {
    let mut node = node_with(database, json!({}));
    // Prices are $1000 per million tokens: 1,000,000 nanos per token. "hello" costs
    // 2 prompt + 2 completion tokens = 4,000,000 nanos. A 10,000,000 budget admits 3
    // sequential requests (the third overshoots by what was in flight: 2,000,000) — or 4,
    // when the fourth reaches the other shard before the third's cost is settled: the
    // documented bound is the cost of the requests in flight when the budget ran out.
    let (id, secret) = create_key(
        &node.gw,
        r#"{"name":"budget","budget":{"limit_nanos":10000000,"period":"daily"},"active":true}"#,
    );
    wait_known(&node.gw, &secret);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        // A 503 says "retry shortly" (the coordinator's answer was late): retried, as told.
        let status = (0..20)
            .map(|_| chat_with(&node.gw, &secret, false).status)
            .find(|s| *s != 503)
            .expect("an answer within 20 tries");
        statuses.push(status);
    }
    let admitted = statuses.iter().take_while(|s| **s == 200).count();
    assert!(
        admitted == 3 || admitted == 4,
        "budget enforcement: {statuses:?}"
    );
    assert!(
        statuses[admitted..].iter().all(|s| *s == 402),
        "{statuses:?}"
    );
    let resp = chat_with(&node.gw, &secret, true);
    assert_eq!(resp.status, 402);
    assert_eq!(resp.json()["error"]["code"], "budget_exceeded");
    let usage = usage_after(&node.gw, &id, admitted as u64);
    assert_eq!(usage["requests"], admitted, "{usage}");
    assert_eq!(usage["spent_nanos"], admitted as u64 * 4_000_000, "{usage}");

    // kill -9, restart on the same database: usage is intact and the budget still holds.
    node.gw.kill9();
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(config(&mock, &node.database));
    let (_, usage) = admin(&gw, "GET", &format!("/admin/usage/key/{id}"), None);
    assert_eq!(usage["requests"], admitted, "after kill -9: {usage}");
    assert_eq!(
        chat_with(&gw, &secret, false).status,
        402,
        "budget still spent after restart"
    );
    // A budget reset through the admin API lets the key spend again.
    let (status, v) = admin(
        &gw,
        "POST",
        &format!("/admin/budgets/key/{id}/reset"),
        Some("{}"),
    );
    assert_eq!(status, 200, "{v}");
    poll_until(Duration::from_secs(2), || {
        (chat_with(&gw, &secret, false).status == 200).then_some(())
    })
    .expect("the reset takes effect");
}

fn streamed_usage_is_counted_but_not_shown(database: &Database) {
    let node = node_with(database, json!({}));
    let gw = &node.gw;
    let (id, secret) = create_key(
        gw,
        r#"{"name":"stream","limits":{"tpm":1000000},"active":true}"#,
    );
    wait_known(gw, &secret);
    let resp = chat_with(gw, &secret, true);
    assert_eq!(resp.status, 200);
    assert_eq!(sse_chat_text(&resp.body), "echo: hello");
    assert!(
        !resp.text().contains("\"usage\""),
        "the client did not ask for usage: {}",
        resp.text()
    );
    assert_eq!(
        sse_data(&resp.body).last().map(String::as_str),
        Some("[DONE]")
    );
    let usage = usage_after(gw, &id, 1);
    assert_eq!(
        usage["completion_tokens"], 2,
        "streamed usage was recorded: {usage}"
    );
    // The same stream with its chunks cut across reads, extended, or whole (the mock's
    // `cut-chunks`): however the reads cut the chunks, every `"usage": null` and the usage
    // chunk stay out, and the usage is counted once.
    let auth = format!("Bearer {secret}");
    let cut = gw.request(&chat_request(
        &chat_body("mock/gpt-4o-mini", "hello", true),
        &[
            ("authorization", &auth),
            ("x-mock-stream-framing", "cut-chunks"),
            ("x-mock-stream-chunks", "8"),
        ],
        true,
    ));
    assert_eq!(cut.status, 200);
    assert_eq!(sse_chat_text(&cut.body), "echo: hello");
    assert!(!cut.text().contains("\"usage\""), "{}", cut.text());
    assert_eq!(
        sse_data(&cut.body).last().map(String::as_str),
        Some("[DONE]")
    );
    let both = usage_after(gw, &id, 2);
    assert_eq!(both["completion_tokens"], 4, "{both}");
    assert_eq!(
        both["prompt_tokens"].as_u64(),
        usage["prompt_tokens"].as_u64().map(|p| 2 * p),
        "{both}"
    );
}

fn token_limit_holds_under_concurrency(database: &Database) {
    let node = node_with(database, json!({}));
    let gw = &node.gw;
    // Each request's body (~90 bytes) bounds it at ~95 tokens, more than most leases of a
    // 100-token limit hold: those requests are counted exactly (~8 + max_tokens 2) and use
    // about that; a request judged on its bound alone would leave room for one at a time.
    const TPM: u64 = 100;
    let (id, secret) = limited_key(gw, "tpm", TPM);
    let statuses = concurrent_statuses(gw.addr, &secret, 8, |t, i| {
        serde_json::json!({
            "model": "mock/gpt-4o-mini",
            "max_tokens": 2,
            "stream": (t + i) % 2 == 0,
            "messages": [{"role": "user", "content": "hello"}],
        })
        .to_string()
    });
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    let usage = usage_after(gw, &id, admitted);
    let used =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(usage["requests"].as_u64().unwrap(), admitted, "{usage}");
    // Usage never exceeds estimates here, so the limit holds exactly.
    assert!(
        used <= TPM,
        "{used} tokens used against a limit of {TPM}: {usage}"
    );
    assert!(admitted >= 4, "the limit is reachable: {admitted} admitted");
}

/// Waits until every admin write that returned before now is in force on the node: one more
/// write (a customer nobody uses) makes a reload that starts after now, and the node reports
/// when the snapshot it serves was read from the store.
fn wait_writes_applied(gw: &Gateway) {
    let since_ms = unix_ms();
    let (status, v) = admin(gw, "POST", "/admin/customers", Some(r#"{"name":"nudge"}"#));
    assert_eq!(status, 201, "{v}");
    poll_until(Duration::from_secs(5), || {
        let metrics = gw.metrics();
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix("ringgate_governance_snapshot_read_timestamp_seconds "))?;
        let (secs, millis) = value.split_once('.')?;
        let read_at = secs.parse::<u128>().ok()? * 1000 + millis.parse::<u128>().ok()?;
        (read_at >= since_ms).then_some(())
    })
    .expect("the node reloads its keys after the write");
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Replaces a key's fields through the admin API and waits until the node serves them.
fn replace_key(gw: &Gateway, id: &str, body: &str) {
    let (status, v) = admin(gw, "PUT", &format!("/admin/keys/{id}"), Some(body));
    assert_eq!(status, 200, "{v}");
    wait_writes_applied(gw);
}

fn a_changed_limit_counts_what_its_window_used(database: &Database) {
    let node = node_with(database, json!({}));
    let gw = &node.gw;
    let (id, secret) = limited_key(gw, "rpm", 10);
    for _ in 0..6 {
        assert_eq!(chat_with(gw, &secret, false).status, 200);
    }
    // The key's rpm limit replaced by `rpm`, then the statuses of five more requests.
    let with_rpm = |rpm: u32| -> Vec<u16> {
        replace_key(
            gw,
            &id,
            &format!(r#"{{"name":"rpm","limits":{{"rpm":{rpm}}},"active":true}}"#),
        );
        (0..5)
            .map(|_| chat_with(gw, &secret, false).status)
            .collect()
    };
    // Lowered below what this minute already used: nothing more is admitted (a fresh window's
    // worth for the new limit would admit 3).
    assert_eq!(with_rpm(3), [429; 5]);
    // Raised to 8: the two units the window has left, then no more.
    assert_eq!(with_rpm(8), [200, 200, 429, 429, 429]);
}

fn a_spent_budget_stays_spent_through_a_reload_storm(database: &Database) {
    // Usage reaches the store only at the end (drain): until then the spend is known to the
    // node's lease desk alone, and every reload reads 0 spent from the store.
    let node = node_with(
        database,
        json!({"governance": {"flush_interval_ms": 600_000}}),
    );
    let gw = &node.gw;
    // One "hello" costs 4,000,000 nanos (see the budget test above): the budget admits one.
    let key = |limit: u64| {
        format!(
            r#"{{"name":"storm","budget":{{"limit_nanos":{limit},"period":"daily"}},"active":true}}"#
        )
    };
    let (id, secret) = create_key(gw, &key(4_000_000));
    wait_known(gw, &secret);
    // One keep-alive connection: one shard, and each request is settled before the next is
    // read, so nothing is in flight when the budget runs out.
    let mut conn = HttpConn::connect(gw.addr, Duration::from_secs(10)).unwrap();
    let mut ask = |stream: bool| {
        let body = chat_body("mock/gpt-4o-mini", "hello", stream);
        conn.send(&keyed_chat(&secret, &body, false)).unwrap();
        conn.read_response().unwrap().status
    };
    assert_eq!(ask(false), 200);
    // Admin writes that rebuild the key's budget limit on every reload, while the key asks.
    let (control, writer_id) = (gw.control, id.clone());
    let writer = std::thread::spawn(move || {
        for i in 0..20u64 {
            let body = key(if i % 2 == 0 { 3_000_000 } else { 4_000_000 });
            let req = build_request(
                "PUT",
                &format!("/admin/keys/{writer_id}"),
                &[("authorization", &format!("Bearer {ADMIN}"))],
                Some(body.as_bytes()),
                true,
            );
            let (status, _, _) = http_request(control, &req, Duration::from_secs(10)).unwrap();
            assert_eq!(status, 200);
        }
    });
    let mut statuses = Vec::new();
    while !writer.is_finished() || statuses.len() < 20 {
        statuses.push(ask(statuses.len() % 2 == 0));
    }
    writer.join().unwrap();
    wait_writes_applied(gw);
    statuses.push(ask(false));
    assert!(
        statuses.iter().all(|s| *s == 402),
        "not one more admission: {statuses:?}"
    );
    // Drained, the node writes its usage: the one request, and its cost.
    gw.sigterm();
    let mut node = node;
    assert_eq!(node.gw.wait_exit(Duration::from_secs(10)), Some(0));
    let mock = MockLlm::start(&[]);
    let after = Gateway::start(config(&mock, &node.database));
    let (_, usage) = admin(&after, "GET", &format!("/admin/usage/key/{id}"), None);
    assert_eq!(usage["requests"], 1, "{usage}");
    assert_eq!(usage["spent_nanos"], 4_000_000, "{usage}");
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let (_dir, path) = super::sqlite_path(stringify!($name));
                    super::$name(&path);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let database = super::Database::postgres();
                    let _drop = super::DropSchema(database.clone());
                    super::$name(&database);
                }
            )*
        }
    };
}

on_both_backends!(
    keys_and_auth,
    exact_request_limit_across_shards,
    budget_stops_spending_and_usage_survives_kill_9,
    streamed_usage_is_counted_but_not_shown,
    token_limit_holds_under_concurrency,
    a_changed_limit_counts_what_its_window_used,
    a_spent_budget_stays_spent_through_a_reload_storm,
);

/// A provider created through the admin API serves requests within 100 ms, its secret is
/// sent upstream and never shown back, and deleting it takes it out of routing.
#[test]
fn providers_added_through_the_admin_api_are_routed_live() {
    let (_dir, path) = sqlite_path("admin-provider");
    // Provider secrets are stored encrypted: the node needs a secret key.
    std::env::set_var(
        "RG_TEST_SECRET_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    let node = node_with(
        &path,
        json!({"governance": {"secret_key": "env.RG_TEST_SECRET_KEY"}}),
    );
    let gw = &node.gw;
    let upstream = MockLlm::start(&["--require-key", "sk-stored-secret"]);
    let (_, secret) = create_key(gw, r#"{"name":"any","active":true}"#);
    let body = serde_json::json!({
        "name": "live",
        "kind": "openai_compatible",
        "base_url": upstream.base_url(),
        "config_json": {"models": ["gpt-4o-mini"]},
        "secret": "sk-stored-secret",
    })
    .to_string();
    let (status, v) = admin(gw, "POST", "/admin/providers", Some(&body));
    assert_eq!(status, 201, "{v}");
    assert!(
        !v.to_string().contains("sk-stored-secret"),
        "secret echoed: {v}"
    );
    let body = chat_body("live/gpt-4o-mini", "from the store", false);
    let request = || gw.request(&keyed_chat(&secret, &body, true));
    let mut last = String::new();
    let resp = poll_until(Duration::from_millis(100), || {
        let resp = request();
        last = resp.text();
        (resp.status == 200).then_some(resp)
    })
    .unwrap_or_else(|| panic!("not routed in time: {last}"));
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "echo: from the store"
    );
    let (status, _) = admin(gw, "DELETE", "/admin/providers/live", None);
    assert_eq!(status, 200);
    poll_until(Duration::from_millis(200), || {
        (request().status == 404).then_some(())
    })
    .expect("taken out of routing after delete");
}
