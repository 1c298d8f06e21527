//! OpenAI request parsing and response bodies.
//!
//! Everything here is pure (apart from the id counter and the clock): it
//! turns request bytes into either a complete JSON body or the list of SSE
//! events of a streamed reply, so it is unit-testable without a server.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reply::{
    completion_tokens, embedding_vector, next_id, now, prompt_tokens, split_text, to_bytes, Output,
    Reply, StreamOutput, Tools, Transcript,
};
use crate::wire::sse_data as sse_event;

pub const HEALTH_BODY: &[u8] = br#"{"status":"ok"}"#;

pub const MODELS_BODY: &[u8] = concat!(
    r#"{"object":"list","data":["#,
    r#"{"id":"gpt-4o-mini","object":"model","created":1700000000,"owned_by":"mock"},"#,
    r#"{"id":"gpt-4o","object":"model","created":1700000000,"owned_by":"mock"},"#,
    r#"{"id":"gpt-3.5-turbo-instruct","object":"model","created":1700000000,"owned_by":"mock"},"#,
    r#"{"id":"text-embedding-3-small","object":"model","created":1700000000,"owned_by":"mock"}"#,
    "]}"
)
.as_bytes();

/// Embedding length when the request gives no `dimensions`.
const DEFAULT_DIMENSIONS: usize = 16;
/// Cap on `dimensions`, so one request cannot make the mock allocate gigabytes.
const MAX_DIMENSIONS: usize = 65_536;

/// Body of a 4xx/5xx response in OpenAI's error shape.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Envelope<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<&'a str>,
        code: Option<&'a str>,
    }
    to_bytes(&Envelope {
        error: Inner {
            message,
            kind,
            param: None,
            code,
        },
    })
}

// ---- requests ----

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(default)]
    text: Option<String>,
}

impl Content {
    /// The message text; array content is the concatenation of its text parts
    /// (image and audio parts contribute nothing).
    fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        }
    }
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Value,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    #[serde(default)]
    model: Option<String>,
    input: Value,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    encoding_format: Option<String>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))
}

/// The model to report: the Azure deployment when given, else the request's
/// `model`, which plain OpenAI requires.
fn resolve_model(deployment: Option<&str>, model: Option<String>) -> Result<String, String> {
    match (deployment, model) {
        (Some(d), _) => Ok(d.to_owned()),
        (None, Some(m)) => Ok(m),
        (None, None) => Err("you must provide a model parameter".to_owned()),
    }
}

// ---- responses ----

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChatChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [TextChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: usize,
    total_tokens: usize,
}

// ---- handlers ----

/// `POST /v1/chat/completions`; `deployment` is the Azure deployment name,
/// which replaces the request's `model`.
/// `POST /v1/responses`, non-streaming: the reply to the last user text of `input` (a
/// string, or message items with string or `input_text` content) as a `response` object.
/// Its id starts `resp_mock_native_` so tests can tell a passed-through request from one the
/// gateway translated to chat.
pub fn responses(body: &[u8]) -> Result<Output, String> {
    let req: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let model = req["model"]
        .as_str()
        .ok_or("`model` is required")?
        .to_owned();
    if req["stream"] == serde_json::Value::Bool(true) {
        return Err("the mock serves the Responses API without streaming only".into());
    }
    let mut transcript = Transcript::default();
    match &req["input"] {
        serde_json::Value::String(text) => transcript.message(true, text.clone(), false),
        serde_json::Value::Array(items) => {
            for item in items {
                let text = match &item["content"] {
                    serde_json::Value::String(t) => t.clone(),
                    serde_json::Value::Array(parts) => {
                        parts.iter().filter_map(|p| p["text"].as_str()).collect()
                    }
                    _ => String::new(),
                };
                transcript.message(item["role"] == "user", text, false);
            }
        }
        _ => return Err("`input` is required".into()),
    }
    let reply = Reply::new(&transcript, Tools::default(), None).text;
    let (input, output) = (transcript.input_tokens(), completion_tokens(&reply));
    let id = next_id();
    Ok(Output::Json(to_bytes(&serde_json::json!({
        "id": format!("resp_mock_native_{id}"),
        "object": "response",
        "created_at": now(),
        "status": "completed",
        "model": model,
        "output": [{
            "type": "message",
            "id": format!("msg_mock_{id}"),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": reply, "annotations": []}],
        }],
        "usage": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output},
    }))))
}

