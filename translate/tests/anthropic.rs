//! Golden tests for the outbound Anthropic adapter, built from the wire examples in
//! Anthropic's Messages API docs.

mod common;

use common::*;
use serde_json::{json, Value};
use translate::anthropic::{self, ChatStream};
use translate::TranslateError;

#[test]
fn request_golden() {
    let req = anthropic::chat_request(&fixture("anthropic/chat_request.json"), "claude-sonnet-4-5")
        .unwrap();
    assert_eq!(req.path, "/messages");
    assert!(req
        .headers
        .contains(&("anthropic-version".into(), "2023-06-01".into())));
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let expected = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What's the weather in SF?"},
                {"type": "text", "text": "And look at this:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "SF"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "15 degrees"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
                {"type": "text", "text": "Thanks"}
            ]}
        ],
        "tools": [
            {"name": "get_weather", "description": "Get weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": true,
        "metadata": {"user_id": "user-123"}
    });
    assert_eq!(body, expected);
}

#[test]
fn request_defaults_and_choices() {
    let r = anthropic::chat_request(
        br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
        "m",
    )
    .unwrap();
    let b: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
    assert!(b.get("stream").is_none() && b.get("tool_choice").is_none());

    let tools =
        r#""tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]"#;
    for (choice, expected) in [
        (r#""auto""#, json!({"type": "auto"})),
        (r#""none""#, json!({"type": "none"})),
        (
            r#"{"type":"function","function":{"name":"f"}}"#,
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],{tools},"tool_choice":{choice},"max_tokens":5,"stop":["a","b"]}}"#
        );
        let r = anthropic::chat_request(body.as_bytes(), "m").unwrap();
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(b["tool_choice"], expected);
        assert_eq!(b["max_tokens"], 5);
        assert_eq!(b["stop_sequences"], json!(["a", "b"]));
    }
    // parallel_tool_calls=false without tool_choice → auto + disable
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"hi"}}],{tools},"parallel_tool_calls":false}}"#
    );
    let b: Value =
        serde_json::from_slice(&anthropic::chat_request(body.as_bytes(), "m").unwrap().body)
            .unwrap();
    assert_eq!(
        b["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[test]
fn request_rejections() {
    let bad: &[&[u8]] = &[
        br#"{"messages":[{"role":"user","content":"hi"}],"n":2}"#,
        br#"{"messages":"nope"}"#,
        b"not json",
        br#"[1]"#,
        br#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
        br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{bad"}}]}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}"#,
        br#"{"messages":[{"role":"tool","content":"x"}]}"#,
        br#"{"messages":[],"tools":[{"type":"code_interpreter"}]}"#,
    ];
    for b in bad {
        match anthropic::chat_request(b, "m") {
            Err(TranslateError::InvalidRequest(_)) => {}
            other => panic!("{}: {other:?}", String::from_utf8_lossy(b)),
        }
    }
    // n = 1 is fine
    assert!(anthropic::chat_request(br#"{"messages":[],"n":1}"#, "m").is_ok());
}

#[test]
fn response_golden() {
    let out = anthropic::chat_response(
        &fixture("anthropic/response_tool.json"),
        "claude",
        1_700_000_000,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "msg_01Aq9w938a90dw8q",
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": "claude",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check the current weather in San Francisco for you.",
                    "refusal": null,
                    "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}]
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 2200, "completion_tokens": 503, "total_tokens": 2703, "prompt_tokens_details": {"cached_tokens": 100}}
        })
    );
}

#[test]
fn response_stop_reasons() {
    for (stop, fin) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let body = format!(
            r#"{{"id":"m","content":[{{"type":"text","text":"x"}}],"stop_reason":"{stop}","usage":{{"input_tokens":1,"output_tokens":2}}}}"#
        );
        let v: Value =
            serde_json::from_slice(&anthropic::chat_response(body.as_bytes(), "c", 0).unwrap())
                .unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], fin);
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
        );
    }
    assert_upstream_payload(anthropic::chat_response(b"{", "c", 0));
    assert_upstream_payload(anthropic::chat_response(b"{}", "c", 0));
}

fn chunk(id: &str, delta: Value, finish: Value) -> Value {
    chat_chunk(id, 42, "claude", delta, finish)
}

#[test]
fn stream_text_golden() {
    let input = fixture("anthropic/stream_text.sse");
    let out = run_all(|| ChatStream::new("claude".into(), 42, true), &input);
    let id = "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY";
    assert_eq!(
        data_only(&out),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(id, json!({"content": "Hello"}), Value::Null),
            chunk(id, json!({"content": "!\n\"quoted\" é"}), Value::Null),
            chunk(id, json!({}), json!("stop")),
            json!({"id": id, "object": "chat.completion.chunk", "created": 42, "model": "claude", "choices": [],
                   "usage": {"prompt_tokens": 35, "completion_tokens": 15, "total_tokens": 50, "prompt_tokens_details": {"cached_tokens": 10}}}),
            json!("[DONE]"),
        ]
    );
    // without include_usage there is no usage chunk
    let out = run_all(|| ChatStream::new("claude".into(), 42, false), &input);
    assert_eq!(data_only(&out).len(), 5);
}

