//! Graceful shutdown: SIGTERM while 200 streams are open. Every stream must finish whole
//! (ending in `[DONE]`), the node must stop taking new connections, and exit 0.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;

const STREAMS: usize = 200;

#[test]
fn sigterm_during_200_open_streams_lets_every_stream_finish() {
    let mock = MockLlm::start(&[]);
    let mut gw = Gateway::start(serde_json::json!({
        "shards": 2,
        "shutdown": {"grace_period_ms": 20000},
        "providers": {"mock": {"base_url": mock.base_url()}},
    }));
    let addr = gw.addr;
    let started = Arc::new(Barrier::new(STREAMS + 1));
    let handles: Vec<_> = (0..STREAMS)
        .map(|i| {
            let started = started.clone();
            std::thread::spawn(move || {
                let prompt = format!("stream number {i} keeps going");
                let body = chat_body("mock/gpt-4o-mini", &prompt, true);
                let req = build_request(
                    "POST",
                    "/v1/chat/completions",
                    &[
                        ("x-mock-stream-chunks", "20"),
                        ("x-mock-stream-interval-ms", "75"),
                    ],
                    Some(body.as_bytes()),
                    false,
                );
                let mut conn = HttpConn::connect(addr, Duration::from_secs(30)).unwrap();
                conn.send(&req).unwrap();
                let (status, headers) = conn.read_head().unwrap();
                started.wait();
                let (body, complete) = conn.read_body(status, &headers).unwrap();
                assert!(complete, "stream {i} was cut off");
                (status, prompt, body)
            })
        })
        .collect();
    started.wait();
    gw.sigterm();
    poll_until(Duration::from_secs(5), || {
        HttpConn::connect(addr, Duration::from_secs(1))
            .is_err()
            .then_some(())
    })
    .expect("a draining node stops taking new connections");
    for h in handles {
        let (status, prompt, body) = h.join().unwrap();
        assert_eq!(status, 200);
        let events = sse_data(&body);
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "stream cut short: {events:?}"
        );
        assert_eq!(sse_chat_text(&body), format!("echo: {prompt}"));
    }
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        gw.stderr()
    );
    assert!(gw.stderr().contains("drained"), "{}", gw.stderr());
}
