//! What an operator sees of the traffic: a request id on every response (the client's own
//! when it sent one), the gateway's overhead on request, latency histograms per provider and
//! model on `/metrics` (and quantiles on `/latency`), tokens and spend per key, refusals by
//! reason, a scrape token, JSON log lines, and request log rows found by a response's id.

mod common;

use std::time::Duration;

use common::fleet::{admin, create_key, ADMIN_TOKEN};
use common::*;
use serde_json::{json, Value};

fn is_gateway_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn chat(gw: &Gateway, headers: &[(&str, &str)]) -> Response {
    let body = chat_body("mock/gpt-4o-mini", "hello", false);
    gw.post_json("/v1/chat/completions", &body, headers)
}

/// The value of the sample `name{labels}` (labels as written, in order), once present.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn await_sample(gw: &Gateway, name_and_labels: &str, want: f64) -> String {
    poll_until(Duration::from_secs(5), || {
        let m = gw.metrics();
        (sample(&m, name_and_labels) == Some(want)).then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "{name_and_labels} never reached {want}; metrics:\n{}",
            gw.metrics()
        )
    })
}

#[test]
fn every_response_carries_a_request_id_and_the_overhead_when_asked() {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(basic_config(&mock.base_url()));

    let a = chat(&gw, &[]);
    let b = chat(&gw, &[]);
    assert_eq!(a.status, 200, "{}", a.text());
    let (id_a, id_b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert!(is_gateway_id(id_a) && is_gateway_id(id_b), "{id_a} {id_b}");
    assert_ne!(id_a, id_b);
    assert_eq!(a.header("x-ringgate-overhead-us"), None);

    // The client's own id is echoed; an unusable one is replaced.
    let own = chat(&gw, &[("x-request-id", "client-42")]);
    assert_eq!(own.header("x-request-id"), Some("client-42"));
    let long = "x".repeat(200);
    let replaced = chat(&gw, &[("x-request-id", &long)]);
    assert!(is_gateway_id(replaced.header("x-request-id").unwrap()));

    // Local answers and errors have one too.
    for resp in [
        gw.get("/health"),
        gw.get("/v1/nowhere"),
        gw.post_json("/v1/chat/completions", "{not json", &[]),
        gw.post_json(
            "/v1/chat/completions",
            &chat_body("nobody/none", "hi", false),
            &[],
        ),
    ] {
        let id = resp.header("x-request-id").unwrap_or_default();
        assert!(
            is_gateway_id(id),
            "status {}: {:?}",
            resp.status,
            resp.headers
        );
    }

    // Overhead on request: a number of microseconds, far below the provider's 30 ms.
    for stream in [false, true] {
        let body = chat_body("mock/gpt-4o-mini", "hello", stream);
        let resp = gw.post_json(
            "/v1/chat/completions",
            &body,
            &[("x-ringgate-overhead", "1"), ("x-mock-latency-ms", "30")],
        );
        assert_eq!(resp.status, 200);
        let us: u64 = resp
            .header("x-ringgate-overhead-us")
            .expect("overhead header")
            .parse()
            .expect("microseconds");
        assert!(us < 30_000, "overhead {us} µs includes the provider's time");
    }
}

#[test]
fn metrics_have_latency_histograms_per_model_that_separate_provider_time_from_overhead() {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(basic_config(&mock.base_url()));
    for _ in 0..4 {
        let resp = chat(&gw, &[("x-mock-latency-ms", "40")]);
        assert_eq!(resp.status, 200);
    }
    let body = chat_body("mock/gpt-4o-mini", "hello", true);
    let streamed = gw.post_json("/v1/chat/completions", &body, &[]);
    assert_eq!(streamed.status, 200);
    let failed = chat(&gw, &[("x-mock-status", "500")]);
    assert_eq!(failed.status, 500);

    let ok = r#"{provider="mock",model="gpt-4o-mini",class="2xx"}"#;
    let m = await_sample(
        &gw,
        &format!("ringgate_request_duration_seconds_count{ok}"),
        5.0,
    );
    for family in [
        "ringgate_time_to_first_byte_seconds",
        "ringgate_upstream_duration_seconds",
        "ringgate_gateway_overhead_seconds",
    ] {
        assert_eq!(
            sample(&m, &format!("{family}_count{ok}")),
            Some(5.0),
            "{family}"
        );
    }
    // Buckets are cumulative and end at the count.
    let inf = r#"ringgate_request_duration_seconds_bucket{provider="mock",model="gpt-4o-mini",class="2xx",le="+Inf"}"#;
    assert_eq!(sample(&m, inf), Some(5.0));
    // Four requests waited 40 ms on the provider: at least 0.16 s upstream in all, and the
    // gateway's own share is a small part of the total.
    let upstream = sample(&m, &format!("ringgate_upstream_duration_seconds_sum{ok}")).unwrap();
    let total = sample(&m, &format!("ringgate_request_duration_seconds_sum{ok}")).unwrap();
    let overhead = sample(&m, &format!("ringgate_gateway_overhead_seconds_sum{ok}")).unwrap();
    assert!(upstream >= 0.16, "upstream {upstream}");
    assert!(overhead < total - 0.16, "overhead {overhead} of {total}");
    let failed_count = sample(
        &m,
        r#"ringgate_request_duration_seconds_count{provider="mock",model="gpt-4o-mini",class="5xx"}"#,
    );
    assert_eq!(failed_count, Some(1.0), "{m}");
    assert!(
        m.lines()
            .any(|l| l.starts_with("ringgate_build_info{version=\"") && l.ends_with(" 1")),
        "{m}"
    );
    assert!(m.contains("ringgate_provider_pool_idle_connections{provider=\"mock\""));

    // `/latency`: the same series as quantiles, in microseconds.
    let (status, _, body) = http_request(
        gw.control,
        b"GET /latency HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200);
    let latency: Value = serde_json::from_slice(&body).unwrap();
    let row = latency["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["class"] == "2xx")
        .expect("a 2xx row");
    assert_eq!(row["model"], "gpt-4o-mini");
    assert_eq!(row["count"], 5);
    assert!(
        row["upstream_duration"]["p50_us"].as_f64().unwrap() >= 35_000.0,
        "{row}"
    );
    assert!(
        row["gateway_overhead"]["p99_us"].as_f64().unwrap() > 0.0,
        "{row}"
    );
}

#[test]
fn a_metrics_token_guards_the_scrape() {
    let mock = MockLlm::start(&[]);
    std::env::set_var("RG_TEST_METRICS_TOKEN", "scrape-secret");
    let gw = Gateway::start(merged(
        basic_config(&mock.base_url()),
        json!({"observability": {"metrics_token": "env.RG_TEST_METRICS_TOKEN"}}),
    ));
    for path in ["/metrics", "/latency"] {
        let get = |auth: &str| {
            let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
            http_request(gw.control, raw.as_bytes(), Duration::from_secs(5))
                .unwrap()
                .0
        };
        assert_eq!(get(""), 401, "{path}");
        assert_eq!(get("Authorization: Bearer wrong\r\n"), 401, "{path}");
        assert_eq!(
            get("Authorization: Bearer scrape-secret\r\n"),
            200,
            "{path}"
        );
    }
}

#[test]
fn json_logs_carry_the_request_id_of_every_access_line() {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(merged(
        basic_config(&mock.base_url()),
        json!({"observability": {"log_format": "json", "access_log": true}}),
    ));
    let resp = chat(&gw, &[("x-request-id", "find-me-in-the-log")]);
    assert_eq!(resp.status, 200);
    let line = poll_until(Duration::from_secs(5), || {
        gw.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["request_id"] == "find-me-in-the-log")
    })
    .unwrap_or_else(|| panic!("no access line; log:\n{}", gw.stderr()));
    assert_eq!(line["target"], "access");
    assert_eq!(line["status"], 200);
    assert_eq!(line["model"], "gpt-4o-mini");
    assert_eq!(line["path"], "/v1/chat/completions");
    for l in gw.stderr().lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
}

#[test]
fn request_logs_find_each_response_by_its_id_with_overhead_error_code_and_spend_metrics() {
    let mock = MockLlm::start(&[]);
    let dir = TempDir::new("rg-obs");
    std::env::set_var("RG_TEST_ADMIN_TOKEN", ADMIN_TOKEN);
    let gw = Gateway::start(json!({
        "shards": 2,
        "governance": {
            "database": dir.path().join("rg.db"),
            "require_virtual_key": true,
            "admin_token": "env.RG_TEST_ADMIN_TOKEN",
            "flush_interval_ms": 100,
            "prices": {"gpt-4o-mini": {"input": "1000", "output": "1000"}},
        },
        "providers": {"mock": {"base_url": mock.base_url()}},
    }));
    // A daily limit of 2: the third request is refused whatever minute it falls in (unless
    // the day ends between them: then wait for the next one, the one sleep here).
    let secs_today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 86_400;
    if secs_today > 86_390 {
        std::thread::sleep(Duration::from_secs(86_401 - secs_today));
    }
    let (key_id, secret) = create_key(&gw, r#"{"name":"obs","limits":{"rpd":2},"active":true}"#);
    let auth = format!("Bearer {secret}");
    poll_until(Duration::from_secs(5), || {
        (common::fleet::key_status(&gw, &secret) != 401).then_some(())
    })
    .expect("the node learns the key");
    let served = chat(&gw, &[("authorization", &auth)]);
    assert_eq!(served.status, 200, "{}", served.text());
    let mine = chat(
        &gw,
        &[
            ("authorization", &auth),
            ("x-request-id", "client-chosen-1"),
        ],
    );
    assert_eq!(mine.status, 200);
    let limited = chat(&gw, &[("authorization", &auth)]);
    assert_eq!(limited.status, 429);
    let stranger = chat(&gw, &[("authorization", "Bearer rg-nobody")]);
    assert_eq!(stranger.status, 401);

    let find = |id: &str| -> Value {
        poll_until(Duration::from_secs(5), || {
            let (status, page) = admin(
                &gw,
                "GET",
                &format!("/admin/request-logs?request_id={id}"),
                None,
            );
            assert_eq!(status, 200, "{page}");
            page["data"].as_array()?.first().cloned()
        })
        .unwrap_or_else(|| panic!("request {id} never reached the request log"))
    };
    let row = find(served.header("x-request-id").unwrap());
    assert_eq!(row["status"], 200);
    assert_eq!(row["key_id"], key_id.as_str());
    assert!(row["overhead_us"].as_u64().unwrap() > 0, "{row}");
    assert!(
        row["overhead_us"].as_u64() <= row["latency_us"].as_u64(),
        "{row}"
    );
    assert_eq!(row["error_code"], Value::Null);

    let row = find("client-chosen-1");
    assert_eq!(row["client_request_id"], "client-chosen-1");
    assert!(is_gateway_id(row["id"].as_str().unwrap()), "{row}");

    let row = find(limited.header("x-request-id").unwrap());
    assert_eq!(row["status"], 429);
    assert_eq!(row["error_code"], "rate_limit_exceeded");
    let row = find(stranger.header("x-request-id").unwrap());
    assert_eq!(row["status"], 401);
    assert_eq!(row["error_code"], "invalid_api_key");
    assert_eq!(row["key_id"], Value::Null);

    // Refused requests are logged but not counted as usage.
    let (_, usage) = admin(&gw, "GET", &format!("/admin/usage/key/{key_id}"), None);
    assert_eq!(usage["requests"], 2, "{usage}");

    let labels = format!(r#"provider="mock",model="gpt-4o-mini",key="{key_id}",team="""#);
    let m = await_sample(
        &gw,
        &format!("ringgate_governed_requests_total{{{labels}}}"),
        2.0,
    );
    assert!(
        sample(
            &m,
            &format!(r#"ringgate_tokens_total{{{labels},type="input"}}"#)
        )
        .unwrap()
            > 0.0
    );
    assert!(sample(&m, &format!("ringgate_cost_usd_total{{{labels}}}")).unwrap() > 0.0);
    for reason in ["rate_limit_exceeded", "invalid_api_key"] {
        assert_eq!(
            sample(
                &m,
                &format!(r#"ringgate_governance_refusals_total{{reason="{reason}"}}"#)
            ),
            Some(1.0),
            "{reason}"
        );
    }
}

/// The metric names `text` mentions (`ringgate_…`, histogram suffixes dropped).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ringgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.trim_end_matches('_').to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_family_served_or_charted_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/observability.md")).unwrap()
        + &std::fs::read_to_string(root.join("docs/cluster.md")).unwrap();
    let documented = metric_names(&docs);

    let mock = MockLlm::start(&[]);
    let dir = TempDir::new("rg-obs-docs");
    std::env::set_var("RG_TEST_ADMIN_TOKEN", ADMIN_TOKEN);
    let gw = Gateway::start(json!({
        "governance": {
            "database": dir.path().join("rg.db"),
            "admin_token": "env.RG_TEST_ADMIN_TOKEN",
        },
        "providers": {"mock": {"base_url": mock.base_url()}},
    }));
    assert_eq!(chat(&gw, &[]).status, 200);
    let served: Vec<String> = gw
        .metrics()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# TYPE ")?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert!(served.len() > 20, "{served:?}");
    for name in &served {
        assert!(
            documented.contains(name),
            "{name} is served but not in docs/observability.md"
        );
    }

    let dashboard = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
    let _: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    for name in metric_names(&dashboard) {
        assert!(
            documented.contains(&name),
            "the dashboard charts {name}, which is not documented"
        );
    }
}

#[test]
fn the_gateways_own_running_time_is_measured_on_sampled_connections() {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(merged(basic_config(&mock.base_url()), json!({"shards": 1})));
    // One connection in eight is measured: sixteen connections give two samples.
    for _ in 0..16 {
        let resp = chat(&gw, &[("x-mock-latency-ms", "20")]);
        assert_eq!(resp.status, 200);
    }
    let ok = r#"{provider="mock",model="gpt-4o-mini",class="2xx"}"#;
    let m = await_sample(
        &gw,
        &format!("ringgate_request_duration_seconds_count{ok}"),
        16.0,
    );
    let value = |family: &str| sample(&m, &format!("{family}{ok}")).unwrap();
    assert_eq!(value("ringgate_gateway_cpu_seconds_count"), 2.0, "{m}");
    // Its own code ran for some microseconds of each sampled request, a sliver of the
    // 20 ms each waited on the provider.
    let cpu = value("ringgate_gateway_cpu_seconds_sum");
    assert!(cpu > 0.0 && cpu < 0.02, "cpu {cpu} s for two requests");
}
