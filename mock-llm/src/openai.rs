//! OpenAI request parsing and response bodies: chat, completions and responses here,
//! the other APIs in submodules (embeddings, audio, images, moderations, files, batches).
//!
//! Everything here is pure (apart from the id counter, the clock and the files and batches
//! [`store`]): it turns request bytes into a complete body or the list of events of a
//! streamed reply, so it is unit-testable without a server.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reply::{
    completion_tokens, embedding_vector, next_id, now, prompt_tokens, split_text, to_bytes, Output,
    Rejection, Reply, StreamOutput, Tools, Transcript,
};
use crate::wire::sse_data as sse_event;

pub mod audio;
pub mod batches;
mod embeddings;
pub mod files;
pub mod images;
pub mod moderations;
mod multipart;
pub mod store;
#[cfg(test)]
mod testing;

use embeddings::base64_encode;
pub use embeddings::embeddings;

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
    error_body_about(message, kind, None, code)
}

/// [`error_body`] naming the request parameter at fault.
pub fn error_body_about(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Bytes {
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
            param,
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

/// An upload or media request as its handler sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call<'a> {
    pub body: &'a [u8],
    /// The request's `content-type` (a multipart body's boundary is in it).
    pub content_type: Option<&'a str>,
    /// The Azure deployment, which stands for the model.
    pub deployment: Option<&'a str>,
}

impl Call<'_> {
    /// The model to report ([`resolve_model`]), refused as OpenAI does without one.
    fn model(&self, model: Option<&str>) -> Result<String, Rejection> {
        resolve_model(self.deployment, model.map(str::to_owned))
            .map_err(|m| Rejection::invalid("model", m))
    }

    /// The JSON body as `T`.
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Rejection> {
        parse(self.body).map_err(Rejection::from)
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
    /// Absent unless the client asked for usage; then `null` on every chunk but the last
    /// one, which has the usage and no choices (as OpenAI sends them).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
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

    let with_usage = reports_usage && include_usage(req.stream_options.as_ref());
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
            usage: with_usage.then_some(usage),
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
    if with_usage {
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

#[cfg(test)]
mod tests;
