//! The response cache across a fleet on PostgreSQL: an answer one node kept is a hit on
//! another (through the shared tier, compressed in the database), still scoped to the key
//! that caused it, and it costs the key nothing. Each test runs its own fleet on its own
//! schema (tests/common/fleet.rs).

mod common;

use std::time::Duration;

use common::fleet::*;
use common::*;
use serde_json::{json, Value};

fn cached_fleet() -> Fleet {
    Fleet::start(
        2,
        json!({"cache": {"models": {"mock/gpt-4o-mini": 300}, "fleet_lookup_timeout_ms": 2000}}),
    )
}

/// A chat request with `secret` on `gw`: (cache header, body).
fn ask(gw: &Gateway, secret: &str, prompt: &str, stream: bool) -> (String, Vec<u8>) {
    let auth = format!("Bearer {secret}");
    let r = gw.post_json(
        "/v1/chat/completions",
        &chat_body("mock/gpt-4o-mini", prompt, stream),
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cache = r.header("x-ringgate-cache").unwrap_or("").to_owned();
    (cache, r.body)
}

/// The shared tier's rows.
fn shared_rows(fleet: &Fleet) -> u64 {
    fleet
        .sql("SELECT COUNT(*) FROM response_cache")
        .parse()
        .unwrap()
}

#[test]
fn an_answer_kept_by_one_node_is_a_hit_on_another_for_the_same_key_only() {
    let fleet = cached_fleet();
    let (_, a) = create_key(fleet.node(0), r#"{"name":"a"}"#);
    let (_, b) = create_key(fleet.node(0), r#"{"name":"b"}"#);
    fleet.wait_everywhere(&a, true, Duration::from_secs(5));
    fleet.wait_everywhere(&b, true, Duration::from_secs(5));

    let (first, body) = ask(fleet.node(0), &a, "shared between nodes", false);
    assert_eq!(first, "miss");
    let answer: Value = serde_json::from_slice(&body).unwrap();
    poll_until(Duration::from_secs(10), || {
        (shared_rows(&fleet) >= 1).then_some(())
    })
    .expect("the answer reaches the shared tier");
    // The body in the database is not the JSON as sent (compressed).
    let stored = fleet.sql("SELECT octet_length(body) FROM response_cache");
    assert!(stored.parse::<usize>().unwrap() > 0);

    let (second, body) = ask(fleet.node(1), &a, "shared between nodes", false);
    assert_eq!(second, "hit", "node 1 finds node 0's answer");
    let replayed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(replayed["id"], answer["id"]);
    assert_eq!(
        replayed["choices"][0]["message"]["content"],
        answer["choices"][0]["message"]["content"]
    );
    // Streamed from the same whole answer on node 1.
    let (third, events) = ask(fleet.node(1), &a, "shared between nodes", true);
    assert_eq!(third, "hit");
    assert_eq!(
        sse_chat_text(&events),
        answer["choices"][0]["message"]["content"].as_str().unwrap()
    );

    // Key b asks the same on node 1: another tenant's answer is never served.
    let (other, body) = ask(fleet.node(1), &b, "shared between nodes", false);
    assert_eq!(other, "miss");
    let own: Value = serde_json::from_slice(&body).unwrap();
    assert_ne!(own["id"], answer["id"]);
}

#[test]
fn hits_cost_nothing_and_are_logged_as_hits() {
    let fleet = cached_fleet();
    let (id, secret) = create_key(fleet.node(0), r#"{"name":"logged"}"#);
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    assert_eq!(ask(fleet.node(0), &secret, "priced once", false).0, "miss");
    poll_until(Duration::from_secs(10), || {
        (shared_rows(&fleet) >= 1).then_some(())
    })
    .expect("the answer reaches the shared tier");
    assert_eq!(ask(fleet.node(1), &secret, "priced once", false).0, "hit");
    let logged = |filter: &str| -> Vec<Value> {
        let (status, v) = admin(
            fleet.node(0),
            "GET",
            &format!("/admin/request-logs?key_id={id}{filter}"),
            None,
        );
        assert_eq!(status, 200, "{v}");
        v["data"].as_array().cloned().unwrap_or_default()
    };
    let hits = poll_until(Duration::from_secs(10), || {
        let rows = logged("&cache=exact");
        (!rows.is_empty()).then_some(rows)
    })
    .expect("the hit is logged");
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit["cost_nanos"], 0, "{hit}");
    assert_eq!(hit["prompt_tokens"], 0, "{hit}");
    assert!(hit["saved_cost_nanos"].as_u64().unwrap() > 0, "{hit}");
    assert!(hit["saved_tokens"].as_u64().unwrap() > 0, "{hit}");
}

#[test]
fn a_similar_question_on_another_node_is_a_semantic_hit() {
    let fleet = Fleet::start(
        2,
        json!({"cache": {
            "models": {"mock/gpt-4o-mini": 300},
            "fleet_lookup_timeout_ms": 2000,
            // The mock's bag-of-words embeddings put these two questions ~0.93 apart
            // (tests/python/test_semantic_cache.py checks that premise).
            "semantic": {"embedding_model": "mock/text-embedding-3-small", "dimensions": 512, "threshold": 0.85},
        }}),
    );
    let (_, secret) = create_key(fleet.node(0), r#"{"name":"semantic"}"#);
    fleet.wait_everywhere(&secret, true, Duration::from_secs(5));
    let (first, body) = ask(
        fleet.node(0),
        &secret,
        "Tell me the capital of France",
        false,
    );
    assert_eq!(first, "miss");
    let answer: Value = serde_json::from_slice(&body).unwrap();
    // Node 1's index follows the embeddings node 0 stored with its answer.
    poll_until(Duration::from_secs(10), || {
        (fleet.node(1).metric_sum("ringgate_cache_semantic_entries") >= 1).then_some(())
    })
    .expect("node 1 indexes node 0's embedding");
    let (second, body) = ask(
        fleet.node(1),
        &secret,
        "tell me the capital city of France?",
        false,
    );
    assert_eq!(second, "semantic-hit");
    let replayed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(replayed["id"], answer["id"]);
}
