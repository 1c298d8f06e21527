//! Protocol-level edge cases, driven over raw TCP against a real
//! `ringgate serve` in front of a real `mock-llm`.
//!
//! Needs both binaries built: `cargo build --workspace --bins`.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const MODEL: &str = "mock/gpt-4o-mini";

/// mock-llm + a gateway in front of it, torn down together.
struct Stack {
    // Field order = drop order: stop the gateway before its upstream.
    gw: Gateway,
    _mock: MockLlm,
}

/// `patch` is laid over [`basic_config`].
fn stack_with(patch: Value) -> Stack {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(merged(basic_config(&mock.base_url()), patch));
    Stack { gw, _mock: mock }
}

fn stack() -> Stack {
    stack_with(json!({}))
}

/// The body is `{"error":{"message","type","param","code"}}`; returns the inner object.
fn assert_openai_error(resp: &Response) -> serde_json::Value {
    assert!(
        resp.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "error responses are JSON, got content-type {:?}",
        resp.header("content-type")
    );
    let v = resp.json();
    let err = v
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object in {v}"))
        .clone();
    assert!(
        err["message"].is_string(),
        "error.message must be a string: {err}"
    );
    assert!(
        err["type"].is_string(),
        "error.type must be a string: {err}"
    );
    let obj = err.as_object().expect("error is an object");
    assert!(
        obj.contains_key("param"),
        "error.param must be present (may be null): {err}"
    );
    assert!(
        obj.contains_key("code"),
        "error.code must be present (may be null): {err}"
    );
    err
}

/// A normal non-streaming chat request still works end to end.
fn assert_serves_normally(gw: &Gateway, prompt: &str) {
    let resp = gw.post_json(
        "/v1/chat/completions",
        &chat_body(MODEL, prompt, false),
        &[],
    );
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let v = resp.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("echo: {prompt}")
    );
    assert_eq!(v["model"], "gpt-4o-mini");
}

// ---------------------------------------------------------------- request validation

#[test]
fn oversized_body_by_content_length_is_413() {
    let s = stack_with(json!({
        "limits": {"header_read_timeout_ms": 5000, "max_body_bytes": 1048576},
    }));

    // Announce 2 MiB but send only the head: the gateway must refuse on the
    // declared length alone, without waiting for (or buffering) the body.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n";
    let mut conn = HttpConn::connect(s.gw.addr, DEFAULT_TIMEOUT).unwrap();
    conn.send(head.as_bytes()).unwrap();
    let resp = conn
        .read_response()
        .expect("a response, not a hang or a bare close");

    assert_eq!(resp.status, 413, "body: {}", resp.text());
    assert_openai_error(&resp);
    assert_serves_normally(&s.gw, "after the big one");
}

#[test]
fn malformed_json_is_400_invalid_request_error() {
    let s = stack();
    let resp = s.gw.post_json(
        "/v1/chat/completions",
        r#"{"model": "mock/gpt-4o-mini", "messages": [{"role": "user", "#,
        &[],
    );
    assert_eq!(resp.status, 400, "body: {}", resp.text());
    let err = assert_openai_error(&resp);
    assert_eq!(err["type"], "invalid_request_error");
}

#[test]
fn unknown_path_is_404_in_openai_shape() {
    let s = stack();
    let resp = s.gw.get("/v1/definitely-not-an-endpoint");
    assert_eq!(resp.status, 404, "body: {}", resp.text());
    assert_openai_error(&resp);
}

#[test]
fn missing_model_is_400() {
    let s = stack();
    let resp = s.gw.post_json(
        "/v1/chat/completions",
        r#"{"messages": [{"role": "user", "content": "no model given"}]}"#,
        &[],
    );
    assert_eq!(resp.status, 400, "body: {}", resp.text());
    let err = assert_openai_error(&resp);
    assert_eq!(err["type"], "invalid_request_error");
}

#[test]
fn unknown_model_is_404_model_not_found() {
    let s = stack();
    let resp = s.gw.post_json(
        "/v1/chat/completions",
        &chat_body("mock/no-such-model", "x", false),
        &[],
    );
    assert_eq!(resp.status, 404, "body: {}", resp.text());
    let err = assert_openai_error(&resp);
    assert_eq!(err["code"], "model_not_found");
}

// ---------------------------------------------------------------- streaming failures

/// Sends a streamed chat request for `prompt` (with the mock's `x-mock-*` controls) on a new
/// connection and hands the connection back, for the test to read at its own pace or hang up.
fn send_stream(gw: &Gateway, prompt: &str, mock: &[(&str, &str)], close: bool) -> HttpConn {
    let mut conn = HttpConn::connect(gw.addr, DEFAULT_TIMEOUT).unwrap();
    conn.send(&chat_request(&chat_body(MODEL, prompt, true), mock, close))
        .unwrap();
    conn
}

