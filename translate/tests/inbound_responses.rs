//! Golden tests for the inbound OpenAI Responses API (served through OpenAI chat).

mod common;

use common::*;
use serde_json::{json, Value};
use translate::inbound::responses::{self, StreamFromChat};
use translate::TranslateError;

#[test]
fn request_golden() {
    let v = streamed_chat(
        responses::request_to_chat(&fixture("responses/request.json")),
        "gpt-4.1",
    );
    assert_eq!(
        v,
        json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image, and what's the weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/boardwalk.jpg", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_12345xyz", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_12345xyz", "content": "{\"temperature\": 18}"},
                {"role": "assistant", "content": "It is 18C."},
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Thanks!"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get current temperature for a given location.", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"], "additionalProperties": false}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "max_tokens": 300,
            "temperature": 0.7,
            "top_p": 1,
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": true}},
            "reasoning_effort": "low",
            "user": "u-9",
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[test]
fn request_string_input_and_rejections() {
    let (body, stream, _) = responses::request_to_chat(
        br#"{"model":"m","input":"Tell me a joke","text":{"format":{"type":"json_object"}}}"#,
    )
    .unwrap();
    assert!(!stream);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "user", "content": "Tell me a joke"}], "response_format": {"type": "json_object"}})
    );
    for bad in [
        &br#"{"input":"x"}"#[..],
        br#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
        br#"{"model":"m","input":"x","tools":[{"type":"web_search_preview"}]}"#,
        br#"{"model":"m","input":[{"type":"item_reference","id":"x"}]}"#,
        br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}"#,
        br#"{"model":"m","input":7}"#,
        b"[]",
    ] {
        assert!(matches!(responses::request_to_chat(bad), Err(TranslateError::InvalidRequest(_))), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn response_golden() {
    let out =
        responses::response_from_chat(&fixture("openai/response_tool.json"), "gpt-4.1").unwrap();
    dump("responses_object.json", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["id"], "resp_B9MBs8CjcvOU2jLn4n570S5qMJKcT");
    assert_eq!(v["object"], "response");
    assert_eq!(v["created_at"], 1741569952);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-4.1");
    assert_eq!(
        v["output"],
        json!([
            {"id": "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT", "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
            {"id": "fc_call_abc123", "type": "function_call", "status": "completed", "call_id": "call_abc123", "name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}
        ])
    );
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 82, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 17, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 99})
    );

    let len = br#"{"id":"chatcmpl-1","created":5,"choices":[{"message":{"role":"assistant","content":"abc"},"finish_reason":"length"}]}"#;
    let v: Value =
        serde_json::from_slice(&responses::response_from_chat(len, "m").unwrap()).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_upstream_payload(responses::response_from_chat(b"{}", "m"));
}

fn check_sequence(events: &[(String, Value)]) {
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i as u64);
    }
}

/// How both golden streams open: the response, then a message item and its text part.
const MESSAGE_OPENING: [&str; 4] = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
];

/// [`sse_golden`] of the OpenAI stream fixture `openai/stream_{kind}.sse`, dumped as
/// `responses_{kind}.sse` (the response reports `created`), once every event's `type` and
/// `sequence_number` check out.
fn stream_golden(created: u64, kind: &str) -> Vec<(String, Value)> {
    let ev = sse_golden(
        || StreamFromChat::new("gpt-x".into(), created),
        &format!("openai/stream_{kind}.sse"),
        &format!("responses_{kind}.sse"),
    );
    check_sequence(&ev);
    ev
}

#[test]
fn stream_text_golden() {
    let ev = stream_golden(99, "text");
    assert_eq!(
        event_names(&ev),
        [
            &MESSAGE_OPENING[..],
            &[
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ],
        ]
        .concat()
    );
    assert_eq!(ev[0].1["response"]["id"], "resp_123");
    assert_eq!(ev[0].1["response"]["status"], "in_progress");
    assert_eq!(ev[0].1["response"]["created_at"], 99);
    assert_eq!(
        ev[2].1,
        json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": {"id": "msg_123", "type": "message", "status": "in_progress", "role": "assistant", "content": []}})
    );
    assert_eq!(
        ev[4].1,
        json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_123", "output_index": 0, "content_index": 0, "delta": "Hello", "logprobs": []})
    );
    assert_eq!(ev[6].1["text"], "Hello wörld\n");
    let done = &ev[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello wörld\n");
    assert_eq!(
        done["usage"],
        json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 21})
    );
}

#[test]
fn stream_tool_golden() {
    let ev = stream_golden(1, "tool");
    assert_eq!(
        event_names(&ev),
        [
            &MESSAGE_OPENING[..],
            &[
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ],
        ]
        .concat()
    );
    assert_eq!(
        ev[8].1,
        json!({"type": "response.output_item.added", "sequence_number": 8, "output_index": 1, "item": {"id": "fc_call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function_call", "status": "in_progress", "call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "arguments": ""}})
    );
    assert_eq!(
        ev[9].1,
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 9, "item_id": "fc_call_DdmO9pD3xa9XTPNJ32zg2hcA", "output_index": 1, "delta": "{\""})
    );
    assert_eq!(ev[11].1["arguments"], "{\"location\":\"Paris\"}");
    let output = &ev[17].1["response"]["output"];
    assert_eq!(output.as_array().unwrap().len(), 3);
    assert_eq!(output[2]["name"], "get_time");
    assert_eq!(ev[17].1["response"]["usage"]["total_tokens"], 100);
}

#[test]
fn stream_incomplete_truncated_malformed() {
    let text = String::from_utf8(fixture("openai/stream_text.sse"))
        .unwrap()
        .replace("\"finish_reason\":\"stop\"", "\"finish_reason\":\"length\"");
    let out = run_all(|| StreamFromChat::new("m".into(), 1), text.as_bytes());
    let ev = parse_sse(&out);
    assert_eq!(ev.last().unwrap().0, "response.incomplete");
    assert_eq!(
        ev.last().unwrap().1["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );

    let first_three: String = text.split_inclusive("\n\n").take(3).collect();
    let mut s = StreamFromChat::new("m".into(), 1);
    let mut out = Vec::new();
    s.feed(first_three.as_bytes(), &mut out).unwrap();
    assert_eq!(
        s.finish(&mut out),
        Err(TranslateError::UpstreamPayload("stream ended early".into()))
    );

    let mut s = StreamFromChat::new("m".into(), 1);
    assert_upstream_payload(s.feed(b"data: nope\n\n", &mut out));

    let mut s = StreamFromChat::new("m".into(), 1);
    let mut out = Vec::new();
    s.feed(
        b"data: {\"error\":{\"message\":\"boom\",\"code\":\"server_error\"}}\n\n",
        &mut out,
    )
    .unwrap();
    let ev = parse_sse(&out);
    check_sequence(&ev);
    assert_eq!(ev[2].1["message"], "boom");
    assert_eq!(ev[3].0, "response.failed");
    assert!(s.finish(&mut out).is_err());

    for cut in 0..text.len() {
        let mut s = StreamFromChat::new("m".into(), 1);
        let mut out = Vec::new();
        if s.feed(&text.as_bytes()[..cut], &mut out).is_ok() {
            let _ = s.finish(&mut out);
        }
    }
}
