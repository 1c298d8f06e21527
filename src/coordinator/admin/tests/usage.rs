//! Usage in the current budget period, budget resets, and request logs.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use store::{RequestLog, UsageDelta};
use vocab::{CacheKind, EntityRef, NanoUsd};

use super::super::usage::{form_decode, rfc3339_ms};
use super::{assert_error, harness, id_of, Harness};

#[tokio::test]
async fn usage_reports_the_current_period_and_reset_zeroes_spend() {
    let h = harness().await;
    let (_, created) = h
        .post(
            "/admin/keys",
            json!({"name": "k", "budget": {"limit_nanos": 5_000_000_000u64, "period": "daily"}}),
        )
        .await;
    let kid = id_of(&created["key"]);
    assert!(h.was_notified().await);

    // No usage yet.
    let (s, u) = h.get(&format!("/admin/usage/key/{kid}")).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["entity"], json!({"kind": "key", "id": kid}));
    assert_eq!(u["spent_nanos"], 0);
    assert_eq!(u["remaining_nanos"], 5_000_000_000u64);
    assert_eq!(u["spent_usd"], "0.000000000");
    assert_eq!(u["limit_usd"], "5.000000000");

    let entity = EntityRef::key(kid.clone());
    let now = store::now_unix();
    let ps = h
        .state
        .store
        .current_period_start(&entity, now)
        .await
        .unwrap();
    h.state
        .store
        .add_usage(&[UsageDelta {
            entity: entity.clone(),
            period_start: ps,
            spent_nanos: NanoUsd::from_nanos(1_234_567_890),
            requests: 3,
            prompt_tokens: 100,
            completion_tokens: 50,
            budget_generation: None,
        }])
        .await
        .unwrap();

    let (s, u) = h.get(&format!("/admin/usage/key/{kid}")).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["period_start"], ps);
    assert_eq!(u["period_start"].as_i64().unwrap() % 86_400, 0);
    assert_eq!(u["budget"]["period"], "daily");
    assert_eq!(u["spent_nanos"], 1_234_567_890u64);
    assert_eq!(u["spent_usd"], "1.234567890");
    assert_eq!(u["remaining_nanos"], 3_765_432_110u64);
    assert_eq!(u["remaining_usd"], "3.765432110");
    assert_eq!(u["requests"], 3);
    assert_eq!(u["prompt_tokens"], 100);
    assert_eq!(u["completion_tokens"], 50);
    assert!(!h.was_notified().await);

    let (s, r) = h
        .call(
            Method::POST,
            &format!("/admin/budgets/key/{kid}/reset"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["reset"], true);
    assert_eq!(r["spent_before_nanos"], 1_234_567_890u64);
    assert_eq!(r["spent_before_usd"], "1.234567890");
    assert!(h.was_notified().await);

    let (_, u) = h.get(&format!("/admin/usage/key/{kid}")).await;
    assert_eq!(u["spent_nanos"], 0);
    assert_eq!(u["remaining_nanos"], 5_000_000_000u64);
    assert_eq!(u["requests"], 3, "request counts survive a reset");
    assert!(u["reset_at"].is_i64());
    assert_eq!(h.state.store.budget_reset_count(&entity).await.unwrap(), 1);

    // Entities without a budget: lifetime counters, no remaining.
    let (_, team) = h.post("/admin/teams", json!({"name": "t"})).await;
    let (s, u) = h.get(&format!("/admin/usage/team/{}", id_of(&team))).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["budget"], Value::Null);
    assert_eq!(u["period_start"], 0);
    assert_eq!(u["remaining_nanos"], Value::Null);
    assert_eq!(u["limit_usd"], Value::Null);

    let reply = h.get("/admin/usage/project/x").await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_value",
    );
    assert_eq!(reply.1["error"]["param"], "kind");
}

#[tokio::test]
async fn request_logs_newest_first_with_a_limit() {
    let h = harness().await;
    let logs: Vec<RequestLog> = (0..3)
        .map(|i| RequestLog {
            id: format!("req-{i}"),
            model: "gpt-4o-mini".into(),
            ..log(i as u32, 1_700_000_000_000 + i)
        })
        .collect();
    h.state.store.insert_request_logs(&logs).await.unwrap();

    let (s, body) = h.get("/admin/request-logs").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    assert_eq!(body["data"][0]["id"], "req-2");

    let (_, body) = h.get("/admin/request-logs?limit=2").await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["req-2", "req-1"]);

    let (s, body) = h.get("/admin/request-logs?limit=5000").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    assert_eq!(body["next_cursor"], Value::Null);

    for bad in ["limit=0", "limit=abc", "limit=-1", "limit="] {
        let reply = h.get(&format!("/admin/request-logs?{bad}")).await;
        assert_error(
            &reply,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
        );
        assert_eq!(reply.1["error"]["param"], "limit");
    }
}

