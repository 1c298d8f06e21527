//! Outbound Google Gemini API (`generativelanguage.googleapis.com/v1beta`): OpenAI chat
//! requests to `generateContent` / `streamGenerateContent?alt=sse`, Gemini responses and SSE
//! streams back to OpenAI chat completions and chunks, Gemini errors to OpenAI errors, and
//! OpenAI embeddings to `batchEmbedContents` and back.
//!
//! Request notes: `n > 1` is rejected (one candidate); images must be base64 `data:` URLs
//! (http(s) image URLs are rejected: Gemini only fetches its own file URIs); tool JSON Schemas
//! lose `additionalProperties`, `$schema`, `strict` and `$defs` (Gemini's OpenAPI subset);
//! tool messages become `functionResponse` parts named after the matching earlier tool call.
//! Ignored: `logprobs`, `logit_bias`, `user`, `stream_options`, `parallel_tool_calls`,
//! `service_tier`, `store`, `reasoning_effort`.
//!
//! Gemini doesn't give tool calls ids: they are generated as `call_{responseId}_{n}` (or the
//! part's own `id` when present).

use crate::error::{Result, TranslateError};
use crate::openai::{
    self, content_text, first_of_seq, split_data_url, ChunkWriter, ToolChoice, Usage,
};
use crate::sse::{self, EventHandler, SseParser};
use crate::ProviderRequest;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

fn model_path(upstream_model: &str) -> &str {
    upstream_model
        .strip_prefix("models/")
        .unwrap_or(upstream_model)
}

/// Removes JSON Schema keywords Gemini's schema subset rejects.
fn sanitize_schema(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["additionalProperties", "$schema", "strict", "$defs", "$id"] {
                m.remove(k);
            }
            for (_, child) in m.iter_mut() {
                sanitize_schema(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sanitize_schema),
        _ => {}
    }
}

// ---- request ------------------------------------------------------------------------------

/// OpenAI chat request → Gemini `generateContent` (or, when `stream`,
/// `streamGenerateContent?alt=sse`) for `upstream_model`.
pub fn chat_request(
    openai_body: &[u8],
    upstream_model: &str,
    stream: bool,
) -> Result<ProviderRequest> {
    let req = openai::parse_request(openai_body)?;
    openai::reject_several_choices(&req, "Gemini")?;
    let messages = openai::messages(&req)?;
    let mut call_names: HashMap<String, String> = HashMap::new();
    let (system, contents) = openai::system_and_turns(messages, |i, role, m| {
        let content = m.get("content").unwrap_or(&Value::Null);
        Ok(match role {
            "user" => ("user", user_parts(content)?),
            "assistant" => {
                let parts = openai::text_and_call_parts(m, |c| {
                    let name = openai::tool_call_name(c)?;
                    let args = openai::tool_call_input(c)?;
                    if let Some(id) = c.get("id").and_then(Value::as_str) {
                        call_names.insert(id.to_owned(), name.to_owned());
                    }
                    Ok(json!({"functionCall": {"name": name, "args": args}}))
                })?;
                ("model", parts)
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let name = call_names.get(id).ok_or_else(|| {
                    TranslateError::invalid(format!(
                        "messages[{i}]: tool_call_id {id:?} matches no earlier tool call"
                    ))
                })?;
                let text = content_text(content)?;
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    Ok(v) => json!({"content": v}),
                    Err(_) => json!({"content": text}),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "message role {other:?} is not supported by the Gemini provider"
                )))
            }
        })
    })?;

    let mut body = Map::new();
    body.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let mut decls = Vec::new();
        for t in tools {
            let (f, name) = openai::function_tool(t, "Gemini")?;
            let mut d = Map::new();
            d.insert("name".into(), name.clone());
            if let Some(desc) = f.get("description") {
                d.insert("description".into(), desc.clone());
            }
            if let Some(p) = f.get("parameters") {
                let mut p = p.clone();
                sanitize_schema(&mut p);
                d.insert("parameters".into(), p);
            }
            decls.push(Value::Object(d));
        }
        if !decls.is_empty() {
            body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        }
    }
    if let Some(choice) = openai::tool_choice(&req)? {
        let fcc = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": fcc}));
    }
    let mut gc = Map::new();
    if let Some(m) = openai::max_tokens(&req) {
        gc.insert("maxOutputTokens".into(), m.into());
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = req.get(from).filter(|v| v.is_number()) {
            gc.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = openai::stop_sequences(&req) {
        gc.insert("stopSequences".into(), stop);
    }
    if let Some(rf) = req.get("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                gc.insert("responseMimeType".into(), "application/json".into());
            }
            Some("json_schema") => {
                gc.insert("responseMimeType".into(), "application/json".into());
                if let Some(s) = rf.pointer("/json_schema/schema") {
                    let mut s = s.clone();
                    sanitize_schema(&mut s);
                    gc.insert("responseSchema".into(), s);
                }
            }
            _ => {}
        }
    }
    if !gc.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gc));
    }
    let model = model_path(upstream_model);
    let path = if stream {
        format!("/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/models/{model}:generateContent")
    };
    Ok(ProviderRequest {
        path,
        headers: vec![("content-type".into(), "application/json".into())],
        body: openai::to_body(&Value::Object(body)),
    })
}

