//! Anthropic Messages API dialect (`POST /v1/messages`, `/v1/messages/count_tokens`):
//! request parsing, the message body, the named-event SSE stream, the token count and
//! Anthropic's error shape.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::reply::{
    next_id, split_text, to_bytes, value_text, Output, Reply, StreamOutput, Tools, Transcript,
    TOOL_INPUT,
};
use crate::wire::sse_named;

/// Pieces the tool input JSON is streamed in (`input_json_delta`).
const TOOL_JSON_PIECES: usize = 3;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<u64>,
    /// A string or a list of text blocks.
    #[serde(default)]
    system: Value,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    /// A string or a list of blocks (text, image, tool_use, tool_result, ...).
    content: Value,
}

#[derive(Deserialize)]
struct Tool {
    #[serde(default)]
    name: Option<String>,
}

/// Text of a message's content and whether it returns tool results.
fn content_text(content: &Value) -> (String, bool) {
    let Value::Array(blocks) = content else {
        return (value_text(content), false);
    };
    let mut text = String::new();
    let mut tool_result = false;
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_result") => {
                tool_result = true;
                text.push_str(&value_text(&block["content"]));
            }
            _ => {}
        }
    }
    (text, tool_result)
}

/// A checked request, its model, and its transcript; `max_tokens` is required of a message
/// to generate but not of one to count.
fn parse(body: &[u8], needs_max_tokens: bool) -> Result<(Request, String, Transcript), String> {
    let req: Request =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let model = req.model.clone().ok_or("model: Field required")?;
    if needs_max_tokens && req.max_tokens.is_none() {
        return Err("max_tokens: Field required".to_owned());
    }
    if req.messages.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    let mut transcript = Transcript::default();
    transcript.system(&value_text(&req.system));
    for msg in &req.messages {
        let (text, tool_result) = content_text(&msg.content);
        transcript.message(msg.role == "user", text, tool_result);
    }
    Ok((req, model, transcript))
}

/// `POST /v1/messages/count_tokens`: the `input_tokens` that `/v1/messages` would report
/// for the same request.
pub fn count_tokens(body: &[u8]) -> Result<Output, String> {
    let (_, _, transcript) = parse(body, false)?;
    Ok(Output::Json(to_bytes(
        &json!({"input_tokens": transcript.input_tokens()}),
    )))
}

/// `POST /v1/messages`.
pub fn messages(
    body: &[u8],
    stream_chunks: usize,
    forced_tool: Option<&str>,
) -> Result<Output, String> {
    let (req, model, transcript) = parse(body, true)?;
    let tools = Tools {
        offered: req.tools.as_ref().is_some_and(|t| !t.is_empty()),
        first_name: req.tools.iter().flatten().find_map(|t| t.name.as_deref()),
    };
    let reply = Reply::new(&transcript, tools, forced_tool);
    let id = format!("msg_mock_{}", next_id());
    let tool_id = format!("toolu_mock_{}", next_id());
    let stop_reason = if reply.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let tool_block = |input: Value| json!({"type": "tool_use", "id": tool_id, "name": reply.tool, "input": input});

    if !req.stream {
        let mut content = vec![json!({"type": "text", "text": reply.text})];
        if reply.tool.is_some() {
            content.push(tool_block(tool_input()));
        }
        return Ok(Output::Json(to_bytes(&json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": usage(reply.input_tokens, reply.output_tokens()),
        }))));
    }

    let mut events = vec![
        sse_named(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage(reply.input_tokens, 1),
            }}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        sse_named("ping", &json!({"type": "ping"})),
    ];
    let content_start = events.len();
    for piece in split_text(&reply.text, stream_chunks) {
        events.push(block_delta(0, json!({"type": "text_delta", "text": piece})));
    }
    let mut content_end = events.len();
    events.push(block_stop(0));
    if reply.tool.is_some() {
        events.push(block_start(1, tool_block(json!({}))));
        for piece in split_text(TOOL_INPUT, TOOL_JSON_PIECES) {
            events.push(block_delta(
                1,
                json!({"type": "input_json_delta", "partial_json": piece}),
            ));
        }
        content_end = events.len();
        events.push(block_stop(1));
    }
    events.push(sse_named(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": reply.output_tokens()},
        }),
    ));
    events.push(sse_named("message_stop", &json!({"type": "message_stop"})));
    Ok(Output::Stream(StreamOutput {
        events,
        content: content_start..content_end,
        content_type: "text/event-stream; charset=utf-8",
        bad_event: Bytes::from_static(b"event: content_block_delta\ndata: {not json\n\n"),
        crc_framed: false,
    }))
}

fn tool_input() -> Value {
    serde_json::from_str(TOOL_INPUT).unwrap_or(Value::Null)
}

fn usage(input_tokens: usize, output_tokens: usize) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

