//! Outbound Anthropic Messages API: OpenAI chat requests to `/messages`, Anthropic messages
//! and SSE streams back to OpenAI chat completions and chunks, and Anthropic error bodies to
//! OpenAI ones.
//!
//! Request mapping notes: `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`] when the client sent
//! neither `max_completion_tokens` nor `max_tokens` (Anthropic requires it); `temperature` is
//! clamped to Anthropic's 0..=1. `n > 1` is rejected. Ignored (no Anthropic equivalent):
//! `logprobs`, `top_logprobs`, `response_format` (incl. `json_schema`), `presence_penalty`,
//! `frequency_penalty`, `seed`, `logit_bias`, `stream_options`, `service_tier`, `store`,
//! `reasoning_effort`, `modalities`, `prediction`.

use crate::error::{Result, TranslateError};
use crate::openai::{self, content_text, split_data_url, ChunkWriter, ToolChoice, Usage};
use crate::sse::{self, EventHandler, SseParser};
use crate::ProviderRequest;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// `anthropic-version` sent with every request.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the client gave no limit (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

// ---- request ------------------------------------------------------------------------------

/// OpenAI chat request → Anthropic `/messages` request for `upstream_model`.
pub fn chat_request(openai_body: &[u8], upstream_model: &str) -> Result<ProviderRequest> {
    let req = openai::parse_request(openai_body)?;
    openai::reject_several_choices(&req, "Anthropic")?;
    let messages = openai::messages(&req)?;

    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(format!("messages[{i}].role missing")))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = content_text(content)?;
                if !text.is_empty() {
                    system.push(json!({"type": "text", "text": text}));
                }
            }
            "user" => {
                let blocks = user_blocks(content)?;
                push_merged(&mut out, "user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                let text = content_text(content)?;
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for c in openai::tool_calls(m) {
                    blocks.push(tool_use_block(c)?);
                }
                push_merged(&mut out, "assistant", blocks);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(format!("messages[{i}].tool_call_id missing"))
                    })?;
                let text = content_text(content)?;
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": text});
                push_merged(&mut out, "user", vec![block]);
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "message role {other:?} is not supported by the Anthropic provider"
                )))
            }
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    let max = openai::max_tokens(&req).unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), max.into());
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let msgs: Vec<Value> = out
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), Value::Array(msgs));
    if let Some(t) = req.get("temperature").and_then(Value::as_f64) {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.get("top_p").filter(|v| v.is_number()) {
        body.insert("top_p".into(), p.clone());
    }
    if let Some(stop) = openai::stop_sequences(&req) {
        body.insert("stop_sequences".into(), stop);
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        body.insert("stream".into(), true.into());
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let mut ts = Vec::with_capacity(tools.len());
        for t in tools {
            ts.push(tool_def(t)?);
        }
        if !ts.is_empty() {
            body.insert("tools".into(), Value::Array(ts));
        }
    }
    let parallel_off = req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    let mut choice = openai::tool_choice(&req)?.map(|c| match c {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
    });
    if parallel_off && body.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }

    Ok(ProviderRequest {
        path: "/messages".into(),
        headers: vec![
            ("anthropic-version".into(), API_VERSION.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: openai::to_body(&Value::Object(body)),
    })
}

fn push_merged(out: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    match out.last_mut() {
        Some((r, b)) if *r == role => {
            // Anthropic wants tool_result blocks first in a user message.
            if role == "user" && blocks.iter().any(|x| x["type"] == "tool_result") {
                let at = b.iter().take_while(|x| x["type"] == "tool_result").count();
                for (k, blk) in blocks.into_iter().enumerate() {
                    b.insert(at + k, blk);
                }
            } else {
                b.extend(blocks);
            }
        }
        _ => out.push((role, blocks)),
    }
}

fn user_blocks(content: &Value) -> Result<Vec<Value>> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).unwrap_or("");
                        if !t.is_empty() {
                            blocks.push(json!({"type": "text", "text": t}));
                        }
                    }
                    Some("image_url") => {
                        let url = p
                            .pointer("/image_url/url")
                            .or_else(|| p.get("image_url"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| TranslateError::invalid("image_url.url missing"))?;
                        blocks.push(image_block(url)?);
                    }
                    other => {
                        return Err(TranslateError::invalid(format!(
                            "content part type {other:?} is not supported by the Anthropic provider"
                        )))
                    }
                }
            }
            Ok(blocks)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(TranslateError::invalid(
            "message content must be a string or an array",
        )),
    }
}