fn user_parts(content: &Value) -> Result<Vec<Value>> {
    openai::text_or_image_parts(content, "Gemini", |url| {
        let url = url.ok_or_else(|| TranslateError::invalid("image_url.url missing"))?;
        let (mime, data) = split_data_url(url).ok_or_else(|| {
            TranslateError::invalid("the Gemini provider only accepts base64 data: image URLs")
        })?;
        Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
    })
}

// ---- response -----------------------------------------------------------------------------

/// Gemini `finishReason` → OpenAI `finish_reason` (`STOP` with function calls → `tool_calls`).
pub fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct GUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
}

impl GUsage {
    fn openai(&self) -> Usage {
        Usage::new(
            self.prompt_token_count,
            self.candidates_token_count + self.thoughts_token_count,
            self.cached_content_token_count,
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GChunk<'a> {
    #[serde(borrow, default, deserialize_with = "first_of_seq")]
    candidates: Option<GCandidate<'a>>,
    #[serde(default)]
    usage_metadata: Option<GUsage>,
    #[serde(borrow, default)]
    response_id: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_feedback: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GCandidate<'a> {
    #[serde(borrow, default)]
    content: Option<GContent<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct GContent<'a> {
    #[serde(borrow, default)]
    parts: Vec<GPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GPart<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(borrow, default)]
    function_call: Option<GCall<'a>>,
}

#[derive(Deserialize)]
struct GCall<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    args: Option<&'a RawValue>,
}

fn call_id(own: Option<&str>, response_id: &str, n: u32) -> String {
    match own {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ if response_id.is_empty() => format!("call_{n}"),
        _ => format!("call_{response_id}_{n}"),
    }
}

fn args_text(args: Option<&RawValue>) -> &str {
    args.map_or("{}", RawValue::get)
}

/// Gemini `GenerateContentResponse` → OpenAI `chat.completion`.
pub fn chat_response(body: &[u8], model: &str, created: u64) -> Result<Vec<u8>> {
    let r: GChunk = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream(format!("bad Gemini response: {e}")))?;
    let rid = r.response_id.as_deref().unwrap_or("");
    let mut text = String::new();
    let mut calls = Vec::new();
    let reason;
    if let Some(c) = &r.candidates {
        for p in c.content.iter().flat_map(|c| c.parts.iter()) {
            if p.thought == Some(true) {
                continue;
            }
            if let Some(t) = &p.text {
                text.push_str(t);
            }
            if let Some(f) = &p.function_call {
                let n = calls.len() as u32;
                calls.push(openai::tool_call(
                    &call_id(f.id.as_deref(), rid, n),
                    &f.name,
                    args_text(f.args),
                ));
            }
        }
        reason = c
            .finish_reason
            .as_deref()
            .map(|f| finish_reason(f, !calls.is_empty()));
    } else if r
        .prompt_feedback
        .as_ref()
        .is_some_and(|p| p.get("blockReason").is_some())
    {
        reason = Some("content_filter");
    } else {
        return Err(TranslateError::upstream(
            "Gemini response has no candidates",
        ));
    }
    let id = if rid.is_empty() {
        "chatcmpl-gemini".to_owned()
    } else {
        format!("chatcmpl-{rid}")
    };
    let usage = r.usage_metadata.unwrap_or_default().openai();
    Ok(openai::completion_body(
        &id, created, model, text, calls, reason, usage,
    ))
}

