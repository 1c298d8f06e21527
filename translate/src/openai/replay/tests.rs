use super::*;
use serde_json::{json, Value};

fn chunk(choices: Value) -> String {
    let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7,
        "model": "gpt-4o-mini", "system_fingerprint": "fp_1", "choices": choices, "usage": null});
    format!("data: {c}\n\n")
}

fn delta(index: u32, d: Value, finish: Value) -> Value {
    json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": finish}])
}

fn fold_value(sse: &[u8]) -> Value {
    serde_json::from_slice(&fold_chat_stream(sse).unwrap()).unwrap()
}

#[track_caller]
fn assert_upstream(r: Result<Vec<u8>>) {
    assert!(
        matches!(r, Err(TranslateError::UpstreamPayload(_))),
        "{r:?}"
    );
}

/// Absent and `null` are the same to a client: drops every `null`-valued key.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        v => v,
    }
}

/// The `data:` JSON payloads of a replay, checking it ends with `[DONE]`.
fn events(sse: &[u8]) -> Vec<Value> {
    let mut p = SseParser::new();
    p.push(sse).unwrap();
    let mut out = Vec::new();
    while let Some(ev) = p.next_event() {
        out.push(ev.data.to_vec());
    }
    assert_eq!(out.pop().as_deref(), Some(&b"[DONE]"[..]));
    out.iter()
        .map(|d| serde_json::from_slice(d).unwrap())
        .collect()
}

const USAGE: &str = r#"{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;

fn text_stream() -> String {
    let mut s = chunk(delta(
        0,
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    ));
    s += &chunk(delta(0, json!({"content": "Hello"}), Value::Null));
    s += &chunk(delta(0, json!({"content": " wörld"}), Value::Null));
    s += &chunk(delta(0, json!({}), json!("stop")));
    s += &format!(
        r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_1","choices":[],"usage":{USAGE},"obfuscation":"x"}}"#
    );
    s + "\n\ndata: [DONE]\n\n"
}

#[test]
fn fold_text_is_openai_body() {
    let body = fold_chat_stream(text_stream().as_bytes()).unwrap();
    let expected = format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello wörld","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{USAGE},"service_tier":"default","system_fingerprint":"fp_1"}}"#
    );
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[test]
fn fold_split_anywhere_crlf_and_comments() {
    let lf = text_stream();
    let crlf = format!(
        ": keep-alive\r\n\r\n{}",
        lf.replace('\n', "\r\n")
            .replace("data: [DONE]", ": keep-alive\r\n\r\ndata: [DONE]")
    );
    let want = fold_chat_stream(lf.as_bytes()).unwrap();
    let bytes = crlf.as_bytes();
    assert_eq!(fold_chat_stream(bytes).unwrap(), want);
    assert_eq!(fold_pieces(bytes.chunks(1)).unwrap(), want);
    for p in 0..=bytes.len() {
        assert_eq!(
            fold_pieces([&bytes[..p], &bytes[p..]]).unwrap(),
            want,
            "split at {p}"
        );
    }
    // The last event may lack its blank line; the function is given the whole stream.
    assert_eq!(fold_chat_stream(lf.trim_end().as_bytes()).unwrap(), want);
}

#[test]
fn fold_tool_calls_reasoning_logprobs_and_choices() {
    let call = |i: u32, id: Value, name: Value, args: &str| {
        json!({"tool_calls": [{"index": i, "id": id, "type": if id.is_null() { Value::Null } else { json!("function") },
            "function": {"name": name, "arguments": args}}]})
    };
    let lp = |t: &str| json!({"content": [{"token": t, "logprob": -0.5, "bytes": [104], "top_logprobs": []}], "refusal": null});
    let mut s = chunk(delta(
        0,
        json!({"role": "assistant", "content": null}),
        Value::Null,
    ));
    s += &chunk(
        json!([{"index": 1, "delta": {"role": "assistant", "content": "A"}, "logprobs": lp("A"), "finish_reason": null}]),
    );
    s += &chunk(delta(0, json!({"reasoning_content": "think"}), Value::Null));
    s += &chunk(delta(
        0,
        call(0, json!("call_a"), json!("get"), ""),
        Value::Null,
    ));
    s += &chunk(delta(
        0,
        call(0, Value::Null, Value::Null, "{\"q\":"),
        Value::Null,
    ));
    s += &chunk(delta(
        0,
        call(1, json!("call_b"), json!("put"), "{}"),
        Value::Null,
    ));
    s += &chunk(
        json!([{"index": 1, "delta": {"content": "B"}, "logprobs": lp("B"), "finish_reason": "length"},
        {"index": 0, "delta": call(0, Value::Null, Value::Null, "1}"), "finish_reason": "tool_calls"}]),
    );
    s += "data: [DONE]\n\n";
    let v = fold_value(s.as_bytes());
    assert!(v.get("usage").is_none());
    assert_eq!(v["system_fingerprint"], "fp_1");
    assert_eq!(
        v["choices"],
        json!([
            {"index": 0, "message": {"role": "assistant", "content": null, "refusal": null, "reasoning_content": "think",
                "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}},
                               {"id": "call_b", "type": "function", "function": {"name": "put", "arguments": "{}"}}]},
             "logprobs": null, "finish_reason": "tool_calls"},
            {"index": 1, "message": {"role": "assistant", "content": "AB", "refusal": null},
             "logprobs": {"content": [lp("A")["content"][0], lp("B")["content"][0]], "refusal": null},
             "finish_reason": "length"},
        ])
    );
}

