//! Usage in the current budget period, budget resets, and request logs.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use store::{RequestLog, UsageDelta};
use vocab::{EntityRef, NanoUsd};

use super::{assert_error, harness, id_of};

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
            client_request_id: None,
            ts_ms: 1_700_000_000_000 + i,
            key_id: None,
            team_id: None,
            customer_id: None,
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            status: 200,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_nanos: NanoUsd::from_nanos(1500),
            latency_us: 1000,
            overhead_us: 50,
            stream: false,
            error_code: None,
            usage_estimated: false,
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

    let (s, body) = h.get("/admin/request-logs?x=1&limit=5000").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3);

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