// ---- errors -------------------------------------------------------------------------------

fn gemini_error_parts(body: &[u8]) -> (String, Option<String>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let v = if let Value::Array(a) = &v {
        a.first().cloned().unwrap_or(Value::Null)
    } else {
        v
    };
    match v.get("error") {
        Some(e) => (
            e.get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string()),
            e.get("status").and_then(Value::as_str).map(str::to_owned),
        ),
        None => (String::from_utf8_lossy(body).into_owned(), None),
    }
}

fn map_status(status: Option<&str>, http: u16) -> (&'static str, Option<&'static str>) {
    match status {
        Some("INVALID_ARGUMENT") | Some("FAILED_PRECONDITION") | Some("OUT_OF_RANGE") => {
            ("invalid_request_error", None)
        }
        Some("UNAUTHENTICATED") => ("authentication_error", Some("invalid_api_key")),
        Some("PERMISSION_DENIED") => ("permission_error", None),
        Some("NOT_FOUND") => ("not_found_error", None),
        Some("RESOURCE_EXHAUSTED") => ("rate_limit_error", Some("rate_limit_exceeded")),
        Some("INTERNAL") | Some("UNAVAILABLE") | Some("DEADLINE_EXCEEDED") => {
            ("server_error", None)
        }
        _ if http == 429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        _ => (openai::error_type_for_status(http), None),
    }
}

/// Gemini error body (`{"error":{"code","message","status"}}`, possibly wrapped in an array)
/// → OpenAI error body; the status is unchanged.
pub fn error_to_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let (message, gstatus) = gemini_error_parts(body);
    let (t, code) = map_status(gstatus.as_deref(), status);
    openai::error_body(&message, t, code)
}

// ---- stream -------------------------------------------------------------------------------

#[derive(Debug)]
struct GState {
    w: ChunkWriter,
    include_usage: bool,
    started: bool,
    next_tool: u32,
    usage: Option<GUsage>,
    finished: bool,
    failed: Option<String>,
}

/// Gemini `streamGenerateContent?alt=sse` → OpenAI chat completion chunks.
///
/// Gemini has no end-of-stream event: the stream ended properly when a chunk carried a
/// `finishReason` (then `finish` writes the usage chunk, if asked for, and `[DONE]`).
/// Function calls arrive whole, so each becomes one tool-call delta with id, name and the full
/// arguments. An `{"error":...}` event is forwarded as an OpenAI error event; `finish` then
/// returns `Err`.
#[derive(Debug)]
pub struct ChatStream {
    parser: SseParser,
    st: GState,
}