/// A request log `n` at `ts_ms` with no owner, status 200.
fn log(n: u32, ts_ms: i64) -> RequestLog {
    RequestLog {
        id: format!("{n:032x}"),
        client_request_id: None,
        ts_ms,
        key_id: None,
        team_id: None,
        customer_id: None,
        provider: "openai".into(),
        model: "gpt-4o".into(),
        status: 200,
        prompt_tokens: 10,
        completion_tokens: 5,
        cost_nanos: NanoUsd::from_nanos(1500),
        latency_us: 1000,
        overhead_us: 50,
        stream: false,
        error_code: None,
        usage_estimated: false,
        cache: None,
        saved_tokens: None,
        saved_cost_nanos: None,
    }
}

/// The ids of a successful list reply, after checking its shape.
fn ids_of(reply: &(StatusCode, Value)) -> Vec<String> {
    assert_eq!(reply.0, StatusCode::OK, "{}", reply.1);
    assert_eq!(reply.1["object"], "list", "{}", reply.1);
    assert!(reply.1.get("next_cursor").is_some(), "{}", reply.1);
    reply.1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn bad_request(h: &Harness, query: &str, param: &str) -> String {
    let reply = h.get(&format!("/admin/request-logs?{query}")).await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_value",
    );
    assert_eq!(reply.1["error"]["param"], param, "{query}: {}", reply.1);
    reply.1["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn request_logs_filtered_by_query_parameters() {
    let h = harness().await;
    let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut logs: Vec<RequestLog> = (0..8).map(|i| log(i, base + i64::from(i))).collect();
    logs[1].model = "openai/gpt-4o-mini".into();
    logs[2].model = "llama3:70b q4+v2".into();
    logs[3].status = 429;
    logs[3].error_code = Some("rate_limited".into());
    logs[4].status = 502;
    logs[4].error_code = Some("upstream_error".into());
    logs[5].key_id = Some("key/1".into());
    logs[5].team_id = Some("team-1".into());
    logs[5].customer_id = Some("customer-1".into());
    logs[6].provider = "anthropic".into();
    logs[7].client_request_id = Some("my-trace 7".into());
    h.state.store.insert_request_logs(&logs).await.unwrap();
    let ids = |is: &[usize]| -> Vec<String> { is.iter().map(|&i| logs[i].id.clone()).collect() };
    let h = &h;
    let get = |q: String| async move { ids_of(&h.get(&format!("/admin/request-logs?{q}")).await) };

    // Names and values are percent-decoded; `+` is a space.
    assert_eq!(get("model=openai%2Fgpt-4o-mini".into()).await, ids(&[1]));
    assert_eq!(get("model=openai/gpt-4o-mini".into()).await, ids(&[1]));
    assert_eq!(get("model=llama3%3A70b+q4%2Bv2".into()).await, ids(&[2]));
    assert_eq!(get("model=llama3:70b%20q4%2bv2".into()).await, ids(&[2]));
    assert_eq!(get("model=llama3:70b+q4+v2".into()).await, ids(&[]));
    assert_eq!(get("mod%65l=gpt-4o&limit=2".into()).await, ids(&[7, 6]));
    assert_eq!(get("key_id=key%2F1".into()).await, ids(&[5]));
    assert_eq!(get("team_id=team-1".into()).await, ids(&[5]));
    assert_eq!(get("customer_id=customer-1".into()).await, ids(&[5]));
    assert_eq!(get("provider=anthropic".into()).await, ids(&[6]));
    assert_eq!(get("status=429".into()).await, ids(&[3]));
    assert_eq!(get("status=4xx".into()).await, ids(&[3]));
    assert_eq!(get("status=5XX".into()).await, ids(&[4]));
    assert_eq!(get("status=2xx&limit=3".into()).await, ids(&[7, 6, 5]));
    assert_eq!(get("error_code=upstream_error".into()).await, ids(&[4]));
    assert_eq!(get("request_id=my-trace+7".into()).await, ids(&[7]));
    assert_eq!(get(format!("request_id={}", logs[2].id)).await, ids(&[2]));
    // since inclusive, until exclusive; milliseconds or RFC 3339.
    assert_eq!(
        get(format!("since={}&until={}", base + 2, base + 4)).await,
        ids(&[3, 2])
    );
    assert_eq!(
        get("since=2026-01-01T00:00:00.002Z&until=2026-01-01T01:00:00.004%2B01:00".into()).await,
        ids(&[3, 2])
    );
    assert_eq!(
        get("since=2026-01-01t00:00:00.0061z".into()).await,
        ids(&[7]),
        "a sub-millisecond fraction rounds up"
    );
    assert_eq!(
        get("until=2025-12-31T19:00:00.001-05:00".into()).await,
        ids(&[0])
    );
    // Everything at once; the row shows client_request_id.
    let (s, body) = h
        .get(&format!(
            "/admin/request-logs?request_id=my-trace%207&status=200&provider=openai&model=gpt-4o\
             &since={base}&until={}&limit=1",
            base + 8
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"][0]["id"], logs[7].id);
    assert_eq!(body["data"][0]["client_request_id"], "my-trace 7");
    assert_eq!(body["data"][0]["ts_ms"], base + 7);
    assert_eq!(body["next_cursor"], Value::Null);
    let (_, body) = h.get("/admin/request-logs?limit=1").await;
    assert_eq!(body["data"][0]["id"], logs[7].id);
    let (_, body) = h.get("/admin/request-logs?status=502").await;
    assert_eq!(body["data"][0]["client_request_id"], Value::Null);
}

#[tokio::test]
async fn request_logs_show_and_select_cache_hits() {
    let h = harness().await;
    let base = 1_767_225_600_000;
    let mut logs: Vec<RequestLog> = (0..5).map(|i| log(i, base + i64::from(i))).collect();
    for (i, kind) in [
        (1, CacheKind::Exact),
        (3, CacheKind::Semantic),
        (4, CacheKind::Exact),
    ] {
        let l = &mut logs[i];
        l.cache = Some(kind);
        l.saved_tokens = Some(l.prompt_tokens + l.completion_tokens);
        l.saved_cost_nanos = Some(l.cost_nanos);
        (l.prompt_tokens, l.completion_tokens) = (0, 0);
        l.cost_nanos = NanoUsd::ZERO;
    }
    logs[4].key_id = Some("key-1".into());
    h.state.store.insert_request_logs(&logs).await.unwrap();
    let ids = |is: &[usize]| -> Vec<String> { is.iter().map(|&i| logs[i].id.clone()).collect() };
    let h = &h;
    let get = |q: &str| {
        let path = format!("/admin/request-logs?{q}");
        async move { ids_of(&h.get(&path).await) }
    };

    assert_eq!(get("cache=exact").await, ids(&[4, 1]));
    assert_eq!(get("cache=semantic").await, ids(&[3]));
    assert_eq!(get("cache=any").await, ids(&[4, 3, 1]));
    assert_eq!(get("cache=any&key_id=key-1").await, ids(&[4]));
    assert_eq!(get("cache=any&limit=1").await, ids(&[4]));

    // A hit's row: which cache, what it saved, and nothing spent; any other row: nulls.
    let (s, body) = h.get("/admin/request-logs?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (hit, semantic) = (&body["data"][0], &body["data"][1]);
    assert_eq!(hit["id"], logs[4].id);
    assert_eq!(hit["cache"], "exact");
    assert_eq!(hit["saved_tokens"], 15);
    assert_eq!(hit["saved_cost_nanos"], 1500);
    assert_eq!(hit["cost_nanos"], 0);
    assert_eq!(hit["prompt_tokens"], 0);
    assert_eq!(semantic["id"], logs[3].id);
    assert_eq!(semantic["cache"], "semantic");
    let (_, body) = h.get("/admin/request-logs?cache=any&limit=5").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    let (_, body) = h.get("/admin/request-logs?limit=5").await;
    let plain = &body["data"][4];
    assert_eq!(plain["id"], logs[0].id);
    for field in ["cache", "saved_tokens", "saved_cost_nanos"] {
        assert_eq!(plain[field], Value::Null, "{field}: {plain}");
    }

    for bad in ["none", "Exact", "all", "", "exact,semantic"] {
        let m = bad_request(h, &format!("cache={bad}"), "cache").await;
        assert!(m.contains("exact, semantic or any"), "{m}");
    }
}

#[tokio::test]
async fn request_logs_page_with_next_cursor() {
    let h = harness().await;
    // 25 rows on 3 timestamps.
    let logs: Vec<RequestLog> = (0..25)
        .map(|i| log(i * 7919 % 1000, 1_767_225_600_000 + i64::from(i / 10)))
        .collect();
    h.state.store.insert_request_logs(&logs).await.unwrap();
    let mut want: Vec<String> = logs.iter().map(|l| l.id.clone()).collect();
    want.sort_by_key(|id| {
        let l = logs.iter().find(|l| &l.id == id).unwrap();
        std::cmp::Reverse((l.ts_ms, l.id.clone()))
    });

    let mut got = Vec::new();
    let mut path = "/admin/request-logs?limit=4".to_owned();
    for page in 1.. {
        let reply = h.get(&path).await;
        got.extend(ids_of(&reply));
        match &reply.1["next_cursor"] {
            Value::String(c) => path = format!("/admin/request-logs?cursor={c}&limit=4"),
            Value::Null => {
                assert_eq!(page, 7);
                break;
            }
            other => panic!("next_cursor {other}"),
        }
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn request_logs_reject_bad_query_parameters() {
    let h = harness().await;
    h.state
        .store
        .insert_request_logs(&[log(1, 1_767_225_600_000)])
        .await
        .unwrap();
    for bad in [
        "abc",
        "4x",
        "4xxx",
        "42",
        "600x",
        "0xx",
        "x00",
        "-200",
        "2%30%30%30",
        "",
    ] {
        let m = bad_request(&h, &format!("status={bad}"), "status").await;
        assert!(m.contains("5xx"), "{m}");
    }
    assert_eq!(
        ids_of(&h.get("/admin/request-logs?status=2%30%30").await).len(),
        1
    );
    for bad in [
        "abc",
        "1.5",
        "",
        "99999999999999999999",
        "2026-01-01",
        "2026-01-01T00:00:00",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00+1:00",
        "2026-01-01T00:00:00+01:60",
        "2026-01-01X00:00:00Z",
    ] {
        let q = format!("since={}", bad.replace('+', "%2B"));
        let m = bad_request(&h, &q, "since").await;
        assert!(m.contains("RFC 3339"), "{m}");
        bad_request(&h, &format!("until={}", bad.replace('+', "%2B")), "until").await;
    }
    bad_request(&h, "cursor=not-a-cursor", "cursor").await;
    bad_request(&h, "cursor=", "cursor").await;
    bad_request(&h, "model=%zz", "model").await;
    bad_request(&h, "model=%C3", "model").await;
    bad_request(&h, "model=gpt%", "model").await;
    bad_request(&h, "key_id=", "key_id").await;
    bad_request(&h, "request_id", "request_id").await;
    let m = bad_request(&h, "key_id=a&key_id=b", "key_id").await;
    assert!(m.contains("more than once"), "{m}");
    let m = bad_request(&h, "keyid=a", "keyid").await;
    assert!(m.contains("unknown query parameter"), "{m}");
    bad_request(&h, "limit=0&model=x", "limit").await;
    // Empty pairs are nothing.
    assert_eq!(
        ids_of(&h.get("/admin/request-logs?&&limit=1&").await).len(),
        1
    );
}

#[test]
fn query_components_decode() {
    assert_eq!(
        form_decode("openai%2Fgpt-4o").as_deref(),
        Some("openai/gpt-4o")
    );
    assert_eq!(form_decode("a+b%2Bc%20d").as_deref(), Some("a b+c d"));
    assert_eq!(form_decode("%C3%BC%e2%82%ac").as_deref(), Some("ü€"));
    assert_eq!(form_decode("").as_deref(), Some(""));
    for bad in ["%", "%2", "%zz", "%%41", "%C3", "%FF"] {
        assert_eq!(form_decode(bad), None, "{bad}");
    }
}

#[test]
fn rfc3339_times() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_ms("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
    assert_eq!(
        rfc3339_ms("2026-01-01 01:00:00+01:00"),
        Some(1_767_225_600_000)
    );
    assert_eq!(
        rfc3339_ms("2025-12-31T19:30:00-04:30"),
        Some(1_767_225_600_000)
    );
    assert_eq!(
        rfc3339_ms("2026-01-01T00:00:00.5Z"),
        Some(1_767_225_600_500)
    );
    assert_eq!(
        rfc3339_ms("2026-01-01T00:00:00.123000000Z"),
        Some(1_767_225_600_123)
    );
    assert_eq!(
        rfc3339_ms("2026-01-01T00:00:00.1230001Z"),
        Some(1_767_225_600_124)
    );
    assert_eq!(rfc3339_ms("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
    assert_eq!(rfc3339_ms("2016-12-31T23:59:60Z"), Some(1_483_228_800_000));
    assert_eq!(rfc3339_ms("1969-12-31T23:59:59.999Z"), Some(-1));
    for bad in [
        "",
        "2026-01-01",
        "2026-01-01T00:00Z",
        "2026-1-01T00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00ZZ",
        "2026-01-01T00:00:00+0100",
        "2026-01-01T00:00:00 +01:00",
        "2025-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:61Z",
        "+026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00,5Z",
        "2026-01-01T00:00:00+24:00",
    ] {
        assert_eq!(rfc3339_ms(bad), None, "{bad}");
    }
}
