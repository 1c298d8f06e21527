//! Golden tests for the Gemini adapter, built from the wire examples in Google's Gemini API
//! docs.

mod common;

use common::*;
use serde_json::{json, Value};
use translate::gemini::{self, ChatStream};
use translate::TranslateError;

#[test]
fn request_golden() {
    let body = br#"{
        "model": "gemini",
        "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": [{"type": "text", "text": "Weather and picture?"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AA=="}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Boston\"}"}}, {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":20}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            {"role": "user", "content": "ok"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"], "additionalProperties": false}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 100, "temperature": 0.5, "top_p": 0.8, "stop": ["X"], "seed": 3,
        "response_format": {"type": "json_object"}
    }"#;
    let r = gemini::chat_request(body, "gemini-2.0-flash", false).unwrap();
    assert_eq!(r.path, "/models/gemini-2.0-flash:generateContent");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        json!({
            "systemInstruction": {"parts": [{"text": "Be nice."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Weather and picture?"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/AA=="}}]},
                {"role": "model", "parts": [{"text": "Checking."}, {"functionCall": {"name": "get_weather", "args": {"location": "Boston"}}}, {"functionCall": {"name": "get_time", "args": {}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}},
                    {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                    {"text": "ok"}
                ]}
            ],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.8, "stopSequences": ["X"], "seed": 3, "responseMimeType": "application/json"}
        })
    );
    let r = gemini::chat_request(
        br#"{"messages":[{"role":"user","content":"hi"}]}"#,
        "models/gemini-2.5-pro",
        true,
    )
    .unwrap();
    assert_eq!(
        r.path,
        "/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    for bad in [
        &br#"{"messages":[{"role":"user","content":"hi"}],"n":3}"#[..],
        br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
        br#"{"messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}"#,
        br#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"sometimes"}"#,
    ] {
        assert!(matches!(gemini::chat_request(bad, "m", false), Err(TranslateError::InvalidRequest(_))));
    }
}

#[test]
fn response_golden() {
    let out = gemini::chat_response(&fixture("gemini/response.json"), "gem", 5).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 5, "model": "gem",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check. ", "refusal": null,
                "tool_calls": [{"id": "call_abc_0", "type": "function", "function": {"name": "find_theaters", "arguments": "{\"location\": \"Mountain View, CA\", \"movie\": \"Barbie\"}"}}]
            }}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100}
        })
    );
    for (fr, want) in [
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("STOP", "stop"),
    ] {
        let b = format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":"x"}}]}},"finishReason":"{fr}"}}]}}"#
        );
        let v: Value =
            serde_json::from_slice(&gemini::chat_response(b.as_bytes(), "g", 0).unwrap()).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], want);
    }
    let blocked =
        br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":3}}"#;
    let v: Value =
        serde_json::from_slice(&gemini::chat_response(blocked, "g", 0).unwrap()).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_upstream_payload(gemini::chat_response(b"{}", "g", 0));
    assert_upstream_payload(gemini::chat_response(b"{x", "g", 0));
}

fn chunk(id: &str, delta: Value, finish: Value) -> Value {
    chat_chunk(id, 7, "gem", delta, finish)
}

