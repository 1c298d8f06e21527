//! Outbound AWS Bedrock Converse API: OpenAI chat requests to `/model/{id}/converse` or
//! `/converse-stream`, Converse responses and eventstream frames back to OpenAI chat
//! completions and chunks, Bedrock errors to OpenAI errors. [`sigv4`] signs the request;
//! [`eventstream`] decodes the streaming transport. [`embed`] turns OpenAI embeddings into
//! `InvokeModel` calls to Titan or Cohere embedding models and back.
//!
//! Request notes: `n > 1` is rejected; images must be base64 `data:` URLs of png/jpeg/gif/webp;
//! `tool_choice: "none"` leaves tools available (Converse has no "none"); `max_tokens`
//! is only sent when the client gave one. Ignored: `user`, `seed`, `logprobs`,
//! `response_format`, `presence_penalty`, `frequency_penalty`, `logit_bias`,
//! `parallel_tool_calls`, `stream_options`. Converse responses carry no id: completions are
//! given `chatcmpl-bedrock-{created}`.

pub mod embed;
pub mod eventstream;
pub mod sigv4;

pub use embed::{embed_request, embed_response};

use crate::error::{Result, TranslateError};
use crate::openai::{self, content_text, split_data_url, ChunkWriter, Usage};
use crate::sse;
use crate::ProviderRequest;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The request path for a model id (percent-encoded: ids contain `:`).
pub fn model_path(model_id: &str, stream: bool) -> String {
    let mut p = String::from("/model/");
    sigv4::uri_encode(model_id.as_bytes(), &mut p);
    p.push_str(if stream {
        "/converse-stream"
    } else {
        "/converse"
    });
    p
}

// ---- request ------------------------------------------------------------------------------

/// OpenAI chat request → Bedrock Converse (`stream` picks `/converse-stream`).
pub fn chat_request(openai_body: &[u8], model_id: &str, stream: bool) -> Result<ProviderRequest> {
    let req = openai::parse_request(openai_body)?;
    openai::reject_several_choices(&req, "Bedrock")?;
    let messages = openai::messages(&req)?;
    let (system, out) = openai::system_and_turns(messages, |_, role, m| {
        let content = m.get("content").unwrap_or(&Value::Null);
        Ok(match role {
            "user" => ("user", user_blocks(content)?),
            "assistant" => {
                let parts = openai::text_and_call_parts(m, |c| {
                    let input = openai::tool_call_input(c)?;
                    Ok(json!({"toolUse": {
                        "toolUseId": c.get("id").and_then(Value::as_str).unwrap_or(""),
                        "name": c.pointer("/function/name").and_then(Value::as_str).unwrap_or(""),
                        "input": input,
                    }}))
                })?;
                ("assistant", parts)
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TranslateError::invalid("tool message without tool_call_id"))?;
                let t = content_text(content)?;
                (
                    "user",
                    vec![json!({"toolResult": {"toolUseId": id, "content": [{"text": t}]}})],
                )
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "message role {other:?} is not supported by the Bedrock provider"
                )))
            }
        })
    })?;
    let mut body = Map::new();
    body.insert(
        "messages".into(),
        Value::Array(
            out.into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let mut ic = Map::new();
    if let Some(m) = openai::max_tokens(&req) {
        ic.insert("maxTokens".into(), m.into());
    }
    if let Some(t) = req.get("temperature").filter(|v| v.is_number()) {
        ic.insert("temperature".into(), t.clone());
    }
    if let Some(t) = req.get("top_p").filter(|v| v.is_number()) {
        ic.insert("topP".into(), t.clone());
    }
    if let Some(stop) = openai::stop_sequences(&req) {
        ic.insert("stopSequences".into(), stop);
    }
    if !ic.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(ic));
    }
    if let Some(tools) = req
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        let mut specs = Vec::with_capacity(tools.len());
        for t in tools {
            let (f, name) = openai::function_tool(t, "Bedrock")?;
            let mut spec = Map::new();
            spec.insert("name".into(), name.clone());
            if let Some(d) = f.get("description") {
                spec.insert("description".into(), d.clone());
            }
            let schema = f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({"json": schema}));
            specs.push(json!({"toolSpec": spec}));
        }
        let mut tc = json!({"tools": specs});
        match req.get("tool_choice") {
            Some(Value::String(s)) if s == "required" => tc["toolChoice"] = json!({"any": {}}),
            Some(Value::String(s)) if s == "auto" => tc["toolChoice"] = json!({"auto": {}}),
            Some(v @ Value::Object(_)) => {
                let name = v
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TranslateError::invalid("tool_choice.function.name missing"))?;
                tc["toolChoice"] = json!({"tool": {"name": name}});
            }
            _ => {}
        }
        body.insert("toolConfig".into(), tc);
    }
    Ok(ProviderRequest {
        path: model_path(model_id, stream),
        headers: vec![("content-type".into(), "application/json".into())],
        body: openai::to_body(&Value::Object(body)),
    })
}