fn image_block(url: &str) -> Result<Value> {
    if let Some((media, data)) = split_data_url(url) {
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        );
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(TranslateError::invalid(
        "image_url must be a base64 data: URL or an http(s) URL",
    ))
}

fn tool_use_block(call: &Value) -> Result<Value> {
    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
    let name = openai::tool_call_name(call)?;
    let input = openai::tool_call_input(call)?;
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_def(t: &Value) -> Result<Value> {
    let (f, name) = openai::function_tool(t, "Anthropic")?;
    let name = name
        .as_str()
        .ok_or_else(|| TranslateError::invalid("tools[].function.name missing"))?;
    let mut d = Map::new();
    d.insert("name".into(), name.into());
    if let Some(desc) = f.get("description").and_then(Value::as_str) {
        d.insert("description".into(), desc.into());
    }
    let schema = f
        .get("parameters")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    d.insert("input_schema".into(), schema);
    Ok(Value::Object(d))
}

// ---- response -----------------------------------------------------------------------------

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
struct UsageIn {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Default, Debug, Clone, Copy)]
struct UsageAcc {
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_creation: u64,
}

impl UsageAcc {
    fn update(&mut self, u: &UsageIn) {
        if let Some(v) = u.input_tokens {
            self.input = v;
        }
        if let Some(v) = u.output_tokens {
            self.output = v;
        }
        if let Some(v) = u.cache_read_input_tokens {
            self.cache_read = Some(v);
        }
        if let Some(v) = u.cache_creation_input_tokens {
            self.cache_creation = v;
        }
    }

    fn openai(&self) -> Usage {
        Usage::new(
            self.input + self.cache_read.unwrap_or(0) + self.cache_creation,
            self.output,
            self.cache_read,
        )
    }
}

/// Anthropic message → OpenAI `chat.completion` body. `model` is the name the client asked
/// for; `created` the timestamp to report.
pub fn chat_response(body: &[u8], model: &str, created: u64) -> Result<Vec<u8>> {
    let msg = openai::parse_upstream(body)?;
    let id = msg.get("id").and_then(Value::as_str).unwrap_or("msg");
    let mut text = String::new();
    let mut calls = Vec::new();
    if let Some(blocks) = msg.get("content").and_then(Value::as_array) {
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                Some("tool_use") => calls.push(tool_use_to_call(b)),
                _ => {} // thinking, redacted_thinking, server tool blocks: dropped
            }
        }
    } else {
        return Err(TranslateError::upstream("message has no content array"));
    }
    let reason = msg
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(finish_reason);
    let mut acc = UsageAcc::default();
    acc.update(&openai::field::<UsageIn>(&msg, "usage").unwrap_or_default());
    Ok(openai::completion_body(
        id,
        created,
        model,
        text,
        calls,
        reason,
        acc.openai(),
    ))
}

/// An Anthropic `tool_use` block → an OpenAI `tool_calls[]` entry (`input` as the arguments
/// text).
pub(crate) fn tool_use_to_call(block: &Value) -> Value {
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    openai::tool_call(
        block.get("id").and_then(Value::as_str).unwrap_or(""),
        block.get("name").and_then(Value::as_str).unwrap_or(""),
        &serde_json::to_string(&input).unwrap_or_default(),
    )
}

// ---- errors -------------------------------------------------------------------------------