#[test]
fn stream_text_golden() {
    let out = run_all(
        || ChatStream::new("gem".into(), 7, true),
        &fixture("gemini/stream_text.sse"),
    );
    let id = "chatcmpl-mfTGaNPnMqGbz7IPlLy6gAQ";
    assert_eq!(
        data_only(&out),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(id, json!({"content": "The"}), Value::Null),
            chunk(id, json!({"content": " sky is blue\n"}), Value::Null),
            chunk(
                id,
                json!({"content": "because of Rayleigh scattering."}),
                Value::Null
            ),
            chunk(id, json!({}), json!("stop")),
            json!({"id": id, "object": "chat.completion.chunk", "created": 7, "model": "gem", "choices": [],
                   "usage": {"prompt_tokens": 8, "completion_tokens": 11, "total_tokens": 19, "prompt_tokens_details": {"cached_tokens": 2}}}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn stream_tool_golden() {
    let out = run_all(
        || ChatStream::new("gem".into(), 7, true),
        &fixture("gemini/stream_tool.sse"),
    );
    let id = "chatcmpl-r1";
    assert_eq!(
        data_only(&out),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(
                id,
                json!({"tool_calls": [{"index": 0, "id": "call_r1_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Boston, MA\"}"}}]}),
                Value::Null
            ),
            chunk(
                id,
                json!({"tool_calls": [{"index": 1, "id": "call_r1_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
                Value::Null
            ),
            chunk(id, json!({}), json!("tool_calls")),
            json!({"id": id, "object": "chat.completion.chunk", "created": 7, "model": "gem", "choices": [],
                   "usage": {"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45}}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn stream_truncated_malformed_error() {
    let input = fixture("gemini/stream_text.sse");
    let text = String::from_utf8(input.clone()).unwrap();
    let two: String = text.split_inclusive("\n\n").take(2).collect();
    let mut s = ChatStream::new("g".into(), 0, false);
    let mut out = Vec::new();
    s.feed(two.as_bytes(), &mut out).unwrap();
    assert_eq!(
        s.finish(&mut out),
        Err(TranslateError::UpstreamPayload("stream ended early".into()))
    );
    for cut in 0..input.len() - 3 {
        let mut s = ChatStream::new("g".into(), 0, false);
        let mut out = Vec::new();
        if s.feed(&input[..cut], &mut out).is_ok() {
            assert!(s.finish(&mut out).is_err(), "cut {cut}");
        }
    }
    let mut s = ChatStream::new("g".into(), 0, false);
    assert_upstream_payload(s.feed(b"data: {\"candidates\": [\n\n", &mut out));
    assert_error_chunk(
        ChatStream::new("g".into(), 0, false),
        b"data: {\"error\": {\"code\": 429, \"message\": \"Quota\", \"status\": \"RESOURCE_EXHAUSTED\"}}\n\n",
        json!({"error": {"message": "Quota", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}}),
    );
}

#[test]
fn error_mapping() {
    let body = br#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": []}}"#;
    let v: Value = serde_json::from_slice(&gemini::error_to_openai(400, body)).unwrap();
    assert_eq!(
        v,
        json!({"error": {"message": "API key not valid. Please pass a valid API key.", "type": "invalid_request_error", "param": null, "code": null}})
    );
    let body = br#"[{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]"#;
    let v: Value = serde_json::from_slice(&gemini::error_to_openai(503, body)).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(v["error"]["message"], "The model is overloaded.");
    let v: Value = serde_json::from_slice(&gemini::error_to_openai(
        403,
        br#"{"error":{"message":"no","status":"PERMISSION_DENIED"}}"#,
    ))
    .unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
}

#[test]
fn embeddings() {
    let (r, b64) = gemini::embed_request(
        br#"{"model":"e","input":["hello","world"],"dimensions":3}"#,
        "text-embedding-004",
    )
    .unwrap();
    assert!(!b64);
    assert_eq!(r.path, "/models/text-embedding-004:batchEmbedContents");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 3},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 3}
        ]})
    );
    let resp = br#"{"embeddings": [{"values": [0.5, -1.0, 0.25]}, {"values": [1, 2, 3]}]}"#;
    let v: Value =
        serde_json::from_slice(&gemini::embed_response(resp, "e", false).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"object": "list", "model": "e", "usage": {"prompt_tokens": 0, "total_tokens": 0}, "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0, 0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 2.0, 3.0]}
        ]})
    );
    let (_, b64) =
        gemini::embed_request(br#"{"input":"x","encoding_format":"base64"}"#, "e").unwrap();
    assert!(b64);
    let v: Value =
        serde_json::from_slice(&gemini::embed_response(resp, "e", true).unwrap()).unwrap();
    // 0.5f32 = 00 00 00 3f, -1.0 = 00 00 80 bf, 0.25 = 00 00 80 3e
    assert_eq!(v["data"][0]["embedding"], "AAAAPwAAgL8AAIA+");
    assert!(gemini::embed_request(br#"{"input":[1,2,3]}"#, "e").is_err());
    assert!(gemini::embed_response(b"{}", "e", false).is_err());
}
