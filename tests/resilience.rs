//! Failover, retries, circuit breaking, key rotation and load shedding, with faults injected
//! through mock-llm. Bounded in count and time; loopback only.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn chat(gw: &Gateway, model: &str, stream: bool, headers: &[(&str, &str)]) -> Response {
    gw.post_json(
        "/v1/chat/completions",
        &chat_body(model, "hello", stream),
        headers,
    )
}

/// Providers `a` (with `settings_a`) and `b` in front of two mocks; `top` is laid over the
/// whole config.
fn two_providers(a: &MockLlm, b: &MockLlm, settings_a: Value, top: Value) -> Gateway {
    Gateway::start(merged(
        json!({
            "shards": 1,
            "providers": {
                "a": merged(json!({"base_url": a.base_url()}), settings_a),
                "b": {"base_url": b.base_url()},
            },
        }),
        top,
    ))
}

/// One provider `a` in front of `mock`, with `settings`.
fn one_provider(mock: &MockLlm, settings: Value) -> Gateway {
    Gateway::start(json!({
        "shards": 1,
        "providers": {"a": merged(json!({"base_url": mock.base_url()}), settings)},
    }))
}

#[test]
fn half_failing_provider_with_fallback_loses_nothing() {
    let flaky = MockLlm::start(&["--fail-rate", "0.5", "--fail-status", "500"]);
    let healthy = MockLlm::start(&[]);
    // Breaker off in effect (high thresholds) so every request really meets the flaky provider.
    let gw = two_providers(
        &flaky,
        &healthy,
        json!({
            "retry": {"max_retries": 1, "initial_delay_ms": 1, "max_delay_ms": 5},
            "breaker": {"consecutive_failures": 1000, "min_requests": 100000},
        }),
        json!({"fallbacks": {"a/gpt-4o-mini": ["b/gpt-4o-mini"]}}),
    );
    let mut failures = Vec::new();
    for i in 0..200 {
        let stream = i % 4 == 0;
        let resp = chat(&gw, "a/gpt-4o-mini", stream, &[]);
        let ok = resp.status == 200
            && if stream {
                sse_chat_text(&resp.body) == "echo: hello"
            } else {
                resp.json()["choices"][0]["message"]["content"] == "echo: hello"
            };
        if !ok {
            failures.push((i, resp.status, resp.text()));
        }
    }
    assert!(failures.is_empty(), "client-visible failures: {failures:?}");
}

#[test]
fn primary_error_is_returned_when_every_target_fails() {
    let a = MockLlm::start(&["--fail-rate", "1", "--fail-status", "503"]);
    let b = MockLlm::start(&["--fail-rate", "1", "--fail-status", "502"]);
    let gw = two_providers(&a, &b, json!({"retry": {"max_retries": 0}}), json!({}));
    let resp = chat(
        &gw,
        "a/gpt-4o-mini",
        false,
        &[("x-ringgate-fallbacks", "b/gpt-4o-mini")],
    );
    assert_eq!(resp.status, 503, "the primary's own error: {}", resp.text());
    assert!(resp.text().contains("mock injected 503") || resp.json()["error"].is_object());
}