pub fn chat_completions(
    body: &[u8],
    stream_chunks: usize,
    deployment: Option<&str>,
    reports_usage: bool,
) -> Result<Output, String> {
    let req: ChatRequest = parse(body)?;
    let model = resolve_model(deployment, req.model)?;
    let mut transcript = Transcript::default();
    for msg in &req.messages {
        let text = msg.content.as_ref().map(Content::text).unwrap_or_default();
        transcript.message(msg.role == "user", text, false);
    }
    let reply = Reply::new(&transcript, Tools::default(), None).text;
    let usage = Usage::new(transcript.input_tokens(), completion_tokens(&reply));
    let id = format!("chatcmpl-mock-{}", next_id());
    let created = now();

    if req.stream != Some(true) {
        return Ok(Output::Json(to_bytes(&ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model: &model,
            choices: [ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: &reply,
                },
                logprobs: None,
                finish_reason: "stop",
            }],
            usage: reports_usage.then_some(usage),
        })));
    }

    let chunk = |delta: Delta<'_>, finish_reason, usage: Option<Usage>| {
        let choices = if usage.is_some() {
            Vec::new()
        } else {
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }]
        };
        sse_event(&ChatChunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model: &model,
            choices,
            usage,
        })
    };
    let pieces = split_text(&reply, stream_chunks);
    let mut events = Vec::with_capacity(pieces.len() + 3);
    for (i, piece) in pieces.iter().enumerate() {
        let delta = Delta {
            role: (i == 0).then_some("assistant"),
            content: Some(piece),
        };
        events.push(chunk(delta, None, None));
    }
    events.push(chunk(Delta::default(), Some("stop"), None));
    if reports_usage && include_usage(req.stream_options.as_ref()) {
        events.push(chunk(Delta::default(), None, Some(usage)));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(sse_output(events, pieces.len()))
}

/// `POST /v1/completions` (legacy text completions).
pub fn completions(
    body: &[u8],
    stream_chunks: usize,
    deployment: Option<&str>,
    reports_usage: bool,
) -> Result<Output, String> {
    let req: CompletionRequest = parse(body)?;
    let model = resolve_model(deployment, req.model)?;
    let prompt = prompt_text(&req.prompt);
    let reply = format!("echo: {prompt}");
    let usage = Usage::new(
        prompt_tokens(prompt.chars().count()),
        completion_tokens(&reply),
    );
    let id = format!("cmpl-mock-{}", next_id());
    let created = now();
    let object = "text_completion";

    if req.stream != Some(true) {
        return Ok(Output::Json(to_bytes(&TextCompletion {
            id: &id,
            object,
            created,
            model: &model,
            choices: [TextChoice {
                text: &reply,
                index: 0,
                logprobs: None,
                finish_reason: Some("stop"),
            }],
            usage: reports_usage.then_some(usage),
        })));
    }

    let chunk = |text, finish_reason| {
        sse_event(&TextCompletion {
            id: &id,
            object,
            created,
            model: &model,
            choices: [TextChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
        })
    };
    let pieces = split_text(&reply, stream_chunks);
    let mut events: Vec<Bytes> = pieces.iter().map(|p| chunk(p, None)).collect();
    events.push(chunk("", Some("stop")));
    if reports_usage && include_usage(req.stream_options.as_ref()) {
        #[derive(Serialize)]
        struct UsageChunk<'a> {
            id: &'a str,
            object: &'static str,
            created: u64,
            model: &'a str,
            choices: [(); 0],
            usage: Usage,
        }
        events.push(sse_event(&UsageChunk {
            id: &id,
            object,
            created,
            model: &model,
            choices: [],
            usage,
        }));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(sse_output(events, pieces.len()))
}

/// `POST /v1/embeddings`.
pub fn embeddings(body: &[u8], deployment: Option<&str>) -> Result<Output, String> {
    let req: EmbeddingRequest = parse(body)?;
    let model = resolve_model(deployment, req.model)?;
    let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dims) {
        return Err(format!("dimensions must be between 1 and {MAX_DIMENSIONS}"));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("unsupported encoding_format {other:?}")),
    };
    let inputs = embedding_inputs(&req.input)?;
    let mut tokens = 0;
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            tokens += input.tokens;
            let vector = embedding_vector(&input.text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                EmbeddingValue::Base64(base64_encode(&bytes))
            } else {
                EmbeddingValue::Floats(vector)
            };
            EmbeddingItem {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    Ok(Output::Json(to_bytes(&EmbeddingList {
        object: "list",
        data,
        model: &model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })))
}

