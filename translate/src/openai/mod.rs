//! OpenAI Chat Completions, the gateway's canonical form: request peeking, the completion
//! writer the outbound translators share (their request readers are in `openai/request.rs`), the chunk writer every outbound
//! stream translator uses, borrowed views of incoming chunks for the inbound translators,
//! usage, and error bodies.

use crate::error::{Result, TranslateError};
use crate::sse;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

mod replay;
mod request;

pub use replay::{chat_stream_from_response, fold_chat_stream};
pub(crate) use request::*;

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
