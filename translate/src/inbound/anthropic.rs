//! Inbound Anthropic Messages API: Anthropic `/v1/messages` requests to the canonical OpenAI
//! chat form, OpenAI chat completions and chunk streams back to Anthropic messages and
//! Anthropic SSE, and OpenAI error bodies to Anthropic ones.
//!
//! Not carried over: `top_k`, `thinking`, server tools (`web_search_*`, `bash_*`, ...),
//! `document` blocks, `cache_control`, images inside `tool_result` (their text is kept),
//! `tool_result.is_error`. `max_tokens` becomes OpenAI `max_tokens`.

use super::{
    chat_body, content_text, finished_chat, first_choice, insert_tools, nested_str, required_model,
    ChatStreamState, FromChatStream,
};
use crate::error::{Result, TranslateError};
use crate::openai::{self, ToolCallIn, Usage};
use crate::sse;
use serde::Serialize;
use serde_json::{json, Map, Value};

// ---- request ------------------------------------------------------------------------------

/// Anthropic Messages request → (OpenAI chat body, `stream`, `model`). When streaming, the
/// chat body asks for `stream_options.include_usage` so usage can be reported.
pub fn request_to_chat(body: &[u8]) -> Result<(Vec<u8>, bool, String)> {
    let req = openai::parse_request(body)?;
    let model = required_model(&req)?;
    let max_tokens = req
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| TranslateError::invalid("max_tokens is required"))?;
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);

    let mut messages = Vec::new();
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                messages.push(json!({"role": "system", "content": s}));
            }
        }
        Some(Value::Array(blocks)) => {
            let text = blocks_text(blocks)?;
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "system must be a string or an array",
            ))
        }
    }
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages must be an array"))?;
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "user" => user_message(content, &mut messages)?,
            "assistant" => messages.push(assistant_message(content)?),
            _ => {
                return Err(TranslateError::invalid(format!(
                    "messages[{i}].role must be user or assistant"
                )))
            }
        }
    }

    let mut chat = chat_body(&model, messages, &req);
    chat.insert("max_tokens".into(), max_tokens.into());
    if let Some(s) = req.get("stop_sequences").and_then(Value::as_array) {
        if !s.is_empty() {
            chat.insert("stop".into(), Value::Array(s.clone()));
        }
    }
    if let Some(u) = nested_str(&req, "metadata", "user_id") {
        chat.insert("user".into(), u.into());
    }
    insert_tools(&mut chat, &req, |t| {
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(TranslateError::invalid(format!(
                    "tool type {other:?} is not supported through this gateway"
                )))
            }
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid("tools[].name missing"))?;
        let mut f = Map::new();
        f.insert("name".into(), name.into());
        if let Some(d) = t.get("description").and_then(Value::as_str) {
            f.insert("description".into(), d.into());
        }
        f.insert(
            "parameters".into(),
            t.get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        );
        Ok(f)
    })?;
    if let Some(tc) = req.get("tool_choice").filter(|v| v.is_object()) {
        let choice = match tc.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name = tc
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TranslateError::invalid("tool_choice.name missing"))?;
                json!({"type": "function", "function": {"name": name}})
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "tool_choice type {other:?} is not supported"
                )))
            }
        };
        chat.insert("tool_choice".into(), choice);
        if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true)
            && chat.contains_key("tools")
        {
            chat.insert("parallel_tool_calls".into(), false.into());
        }
    }
    finished_chat(chat, stream, model)
}

fn blocks_text(blocks: &[Value]) -> Result<String> {
    let mut s = String::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                if !s.is_empty() {
                    s.push('\n');
                }
                s.push_str(b.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "block type {other:?} is not supported here"
                )))
            }
        }
    }
    Ok(s)
}

