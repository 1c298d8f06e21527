//! Golden tests for the inbound Anthropic Messages API (served through OpenAI chat).

mod common;

use common::*;
use serde_json::{json, Value};
use translate::inbound::anthropic::{self, StreamFromChat};
use translate::TranslateError;

#[test]
fn request_golden() {
    let v = streamed_chat(
        anthropic::request_to_chat(&fixture("anthropic/messages_request.json")),
        "claude-sonnet-4-5",
    );
    assert_eq!(
        v,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What's the weather like in San Francisco?"},
                {"role": "assistant", "content": "<thinking>I need to use get_weather</thinking>", "tool_calls": [
                    {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Also describe this"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
                ]}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}
            }}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "stop": ["END"],
            "temperature": 0.2,
            "user": "u-1",
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[test]
fn request_variants_and_rejections() {
    let (body, stream, _) = anthropic::request_to_chat(
        br#"{"model":"m","max_tokens":5,"system":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}],"tool_choice":{"type":"tool","name":"f"},"tools":[{"name":"f","input_schema":{"type":"object"}}]}"#,
    )
    .unwrap();
    assert!(!stream);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["messages"][0],
        json!({"role": "system", "content": "a\nb"})
    );
    assert_eq!(
        v["messages"][1]["content"],
        json!([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])
    );
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert!(v.get("stream").is_none());

    for bad in [
        &br#"{"max_tokens":5,"messages":[]}"#[..],
        br#"{"model":"m","messages":[]}"#,
        br#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#,
        br#"{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
        b"{",
    ] {
        assert!(matches!(anthropic::request_to_chat(bad), Err(TranslateError::InvalidRequest(_))), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn response_golden() {
    let out =
        anthropic::response_from_chat(&fixture("openai/response_tool.json"), "claude-sonnet-4-5")
            .unwrap();
    dump("anthropic_message.json", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_abc123", "name": "get_current_weather", "input": {"location": "Boston, MA"}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 80, "output_tokens": 17, "cache_read_input_tokens": 2}
        })
    );
    let bad = br#"{"id":"x","choices":[{"message":{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{oops"}}]},"finish_reason":"tool_calls"}]}"#;
    assert_upstream_payload(anthropic::response_from_chat(bad, "m"));
    assert_upstream_payload(anthropic::response_from_chat(b"{}", "m"));
}

/// [`sse_golden`] of the OpenAI stream fixture `openai/stream_{kind}.sse`, dumped as
/// `anthropic_{kind}.sse`.
fn stream_golden(kind: &str) -> Vec<(String, Value)> {
    sse_golden(
        || StreamFromChat::new("claude-x".into()),
        &format!("openai/stream_{kind}.sse"),
        &format!("anthropic_{kind}.sse"),
    )
}

#[test]
fn stream_text_golden() {
    let ev = stream_golden("text");
    let names = event_names(&ev);
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        ev[0].1,
        json!({"type": "message_start", "message": {"id": "msg_123", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}})
    );
    assert_eq!(
        ev[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        ev[2].1,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}})
    );
    assert_eq!(ev[3].1["delta"]["text"], " wörld\n");
    assert_eq!(ev[4].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        ev[5].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"input_tokens": 5, "output_tokens": 12, "cache_read_input_tokens": 4}})
    );
    assert_eq!(ev[6].1, json!({"type": "message_stop"}));
}

#[test]
fn stream_tool_golden() {
    let ev = stream_golden("tool");
    let ev: Vec<Value> = ev.into_iter().map(|(_, d)| d).collect();
    let expected = vec![
        json!({"type": "message_start", "message": {"id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "location\":\"Paris\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"input_tokens": 80, "output_tokens": 20}}),
        json!({"type": "message_stop"}),
    ];
    assert_eq!(ev, expected);
}

#[test]
fn stream_malformed_and_truncated() {
    let input = fixture("openai/stream_text.sse");
    // cut before finish_reason → early end
    let text = String::from_utf8(input.clone()).unwrap();
    let first_three: String = text.split_inclusive("\n\n").take(3).collect();
    let mut s = StreamFromChat::new("m".into());
    let mut out = Vec::new();
    s.feed(first_three.as_bytes(), &mut out).unwrap();
    assert_eq!(
        s.finish(&mut out),
        Err(TranslateError::UpstreamPayload("stream ended early".into()))
    );
    // every prefix: never panics
    for cut in 0..input.len() {
        let mut s = StreamFromChat::new("m".into());
        let mut out = Vec::new();
        if s.feed(&input[..cut], &mut out).is_ok() {
            let _ = s.finish(&mut out);
        }
    }
    // invalid JSON chunk
    let mut s = StreamFromChat::new("m".into());
    assert_upstream_payload(s.feed(b"data: {\"id\":\n\n", &mut out));
    // error event mid-stream
    let mut s = StreamFromChat::new("m".into());
    let mut out = Vec::new();
    s.feed(
        b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
        &mut out,
    )
    .unwrap();
    assert_eq!(
        parse_sse(&out),
        vec![(
            "error".to_owned(),
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}})
        )]
    );
    assert!(s.finish(&mut out).is_err());
}

#[test]
fn stream_without_done_but_finished_is_ok() {
    let input = fixture("openai/stream_text.sse");
    let text = String::from_utf8(input)
        .unwrap()
        .replace("data: [DONE]\n\n", "");
    let out = run_all(|| StreamFromChat::new("m".into()), text.as_bytes());
    assert_eq!(parse_sse(&out).last().unwrap().0, "message_stop");
}

#[test]
fn error_mapping() {
    let cases = [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
    ];
    for (status, t) in cases {
        let body = br#"{"error":{"message":"nope","type":"x","param":null,"code":null}}"#;
        let v: Value = serde_json::from_slice(&anthropic::error_from_openai(status, body)).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": t, "message": "nope"}})
        );
    }
    let v: Value =
        serde_json::from_slice(&anthropic::error_from_openai(502, b"upstream down")).unwrap();
    assert_eq!(v["error"]["message"], "upstream down");
}