/// Anthropic error body → OpenAI error body. The status is unchanged (the gateway keeps it and
/// any Retry-After).
pub fn error_to_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = v.get("error");
    let kind = err.and_then(|e| e.get("type")).and_then(Value::as_str);
    let message = match err.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let (t, code) = map_error_type(kind, status);
    openai::error_body(&message, t, code)
}

fn map_error_type(kind: Option<&str>, status: u16) -> (&'static str, Option<&'static str>) {
    match kind {
        Some("invalid_request_error") => ("invalid_request_error", None),
        Some("request_too_large") => ("invalid_request_error", Some("request_too_large")),
        Some("authentication_error") => ("authentication_error", Some("invalid_api_key")),
        Some("permission_error") => ("permission_error", None),
        Some("not_found_error") => ("not_found_error", None),
        Some("rate_limit_error") => ("rate_limit_error", Some("rate_limit_exceeded")),
        Some("overloaded_error") => ("server_error", Some("overloaded")),
        Some("api_error") => ("server_error", None),
        _ => (openai::error_type_for_status(status), None),
    }
}

// ---- stream -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Ev<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(borrow, default)]
    message: Option<MsgStart<'a>>,
    #[serde(borrow, default)]
    content_block: Option<BlockStart<'a>>,
    #[serde(borrow, default)]
    delta: Option<DeltaEv<'a>>,
    #[serde(default)]
    usage: Option<UsageIn>,
    #[serde(borrow, default)]
    error: Option<ErrEv<'a>>,
}

#[derive(Deserialize)]
struct MsgStart<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<UsageIn>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaEv<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrEv<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool(u32),
    Other,
}

#[derive(Debug)]
struct StreamState {
    w: ChunkWriter,
    include_usage: bool,
    started: bool,
    blocks: Vec<Block>,
    next_tool: u32,
    usage: UsageAcc,
    finish_sent: bool,
    done: bool,
    failed: Option<String>,
}

/// Anthropic Messages SSE → OpenAI chat completion chunks.
///
/// Contract: [`feed`](Self::feed) appends `data: {chunk}\n\n` events for every complete
/// upstream event; [`finish`](Self::finish) writes `data: [DONE]\n\n` only when `message_stop`
/// was seen. A malformed event makes `feed` return `Err(UpstreamPayload)` (output of earlier
/// events in the same input stays in `out`). An Anthropic `error` event is translated to an
/// OpenAI-shaped `data: {"error":{...}}\n\n` event and `feed` returns `Ok`; the stream is then
/// *finished with error*: later input is ignored and `finish` returns
/// `Err(UpstreamPayload)` without writing `[DONE]`.
#[derive(Debug)]
pub struct ChatStream {
    parser: SseParser,
    st: StreamState,
}

impl ChatStream {
    /// `model`: the name the client asked for; `created`: the timestamp for every chunk;
    /// `include_usage`: the client's `stream_options.include_usage`.
    pub fn new(model: String, created: u64, include_usage: bool) -> Self {
        ChatStream {
            parser: SseParser::new(),
            st: StreamState {
                w: ChunkWriter::new(model, created),
                include_usage,
                started: false,
                blocks: Vec::new(),
                next_tool: 0,
                usage: UsageAcc::default(),
                finish_sent: false,
                done: false,
                failed: None,
            },
        }
    }

    /// Translates whatever complete events `input` finishes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        sse::feed_events(&mut self.parser, &mut self.st, input, out)
    }

    /// Upstream end of body: writes `[DONE]` if the stream ended properly.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = &self.st.failed {
            return Err(TranslateError::upstream_error_event(e));
        }
        if !self.st.done {
            if let Some(ev) = self.parser.flush() {
                self.st.event(ev.data, out)?;
            }
        }
        if self.st.done {
            sse::write_done(out);
            Ok(())
        } else {
            Err(TranslateError::stream_ended_early())
        }
    }

    /// The upstream error message, once an `error` event was seen.
    pub fn upstream_error(&self) -> Option<&str> {
        self.st.failed.as_deref()
    }
}