#[test]
fn per_request_fallback_header_is_honoured() {
    let down = RefusedPort::new();
    let healthy = MockLlm::start(&[]);
    let gw = Gateway::start(json!({
        "shards": 1,
        "providers": {
            "a": {
                "base_url": format!("http://127.0.0.1:{}/v1", down.port()),
                "retry": {"max_retries": 0},
            },
            "b": {"base_url": healthy.base_url()},
        },
    }));
    let resp = chat(&gw, "a/gpt-4o-mini", false, &[]);
    assert_eq!(resp.status, 502);
    let resp = chat(
        &gw,
        "a/gpt-4o-mini",
        true,
        &[("x-ringgate-fallbacks", "nope/x, b/gpt-4o-mini")],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(sse_chat_text(&resp.body), "echo: hello");
}

#[test]
fn hanging_provider_opens_the_circuit_and_latency_recovers() {
    let hanging = MockLlm::start(&["--latency-ms", "30000"]);
    let healthy = MockLlm::start(&[]);
    let gw = two_providers(
        &hanging,
        &healthy,
        json!({
            "first_byte_timeout_ms": 300,
            "retry": {"max_retries": 0},
            "breaker": {"consecutive_failures": 3, "open_ms": 60000},
        }),
        json!({"fallbacks": {"a/gpt-4o-mini": ["b/gpt-4o-mini"]}}),
    );
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let resp = chat(&gw, "a/gpt-4o-mini", false, &[]);
        latencies.push(started.elapsed());
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert!(latencies[0] >= Duration::from_millis(300), "{latencies:?}");
    // After three timeouts the circuit is open: requests go straight to the fallback.
    for l in &latencies[3..] {
        assert!(*l < Duration::from_millis(150), "{latencies:?}");
    }
    let metrics = gw.metrics();
    assert!(
        metrics.contains("ringgate_provider_breaker_state{provider=\"a\",shard=\"0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringgate_provider_circuit_opens_total{provider=\"a\",shard=\"0\"} 1"),
        "{metrics}"
    );
}

#[test]
fn rate_limited_key_is_cooled_down_and_traffic_moves_to_the_others() {
    let mock = MockLlm::start(&["--rate-limited-key", "sk-limited"]);
    std::env::set_var("RG_TEST_KEY_GOOD", "sk-good");
    std::env::set_var("RG_TEST_KEY_LIMITED", "sk-limited");
    let gw = one_provider(
        &mock,
        json!({
            "retry": {"max_retries": 0},
            "keys": [
                {"key": "env.RG_TEST_KEY_GOOD"},
                {"key": "env.RG_TEST_KEY_LIMITED", "weight": 5},
            ],
        }),
    );
    for _ in 0..50 {
        let resp = chat(&gw, "a/gpt-4o-mini", false, &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // The limited key was tried once, then cooled down for its Retry-After (30 s).
    let metrics = gw.metrics();
    assert!(
        metrics.contains("ringgate_provider_attempts_total{provider=\"a\",shard=\"0\"} 51"),
        "{metrics}"
    );
}

#[test]
fn overload_is_shed_quickly_while_accepted_requests_finish_and_health_answers() {
    let mock = MockLlm::start(&["--latency-ms", "200"]);
    let gw = one_provider(
        &mock,
        json!({"backpressure": {"max_in_flight": 4, "max_queue": 4, "queue_timeout_ms": 1000}}),
    );
    let addr = gw.addr;
    let rss_before = gw.rss_kib();
    let results = Arc::new(Mutex::new(Vec::new()));
    for _round in 0..3 {
        // 80 concurrent requests against a capacity of 4 in flight + 4 queued: 10x.
        let handles: Vec<_> = (0..80)
            .map(|_| {
                let results = results.clone();
                std::thread::spawn(move || {
                    let body = chat_body("a/gpt-4o-mini", "hello", false);
                    let req = build_request(
                        "POST",
                        "/v1/chat/completions",
                        &[],
                        Some(body.as_bytes()),
                        true,
                    );
                    let started = Instant::now();
                    let (status, headers, _) =
                        http_request(addr, &req, Duration::from_secs(10)).unwrap();
                    results.lock().unwrap().push((
                        status,
                        started.elapsed(),
                        header(&headers, "retry-after").map(str::to_owned),
                    ));
                })
            })
            .collect();
        poll_until(Duration::from_secs(5), || {
            (gw.metric_sum("ringgate_requests_in_flight") >= 4).then_some(())
        })
        .expect("the provider's 4 slots fill up");
        let started = Instant::now();
        assert_eq!(gw.get("/health").status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "health must answer while saturated"
        );
        for h in handles {
            h.join().unwrap();
        }
    }
    let results = results.lock().unwrap();
    let accepted: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let shed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(
        accepted.len() + shed.len(),
        results.len(),
        "only 200 or 503"
    );
    assert!(
        accepted.len() >= 24,
        "at least capacity per round was served: {}",
        accepted.len()
    );
    assert!(
        shed.len() >= 150,
        "most of the excess is shed: {}",
        shed.len()
    );
    assert!(
        shed.iter().all(|r| r.2.as_deref() == Some("1")),
        "503s carry Retry-After"
    );
    assert!(
        shed.iter().all(|r| r.1 < Duration::from_millis(100)),
        "shed at once"
    );
    // Accepted requests waited at most one queue turn: 200 ms service + 200 ms queue, with slack.
    let slowest = accepted.iter().map(|r| r.1).max().unwrap();
    assert!(
        slowest < Duration::from_millis(1500),
        "accepted p100 bounded: {slowest:?}"
    );
    let rss_after = gw.rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory flat: {rss_before} KiB -> {rss_after} KiB"
    );
}

#[test]
fn stream_whose_first_event_is_an_error_fails_over() {
    let a = MockLlm::start(&[]);
    let b = MockLlm::start(&[]);
    let gw = two_providers(
        &a,
        &b,
        json!({"retry": {"max_retries": 0}}),
        json!({"fallbacks": {"a/gpt-4o-mini": ["b/gpt-4o-mini"]}}),
    );
    // The fault header reaches both mocks: a's error event moves the request to b, whose
    // error event is caught too, so the client gets the primary's failure.
    let resp = gw.post_json(
        "/v1/chat/completions",
        &chat_body("a/gpt-4o-mini", "hello", true),
        &[("x-mock-fail", "error-event")],
    );
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "upstream_stream_error");
    assert!(resp.text().contains("mock injected stream error"));
    let metrics = gw.metrics();
    assert!(
        metrics.contains("ringgate_provider_fallbacks_total{provider=\"b\",shard=\"0\"} 1"),
        "{metrics}"
    );
}

#[test]
fn timeout_override_header_is_bounded_by_configuration() {
    let mock = MockLlm::start(&["--latency-ms", "1500"]);
    let gw = one_provider(
        &mock,
        json!({
            "retry": {"max_retries": 0},
            "total_timeout_ms": 5000,
            "max_total_timeout_ms": 5000,
        }),
    );
    let started = Instant::now();
    let resp = chat(
        &gw,
        "a/gpt-4o-mini",
        false,
        &[("x-ringgate-timeout-ms", "300")],
    );
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(started.elapsed() < Duration::from_millis(1200));
    // Asking for more than the configured maximum gets the maximum: the request completes.
    let resp = chat(
        &gw,
        "a/gpt-4o-mini",
        false,
        &[("x-ringgate-timeout-ms", "999999")],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn latency_balancing_prefers_the_faster_equivalent_target() {
    let slow = MockLlm::start(&["--latency-ms", "60"]);
    let fast = MockLlm::start(&[]);
    let gw = Gateway::start(json!({
        "shards": 1,
        "routing": {"balance": "latency"},
        "aliases": {"smart": ["slow/gpt-4o-mini", "fast/gpt-4o-mini"]},
        "providers": {
            "slow": {"base_url": slow.base_url()},
            "fast": {"base_url": fast.base_url()},
        },
    }));
    for _ in 0..60 {
        let resp = chat(&gw, "smart", false, &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let metrics = gw.metrics();
    let attempts = |p: &str| -> u64 {
        let prefix = format!("ringgate_provider_attempts_total{{provider=\"{p}\",shard=\"0\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (s, f) = (attempts("slow"), attempts("fast"));
    assert_eq!(s + f, 60);
    // Weights are 1/(latency + 1 ms): ~1 ms vs ~61 ms makes the slow one rare once measured.
    assert!(f >= 45, "fast {f}, slow {s}");
}