fn user_blocks(content: &Value) -> Result<Vec<Value>> {
    openai::text_or_image_parts(content, "Bedrock", |url| {
        let (mime, data) = split_data_url(url.unwrap_or("")).ok_or_else(|| {
            TranslateError::invalid("the Bedrock provider only accepts base64 data: image URLs")
        })?;
        let format = match mime {
            "image/png" => "png",
            "image/jpeg" | "image/jpg" => "jpeg",
            "image/gif" => "gif",
            "image/webp" => "webp",
            other => {
                return Err(TranslateError::invalid(format!(
                    "image type {other:?} is not supported by Bedrock"
                )))
            }
        };
        Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
    })
}

// ---- response -----------------------------------------------------------------------------

/// Converse `stopReason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct BUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_write_input_tokens: Option<u64>,
}

impl BUsage {
    fn openai(&self) -> Usage {
        Usage::new(
            self.input_tokens
                + self.cache_read_input_tokens.unwrap_or(0)
                + self.cache_write_input_tokens.unwrap_or(0),
            self.output_tokens,
            self.cache_read_input_tokens,
        )
    }
}

/// Converse response → OpenAI `chat.completion` (id `chatcmpl-bedrock-{created}`).
pub fn chat_response(body: &[u8], model: &str, created: u64) -> Result<Vec<u8>> {
    let r = openai::parse_upstream(body)?;
    let blocks = r
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            TranslateError::upstream("Converse response has no output.message.content")
        })?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = b.get("toolUse") {
            let input = tu.get("input").cloned().unwrap_or_else(|| json!({}));
            calls.push(openai::tool_call(
                tu.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                tu.get("name").and_then(Value::as_str).unwrap_or(""),
                &serde_json::to_string(&input).unwrap_or_default(),
            ));
        }
    }
    let reason = r
        .get("stopReason")
        .and_then(Value::as_str)
        .map(finish_reason);
    let usage = openai::field::<BUsage>(&r, "usage").unwrap_or_default();
    Ok(openai::completion_body(
        &format!("chatcmpl-bedrock-{created}"),
        created,
        model,
        text,
        calls,
        reason,
        usage.openai(),
    ))
}

/// Maps a Bedrock exception name (`x-amzn-errortype` header or `:exception-type`, e.g.
/// `ThrottlingException`) to an OpenAI (type, code).
fn map_exception(name: &str, status: u16) -> (&'static str, Option<&'static str>) {
    let n = name.split(':').next().unwrap_or(name).to_ascii_lowercase();
    match n.as_str() {
        "validationexception" => ("invalid_request_error", None),
        "accessdeniedexception" => ("permission_error", None),
        "unrecognizedclientexception" => ("authentication_error", Some("invalid_api_key")),
        "resourcenotfoundexception" => ("not_found_error", None),
        "throttlingexception" | "servicequotaexceededexception" => {
            ("rate_limit_error", Some("rate_limit_exceeded"))
        }
        "modeltimeoutexception"
        | "internalserverexception"
        | "serviceunavailableexception"
        | "modelstreamerrorexception"
        | "modelnotreadyexception" => ("server_error", None),
        _ if status == 429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        _ => (openai::error_type_for_status(status), None),
    }
}

/// Bedrock error body (`{"message": ...}`, plus the `x-amzn-errortype` header value when the
/// gateway has it) → OpenAI error body; the status is unchanged.
pub fn error_to_openai(status: u16, error_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let (t, code) = map_exception(error_type.unwrap_or(""), status);
    openai::error_body(&message, t, code)
}

// ---- stream -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BEvent<'a> {
    #[serde(default)]
    content_block_index: Option<usize>,
    #[serde(borrow, default)]
    start: Option<BStart<'a>>,
    #[serde(borrow, default)]
    delta: Option<BDelta<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<BUsage>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BStart<'a> {
    #[serde(borrow, default)]
    tool_use: Option<BToolStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BDelta<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_use: Option<BToolDelta<'a>>,
}

#[derive(Deserialize)]
struct BToolDelta<'a> {
    #[serde(borrow, default)]
    input: Option<Cow<'a, str>>,
}

#[derive(Debug)]
struct BState {
    w: ChunkWriter,
    include_usage: bool,
    started: bool,
    /// Converse content block index → OpenAI tool call index.
    tools: Vec<(usize, u32)>,
    next_tool: u32,
    usage: Option<BUsage>,
    stopped: bool,
    failed: Option<String>,
}