// ---- pure helpers ----

/// OpenAI-style SSE stream whose first `content_events` events carry text.
fn sse_output(events: Vec<Bytes>, content_events: usize) -> Output {
    Output::Stream(StreamOutput {
        events,
        content: 0..content_events,
        content_type: "text/event-stream",
        bad_event: Bytes::from_static(b"data: {not json\n\n"),
        crc_framed: false,
    })
}

fn include_usage(opts: Option<&StreamOptions>) -> bool {
    opts.and_then(|o| o.include_usage).unwrap_or(false)
}

/// The legacy `prompt`: a string, or the first element of an array (a token
/// array there is echoed as its JSON text).
fn prompt_text(prompt: &Value) -> String {
    let first = match prompt {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    };
    match first {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

struct EmbeddingInput {
    /// What the vector is derived from.
    text: String,
    tokens: usize,
}

/// `input` is a string, an array of strings, a token array, or an array of
/// token arrays; each token array counts as one item.
fn embedding_inputs(input: &Value) -> Result<Vec<EmbeddingInput>, String> {
    let text_item = |s: &str| EmbeddingInput {
        text: s.to_owned(),
        tokens: prompt_tokens(s.chars().count()),
    };
    let tokens_item = |items: &[Value]| -> Option<EmbeddingInput> {
        items.iter().all(Value::is_u64).then(|| EmbeddingInput {
            text: Value::Array(items.to_vec()).to_string(),
            tokens: items.len(),
        })
    };
    let invalid = || "input must be a string, an array of strings, or token arrays".to_owned();
    match input {
        Value::String(s) => Ok(vec![text_item(s)]),
        Value::Array(items) if items.is_empty() => Err("input must not be empty".to_owned()),
        Value::Array(items) if items[0].is_number() => {
            tokens_item(items).map(|i| vec![i]).ok_or_else(invalid)
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(text_item(s)),
                Value::Array(tokens) => tokens_item(tokens).ok_or_else(invalid),
                _ => Err(invalid()),
            })
            .collect(),
        _ => Err(invalid()),
    }
}

/// Standard base64 with padding (what the OpenAI SDKs decode).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn events_json(events: &[Bytes]) -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.as_ref() != b"data: [DONE]\n\n")
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                let payload = s
                    .strip_prefix("data: ")
                    .unwrap()
                    .strip_suffix("\n\n")
                    .unwrap();
                serde_json::from_str(payload).unwrap()
            })
            .collect()
    }

    #[test]
    fn chat_non_stream() {
        let body = br#"{"model":"gpt-4o-mini","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":"first"},
            {"role":"assistant","content":null},
            {"role":"user","content":[{"type":"text","text":"hello "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"world"}]}
        ]}"#;
        let Output::Json(out) = chat_completions(body, 8, None, true).unwrap() else {
            panic!("expected json")
        };
        let v = json(&out);
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["choices"][0]["message"]["content"], "echo: hello world");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(v["choices"][0]["logprobs"].is_null());
        // "be brief" + "first" + "hello world" = 8 + 5 + 11 = 24 chars.
        assert_eq!(v["usage"]["prompt_tokens"], 6);
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["usage"]["total_tokens"], 9);
    }

    #[test]
    fn chat_stream_events() {
        let body = br#"{"model":"m/x","messages":[{"role":"user","content":"hi there"}],
            "stream":true,"stream_options":{"include_usage":true}}"#;
        let Output::Stream(StreamOutput {
            events, content, ..
        }) = chat_completions(body, 4, None, true).unwrap()
        else {
            panic!("expected stream")
        };
        assert_eq!(content, 0..4);
        assert_eq!(events.last().unwrap().as_ref(), b"data: [DONE]\n\n");
        let chunks = events_json(&events);
        assert_eq!(chunks.len(), 6);
        let text: String = chunks[..4]
            .iter()
            .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, "echo: hi there");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(chunks[1]["choices"][0]["delta"].get("role").is_none());
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "m/x");
            assert_eq!(c["id"], chunks[0]["id"]);
        }
        assert!(chunks[3]["choices"][0]["finish_reason"].is_null());
        assert_eq!(chunks[4]["choices"][0]["delta"], serde_json::json!({}));
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[5]["choices"], serde_json::json!([]));
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn chat_stream_without_usage() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let Output::Stream(StreamOutput { events, .. }) =
            chat_completions(body, 8, None, true).unwrap()
        else {
            panic!("expected stream")
        };
        let chunks = events_json(&events);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert!(chat_completions(b"{not json", 8, None, true).is_err());
        assert!(chat_completions(br#"{"messages":[]}"#, 8, None, true).is_err());
        assert!(completions(b"[]", 8, None, true).is_err());
        assert!(embeddings(br#"{"model":"m","input":[]}"#, None).is_err());
        assert!(embeddings(br#"{"model":"m","input":{}}"#, None).is_err());
        assert!(embeddings(br#"{"model":"m","input":"x","dimensions":0}"#, None).is_err());
    }

    #[test]
    fn completions_plain_and_stream() {
        let Output::Json(out) = completions(
            br#"{"model":"gpt-3.5-turbo-instruct","prompt":["say hi","b"]}"#,
            8,
            None,
            true,
        )
        .unwrap() else {
            panic!("expected json")
        };
        let v = json(&out);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "echo: say hi");
        assert_eq!(v["usage"]["prompt_tokens"], 2);

        let Output::Stream(StreamOutput { events, .. }) = completions(
            br#"{"model":"m","prompt":"abc","stream":true}"#,
            3,
            None,
            true,
        )
        .unwrap() else {
            panic!("expected stream")
        };
        let chunks = events_json(&events);
        let text: String = chunks
            .iter()
            .map(|c| c["choices"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "echo: abc");
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
    }

    #[test]
    fn embeddings_float_and_base64() {
        let Output::Json(out) = embeddings(
            br#"{"model":"text-embedding-3-small","input":["a","b",[1,2,3]]}"#,
            None,
        )
        .unwrap() else {
            panic!("expected json")
        };
        let v = json(&out);
        assert_eq!(v["model"], "text-embedding-3-small");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data[2]["index"], 2);
        let vec0 = data[0]["embedding"].as_array().unwrap();
        assert_eq!(vec0.len(), DEFAULT_DIMENSIONS);
        assert_ne!(data[0]["embedding"], data[1]["embedding"]);
        assert_eq!(v["usage"]["prompt_tokens"], 1 + 1 + 3);

        let Output::Json(out) = embeddings(
            br#"{"model":"m","input":"a","dimensions":4,"encoding_format":"base64"}"#,
            None,
        )
        .unwrap() else {
            panic!("expected json")
        };
        let v = json(&out);
        let expected: Vec<u8> = embedding_vector("a", 4)
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(v["data"][0]["embedding"], base64_encode(&expected));
    }

    #[test]
    fn base64_known_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn error_body_shape() {
        let v = json(&error_body("nope", "invalid_request_error", None));
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"nope","type":"invalid_request_error","param":null,"code":null}})
        );
    }

    #[test]
    fn constant_bodies_are_valid_json() {
        assert_eq!(json(HEALTH_BODY)["status"], "ok");
        let models = json(MODELS_BODY);
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"gpt-4o-mini") && ids.contains(&"text-embedding-3-small"));
    }
}
