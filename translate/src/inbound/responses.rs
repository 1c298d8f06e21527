//! Inbound OpenAI Responses API: `/v1/responses` requests to the canonical chat form, chat
//! completions back to `response` objects, and chat chunk streams to the Responses API's typed
//! stream events (`event: TYPE` + `data: {"type": TYPE, "sequence_number": n, ...}`).
//!
//! Stateless: `previous_response_id`, `conversation`, `item_reference` items and stored
//! prompts are rejected; built-in tools (web/file search, computer use, code interpreter, MCP,
//! image generation) are rejected; `input_file` parts are rejected; `reasoning` input items are
//! dropped; `store`, `metadata`, `truncation`, `include`, `background` are ignored.
//! `max_output_tokens` becomes chat `max_tokens`; `reasoning.effort` becomes
//! `reasoning_effort`.

use super::{
    chat_body, content_text, finished_chat, first_choice, insert_tools, nested_str, required_model,
    ChatStreamState, FromChatStream,
};
use crate::error::{Result, TranslateError};
use crate::openai::{self, ToolCallIn, Usage};
use serde::Serialize;
use serde_json::{json, Map, Value};

// ---- request ------------------------------------------------------------------------------

/// Responses API request → (OpenAI chat body, `stream`, `model`).
pub fn request_to_chat(body: &[u8]) -> Result<(Vec<u8>, bool, String)> {
    let req = openai::parse_request(body)?;
    let model = required_model(&req)?;
    for k in ["previous_response_id", "conversation", "prompt"] {
        if req.get(k).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::invalid(format!(
                "{k} is not supported: this gateway's Responses API is stateless"
            )));
        }
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut messages: Vec<Value> = Vec::new();
    if let Some(i) = req.get("instructions").and_then(Value::as_str) {
        if !i.is_empty() {
            messages.push(json!({"role": "system", "content": i}));
        }
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(i, item, &mut messages)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(TranslateError::invalid(
                "input must be a string or an array",
            ))
        }
    }

    let mut chat = chat_body(&model, messages, &req);
    if let Some(m) = req.get("max_output_tokens").and_then(Value::as_u64) {
        chat.insert("max_tokens".into(), m.into());
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        chat.insert("user".into(), u.into());
    }
    if let Some(p) = req.get("parallel_tool_calls").and_then(Value::as_bool) {
        chat.insert("parallel_tool_calls".into(), p.into());
    }
    if let Some(e) = nested_str(&req, "reasoning", "effort") {
        chat.insert("reasoning_effort".into(), e.into());
    }
    insert_tools(&mut chat, &req, |t| {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(TranslateError::invalid(format!(
                "tool type {} is not supported through this gateway",
                t.get("type").unwrap_or(&Value::Null)
            )));
        }
        let mut f = Map::new();
        for k in ["name", "description", "parameters", "strict"] {
            if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                f.insert(k.into(), v.clone());
            }
        }
        if !f.contains_key("name") {
            return Err(TranslateError::invalid("tools[].name missing"));
        }
        Ok(f)
    })?;
    match req.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => {
            chat.insert("tool_choice".into(), s.clone().into());
        }
        Some(v) if v.get("type").and_then(Value::as_str) == Some("function") => {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tool_choice.name missing"))?;
            chat.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": name}}),
            );
        }
        Some(v) => {
            return Err(TranslateError::invalid(format!(
                "tool_choice {v} is not supported"
            )))
        }
    }
    if let Some(f) = req.get("text").and_then(|t| t.get("format")) {
        match f.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut js = Map::new();
                for k in ["name", "schema", "strict", "description"] {
                    if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                        js.insert(k.into(), v.clone());
                    }
                }
                chat.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": js}),
                );
            }
            Some("json_object") => {
                chat.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    finished_chat(chat, stream, model)
}

fn input_item(i: usize, item: &Value, messages: &mut Vec<Value>) -> Result<()> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("");
            let role = match role {
                "user" | "assistant" | "system" | "developer" => role,
                _ => {
                    return Err(TranslateError::invalid(format!(
                        "input[{i}].role {role:?} is not supported"
                    )))
                }
            };
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => message_parts(role, parts)?,
                _ => {
                    return Err(TranslateError::invalid(format!(
                        "input[{i}].content must be a string or an array"
                    )))
                }
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                "type": "function",
                "function": {
                    "name": item.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or(""),
                }
            });
            // Consecutive calls (and a preceding assistant text) form one assistant message.
            match messages.last_mut() {
                Some(m) if m["role"] == "assistant" => {
                    if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        calls.push(call);
                    } else {
                        m["tool_calls"] = json!([call]);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let out = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(_)) => openai::content_text(v)?,
                _ => String::new(),
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                "content": out,
            }));
        }
        "reasoning" => {}
        other => {
            return Err(TranslateError::invalid(format!(
                "input item type {other:?} is not supported through this gateway"
            )))
        }
    }
    Ok(())
}

