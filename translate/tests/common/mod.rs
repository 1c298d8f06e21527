//! Helpers shared by the integration tests (and the stream benchmark): run a stream
//! translator over an input whole, byte by byte and in odd splits, parse SSE output, and build
//! expected chunks and Converse stream frames.
#![allow(dead_code)]

use serde_json::{json, Value};
use translate::bedrock::eventstream::encode_frame;
use translate::{StreamTranslator, TranslateError};

/// Asserts `r` failed with [`TranslateError::UpstreamPayload`]: what every translator answers
/// to a provider body or event it cannot read.
#[track_caller]
pub fn assert_upstream_payload<T>(r: Result<T, TranslateError>) {
    assert!(matches!(r, Err(TranslateError::UpstreamPayload(_))));
}

/// Feeds one upstream error event to a fresh translator: the client gets `expected`, the
/// OpenAI error chunk for it, and nothing else, and the stream cannot finish properly.
#[track_caller]
pub fn assert_error_chunk<T: StreamTranslator>(mut s: T, event: &[u8], expected: Value) {
    let mut out = Vec::new();
    s.feed(event, &mut out).unwrap();
    assert_eq!(data_only(&out), vec![expected]);
    assert!(s.finish(&mut out).is_err());
}

/// A translated request's chat body, once it is checked to stream as `model`.
#[track_caller]
pub fn streamed_chat(
    translated: Result<(Vec<u8>, bool, String), TranslateError>,
    model: &str,
) -> Value {
    let (body, stream, got) = translated.unwrap();
    assert!(stream);
    assert_eq!(got, model);
    serde_json::from_slice(&body).unwrap()
}

/// The SSE events a translator makes of a fixture stream, its output written to `dump_as`
/// for inspection: how the inbound stream goldens begin.
pub fn sse_golden<T: StreamTranslator>(
    make: impl Fn() -> T,
    fixture_name: &str,
    dump_as: &str,
) -> Vec<(String, Value)> {
    let out = run_all(make, &fixture(fixture_name));
    dump(dump_as, &out);
    parse_sse(&out)
}

pub fn fixture(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

pub fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

/// Feeds `input` split into pieces of `step` bytes, then finishes.
pub fn run_split<T: StreamTranslator>(
    t: &mut T,
    input: &[u8],
    step: usize,
) -> Result<Vec<u8>, TranslateError> {
    let mut out = Vec::new();
    for piece in input.chunks(step.max(1)) {
        t.feed(piece, &mut out)?;
    }
    t.finish(&mut out)?;
    Ok(out)
}

/// Runs a fresh translator whole, byte by byte and in 7-byte pieces; asserts all three
/// outputs are identical and returns it.
pub fn run_all<T: StreamTranslator>(make: impl Fn() -> T, input: &[u8]) -> Vec<u8> {
    let whole = run_split(&mut make(), input, input.len()).unwrap();
    let bytewise = run_split(&mut make(), input, 1).unwrap();
    let sevens = run_split(&mut make(), input, 7).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&bytewise)
    );
    assert_eq!(whole, sevens);
    whole
}

/// Parses `[event: NAME\n]data: JSON\n\n` frames into (event name, JSON or "[DONE]" string).
pub fn parse_sse(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    let mut events = Vec::new();
    for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
        let mut name = String::new();
        let mut data = None;
        for line in frame.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(if d == "[DONE]" {
                    Value::String("[DONE]".into())
                } else {
                    serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}"))
                });
            } else {
                panic!("unexpected line {line:?}");
            }
        }
        events.push((name, data.expect("frame without data")));
    }
    events
}

/// Only the event names.
pub fn event_names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Only the data payloads.
pub fn data_only(out: &[u8]) -> Vec<Value> {
    parse_sse(out).into_iter().map(|(_, d)| d).collect()
}

/// An expected `chat.completion.chunk` with one choice.
pub fn chat_chunk(id: &str, created: u64, model: &str, delta: Value, finish: Value) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

/// One Converse stream event frame (`:message-type: event`) of type `event_type`.
pub fn converse_event(event_type: &str, payload: &str) -> Vec<u8> {
    encode_frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// When `TRANSLATE_DUMP_DIR` is set, writes `bytes` there as `name` (used by
/// `tests/sdk/check_sdks.py` to feed our output through the official SDKs).
pub fn dump(name: &str, bytes: &[u8]) {
    if let Ok(dir) = std::env::var("TRANSLATE_DUMP_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}"), bytes).unwrap();
    }
}