fn block_start(index: usize, block: Value) -> Bytes {
    sse_named(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn block_delta(index: usize, delta: Value) -> Bytes {
    sse_named(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

fn block_stop(index: usize) -> Bytes {
    sse_named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

/// Anthropic `error.type` for a status code.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `{"type":"error","error":{"type":..,"message":..}}` (the request id is
/// in the `request-id` header only).
pub fn error_body(status: u16, message: &str) -> Bytes {
    to_bytes(&json!({
        "type": "error",
        "error": {"type": error_type(status), "message": message},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::json;

    /// (event name, data) of every SSE event.
    fn parse_events(events: &[Bytes]) -> Vec<(String, Value)> {
        events
            .iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                let s = s.strip_suffix("\n\n").unwrap();
                let (event, data) = s.split_once('\n').unwrap();
                let name = event.strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name);
                (name.to_owned(), data)
            })
            .collect()
    }

    const BODY: &[u8] = br#"{"model":"claude-x","max_tokens":64,
        "system":[{"type":"text","text":"be brief"}],
        "messages":[{"role":"user","content":"first"},
                    {"role":"assistant","content":[{"type":"text","text":"ok"}]},
                    {"role":"user","content":[{"type":"image","source":{}},{"type":"text","text":"hello world"}]}]}"#;

    #[test]
    fn plain_message() {
        let out = messages(BODY, 8, None).unwrap().into_json();
        let v = json(&out);
        assert!(v["id"].as_str().unwrap().starts_with("msg_mock_"));
        assert_eq!(v["type"], "message");
        assert_eq!(v["model"], "claude-x");
        assert_eq!(
            v["content"],
            serde_json::json!([{"type":"text","text":"echo: hello world"}])
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["stop_sequence"].is_null());
        // 8 + 5 + 2 + 11 chars.
        assert_eq!(v["usage"]["input_tokens"], 7);
        assert_eq!(v["usage"]["output_tokens"], 3);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
    }

    #[test]
    fn tool_use_message() {
        let body =
            br#"{"model":"m","max_tokens":5,"tools":[{"name":"get_weather","input_schema":{}}],
            "messages":[{"role":"user","content":"weather in Paris?"}]}"#;
        let out = messages(body, 8, None).unwrap().into_json();
        let v = json(&out);
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(
            v["content"][0],
            serde_json::json!({"type":"text","text":"Let me check."})
        );
        let tool = &v["content"][1];
        assert_eq!(tool["type"], "tool_use");
        assert_eq!(tool["name"], "get_weather");
        assert!(tool["id"].as_str().unwrap().starts_with("toolu_mock_"));
        assert_eq!(tool["input"], serde_json::json!({"location":"Paris"}));

        // A tool result answers the call: back to an echo.
        let body = br#"{"model":"m","max_tokens":5,"tools":[{"name":"get_weather"}],
            "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"weather: sunny"}]}]}"#;
        let out = messages(body, 8, None).unwrap().into_json();
        let v = json(&out);
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["content"][0]["text"], "echo: weather: sunny");
    }

    #[test]
    fn stream_events() {
        let body = br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi there"}]}"#;
        let out = messages(body, 4, None).unwrap().into_stream();
        let events = parse_events(&out.events);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(out.content, 3..7);
        let text: String = events[3..7]
            .iter()
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "echo: hi there");
        assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 2);
        assert_eq!(events[8].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(events[8].1["usage"]["output_tokens"], 3);
    }

    #[test]
    fn stream_tool_use_forced_by_header() {
        let body = br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let out = messages(body, 2, Some("calc")).unwrap().into_stream();
        let events = parse_events(&out.events);
        let start = events
            .iter()
            .position(|(n, d)| n == "content_block_start" && d["index"] == 1)
            .unwrap();
        assert_eq!(events[start].1["content_block"]["type"], "tool_use");
        assert_eq!(events[start].1["content_block"]["name"], "calc");
        assert_eq!(
            events[start].1["content_block"]["input"],
            serde_json::json!({})
        );
        let partial: Vec<&str> = events[start + 1..start + 4]
            .iter()
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "input_json_delta");
                d["delta"]["partial_json"].as_str().unwrap()
            })
            .collect();
        assert_eq!(partial.concat(), TOOL_INPUT);
        assert_eq!(events[start + 4].0, "content_block_stop");
        assert_eq!(out.content.end, start + 4);
        let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn count_tokens_matches_messages() {
        let counted = json(&count_tokens(BODY).unwrap().into_json());
        let sent = json(&messages(BODY, 8, None).unwrap().into_json());
        assert_eq!(counted, serde_json::json!({"input_tokens": 7}));
        assert_eq!(counted["input_tokens"], sent["usage"]["input_tokens"]);
        // No max_tokens needed; tools are accepted.
        let body = br#"{"model":"m","tools":[{"name":"t","input_schema":{}}],
            "messages":[{"role":"user","content":"12345678"}]}"#;
        assert_eq!(
            json(&count_tokens(body).unwrap().into_json())["input_tokens"],
            2
        );
        for bad in [
            &br#"{"messages":[{"role":"user","content":"x"}]}"#[..],
            br#"{"model":"m","messages":[]}"#,
            br#"{"model":"m"}"#,
            b"{",
        ] {
            assert!(count_tokens(bad).is_err());
        }
    }

    #[test]
    fn invalid_requests() {
        assert!(messages(b"{", 8, None).is_err());
        let no_max = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(
            messages(no_max, 8, None).unwrap_err(),
            "max_tokens: Field required"
        );
        assert!(messages(
            br#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            8,
            None
        )
        .is_err());
        assert!(messages(br#"{"model":"m","max_tokens":1,"messages":[]}"#, 8, None).is_err());
    }

    #[test]
    fn error_shape() {
        let v = json(&error_body(529, "Overloaded"));
        assert_eq!(v["type"], "error");
        assert_eq!(
            v["error"],
            serde_json::json!({"type":"overloaded_error","message":"Overloaded"})
        );
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(500), "api_error");
        assert_eq!(error_type(400), "invalid_request_error");
    }
}