#[test]
fn stream_tool_golden() {
    let input = fixture("anthropic/stream_tool.sse");
    let out = run_all(|| ChatStream::new("claude".into(), 42, false), &input);
    let id = "msg_014p7gG3wDgGV9EUtLvnow3U";
    assert_eq!(
        data_only(&out),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(
                id,
                json!({"content": "Okay, let's check the weather for San Francisco, CA:"}),
                Value::Null
            ),
            chunk(
                id,
                json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null
            ),
            chunk(
                id,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
                Value::Null
            ),
            chunk(
                id,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisc"}}]}),
                Value::Null
            ),
            chunk(
                id,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "o, CA\"}"}}]}),
                Value::Null
            ),
            chunk(
                id,
                json!({"tool_calls": [{"index": 1, "id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
                Value::Null
            ),
            chunk(
                id,
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":\"PST\"}"}}]}),
                Value::Null
            ),
            chunk(id, json!({}), json!("tool_calls")),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn stream_truncated_is_error() {
    let input = fixture("anthropic/stream_text.sse");
    let cut = input.len() - 40; // drops message_stop
    let mut s = ChatStream::new("c".into(), 0, false);
    let mut out = Vec::new();
    s.feed(&input[..cut], &mut out).unwrap();
    let err = s.finish(&mut out).unwrap_err();
    assert_eq!(
        err,
        TranslateError::UpstreamPayload("stream ended early".into())
    );
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));
    // every prefix: feed never panics; finish errs unless message_stop is complete (a final
    // event missing only its blank line is accepted)
    for cut in 0..input.len() - 2 {
        let mut s = ChatStream::new("c".into(), 0, false);
        let mut out = Vec::new();
        s.feed(&input[..cut], &mut out).unwrap();
        assert!(s.finish(&mut out).is_err(), "cut {cut}");
    }
}

#[test]
fn stream_malformed_json_is_error() {
    let mut s = ChatStream::new("c".into(), 0, false);
    let mut out = Vec::new();
    let r = s.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_bl\n\n", &mut out);
    assert_upstream_payload(r);
    assert_eq!(
        data_only(&out).len(),
        1,
        "the role chunk from the good event stays"
    );
    // delta before message_start
    let mut s = ChatStream::new("c".into(), 0, false);
    let r = s.feed(b"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n", &mut out);
    assert!(r.is_err());
}

#[test]
fn stream_error_event() {
    let input = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\nevent: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";
    let mut s = ChatStream::new("c".into(), 0, true);
    let mut out = Vec::new();
    s.feed(input, &mut out).unwrap();
    let events = data_only(&out);
    assert_eq!(
        events[1],
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
    );
    assert_eq!(s.upstream_error(), Some("overloaded_error: Overloaded"));
    let mut tail = Vec::new();
    assert!(s
        .feed(b"data: {\"type\":\"message_stop\"}\n\n", &mut tail)
        .is_ok());
    assert!(tail.is_empty());
    assert_upstream_payload(s.finish(&mut tail));
    assert!(tail.is_empty());
}

#[test]
fn error_mapping() {
    let cases = [
        (
            "invalid_request_error",
            400,
            "invalid_request_error",
            Value::Null,
        ),
        (
            "authentication_error",
            401,
            "authentication_error",
            json!("invalid_api_key"),
        ),
        ("permission_error", 403, "permission_error", Value::Null),
        ("not_found_error", 404, "not_found_error", Value::Null),
        (
            "rate_limit_error",
            429,
            "rate_limit_error",
            json!("rate_limit_exceeded"),
        ),
        ("api_error", 500, "server_error", Value::Null),
        ("overloaded_error", 529, "server_error", json!("overloaded")),
    ];
    for (atype, status, otype, code) in cases {
        let body =
            format!(r#"{{"type":"error","error":{{"type":"{atype}","message":"boom {atype}"}}}}"#);
        let v: Value =
            serde_json::from_slice(&anthropic::error_to_openai(status, body.as_bytes())).unwrap();
        assert_eq!(
            v,
            json!({"error": {"message": format!("boom {atype}"), "type": otype, "param": null, "code": code}})
        );
    }
    let v: Value = serde_json::from_slice(&anthropic::error_to_openai(
        502,
        b"<html>bad gateway</html>",
    ))
    .unwrap();
    assert_eq!(v["error"]["message"], "<html>bad gateway</html>");
    assert_eq!(v["error"]["type"], "server_error");
}