fn message_parts(role: &str, parts: &[Value]) -> Result<Value> {
    let mut out = Vec::with_capacity(parts.len());
    let mut text_only = true;
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text") | Some("output_text") | Some("text") => {
                out.push(json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or("")}));
            }
            Some("refusal") => {
                out.push(json!({"type": "text", "text": p.get("refusal").and_then(Value::as_str).unwrap_or("")}));
            }
            Some("input_image") => {
                let url = p.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid(
                        "input_image.image_url missing (file_id is not supported)",
                    )
                })?;
                let mut iu = json!({"url": url});
                if let Some(d) = p.get("detail").and_then(Value::as_str) {
                    iu["detail"] = d.into();
                }
                out.push(json!({"type": "image_url", "image_url": iu}));
                text_only = false;
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "content part type {other:?} is not supported through this gateway"
                )))
            }
        }
    }
    if text_only && (role != "user" || out.len() == 1) {
        let text: String = out
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("");
        return Ok(Value::String(text));
    }
    Ok(Value::Array(out))
}

// ---- response -----------------------------------------------------------------------------

fn core_id(chat_id: &str) -> &str {
    chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id)
}

fn usage_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached()},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// (status, incomplete_details) for an OpenAI `finish_reason`.
fn status_for(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn response_object(
    id: &str,
    created: u64,
    model: &str,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage.map(usage_value),
        "metadata": {},
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn call_item(call_id: &str, name: &str, args: &str, status: &str) -> Value {
    json!({"id": format!("fc_{call_id}"), "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": args})
}

/// OpenAI `chat.completion` → Responses API `response` object (`created_at` is the
/// completion's `created`). `finish_reason: length` gives `status: incomplete`.
pub fn response_from_chat(openai_body: &[u8], model: &str) -> Result<Vec<u8>> {
    let chat = openai::parse_upstream(openai_body)?;
    let id = chat.get("id").and_then(Value::as_str).unwrap_or("");
    let created = chat.get("created").and_then(Value::as_u64).unwrap_or(0);
    let (choice, msg) = first_choice(&chat)?;
    let mut output = Vec::new();
    let text = match content_text(msg)? {
        Some(text) => text,
        None => msg
            .get("refusal")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    };
    if !text.is_empty() {
        output.push(message_item(
            &format!("msg_{}", core_id(id)),
            &text,
            "completed",
        ));
    }
    if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            output.push(call_item(
                c.get("id").and_then(Value::as_str).unwrap_or(""),
                c.pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                c.pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                "completed",
            ));
        }
    }
    let (status, incomplete) = status_for(choice.get("finish_reason").and_then(Value::as_str));
    let usage = openai::field::<Usage>(&chat, "usage");
    let v = response_object(
        &format!("resp_{}", core_id(id)),
        created,
        model,
        status,
        incomplete,
        output,
        usage.as_ref(),
    );
    Ok(openai::to_body(&v))
}

// ---- stream -------------------------------------------------------------------------------

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct ArgsDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: u32,
    delta: &'a str,
}

#[derive(Debug)]
enum Item {
    None,
    Message {
        id: String,
        text: String,
    },
    Call {
        chat_index: u32,
        call_id: String,
        name: String,
        args: String,
    },
}

#[derive(Debug)]
struct RState {
    model: String,
    created: u64,
    id: String,
    seq: u64,
    open: Item,
    output_index: u32,
    done_items: Vec<Value>,
}

/// OpenAI chat chunk SSE → Responses API stream events, as the official `openai` SDK's
/// `responses.create(stream=True)` / `responses.stream()` parse them: `response.created`,
/// `response.in_progress`, per output item `response.output_item.added`, for messages
/// `response.content_part.added` / `response.output_text.delta`* / `response.output_text.done`
/// / `response.content_part.done`, for function calls
/// `response.function_call_arguments.delta`* / `response.function_call_arguments.done`, then
/// `response.output_item.done`; last `response.completed` (or `response.incomplete` when the
/// finish reason was `length` / `content_filter`).
///
/// `finish` succeeds once `[DONE]` or a finish reason was seen; an upstream `{"error":...}`
/// chunk becomes an `error` event followed by `response.failed`, and `finish` then errs.
#[derive(Debug)]
pub struct StreamFromChat(FromChatStream<RState>);

impl StreamFromChat {
    /// `model`: the name to report; `created`: `created_at` of the response.
    pub fn new(model: String, created: u64) -> Self {
        StreamFromChat(FromChatStream::new(RState {
            model,
            created,
            id: String::new(),
            seq: 0,
            open: Item::None,
            output_index: 0,
            done_items: Vec::new(),
        }))
    }
}

driver_feed_finish!(StreamFromChat);

impl ChatStreamState for RState {
    fn start(&mut self, chat_id: &str, out: &mut Vec<u8>) {
        self.id = format!("resp_{}", core_id(chat_id));
        for kind in ["response.created", "response.in_progress"] {
            self.lifecycle(out, kind, "in_progress", Value::Null, Vec::new(), None);
        }
    }