impl EventHandler for StreamState {
    fn stopped(&self) -> bool {
        self.failed.is_some() || self.done
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let ev: Ev = serde_json::from_slice(data)
            .map_err(|e| TranslateError::upstream(format!("bad Anthropic stream event: {e}")))?;
        match &*ev.kind {
            "message_start" => {
                let m = ev
                    .message
                    .ok_or_else(|| TranslateError::upstream("message_start without message"))?;
                self.w.id.clear();
                self.w.id.push_str(m.id.as_deref().unwrap_or("msg"));
                if let Some(u) = &m.usage {
                    self.usage.update(u);
                }
                self.started = true;
                self.w.role(out);
            }
            "ping" => {}
            "error" => {
                let e = ev.error.as_ref();
                let kind = e.and_then(|e| e.kind.as_deref());
                let msg = e
                    .and_then(|e| e.message.as_deref())
                    .unwrap_or("upstream stream error");
                let (t, code) = map_error_type(kind, 500);
                sse::write_data(out, &openai::error_value(msg, t, code));
                self.failed = Some(format!("{}: {msg}", kind.unwrap_or("error")));
            }
            _ if !self.started => {
                return Err(TranslateError::upstream(format!(
                    "Anthropic stream event {} before message_start",
                    ev.kind
                )))
            }
            "content_block_start" => {
                let idx = ev
                    .index
                    .ok_or_else(|| TranslateError::upstream("content_block_start without index"))?;
                let b = ev.content_block.ok_or_else(|| {
                    TranslateError::upstream("content_block_start without content_block")
                })?;
                let kind = match &*b.kind {
                    "text" => {
                        if let Some(t) = b.text.as_deref().filter(|t| !t.is_empty()) {
                            self.w.content(out, t);
                        }
                        Block::Text
                    }
                    "tool_use" => {
                        let n = self.next_tool;
                        self.next_tool += 1;
                        let id = b.id.as_deref().unwrap_or("");
                        let name = b.name.as_deref().unwrap_or("");
                        self.w.tool_start(out, n, id, name, "");
                        Block::Tool(n)
                    }
                    _ => Block::Other,
                };
                if self.blocks.len() <= idx {
                    if idx > 4096 {
                        return Err(TranslateError::upstream("content block index out of range"));
                    }
                    self.blocks.resize(idx + 1, Block::Other);
                }
                self.blocks[idx] = kind;
            }
            "content_block_delta" => {
                let idx = ev
                    .index
                    .ok_or_else(|| TranslateError::upstream("content_block_delta without index"))?;
                let d = ev
                    .delta
                    .ok_or_else(|| TranslateError::upstream("content_block_delta without delta"))?;
                match (self.blocks.get(idx), d.kind.as_deref()) {
                    (Some(Block::Text), Some("text_delta")) => {
                        if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                            self.w.content(out, t);
                        }
                    }
                    (Some(Block::Tool(n)), Some("input_json_delta")) => {
                        if let Some(p) = d.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            self.w.tool_args(out, *n, p);
                        }
                    }
                    (None, _) => {
                        return Err(TranslateError::upstream(
                            "content_block_delta for a block that was not started",
                        ))
                    }
                    _ => {} // thinking_delta, signature_delta, citations_delta: dropped
                }
            }
            "content_block_stop" => {}
            "message_delta" => {
                if let Some(u) = &ev.usage {
                    self.usage.update(u);
                }
                if let Some(r) = ev.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    if !self.finish_sent {
                        self.finish_sent = true;
                        self.w.finish(out, finish_reason(r));
                    }
                }
            }
            "message_stop" => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    self.w.finish(out, "stop");
                }
                if self.include_usage {
                    self.w.usage(out, &self.usage.openai());
                }
                self.done = true;
            }
            _ => {} // unknown event types are skipped for forward compatibility
        }
        Ok(())
    }
}