#[test]
fn fold_tool_calls_without_index() {
    let call = |id: &str, name: &str, args: &str| json!({"tool_calls": [{"id": id, "function": {"name": name, "arguments": args}}]});
    let mut s = chunk(delta(0, call("a", "f", "{\"x\""), Value::Null));
    s += &chunk(delta(0, call("", "", ":1}"), Value::Null));
    s += &chunk(delta(0, call("b", "g", "{}"), json!("tool_calls")));
    s += "data: [DONE]\n\n";
    let v = fold_value(s.as_bytes());
    let calls = &v["choices"][0]["message"]["tool_calls"];
    assert_eq!(
        calls[0]["function"],
        json!({"name": "f", "arguments": "{\"x\":1}"})
    );
    assert_eq!(calls[1]["id"], "b");
    assert_eq!(calls[1]["type"], "function");
}

#[test]
fn fold_rejects_half_answers() {
    let full = text_stream();
    assert_upstream(fold_chat_stream(
        full.replace("data: [DONE]\n\n", "").as_bytes(),
    ));
    assert_upstream(fold_chat_stream(
        full.replace("\"stop\"", "null").as_bytes(),
    ));
    assert_upstream(fold_chat_stream(b"data: [DONE]\n\n"));
    assert_upstream(fold_chat_stream(
        b"data: {\"choices\":[\n\ndata: [DONE]\n\n",
    ));
    assert_upstream(fold_chat_stream(b"data:\n\ndata: [DONE]\n\n"));
    let err = format!("{}data: {{\"error\":{{\"message\":\"overloaded\",\"type\":\"server_error\"}}}}\n\ndata: [DONE]\n\n", chunk(delta(0, json!({"content": "x"}), Value::Null)));
    let r = fold_chat_stream(err.as_bytes());
    assert!(
        r.as_ref().unwrap_err().message().contains("overloaded"),
        "{r:?}"
    );
    // One of two choices unfinished is half an answer too.
    let two = chunk(delta(0, json!({"content": "x"}), json!("stop")))
        + &chunk(delta(1, json!({"content": "y"}), Value::Null))
        + "data: [DONE]\n\n";
    assert_upstream(fold_chat_stream(two.as_bytes()));
}

fn body(choices: Value, usage: bool) -> Value {
    let mut b = json!({"id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000,
        "model": "gpt-4o", "choices": choices, "service_tier": "default", "system_fingerprint": "fp_9"});
    if usage {
        b["usage"] = serde_json::from_str(USAGE).unwrap();
    }
    b
}