/// Bedrock `converse-stream` eventstream frames → OpenAI chat completion chunks.
///
/// Frames with `:message-type: event` are dispatched on `:event-type` (messageStart,
/// contentBlockStart, contentBlockDelta, contentBlockStop, messageStop, metadata).
/// `:message-type: exception` (or `error`) is written as an OpenAI error event; `feed` returns
/// `Ok` and `finish` then returns `Err`. The stream ended properly once `messageStop` was seen;
/// `finish` then writes the usage chunk (from `metadata`, when asked for) and `[DONE]`. A bad
/// CRC or bad JSON makes `feed` return `Err(UpstreamPayload)`.
#[derive(Debug)]
pub struct ChatStream {
    dec: eventstream::Decoder,
    st: BState,
}

impl ChatStream {
    pub fn new(model: String, created: u64, include_usage: bool) -> Self {
        let mut w = ChunkWriter::new(model, created);
        w.id = format!("chatcmpl-bedrock-{created}");
        ChatStream {
            dec: eventstream::Decoder::new(),
            st: BState {
                w,
                include_usage,
                started: false,
                tools: Vec::new(),
                next_tool: 0,
                usage: None,
                stopped: false,
                failed: None,
            },
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.st.failed.is_some() {
            return Ok(());
        }
        self.dec.push(input);
        while let Some(frame) = self.dec.next_frame()? {
            self.st.frame(&frame, out)?;
            if self.st.failed.is_some() {
                break;
            }
        }
        Ok(())
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = &self.st.failed {
            return Err(TranslateError::upstream_error_event(e));
        }
        if !self.st.stopped || self.dec.has_pending() {
            return Err(TranslateError::stream_ended_early());
        }
        if self.st.include_usage {
            self.st
                .w
                .usage(out, &self.st.usage.unwrap_or_default().openai());
        }
        sse::write_done(out);
        Ok(())
    }
}

impl BState {
    fn frame(&mut self, f: &eventstream::Frame<'_>, out: &mut Vec<u8>) -> Result<()> {
        let mtype = f.header_str(":message-type").unwrap_or("event");
        if mtype != "event" {
            let name = f
                .header_str(":exception-type")
                .or_else(|| f.header_str(":error-code"))
                .unwrap_or("InternalServerException");
            let msg = serde_json::from_slice::<BEvent>(f.payload)
                .ok()
                .and_then(|e| e.message.map(Cow::into_owned))
                .or_else(|| f.header_str(":error-message").map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(f.payload).into_owned());
            let (t, code) = map_exception(name, 500);
            sse::write_data(out, &openai::error_value(&msg, t, code));
            self.failed = Some(format!("{name}: {msg}"));
            return Ok(());
        }
        let etype = f.header_str(":event-type").unwrap_or("");
        let ev: BEvent = serde_json::from_slice(f.payload).map_err(|e| {
            TranslateError::upstream(format!("bad Converse stream event {etype}: {e}"))
        })?;
        if !self.started && etype != "metadata" {
            self.started = true;
            self.w.role(out);
        }
        match etype {
            "contentBlockStart" => {
                if let Some(t) = ev.start.and_then(|s| s.tool_use) {
                    let n = self.next_tool;
                    self.next_tool += 1;
                    self.tools.push((ev.content_block_index.unwrap_or(0), n));
                    self.w.tool_start(out, n, &t.tool_use_id, &t.name, "");
                }
            }
            "contentBlockDelta" => {
                let idx = ev.content_block_index.unwrap_or(0);
                if let Some(d) = ev.delta {
                    if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                        self.w.content(out, t);
                    }
                    if let Some(input) = d.tool_use.and_then(|t| t.input) {
                        let n = self
                            .tools
                            .iter()
                            .rev()
                            .find(|(b, _)| *b == idx)
                            .map(|(_, n)| *n)
                            .ok_or_else(|| {
                                TranslateError::upstream(
                                    "toolUse delta for a block that was not started",
                                )
                            })?;
                        if !input.is_empty() {
                            self.w.tool_args(out, n, &input);
                        }
                    }
                }
            }
            "messageStop" if !self.stopped => {
                self.stopped = true;
                self.w.finish(
                    out,
                    finish_reason(ev.stop_reason.as_deref().unwrap_or("end_turn")),
                );
            }
            "metadata" => {
                if let Some(u) = ev.usage {
                    self.usage = Some(u);
                }
            }
            _ => {} // messageStart, contentBlockStop, unknown events
        }
        Ok(())
    }
}