impl ChatStream {
    pub fn new(model: String, created: u64, include_usage: bool) -> Self {
        ChatStream {
            parser: SseParser::new(),
            st: GState {
                w: ChunkWriter::new(model, created),
                include_usage,
                started: false,
                next_tool: 0,
                usage: None,
                finished: false,
                failed: None,
            },
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        sse::feed_events(&mut self.parser, &mut self.st, input, out)
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.st.failed.is_none() {
            if let Some(ev) = self.parser.flush() {
                self.st.event(ev.data, out)?;
            }
        }
        if let Some(e) = &self.st.failed {
            return Err(TranslateError::upstream_error_event(e));
        }
        if !self.st.finished {
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

impl EventHandler for GState {
    /// Events after the finish reason are still translated (late usage); only an error stops.
    fn stopped(&self) -> bool {
        self.failed.is_some()
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let c: GChunk = serde_json::from_slice(data)
            .map_err(|e| TranslateError::upstream(format!("bad Gemini stream chunk: {e}")))?;
        if let Some(err) = &c.error {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream stream error");
            let (t, code) = map_status(err.get("status").and_then(Value::as_str), 500);
            sse::write_data(out, &openai::error_value(msg, t, code));
            self.failed = Some(msg.to_owned());
            return Ok(());
        }
        if !self.started {
            self.started = true;
            self.w.id.clear();
            match c.response_id.as_deref() {
                Some(r) => {
                    self.w.id.push_str("chatcmpl-");
                    self.w.id.push_str(r);
                }
                None => self.w.id.push_str("chatcmpl-gemini"),
            }
            self.w.role(out);
        }
        if let Some(u) = c.usage_metadata {
            self.usage = Some(u);
        }
        let Some(cand) = &c.candidates else {
            if c.prompt_feedback
                .as_ref()
                .is_some_and(|p| p.get("blockReason").is_some())
                && !self.finished
            {
                self.finished = true;
                self.w.finish(out, "content_filter");
            }
            return Ok(());
        };
        for p in cand.content.iter().flat_map(|c| c.parts.iter()) {
            if p.thought == Some(true) {
                continue;
            }
            if let Some(t) = p.text.as_deref().filter(|t| !t.is_empty()) {
                self.w.content(out, t);
            }
            if let Some(f) = &p.function_call {
                let n = self.next_tool;
                self.next_tool += 1;
                let rid = self.w.id.strip_prefix("chatcmpl-").unwrap_or("");
                let id = call_id(f.id.as_deref(), if rid == "gemini" { "" } else { rid }, n);
                self.w.tool_start(out, n, &id, &f.name, args_text(f.args));
            }
        }
        if let Some(r) = &cand.finish_reason {
            if !self.finished {
                self.finished = true;
                self.w.finish(out, finish_reason(r, self.next_tool > 0));
            }
        }
        Ok(())
    }
}

// ---- embeddings ---------------------------------------------------------------------------

/// OpenAI embeddings request → Gemini `batchEmbedContents`. Returns the request and whether
/// the client asked for `encoding_format: "base64"` (pass it to [`embed_response`]). Token
/// array inputs are rejected.
pub fn embed_request(openai_body: &[u8], upstream_model: &str) -> Result<(ProviderRequest, bool)> {
    let req = openai::parse_request(openai_body)?;
    let inputs = openai::embedding_inputs(&req)?;
    let base64 = openai::embedding_base64(&req)?;
    let model = model_path(upstream_model);
    let dims = req.get("dimensions").and_then(Value::as_u64);
    let requests: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let mut r =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = dims {
                r["outputDimensionality"] = d.into();
            }
            r
        })
        .collect();
    Ok((
        ProviderRequest {
            path: format!("/models/{model}:batchEmbedContents"),
            headers: vec![("content-type".into(), "application/json".into())],
            body: openai::to_body(&json!({"requests": requests})),
        },
        base64,
    ))
}

/// Gemini `batchEmbedContents` response → OpenAI embeddings list. Gemini reports no token
/// counts, so usage is zero. With `base64`, each vector is little-endian f32 bytes, base64
/// encoded (what OpenAI SDKs request by default).
pub fn embed_response(body: &[u8], model: &str, base64: bool) -> Result<Vec<u8>> {
    #[derive(Deserialize)]
    struct Emb {
        values: Vec<f32>,
    }
    #[derive(Deserialize)]
    struct Resp {
        embeddings: Vec<Emb>,
    }
    let r: Resp = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream(format!("bad Gemini embeddings response: {e}")))?;
    let vectors: Vec<&[f32]> = r.embeddings.iter().map(|e| e.values.as_slice()).collect();
    Ok(openai::embeddings_body(&vectors, model, base64, 0))
}