fn message(content: Value, extra: Value) -> Value {
    let mut m = json!({"role": "assistant", "content": content, "refusal": null});
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

fn choice(index: u32, message: Value, finish: &str) -> Value {
    json!({"index": index, "message": message, "logprobs": null, "finish_reason": finish})
}

/// Replays `b` with and without usage and folds it back; returns the usage replay's events.
/// The pretty-printed body replays too: its raw usage and logprobs must not break a line.
#[track_caller]
fn round_trip(b: Value) -> Vec<Value> {
    let pretty = chat_stream_from_response(&serde_json::to_vec_pretty(&b).unwrap(), true).unwrap();
    let lines = String::from_utf8(pretty.clone()).unwrap();
    assert!(lines
        .lines()
        .all(|l| l.is_empty() || l.starts_with("data: ")));
    assert_eq!(normalize(fold_value(&pretty)), normalize(b.clone()));
    let bytes = serde_json::to_vec(&b).unwrap();
    let sse = chat_stream_from_response(&bytes, true).unwrap();
    assert_eq!(normalize(fold_value(&sse)), normalize(b.clone()));
    let mut no_usage = b;
    no_usage.as_object_mut().unwrap().remove("usage");
    let sse_nu = chat_stream_from_response(&bytes, false).unwrap();
    assert!(events(&sse_nu).iter().all(|e| e.get("usage").is_none()));
    assert_eq!(normalize(fold_value(&sse_nu)), normalize(no_usage));
    events(&sse)
}

#[test]
fn round_trip_text_with_and_without_usage() {
    let ev = round_trip(body(
        json!([choice(0, message(json!("Hi there."), json!({})), "stop")]),
        true,
    ));
    assert!(ev
        .iter()
        .rev()
        .skip(1)
        .all(|e| e["usage"].is_null() && e.get("usage").is_some()));
    assert_eq!(ev.last().unwrap()["choices"], json!([]));
    let ev = round_trip(body(
        json!([choice(0, message(json!(""), json!({})), "stop")]),
        false,
    ));
    assert!(ev
        .iter()
        .all(|e| e["usage"].is_null() && e["choices"].as_array().unwrap().len() == 1));
}

#[test]
fn round_trip_long_utf8_in_small_pieces() {
    let text = "héllo wörld — 日本語 ".repeat(20);
    let ev = round_trip(body(
        json!([choice(0, message(json!(text), json!({})), "length")]),
        true,
    ));
    let pieces: Vec<&str> = ev
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(pieces.len() > text.len() / PIECE);
    assert!(pieces.iter().all(|p| p.len() <= PIECE));
    assert_eq!(pieces.concat(), text);
}

#[test]
fn round_trip_tool_calls() {
    let calls = json!({"tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Zürich\",\"days\":[1,2,3],\"unit\":\"celsius\",\"detail\":\"hourly forecast please\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]});
    let ev = round_trip(body(
        json!([choice(0, message(Value::Null, calls), "tool_calls")]),
        true,
    ));
    assert_eq!(
        ev[1]["choices"][0]["delta"]["tool_calls"][0],
        json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}})
    );
}

#[test]
fn round_trip_two_choices_refusal_reasoning_logprobs() {
    let lp = json!({"content": [{"token": "No", "logprob": -0.1, "bytes": [78, 111], "top_logprobs": []}], "refusal": null});
    let mut c0 = choice(
        0,
        message(json!("No."), json!({"reasoning_content": "hmm"})),
        "stop",
    );
    c0["logprobs"] = lp;
    let c1 = choice(
        1,
        message(Value::Null, json!({"refusal": "I can't help with that."})),
        "stop",
    );
    round_trip(body(json!([c0, c1]), true));
}

#[test]
fn replay_chunks_are_openai_bytes() {
    // Written out, so the usage keeps its order (a `Value` sorts keys).
    let b = format!(
        r#"{{"id":"chatcmpl-9","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hi","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{USAGE},"service_tier":"default","system_fingerprint":"fp_9"}}"#
    );
    let sse = chat_stream_from_response(b.as_bytes(), true).unwrap();
    let head = r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","service_tier":"default","system_fingerprint":"fp_9","choices":"#;
    let want = [
        format!(
            r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
        format!(
            r#"{head}[{{"index":0,"delta":{{"content":"Hi"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
        format!(
            r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
        ),
        format!(r#"{head}[],"usage":{USAGE}}}"#),
        "data: [DONE]".to_owned(),
    ];
    assert_eq!(String::from_utf8(sse).unwrap(), want.join("\n\n") + "\n\n");
}

#[test]
fn replay_rejects_non_completions() {
    assert_upstream(chat_stream_from_response(b"nope", true));
    assert_upstream(chat_stream_from_response(
        br#"{"object":"list","data":[]}"#,
        true,
    ));
    assert_upstream(chat_stream_from_response(
        br#"{"object":"chat.completion","choices":[]}"#,
        true,
    ));
    let custom = body(
        json!([choice(
            0,
            message(
                Value::Null,
                json!({"tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}}]})
            ),
            "tool_calls"
        )]),
        true,
    );
    assert_upstream(chat_stream_from_response(
        &serde_json::to_vec(&custom).unwrap(),
        true,
    ));
}
