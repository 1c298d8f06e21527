//! What a client sees when the provider misbehaves: refused connections, resets, hangs,
//! truncated and close-delimited streams. Each case runs the real binaries over loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const MODEL: &str = "mock/gpt-4o-mini";

/// A gateway whose only provider is at `base_url`, with short upstream timeouts and no
/// retries, so each request shows one upstream failure as it is.
/// The provider lists its one model, so that the coordinator does not fetch its catalog:
/// that fetch is a connection to the upstream of its own, which the tests counting the
/// gateway's upstream connections would see beside the request's (a race, seen on a slow
/// machine).
fn gateway_for(base_url: &str) -> Gateway {
    Gateway::start(json!({
        "shards": 1,
        "providers": {
            "mock": {
                "base_url": base_url,
                "models": [MODEL.trim_start_matches("mock/")],
                "first_byte_timeout_ms": 400,
                "idle_timeout_ms": 400,
                "connect_timeout_ms": 400,
                "retry": {"max_retries": 0},
            },
        },
    }))
}

fn error_code(resp: &Response) -> String {
    resp.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn chat(gw: &Gateway, stream: bool, headers: &[(&str, &str)]) -> Response {
    gw.post_json(
        "/v1/chat/completions",
        &chat_body(MODEL, "hello", stream),
        headers,
    )
}

/// Established TCP connections to `port` on 127.0.0.1, from /proc/net/tcp.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let needle = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[2] == needle && cols[3] == "01"
        })
        .count()
}

#[test]
fn refused_connection_is_502() {
    let refused = RefusedPort::new();
    let gw = gateway_for(&format!("http://127.0.0.1:{}/v1", refused.port()));
    let resp = chat(&gw, false, &[]);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(error_code(&resp), "upstream_connect_failed");
    assert_eq!(resp.json()["error"]["type"], "api_error");
}

#[test]
fn reset_before_response_is_502_and_hang_is_504() {
    let mock = MockLlm::start(&[]);
    let gw = gateway_for(&mock.base_url());
    let resp = chat(&gw, false, &[("x-mock-fail", "reset")]);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(error_code(&resp), "upstream_reset");

    let started = Instant::now();
    let resp = chat(&gw, false, &[("x-mock-fail", "hang")]);
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert_eq!(error_code(&resp), "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The failed connections were not pooled: the next request works.
    let resp = chat(&gw, false, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn upstream_error_status_and_body_pass_through() {
    let mock = MockLlm::start(&[]);
    let gw = gateway_for(&mock.base_url());
    let resp = chat(&gw, false, &[("x-mock-status", "429")]);
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
}

#[test]
fn truncated_stream_ends_with_error_event() {
    let mock = MockLlm::start(&[]);
    let gw = gateway_for(&mock.base_url());
    let resp = chat(&gw, true, &[("x-mock-fail", "truncate-stream")]);
    assert_eq!(resp.status, 200);
    assert!(resp.complete, "the gateway ends its own framing cleanly");
    let events = sse_data(&resp.body);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_broken");
}

#[test]
fn silent_stream_times_out_with_error_event() {
    let mock = MockLlm::start(&[]);
    let gw = gateway_for(&mock.base_url());
    // 3 chunks, 2 s apart: longer than the 400 ms idle timeout.
    let resp = chat(
        &gw,
        true,
        &[
            ("x-mock-stream-chunks", "3"),
            ("x-mock-stream-interval-ms", "2000"),
        ],
    );
    let events = sse_data(&resp.body);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no data for 400 ms"),
        "{last}"
    );
}

#[test]
fn close_delimited_stream_is_reframed_as_chunked() {
    let mock = MockLlm::start(&[]);
    let gw = gateway_for(&mock.base_url());
    assert_whole_chunked_stream(&chat(&gw, true, &[("x-mock-stream-framing", "close")]));
}

/// A streamed chat answer that reached the client whole, chunked, and ended with `[DONE]`.
fn assert_whole_chunked_stream(resp: &Response) {
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert!(resp.complete);
    assert_eq!(sse_chat_text(&resp.body), "echo: hello");
    assert_eq!(
        sse_data(&resp.body).last().map(String::as_str),
        Some("[DONE]")
    );
}

/// An upstream whose reads cut chunks in two, with chunk extensions and a trailer: the reads
/// that hold whole chunks pass them as they came, the others are re-framed; the client gets
/// every event, well framed, with neither the extensions nor the trailer.
#[test]
fn chunks_cut_by_reads_are_reframed() {
    let mock = MockLlm::start(&[]);
    let gw = gateway_for(&mock.base_url());
    for chunks in ["1", "8"] {
        let headers = [
            ("x-mock-stream-framing", "cut-chunks"),
            ("x-mock-stream-chunks", chunks),
        ];
        assert_whole_chunked_stream(&chat(&gw, true, &headers));
        // The same, as bytes on the wire: the body's frames up to its last chunk.
        let mut conn = HttpConn::connect(gw.addr, DEFAULT_TIMEOUT).unwrap();
        conn.send(&chat_request(
            &chat_body(MODEL, "hello", true),
            &headers,
            false,
        ))
        .unwrap();
        assert_eq!(conn.read_head().unwrap().0, 200);
        let mut raw = Vec::new();
        while !raw.ends_with(b"\r\n0\r\n\r\n") {
            let got = conn.read_some(64 * 1024).unwrap();
            assert!(!got.is_empty(), "the stream ended unframed: {raw:?}");
            raw.extend_from_slice(&got);
        }
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.contains("[DONE]"), "{raw}");
        assert!(
            !raw.contains("mock=1") && !raw.contains("x-mock-trailer"),
            "{raw}"
        );
    }
}

#[test]
fn client_that_leaves_cancels_its_upstream_request() {
    let mock = MockLlm::start(&[]);
    let gw = gateway_for(&mock.base_url());
    let mock_port = mock.addr.port();
    // Upstream waits 3 s before answering; the client gives up after its request is sent.
    let body = chat_body(MODEL, "slow", false);
    let req = build_request(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-latency-ms", "3000")],
        Some(body.as_bytes()),
        false,
    );
    let mut conn = HttpConn::connect(gw.addr, DEFAULT_TIMEOUT).unwrap();
    conn.send(&req).unwrap();
    let dialled = poll_until(Duration::from_secs(2), || {
        Some(established_to(mock_port)).filter(|&n| n > 0)
    });
    assert_eq!(dialled, Some(1), "gateway should have dialled the mock");
    drop(conn);
    // The disconnect check runs every 500 ms by default.
    poll_until(Duration::from_secs(2), || {
        (established_to(mock_port) == 0).then_some(())
    })
    .expect("upstream connection should be closed");
}

#[test]
fn epoll_driver_serves_plain_and_streamed() {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start(json!({
        "shards": 2,
        "runtime": {"driver": "epoll"},
        "providers": {"mock": {"base_url": mock.base_url()}},
    }));
    assert!(
        gw.stderr().contains("Epoll"),
        "driver should be logged: {}",
        gw.stderr()
    );
    let resp = chat(&gw, false, &[]);
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "echo: hello"
    );
    let resp = chat(&gw, true, &[]);
    assert_eq!(sse_chat_text(&resp.body), "echo: hello");
}