#[test]
fn client_disconnect_mid_stream_leaves_gateway_healthy() {
    let s = stack();

    // A long, slow stream: 200 chunks, 20 ms apart (~4 s in total).
    let mut conn = send_stream(
        &s.gw,
        "a long story that the client will abandon",
        &[
            ("x-mock-stream-chunks", "200"),
            ("x-mock-stream-interval-ms", "20"),
        ],
        false,
    );
    let (status, headers) = conn.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type").is_some_and(|ct| ct.starts_with("text/event-stream")),
        "stream content-type: {headers:?}"
    );

    // Read a little of it, then hang up.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data:") {
        let got = conn.read_some(4096).unwrap();
        assert!(!got.is_empty(), "stream closed before any event");
        seen.extend_from_slice(&got);
    }
    drop(conn);

    // While the upstream is still producing for the dead client, and once the gateway has
    // noticed that the client left, it serves others normally.
    assert_serves_normally(&s.gw, "right after the hang-up");
    // The abandoned stream would run for ~4 s; it ends as soon as the gateway notices.
    poll_until(Duration::from_secs(3), || {
        (s.gw.metric_sum("ringgate_requests_in_flight") == 0).then_some(())
    })
    .expect("the gateway ends the request of the client that left");
    for i in 0..5 {
        assert_serves_normally(&s.gw, &format!("later request {i}"));
    }
    assert_eq!(s.gw.get("/health").status, 200);
}

#[test]
fn upstream_reset_mid_stream_ends_with_error_event_not_done() {
    let s = stack();
    let mut conn = send_stream(
        &s.gw,
        "this stream will be cut off upstream",
        &[
            ("x-mock-fail", "reset-mid-stream"),
            ("x-mock-stream-chunks", "8"),
        ],
        true,
    );
    let resp = conn
        .read_response()
        .expect("gateway must end the stream, not hang");
    assert_eq!(
        resp.status,
        200,
        "headers were already streaming: {}",
        resp.text()
    );

    let events = sse_data(&resp.body);
    assert!(
        !events.iter().any(|d| d == "[DONE]"),
        "a broken upstream stream must not end with [DONE]: {events:?}"
    );
    let last = events
        .last()
        .unwrap_or_else(|| panic!("no SSE events at all: {:?}", resp.text()));
    let v: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last event is not JSON ({e}): {last}"));
    assert!(
        v["error"].is_object(),
        "last event should be `data: {{\"error\":...}}`, got {last}"
    );
    assert!(
        v["error"]["message"].is_string(),
        "error event needs a message: {last}"
    );

    assert_serves_normally(&s.gw, "after the upstream reset");
}

// ---------------------------------------------------------------- connection handling

#[test]
fn slow_header_client_is_cut_off_at_header_read_timeout() {
    let s = stack_with(json!({
        "limits": {"header_read_timeout_ms": 500, "max_body_bytes": 1048576},
    }));

    let mut conn = HttpConn::connect(s.gw.addr, Duration::from_secs(10)).unwrap();
    // Half a request head, then silence.
    conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        .unwrap();
    let start = Instant::now();

    // Either a 408 response or a plain close/reset is acceptable.
    let mut buf = Vec::new();
    let outcome = conn.stream().try_clone().unwrap().read_to_end(&mut buf);
    let elapsed = start.elapsed();
    match outcome {
        Ok(_) => {
            if !buf.is_empty() {
                let text = String::from_utf8_lossy(&buf);
                assert!(
                    text.starts_with("HTTP/1.1 408"),
                    "expected 408 or a close, got: {text}"
                );
            }
        }
        Err(e) if is_disconnect(&e) => {}
        Err(e) => {
            panic!("gateway neither answered 408 nor closed within 10 s: {e} (after {elapsed:?})")
        }
    }
    assert!(
        elapsed < Duration::from_secs(3),
        "header_read_timeout_ms is 500, but the connection stayed open for {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "connection closed after only {elapsed:?}: a partial head must be given time to complete"
    );

    assert_serves_normally(&s.gw, "after the slowloris");
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let s = stack();
    let mut conn = HttpConn::connect(s.gw.addr, DEFAULT_TIMEOUT).unwrap();

    for prompt in ["first on this socket", "second on this socket"] {
        conn.send(&chat_request(&chat_body(MODEL, prompt, false), &[], false))
            .unwrap();
        let resp = conn
            .read_response()
            .unwrap_or_else(|e| panic!("request {prompt:?}: {e}"));
        assert_eq!(resp.status, 200, "body: {}", resp.text());
        assert!(resp.complete, "response body was truncated");
        assert_eq!(
            resp.json()["choices"][0]["message"]["content"],
            format!("echo: {prompt}")
        );
        assert!(
            !resp
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "gateway asked to close a keep-alive connection"
        );
    }

    // A streamed response on the same connection, then one more plain request.
    let body = chat_body(MODEL, "streamed third", true);
    conn.send(&chat_request(&body, &[], false)).unwrap();
    let resp = conn.read_response().unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.complete,
        "stream must be properly terminated to keep the connection usable"
    );
    assert_eq!(sse_chat_text(&resp.body), "echo: streamed third");
    assert_eq!(
        sse_data(&resp.body).last().map(String::as_str),
        Some("[DONE]")
    );
}

#[test]
fn streaming_through_gateway_matches_upstream_text() {
    let s = stack();
    let prompt = "chunk me into sixteen pieces please";
    let body = chat_body(MODEL, prompt, true);
    let resp = s.gw.post_json(
        "/v1/chat/completions",
        &body,
        &[("x-mock-stream-chunks", "16")],
    );
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert!(resp.complete);
    let events = sse_data(&resp.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.len() >= 17,
        "16 content chunks + [DONE] expected, got {}",
        events.len()
    );
    assert_eq!(sse_chat_text(&resp.body), format!("echo: {prompt}"));
}
