//! Unit tests of `openai.rs`, kept apart so that the module reads as what it serves.

use super::*;
use crate::reply::json;

fn events_json(events: &[Bytes]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_ref() != b"data: [DONE]\n\n")
        .map(|e| {
            let s = std::str::from_utf8(e).unwrap();
            let payload = s
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            serde_json::from_str(payload).unwrap()
        })
        .collect()
}

#[test]
fn chat_non_stream() {
    let body = br#"{"model":"gpt-4o-mini","messages":[
        {"role":"system","content":"be brief"},
        {"role":"user","content":"first"},
        {"role":"assistant","content":null},
        {"role":"user","content":[{"type":"text","text":"hello "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"world"}]}
    ]}"#;
    let out = chat_completions(body, 8, None, true).unwrap().into_json();
    let v = json(&out);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["logprobs"].is_null());
    // "be brief" + "first" + "hello world" = 8 + 5 + 11 = 24 chars.
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 9);
}

#[test]
fn chat_stream_events() {
    let body = br#"{"model":"m/x","messages":[{"role":"user","content":"hi there"}],
        "stream":true,"stream_options":{"include_usage":true}}"#;
    let StreamOutput {
        events, content, ..
    } = chat_completions(body, 4, None, true).unwrap().into_stream();
    assert_eq!(content, 0..4);
    assert_eq!(events.last().unwrap().as_ref(), b"data: [DONE]\n\n");
    let chunks = events_json(&events);
    assert_eq!(chunks.len(), 6);
    let text: String = chunks[..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo: hi there");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[1]["choices"][0]["delta"].get("role").is_none());
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "m/x");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    assert!(chunks[3]["choices"][0]["finish_reason"].is_null());
    assert_eq!(chunks[4]["choices"][0]["delta"], serde_json::json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], serde_json::json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
}

#[test]
fn chat_stream_without_usage() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
    let StreamOutput { events, .. } = chat_completions(body, 8, None, true).unwrap().into_stream();
    let chunks = events_json(&events);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn malformed_requests_are_errors() {
    assert!(chat_completions(b"{not json", 8, None, true).is_err());
    assert!(chat_completions(br#"{"messages":[]}"#, 8, None, true).is_err());
    assert!(completions(b"[]", 8, None, true).is_err());
    assert!(embeddings(br#"{"model":"m","input":[]}"#, None).is_err());
    assert!(embeddings(br#"{"model":"m","input":{}}"#, None).is_err());
    assert!(embeddings(br#"{"model":"m","input":"x","dimensions":0}"#, None).is_err());
}

#[test]
fn completions_plain_and_stream() {
    let out = completions(
        br#"{"model":"gpt-3.5-turbo-instruct","prompt":["say hi","b"]}"#,
        8,
        None,
        true,
    )
    .unwrap()
    .into_json();
    let v = json(&out);
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "echo: say hi");
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let StreamOutput { events, .. } = completions(
        br#"{"model":"m","prompt":"abc","stream":true}"#,
        3,
        None,
        true,
    )
    .unwrap()
    .into_stream();
    let chunks = events_json(&events);
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo: abc");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn embeddings_float_and_base64() {
    let out = embeddings(
        br#"{"model":"text-embedding-3-small","input":["a","b",[1,2,3]]}"#,
        None,
    )
    .unwrap()
    .into_json();
    let v = json(&out);
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["index"], 2);
    let vec0 = data[0]["embedding"].as_array().unwrap();
    assert_eq!(vec0.len(), DEFAULT_DIMENSIONS);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(v["usage"]["prompt_tokens"], 1 + 1 + 3);

    let out = embeddings(
        br#"{"model":"m","input":"a","dimensions":4,"encoding_format":"base64"}"#,
        None,
    )
    .unwrap()
    .into_json();
    let v = json(&out);
    let expected: Vec<u8> = embedding_vector("a", 4)
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    assert_eq!(v["data"][0]["embedding"], base64_encode(&expected));
}

#[test]
fn base64_known_vectors() {
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"f"), "Zg==");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(b"foo"), "Zm9v");
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_encode(&[0xff, 0xfe, 0x00]), "//4A");
}

#[test]
fn error_body_shape() {
    let v = json(&error_body("nope", "invalid_request_error", None));
    assert_eq!(
        v,
        serde_json::json!({"error":{"message":"nope","type":"invalid_request_error","param":null,"code":null}})
    );
}

#[test]
fn constant_bodies_are_valid_json() {
    assert_eq!(json(HEALTH_BODY)["status"], "ok");
    let models = json(MODELS_BODY);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gpt-4o-mini") && ids.contains(&"text-embedding-3-small"));
}
