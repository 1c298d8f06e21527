//! OpenAI Chat Completions, the gateway's canonical form: request peeking, the request readers
//! and completion writer the outbound translators share, the chunk writer every outbound
//! stream translator uses, borrowed views of incoming chunks for the inbound translators,
//! usage, and error bodies.

use crate::error::{Result, TranslateError};
use crate::sse;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// What the gateway needs to know about an OpenAI chat request before translating it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// `model`, when present.
    pub model: Option<String>,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true` (pass this to the stream translators).
    pub include_usage: bool,
}

/// Reads `model`, `stream` and `stream_options.include_usage` from an OpenAI chat body.
pub fn peek_request(body: &[u8]) -> Result<RequestInfo> {
    #[derive(Deserialize)]
    struct Opts {
        #[serde(default)]
        include_usage: Option<bool>,
    }
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        stream: Option<bool>,
        #[serde(default)]
        stream_options: Option<Opts>,
    }
    let p: Peek = serde_json::from_slice(body)
        .map_err(|e| TranslateError::invalid(format!("request body is not valid JSON: {e}")))?;
    Ok(RequestInfo {
        model: p.model,
        stream: p.stream.unwrap_or(false),
        include_usage: p
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

/// Token usage in OpenAI's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

impl Usage {
    /// Usage with `total_tokens` computed and `cached_tokens` set when known.
    pub fn new(prompt: u64, completion: u64, cached: Option<u64>) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: cached.map(|c| PromptTokensDetails { cached_tokens: c }),
        }
    }

    /// `prompt_tokens_details.cached_tokens`, or 0.
    pub fn cached(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}

fn seq_of_opt<S: serde::Serializer, T: Serialize>(
    v: &Option<T>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(usize::from(v.is_some())))?;
    if let Some(v) = v {
        seq.serialize_element(v)?;
    }
    seq.end()
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(serialize_with = "seq_of_opt")]
    choices: Option<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seq_of_opt")]
    tool_calls: Option<ToolCallDelta<'a>>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// Writes `chat.completion.chunk` events for one stream; shared by every outbound stream
/// translator.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChunkWriter {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChunkWriter {
    pub fn new(model: String, created: u64) -> Self {
        ChunkWriter {
            id: String::new(),
            model,
            created,
        }
    }

    fn write(&self, out: &mut Vec<u8>, choice: Option<ChunkChoice<'_>>, usage: Option<&Usage>) {
        sse::write_data(
            out,
            &Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: choice,
                usage,
            },
        );
    }

    fn delta(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&str>) {
        self.write(
            out,
            Some(ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }),
            None,
        );
    }

    /// The first chunk: `delta: {role: assistant, content: ""}`.
    pub fn role(&self, out: &mut Vec<u8>) {
        let d = Delta {
            role: Some("assistant"),
            content: Some(""),
            tool_calls: None,
        };
        self.delta(out, d, None);
    }

    pub fn content(&self, out: &mut Vec<u8>, text: &str) {
        let d = Delta {
            content: Some(text),
            ..Delta::default()
        };
        self.delta(out, d, None);
    }

    /// The first delta of a tool call: id, type, name and (usually empty) arguments.
    pub fn tool_start(&self, out: &mut Vec<u8>, index: u32, id: &str, name: &str, args: &str) {
        let d = Delta {
            tool_calls: Some(ToolCallDelta {
                index,
                id: Some(id),
                kind: Some("function"),
                function: FunctionDelta {
                    name: Some(name),
                    arguments: args,
                },
            }),
            ..Delta::default()
        };
        self.delta(out, d, None);
    }

    /// A later fragment of a tool call's arguments.
    pub fn tool_args(&self, out: &mut Vec<u8>, index: u32, fragment: &str) {
        let d = Delta {
            tool_calls: Some(ToolCallDelta {
                index,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments: fragment,
                },
            }),
            ..Delta::default()
        };
        self.delta(out, d, None);
    }

    /// The chunk carrying `finish_reason` with an empty delta.
    pub fn finish(&self, out: &mut Vec<u8>, reason: &str) {
        self.delta(out, Delta::default(), Some(reason));
    }

    /// The final `choices: []` chunk carrying usage.
    pub fn usage(&self, out: &mut Vec<u8>, usage: &Usage) {
        self.write(out, None, Some(usage));
    }
}

/// An OpenAI error body: `{"error":{"message","type","param":null,"code"}}`.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    let v = error_value(message, kind, code);
    serde_json::to_vec(&v).unwrap_or_default()
}

pub(crate) fn error_value(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The OpenAI error `type` conventionally used for an HTTP status.
pub(crate) fn error_type_for_status(status: u16) -> &'static str {
    match status {
        400 | 404 | 405 | 409 | 413 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ if status >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// Reads `error.message`, `error.type`, `error.code` from an OpenAI error body (or any body
/// with that shape); falls back to the raw text.
pub(crate) fn read_error(body: &[u8]) -> (String, Option<String>, Option<String>) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = v.get("error").unwrap_or(&v);
        let s = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(m) = s("message") {
            let code = match err.get("code") {
                Some(Value::String(c)) => Some(c.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            return (m, s("type"), code);
        }
    }
    (String::from_utf8_lossy(body).into_owned(), None, None)
}

// ---- JSON helpers shared by the request translators -------------------------------------

/// A client's request body as a JSON object; otherwise [`TranslateError::InvalidRequest`].
pub(crate) fn parse_request(body: &[u8]) -> Result<Map<String, Value>> {
    json_object(
        body,
        "request body must be a JSON object",
        "request body is not valid JSON",
        TranslateError::InvalidRequest,
    )
}

/// A provider's response body as a JSON object; otherwise [`TranslateError::UpstreamPayload`].
pub(crate) fn parse_upstream(body: &[u8]) -> Result<Map<String, Value>> {
    json_object(
        body,
        "response body is not a JSON object",
        "response body is not valid JSON",
        TranslateError::UpstreamPayload,
    )
}

/// `body` as a JSON object, or `error` saying `not_object`, or `not_json` and why.
fn json_object(
    body: &[u8],
    not_object: &str,
    not_json: &str,
    error: fn(String) -> TranslateError,
) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(error(not_object.to_owned())),
        Err(e) => Err(error(format!("{not_json}: {e}"))),
    }
}

pub(crate) fn to_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The text of an OpenAI message `content`: a string, or the `text` of its text parts joined.
pub(crate) fn content_text(content: &Value) -> Result<String> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut s = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") | Some("refusal") | Some("input_text") | Some("output_text") => {
                        let t = p
                            .get("text")
                            .or_else(|| p.get("refusal"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        s.push_str(t);
                    }
                    other => {
                        return Err(TranslateError::invalid(format!(
                            "content part type {other:?} is not supported here"
                        )))
                    }
                }
            }
            Ok(s)
        }
        _ => Err(TranslateError::invalid(
            "message content must be a string or an array",
        )),
    }
}

/// Deserializes `obj[key]`; `None` when it is missing or doesn't fit `T`.
pub(crate) fn field<T: DeserializeOwned>(obj: &Map<String, Value>, key: &str) -> Option<T> {
    obj.get(key)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Splits a `data:` URL into (media type, base64 payload).
pub(crate) fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

// ---- reading chat requests (shared by the outbound request translators) ------------------

/// Rejects `n > 1`: every outbound provider answers with one choice.
pub(crate) fn reject_several_choices(req: &Map<String, Value>, provider: &str) -> Result<()> {
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::invalid(format!(
            "n > 1 is not supported by the {provider} provider"
        )));
    }
    Ok(())
}

/// `messages`, which must be an array.
pub(crate) fn messages(req: &Map<String, Value>) -> Result<&Vec<Value>> {
    req.get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages must be an array"))
}

/// The client's output limit: `max_completion_tokens`, else `max_tokens`.
pub(crate) fn max_tokens(req: &Map<String, Value>) -> Option<u64> {
    req.get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
}

/// `stop` as an array of sequences: a string becomes a one-element array; an empty array or
/// anything else is no stop sequences.
pub(crate) fn stop_sequences(req: &Map<String, Value>) -> Option<Value> {
    match req.get("stop") {
        Some(Value::String(s)) => Some(json!([s])),
        Some(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a.clone())),
        _ => None,
    }
}

/// A `tools[]` entry's `function` and its `name`, after checking it is a function tool.
pub(crate) fn function_tool<'a>(t: &'a Value, provider: &str) -> Result<(&'a Value, &'a Value)> {
    if t.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
        return Err(TranslateError::invalid(format!(
            "only function tools are supported by the {provider} provider"
        )));
    }
    let f = t
        .get("function")
        .ok_or_else(|| TranslateError::invalid("tools[].function missing"))?;
    let name = f
        .get("name")
        .ok_or_else(|| TranslateError::invalid("tools[].function.name missing"))?;
    Ok((f, name))
}

/// `tool_choice`, when the client gave one.
pub(crate) enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    Function(&'a str),
}

/// Reads `tool_choice`: `"auto"`, `"none"`, `"required"` or `{"function": {"name"}}`; other
/// strings and a choice without a function name are rejected.
pub(crate) fn tool_choice(req: &Map<String, Value>) -> Result<Option<ToolChoice<'_>>> {
    Ok(match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(TranslateError::invalid(format!(
                    "tool_choice {other:?} is not supported"
                )))
            }
        }),
        Some(v) => Some(ToolChoice::Function(
            v.pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tool_choice.function.name missing"))?,
        )),
    })
}

/// An assistant message's `tool_calls`, none when absent.
pub(crate) fn tool_calls(message: &Value) -> impl Iterator<Item = &Value> {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A tool call's `function.name`, which must be there.
pub(crate) fn tool_call_name(call: &Value) -> Result<&str> {
    call.pointer("/function/name")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("tool_calls[].function.name missing"))
}

/// A tool call's `function.arguments` parsed into a JSON object (see [`parse_arguments`]).
pub(crate) fn tool_call_input(call: &Value) -> Result<Value> {
    let args = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    parse_arguments(args).map_err(TranslateError::InvalidRequest)
}

/// Parses tool-call `arguments` (a JSON string) into an object; empty means `{}`.
pub(crate) fn parse_arguments(args: &str) -> std::result::Result<Value, String> {
    if args.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("tool call arguments must be a JSON object".into()),
        Err(e) => Err(format!("tool call arguments are not valid JSON: {e}")),
    }
}

/// A user message `content` as the parts of a provider whose text part is `{"text": ...}`
/// (Gemini, Bedrock): a string is one text part, `null` none; each `image_url` part goes
/// through `image` (given its `image_url.url`, when there is one).
pub(crate) fn text_or_image_parts(
    content: &Value,
    provider: &str,
    image: impl Fn(Option<&str>) -> Result<Value>,
) -> Result<Vec<Value>> {
    match content {
        Value::String(s) => Ok(vec![json!({"text": s})]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out
                        .push(json!({"text": p.get("text").and_then(Value::as_str).unwrap_or("")})),
                    Some("image_url") => {
                        out.push(image(p.pointer("/image_url/url").and_then(Value::as_str))?)
                    }
                    other => {
                        return Err(TranslateError::invalid(format!(
                        "content part type {other:?} is not supported by the {provider} provider"
                    )))
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(TranslateError::invalid(
            "message content must be a string or an array",
        )),
    }
}

/// An assistant message as the parts of a provider whose text part is `{"text": ...}`
/// (Gemini, Bedrock): the text, when there is any, then each tool call through `call`.
pub(crate) fn text_and_call_parts(
    message: &Value,
    mut call: impl FnMut(&Value) -> Result<Value>,
) -> Result<Vec<Value>> {
    let mut parts = Vec::new();
    let text = content_text(message.get("content").unwrap_or(&Value::Null))?;
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    for c in tool_calls(message) {
        parts.push(call(c)?);
    }
    Ok(parts)
}

/// One conversation turn for a provider: its role and its parts.
pub(crate) type Turn = (&'static str, Vec<Value>);

/// Chat messages → (system parts, turns) for a provider whose text part is `{"text": ...}`
/// (Gemini, Bedrock): the text of `system` / `developer` messages becomes system parts; every
/// other message goes through `turn` (its index, role and the message), which gives the
/// provider role and parts. Consecutive turns of the same provider role are merged (the
/// providers want alternating turns).
pub(crate) fn system_and_turns<'m>(
    messages: &'m [Value],
    mut turn: impl FnMut(usize, &str, &'m Value) -> Result<Turn>,
) -> Result<(Vec<Value>, Vec<Turn>)> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if let "system" | "developer" = role {
            let t = content_text(m.get("content").unwrap_or(&Value::Null))?;
            if !t.is_empty() {
                system.push(json!({"text": t}));
            }
            continue;
        }
        let (role, parts) = turn(i, role, m)?;
        match turns.last_mut() {
            Some((r, p)) if *r == role => p.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    Ok((system, turns))
}

// ---- writing chat completions (shared by the outbound response translators) --------------

/// One `tool_calls[]` entry of a chat completion message.
pub(crate) fn tool_call(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// A `chat.completion` body with one choice. `content` is `null` only when there are tool
/// calls and no text.
pub(crate) fn completion_body(
    id: &str,
    created: u64,
    model: &str,
    text: String,
    calls: Vec<Value>,
    finish_reason: Option<&str>,
    usage: Usage,
) -> Vec<u8> {
    let mut message = json!({"role": "assistant", "content": null, "refusal": null});
    if calls.is_empty() || !text.is_empty() {
        message["content"] = text.into();
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    to_body(&json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage,
    }))
}

// ---- incoming chunks (inbound translators read the canonical stream) --------------------

/// Deserializes a JSON array keeping only its first element.
pub(crate) fn first_of_seq<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let first = seq.next_element::<T>()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_any(V(PhantomData))
}

#[derive(Deserialize, Debug)]
pub(crate) struct ChunkIn<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "first_of_seq")]
    pub choices: Option<ChoiceIn<'a>>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct ChoiceIn<'a> {
    #[serde(borrow, default)]
    pub delta: Option<DeltaIn<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct DeltaIn<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCallIn<'a>>>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct ToolCallIn<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionIn<'a>>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct FunctionIn<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}

/// One event of an OpenAI chat stream.
pub(crate) enum ChatEvent<'a> {
    Chunk(ChunkIn<'a>),
    Done,
}

pub(crate) fn parse_chat_event(data: &[u8]) -> Result<ChatEvent<'_>> {
    if data == b"[DONE]" {
        return Ok(ChatEvent::Done);
    }
    serde_json::from_slice(data)
        .map(ChatEvent::Chunk)
        .map_err(|e| TranslateError::upstream(format!("bad chat completion chunk: {e}")))
}

// ---- embeddings -----------------------------------------------------------------------------

/// The text inputs of an OpenAI embeddings request: a string or an array of strings (token
/// arrays are not translatable).
pub fn embedding_inputs(req: &Map<String, Value>) -> Result<Vec<&str>> {
    let not_text = || TranslateError::invalid("input must be a string or an array of strings");
    match req.get("input") {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(a)) => a.iter().map(|v| v.as_str().ok_or_else(not_text)).collect(),
        _ => Err(not_text()),
    }
}

/// Whether the client asked for base64 vectors (`encoding_format`; OpenAI SDKs do by default).
pub fn embedding_base64(req: &Map<String, Value>) -> Result<bool> {
    match req.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(TranslateError::invalid(format!(
            "encoding_format {other:?} is not supported"
        ))),
    }
}

/// An OpenAI embeddings list from vectors, as floats or as base64 of little-endian f32 bytes.
pub fn embeddings_body<V: AsRef<[f32]>>(
    vectors: &[V],
    model: &str,
    base64: bool,
    tokens: u64,
) -> Vec<u8> {
    use base64::Engine;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let v = v.as_ref();
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    to_body(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_writer_shapes() {
        let mut w = ChunkWriter::new("m".into(), 7);
        w.id = "id1".into();
        let mut out = Vec::new();
        w.role(&mut out);
        w.tool_start(&mut out, 0, "call_1", "f", "");
        w.tool_args(&mut out, 0, "{\"a\"");
        w.finish(&mut out, "tool_calls");
        w.usage(&mut out, &Usage::new(3, 4, Some(1)));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split("\n\n").filter(|s| !s.is_empty()).collect();
        assert_eq!(
            lines[0],
            r#"data: {"id":"id1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#
        );
        assert_eq!(
            lines[1],
            r#"data: {"id":"id1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"logprobs":null,"finish_reason":null}]}"#
        );
        assert!(
            lines[2].contains(r#""tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]"#)
        );
        assert!(lines[3].contains(r#""delta":{},"logprobs":null,"finish_reason":"tool_calls""#));
        assert_eq!(
            lines[4],
            r#"data: {"id":"id1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}}"#
        );
    }

    #[test]
    fn peek() {
        let i =
            peek_request(br#"{"model":"x","stream":true,"stream_options":{"include_usage":true}}"#)
                .unwrap();
        assert_eq!(i.model.as_deref(), Some("x"));
        assert!(i.stream && i.include_usage);
        assert!(peek_request(b"nope").is_err());
    }

    #[test]
    fn first_of_seq_keeps_first() {
        let c: ChunkIn = serde_json::from_str(
            r#"{"id":"a","choices":[{"delta":{"content":"x"}},{"delta":{"content":"y"}}]}"#,
        )
        .unwrap();
        let d = c.choices.unwrap().delta.unwrap();
        assert_eq!(d.content.as_deref(), Some("x"));
    }
}