    fn error(&mut self, err: &Value, message: &str, started: bool, out: &mut Vec<u8>) {
        let code = err.get("code").cloned().unwrap_or(Value::Null);
        if !started {
            self.start("", out);
        }
        self.emit(
            out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let mut r = response_object(
            &self.id,
            self.created,
            &self.model,
            "failed",
            Value::Null,
            Vec::new(),
            None,
        );
        r["error"] = json!({"code": "server_error", "message": message});
        self.emit(out, "response.failed", json!({"response": r}));
    }

    fn text(&mut self, t: &str, out: &mut Vec<u8>) {
        if t.is_empty() {
            return;
        }
        if !matches!(self.open, Item::Message { .. }) {
            self.close(out);
            let id = format!("msg_{}", self.id.trim_start_matches("resp_"));
            let id = if self.output_index > 0 {
                format!("{id}_{}", self.output_index)
            } else {
                id
            };
            let oi = self.output_index;
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": oi, "item": message_item(&id, "", "in_progress")}),
            );
            self.emit(out, "response.content_part.added", json!({"item_id": id, "output_index": oi, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
            self.open = Item::Message {
                id,
                text: String::new(),
            };
        }
        if let Item::Message { id, text } = &mut self.open {
            text.push_str(t);
            crate::sse::write_event(
                out,
                "response.output_text.delta",
                &TextDelta {
                    kind: "response.output_text.delta",
                    sequence_number: self.seq,
                    item_id: id,
                    output_index: self.output_index,
                    content_index: 0,
                    delta: t,
                    logprobs: [],
                },
            );
            self.seq += 1;
        }
    }

    fn tool_call(&mut self, tc: &ToolCallIn<'_>, is_new: bool, out: &mut Vec<u8>) -> Result<()> {
        let f = tc.function.as_ref();
        if is_new {
            self.close(out);
            let call_id = tc.id.as_deref().unwrap_or("").to_owned();
            let name = f.and_then(|f| f.name.as_deref()).unwrap_or("").to_owned();
            let oi = self.output_index;
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": oi, "item": call_item(&call_id, &name, "", "in_progress")}),
            );
            self.open = Item::Call {
                chat_index: tc.index,
                call_id,
                name,
                args: String::new(),
            };
        } else if !matches!(&self.open, Item::Call { chat_index, .. } if *chat_index == tc.index) {
            return Err(TranslateError::upstream(
                "interleaved tool call deltas are not supported",
            ));
        }
        let frag = f.and_then(|f| f.arguments.as_deref()).unwrap_or("");
        if let (false, Item::Call { call_id, args, .. }) = (frag.is_empty(), &mut self.open) {
            args.push_str(frag);
            let item_id = format!("fc_{call_id}");
            crate::sse::write_event(
                out,
                "response.function_call_arguments.delta",
                &ArgsDelta {
                    kind: "response.function_call_arguments.delta",
                    sequence_number: self.seq,
                    item_id: &item_id,
                    output_index: self.output_index,
                    delta: frag,
                },
            );
            self.seq += 1;
        }
        Ok(())
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let oi = self.output_index;
        match std::mem::replace(&mut self.open, Item::None) {
            Item::None => return,
            Item::Message { id, text } => {
                self.emit(out, "response.output_text.done", json!({"item_id": id, "output_index": oi, "content_index": 0, "text": text, "logprobs": []}));
                self.emit(out, "response.content_part.done", json!({"item_id": id, "output_index": oi, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}));
                let item = message_item(&id, &text, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": oi, "item": item}),
                );
                self.done_items.push(item);
            }
            Item::Call {
                call_id,
                name,
                args,
                ..
            } => {
                let item_id = format!("fc_{call_id}");
                self.emit(out, "response.function_call_arguments.done", json!({"item_id": item_id, "output_index": oi, "name": name, "arguments": args}));
                let item = call_item(&call_id, &name, &args, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": oi, "item": item}),
                );
                self.done_items.push(item);
            }
        }
        self.output_index += 1;
    }

    fn end(&mut self, usage: Option<Usage>, finish_reason: Option<&str>, out: &mut Vec<u8>) {
        let (status, incomplete) = status_for(finish_reason);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let items = std::mem::take(&mut self.done_items);
        self.lifecycle(out, kind, status, incomplete, items, usage.as_ref());
    }
}

impl RState {
    /// Writes `event: TYPE\ndata: {..., "type": TYPE, "sequence_number": n}\n\n`.
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut v: Value) {
        v["type"] = kind.into();
        v["sequence_number"] = self.seq.into();
        self.seq += 1;
        crate::sse::write_event(out, kind, &v);
    }

    fn lifecycle(
        &mut self,
        out: &mut Vec<u8>,
        kind: &str,
        status: &str,
        incomplete: Value,
        output: Vec<Value>,
        usage: Option<&Usage>,
    ) {
        let r = response_object(
            &self.id,
            self.created,
            &self.model,
            status,
            incomplete,
            output,
            usage,
        );
        self.emit(out, kind, json!({"response": r}));
    }
}