fn image_part(b: &Value) -> Result<Value> {
    let src = b
        .get("source")
        .ok_or_else(|| TranslateError::invalid("image.source missing"))?;
    let url = match src.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = src.get("media_type").and_then(Value::as_str).unwrap_or("");
            let data = src.get("data").and_then(Value::as_str).unwrap_or("");
            format!("data:{media};base64,{data}")
        }
        Some("url") => src
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        other => {
            return Err(TranslateError::invalid(format!(
                "image source type {other:?} is not supported"
            )))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn user_message(content: &Value, out: &mut Vec<Value>) -> Result<()> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(TranslateError::invalid(
                "message content must be a string or an array",
            ))
        }
    };
    let mut parts = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": b.get("text").and_then(Value::as_str).unwrap_or("")})),
            Some("image") => parts.push(image_part(b)?),
            Some("tool_result") => {
                let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                let text = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => {
                        let texts: Vec<Value> = items
                            .iter()
                            .filter(|x| x.get("type").and_then(Value::as_str) == Some("text"))
                            .cloned()
                            .collect();
                        blocks_text(&texts)?
                    }
                    Some(_) => return Err(TranslateError::invalid("tool_result.content must be a string or an array")),
                };
                // Tool messages must directly follow the assistant's tool calls.
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "content block type {other:?} is not supported through this gateway"
                )))
            }
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    if parts.len() == 1 && parts[0]["type"] == "text" {
        let text = parts[0]["text"].clone();
        out.push(json!({"role": "user", "content": text}));
    } else {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn assistant_message(content: &Value) -> Result<Value> {
    let blocks = match content {
        Value::String(s) => return Ok(json!({"role": "assistant", "content": s})),
        Value::Array(b) => b,
        _ => {
            return Err(TranslateError::invalid(
                "message content must be a string or an array",
            ))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(crate::anthropic::tool_use_to_call(b)),
            Some("thinking") | Some("redacted_thinking") => {}
            other => {
                return Err(TranslateError::invalid(format!(
                    "assistant block type {other:?} is not supported through this gateway"
                )))
            }
        }
    }
    let mut m = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            m["content"] = Value::Null;
        }
        m["tool_calls"] = Value::Array(calls);
    }
    Ok(m)
}

// ---- response -----------------------------------------------------------------------------

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn message_id(chat_id: &str) -> String {
    let core = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    if core.starts_with("msg_") {
        core.to_owned()
    } else {
        format!("msg_{core}")
    }
}

fn anthropic_usage(u: &Usage) -> Value {
    let cached = u.cached();
    let mut v = json!({
        "input_tokens": u.prompt_tokens.saturating_sub(cached),
        "output_tokens": u.completion_tokens,
    });
    if u.prompt_tokens_details.is_some() {
        v["cache_read_input_tokens"] = cached.into();
    }
    v
}

/// OpenAI `chat.completion` → Anthropic message. `model` is the name the client asked for.
/// Tool-call arguments that aren't a JSON object make it fail with `UpstreamPayload`.
pub fn response_from_chat(openai_body: &[u8], model: &str) -> Result<Vec<u8>> {
    let chat = openai::parse_upstream(openai_body)?;
    let (choice, msg) = first_choice(&chat)?;
    let mut content = Vec::new();
    let text = content_text(msg)?.unwrap_or_default();
    let refusal = msg.get("refusal").and_then(Value::as_str).unwrap_or("");
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    } else if !refusal.is_empty() {
        content.push(json!({"type": "text", "text": refusal}));
    }
    if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            let args = c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
            let input = openai::parse_arguments(args).map_err(TranslateError::upstream)?;
            content.push(json!({
                "type": "tool_use",
                "id": c.get("id").and_then(Value::as_str).unwrap_or(""),
                "name": c.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
                "input": input,
            }));
        }
    }
    let reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(stop_reason);
    let usage = openai::field::<Usage>(&chat, "usage").unwrap_or_default();
    let v = json!({
        "id": message_id(chat.get("id").and_then(Value::as_str).unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": null,
        "usage": anthropic_usage(&usage),
    });
    Ok(openai::to_body(&v))
}

// ---- errors -------------------------------------------------------------------------------

/// OpenAI error body → Anthropic `{"type":"error","error":{"type","message"}}`; the status is
/// unchanged.
pub fn error_from_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let (message, kind, _code) = openai::read_error(body);
    let t = anthropic_error_type(status, kind.as_deref());
    openai::to_body(&json!({"type": "error", "error": {"type": t, "message": message}}))
}

fn anthropic_error_type(status: u16, kind: Option<&str>) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ if status >= 500 => "api_error",
        _ => match kind {
            Some("rate_limit_error") => "rate_limit_error",
            Some("authentication_error") => "authentication_error",
            Some("permission_error") => "permission_error",
            Some("not_found_error") => "not_found_error",
            Some("server_error") => "api_error",
            _ => "invalid_request_error",
        },
    }
}

