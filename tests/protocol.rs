//! HTTP/1.1 details on the client side: chunked request bodies, `Expect: 100-continue`,
//! pipelining, oversized heads, wrong methods, HTTP/1.0, the `Host` header rule, and the `check-config` command.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn stack() -> (Gateway, MockLlm) {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(merged(
        basic_config(&mock.base_url()),
        json!({"limits": {"max_header_bytes": 4096}}),
    ));
    (gw, mock)
}

#[test]
fn chunked_request_body_with_expect_continue() {
    let (gw, _mock) = stack();
    let body = chat_body("mock/gpt-4o-mini", "chunked upload", false);
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    let mut conn = HttpConn::connect(gw.addr, DEFAULT_TIMEOUT).unwrap();
    conn.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let interim = conn.read_some(64).unwrap();
    assert_eq!(
        interim, b"HTTP/1.1 100 Continue\r\n\r\n",
        "the gateway asks for the body"
    );
    let mut wire = Vec::new();
    for part in [a, b] {
        wire.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\nx-trailer: yes\r\n\r\n");
    conn.send(&wire).unwrap();
    let resp = conn.read_response().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "echo: chunked upload"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (gw, _mock) = stack();
    let mut wire = Vec::new();
    for prompt in ["one", "two", "three"] {
        let body = chat_body("mock/gpt-4o-mini", prompt, false);
        wire.extend(build_request(
            "POST",
            "/v1/chat/completions",
            &[],
            Some(body.as_bytes()),
            false,
        ));
    }
    wire.extend(build_request("GET", "/health", &[], None, false));
    let mut conn = HttpConn::connect(gw.addr, DEFAULT_TIMEOUT).unwrap();
    conn.send(&wire).unwrap();
    for prompt in ["one", "two", "three"] {
        let resp = conn.read_response().unwrap();
        assert_eq!(
            resp.json()["choices"][0]["message"]["content"],
            format!("echo: {prompt}")
        );
    }
    assert_eq!(conn.read_response().unwrap().status, 200);
}

#[test]
fn oversized_head_is_431_and_wrong_method_is_405() {
    let (gw, _mock) = stack();
    let big = "a".repeat(5000);
    let resp = gw.request(&build_request(
        "GET",
        "/health",
        &[("x-big", &big)],
        None,
        false,
    ));
    assert_eq!(resp.status, 431);
    assert_eq!(resp.json()["error"]["code"], "headers_too_large");
    let resp = gw.get("/v1/chat/completions");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.json()["error"]["code"], "method_not_allowed");
}

#[test]
fn http10_client_gets_answer_and_close() {
    let (gw, _mock) = stack();
    let (status, headers, body) = http_request(
        gw.addr,
        b"GET /v1/models HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), Some("close"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["mock/gpt-4o-mini", "mock/text-embedding-3-small", "fast"]
    );
}

#[test]
fn malformed_chunked_body_is_400_and_connection_closes() {
    let (gw, _mock) = stack();
    let resp = gw.request(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("connection"), Some("close"));
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request with two, is a 400
/// and the connection is closed — the pipelined request behind it is never answered.
#[test]
fn host_header_is_required_once_on_http11() {
    let (gw, _mock) = stack();
    let pipelined = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    for head in [
        &b"GET /health HTTP/1.1\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let mut conn = HttpConn::connect(gw.addr, DEFAULT_TIMEOUT).unwrap();
        conn.send(&[head, pipelined].concat()).unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!(resp.status, 400, "{}", resp.text());
        assert_eq!(resp.header("connection"), Some("close"));
        let error = &resp.json()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert!(
            error["message"].as_str().unwrap().contains("Host"),
            "{error}"
        );
        assert_eq!(conn.read_some(64).unwrap(), b"", "the connection is closed");
    }
    let (status, _, _) = http_request(
        gw.addr,
        b"GET /health HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200, "HTTP/1.0 may omit Host");
}

fn check_config(config: Value) -> (bool, String) {
    let dir = TempDir::new("check-config");
    let path = dir.path().join("c.yaml");
    write_config(&path, &config);
    let out = Command::new(ringgate_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_config_names_the_bad_field() {
    let provider = |extra: Value| json!({"providers": {"p": merged(json!({"base_url": "http://127.0.0.1:1/v1"}), extra)}});
    let (ok, out) = check_config(provider(json!({})));
    assert!(ok, "{out}");
    let (ok, out) = check_config(provider(json!({"timeout": 3})));
    assert!(!ok);
    assert!(
        out.contains("providers.p") && out.contains("timeout"),
        "{out}"
    );
    let (ok, out) = check_config(json!({"limits": {"max_body_bytes": "lots"}, "providers": {}}));
    assert!(!ok);
    assert!(out.contains("limits.max_body_bytes"), "{out}");
    let (ok, out) = check_config(provider(json!({"api_key": "env.RINGGATE_TEST_UNSET_VAR"})));
    assert!(!ok);
    assert!(
        out.contains("providers.p.api_key") && out.contains("RINGGATE_TEST_UNSET_VAR"),
        "{out}"
    );
}

#[test]
fn provider_key_is_sent_upstream_and_never_echoed() {
    let mock = MockLlm::start(&["--require-key", "sk-upstream-secret"]);
    std::env::set_var("RINGGATE_TEST_MOCK_KEY", "sk-upstream-secret");
    let gw = Gateway::start(json!({
        "shards": 1,
        "providers": {
            "mock": {"base_url": mock.base_url(), "api_key": "env.RINGGATE_TEST_MOCK_KEY"},
        },
    }));
    // The client's own Authorization header is for the gateway, not the provider.
    let resp = gw.post_json(
        "/v1/chat/completions",
        &chat_body("mock/gpt-4o-mini", "key", false),
        &[("authorization", "Bearer client-token")],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(!gw.stderr().contains("sk-upstream-secret"));
    assert!(!resp.text().contains("sk-upstream-secret"));
}
