//! Failover, retries, circuit breaking, key rotation and load shedding, with faults injected
//! through mock-llm. Bounded in count and time; loopback only.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn chat(gw: &Gateway, model: &str, stream: bool, headers: &[(&str, &str)]) -> Response {
    gw.post_json(
        "/v1/chat/completions",
        &chat_body(model, "hello", stream),
        headers,
    )
}

fn two_providers(a: &MockLlm, b: &MockLlm, extra_a: &str, top: &str) -> Gateway {
    Gateway::start(&format!(
        "shards: 1\npin_cores: false\n{top}providers:\n  a:\n    base_url: {}\n{extra_a}  b:\n    base_url: {}\n",
        a.base_url(),
        b.base_url()
    ))
}

#[test]
fn half_failing_provider_with_fallback_loses_nothing() {
    let flaky = MockLlm::start(&["--fail-rate", "0.5", "--fail-status", "500"]);
    let healthy = MockLlm::start(&[]);
    // Breaker off in effect (high thresholds) so every request really meets the flaky provider.
    let gw = two_providers(
        &flaky,
        &healthy,
        "    retry: {max_retries: 1, initial_delay_ms: 1, max_delay_ms: 5}\n    breaker: {consecutive_failures: 1000, min_requests: 100000}\n",
        "fallbacks:\n  a/gpt-4o-mini: [b/gpt-4o-mini]\n",
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
    let gw = two_providers(&a, &b, "    retry: {max_retries: 0}\n", "");
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
    let down = free_port();
    let healthy = MockLlm::start(&[]);
    let gw = Gateway::start(&format!(
        "shards: 1\npin_cores: false\nproviders:\n  a:\n    base_url: http://127.0.0.1:{down}/v1\n    retry: {{max_retries: 0}}\n  b:\n    base_url: {}\n",
        healthy.base_url()
    ));
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
        "    first_byte_timeout_ms: 300\n    retry: {max_retries: 0}\n    breaker: {consecutive_failures: 3, open_ms: 60000}\n",
        "fallbacks:\n  a/gpt-4o-mini: [b/gpt-4o-mini]\n",
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
    let gw = Gateway::start(&format!(
        "shards: 1\npin_cores: false\nproviders:\n  a:\n    base_url: {}\n    retry: {{max_retries: 0}}\n    keys:\n      - {{key: env.RG_TEST_KEY_GOOD}}\n      - {{key: env.RG_TEST_KEY_LIMITED, weight: 5}}\n",
        mock.base_url()
    ));
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
    let gw = Gateway::start(&format!(
        "shards: 1\npin_cores: false\nproviders:\n  a:\n    base_url: {}\n    \
         backpressure: {{max_in_flight: 4, max_queue: 4, queue_timeout_ms: 1000}}\n",
        mock.base_url()
    ));
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
        std::thread::sleep(Duration::from_millis(50));
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
        "    retry: {max_retries: 0}\n",
        "fallbacks:\n  a/gpt-4o-mini: [b/gpt-4o-mini]\n",
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
    let gw = Gateway::start(&format!(
        "shards: 1\npin_cores: false\nproviders:\n  a:\n    base_url: {}\n    retry: {{max_retries: 0}}\n    \
         total_timeout_ms: 5000\n    max_total_timeout_ms: 5000\n",
        mock.base_url()
    ));
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
    let gw = Gateway::start(&format!(
        "shards: 1\npin_cores: false\nrouting: {{balance: latency}}\naliases:\n  smart: [slow/gpt-4o-mini, fast/gpt-4o-mini]\n\
         providers:\n  slow:\n    base_url: {}\n  fast:\n    base_url: {}\n",
        slow.base_url(),
        fast.base_url()
    ));
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