// ---- stream -------------------------------------------------------------------------------

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaOut<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum DeltaOut<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    Json { partial_json: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Tool(u32),
}

#[derive(Debug)]
struct InState {
    model: String,
    open: Open,
    next_block: u32,
}

/// OpenAI chat chunk SSE → Anthropic Messages SSE (`event:` + `data:` frames), in the order
/// the Anthropic SDKs expect: `message_start`, per block `content_block_start` /
/// `content_block_delta`* / `content_block_stop`, `message_delta` (stop_reason, usage),
/// `message_stop`.
///
/// `message_start` carries `usage.input_tokens: 0` (OpenAI reports usage last); the real
/// input and output counts are in `message_delta.usage`. `finish` succeeds when `[DONE]` or at
/// least a `finish_reason` was seen, else it returns `Err(UpstreamPayload("stream ended
/// early"))`. An OpenAI `{"error":...}` event becomes an Anthropic `error` event, `feed`
/// returns `Ok`, and `finish` then returns `Err`.
#[derive(Debug)]
pub struct StreamFromChat(FromChatStream<InState>);

impl StreamFromChat {
    /// `model`: the name to report in `message_start`.
    pub fn new(model: String) -> Self {
        StreamFromChat(FromChatStream::new(InState {
            model,
            open: Open::None,
            next_block: 0,
        }))
    }
}

driver_feed_finish!(StreamFromChat);

impl ChatStreamState for InState {
    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        let msg = json!({
            "type": "message_start",
            "message": {
                "id": message_id(id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
        });
        sse::write_event(out, "message_start", &msg);
    }

    fn error(&mut self, err: &Value, message: &str, _started: bool, out: &mut Vec<u8>) {
        let t = match err.get("type").and_then(Value::as_str) {
            Some("rate_limit_error") => "rate_limit_error",
            Some("invalid_request_error") => "invalid_request_error",
            _ => "api_error",
        };
        sse::write_event(
            out,
            "error",
            &json!({"type": "error", "error": {"type": t, "message": message}}),
        );
    }

    fn text(&mut self, t: &str, out: &mut Vec<u8>) {
        if t.is_empty() {
            return;
        }
        if self.open != Open::Text {
            self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
        }
        self.delta(out, DeltaOut::Text { text: t });
    }

    fn tool_call(&mut self, tc: &ToolCallIn<'_>, is_new: bool, out: &mut Vec<u8>) -> Result<()> {
        let f = tc.function.as_ref();
        if is_new {
            let name = f.and_then(|f| f.name.as_deref()).unwrap_or("");
            let id = tc.id.as_deref().unwrap_or("");
            self.open_block(
                Open::Tool(tc.index),
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                out,
            );
        } else if self.open != Open::Tool(tc.index) {
            return Err(TranslateError::upstream(
                "interleaved tool call deltas can't be expressed as Anthropic blocks",
            ));
        }
        if let Some(a) = f.and_then(|f| f.arguments.as_deref()) {
            if !a.is_empty() {
                self.delta(out, DeltaOut::Json { partial_json: a });
            }
        }
        Ok(())
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open != Open::None {
            let idx = self.next_block - 1;
            sse::write_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": idx}),
            );
            self.open = Open::None;
        }
    }

    fn end(&mut self, usage: Option<Usage>, finish_reason: Option<&str>, out: &mut Vec<u8>) {
        let usage = match usage {
            Some(u) => anthropic_usage(&u),
            None => json!({"output_tokens": 0}),
        };
        let reason = finish_reason.map_or("end_turn", stop_reason);
        sse::write_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": usage,
            }),
        );
        sse::write_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

impl InState {
    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<u8>) -> u32 {
        self.close(out);
        let idx = self.next_block;
        self.next_block += 1;
        self.open = kind;
        sse::write_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": idx, "content_block": block}),
        );
        idx
    }

    fn delta(&self, out: &mut Vec<u8>, delta: DeltaOut<'_>) {
        sse::write_event(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index: self.next_block - 1,
                delta,
            },
        );
    }
}
