//! OpenAI request parsing and response bodies.
//!
//! Everything here is pure (apart from the id counter and the clock): it
//! turns request bytes into either a complete JSON body or the list of SSE
//! events of a streamed reply, so it is unit-testable without a server.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// Result of handling a request body.
#[derive(Debug)]
pub enum Output {
    Json(Bytes),
    /// SSE events in order (`data: ...\n\n` each, ending with `[DONE]`);
    /// `content_events` counts the leading events that carry reply text.
    Stream {
        events: Vec<Bytes>,
        content_events: usize,
    },
}

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
    model: String,
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
    model: String,
    #[serde(default)]
    prompt: Value,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
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
    usage: Usage,
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

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `POST /v1/chat/completions`.
pub fn chat_completions(body: &[u8], stream_chunks: usize) -> Result<Output, String> {
    let req: ChatRequest = parse(body)?;
    let mut prompt_chars = 0;
    let mut last_user = String::new();
    for msg in &req.messages {
        let text = msg.content.as_ref().map(Content::text).unwrap_or_default();
        prompt_chars += text.chars().count();
        if msg.role == "user" {
            last_user = text;
        }
    }
    let reply = format!("echo: {last_user}");
    let usage = Usage::new(prompt_tokens(prompt_chars), completion_tokens(&reply));
    let id = format!("chatcmpl-mock-{}", next_id());
    let created = now();

    if req.stream != Some(true) {
        return Ok(Output::Json(to_bytes(&ChatCompletion {
            id: &id,
            object: "chat.completion",
            created,
            model: &req.model,
            choices: [ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: &reply,
                },
                logprobs: None,
                finish_reason: "stop",
            }],
            usage,
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
            model: &req.model,
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
    if include_usage(req.stream_options.as_ref()) {
        events.push(chunk(Delta::default(), None, Some(usage)));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(Output::Stream {
        events,
        content_events: pieces.len(),
    })
}

/// `POST /v1/completions` (legacy text completions).
pub fn completions(body: &[u8], stream_chunks: usize) -> Result<Output, String> {
    let req: CompletionRequest = parse(body)?;
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
            model: &req.model,
            choices: [TextChoice {
                text: &reply,
                index: 0,
                logprobs: None,
                finish_reason: Some("stop"),
            }],
            usage: Some(usage),
        })));
    }

    let chunk = |text, finish_reason| {
        sse_event(&TextCompletion {
            id: &id,
            object,
            created,
            model: &req.model,
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
    if include_usage(req.stream_options.as_ref()) {
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
            model: &req.model,
            choices: [],
            usage,
        }));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(Output::Stream {
        events,
        content_events: pieces.len(),
    })
}

/// `POST /v1/embeddings`.
pub fn embeddings(body: &[u8]) -> Result<Output, String> {
    let req: EmbeddingRequest = parse(body)?;
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
        model: &req.model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })))
}

// ---- pure helpers ----

fn include_usage(opts: Option<&StreamOptions>) -> bool {
    opts.and_then(|o| o.include_usage).unwrap_or(false)
}

/// Mock tokenizer: roughly four characters per token, like English text.
fn prompt_tokens(chars: usize) -> usize {
    chars.div_ceil(4)
}

/// Mock tokenizer for replies: one token per whitespace-separated word.
fn completion_tokens(text: &str) -> usize {
    text.split_whitespace().count()
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

/// Split `text` into at most `n` pieces of roughly equal char counts, on char
/// boundaries; shorter texts give one piece per char.
pub fn split_text(text: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    let n = n.clamp(1, chars.max(1));
    (0..n)
        .map(|i| &text[bounds[i * chars / n]..bounds[(i + 1) * chars / n]])
        .collect()
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

/// Deterministic pseudo-embedding in [-1, 1]: FNV-1a of the text seeds a
/// splitmix64 sequence.
pub fn embedding_vector(text: &str, dims: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // 24 random bits are exactly representable in an f32 mantissa.
            (z >> 40) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
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

fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// One SSE event: `data: <json>\n\n`.
fn sse_event<T: Serialize>(value: &T) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut buf, value);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
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
    fn split_text_rejoins_and_balances() {
        let text = "echo: héllo wörld, ünïcode ✓";
        for n in 0..40 {
            let pieces = split_text(text, n);
            assert_eq!(pieces.concat(), text);
            assert_eq!(pieces.len(), n.clamp(1, text.chars().count()));
            let sizes: Vec<usize> = pieces.iter().map(|p| p.chars().count()).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{sizes:?}");
        }
        assert_eq!(split_text("", 8), vec![""]);
        assert_eq!(split_text("abc", 8), vec!["a", "b", "c"]);
    }

    #[test]
    fn chat_non_stream() {
        let body = br#"{"model":"gpt-4o-mini","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":"first"},
            {"role":"assistant","content":null},
            {"role":"user","content":[{"type":"text","text":"hello "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"world"}]}
        ]}"#;
        let Output::Json(out) = chat_completions(body, 8).unwrap() else {
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
        let Output::Stream {
            events,
            content_events,
        } = chat_completions(body, 4).unwrap()
        else {
            panic!("expected stream")
        };
        assert_eq!(content_events, 4);
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
        let Output::Stream { events, .. } = chat_completions(body, 8).unwrap() else {
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
        assert!(chat_completions(b"{not json", 8).is_err());
        assert!(chat_completions(br#"{"messages":[]}"#, 8).is_err());
        assert!(completions(b"[]", 8).is_err());
        assert!(embeddings(br#"{"model":"m","input":[]}"#).is_err());
        assert!(embeddings(br#"{"model":"m","input":{}}"#).is_err());
        assert!(embeddings(br#"{"model":"m","input":"x","dimensions":0}"#).is_err());
    }

    #[test]
    fn completions_plain_and_stream() {
        let Output::Json(out) = completions(
            br#"{"model":"gpt-3.5-turbo-instruct","prompt":["say hi","b"]}"#,
            8,
        )
        .unwrap() else {
            panic!("expected json")
        };
        let v = json(&out);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "echo: say hi");
        assert_eq!(v["usage"]["prompt_tokens"], 2);

        let Output::Stream { events, .. } =
            completions(br#"{"model":"m","prompt":"abc","stream":true}"#, 3).unwrap()
        else {
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
        let Output::Json(out) =
            embeddings(br#"{"model":"text-embedding-3-small","input":["a","b",[1,2,3]]}"#).unwrap()
        else {
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

        let Output::Json(out) =
            embeddings(br#"{"model":"m","input":"a","dimensions":4,"encoding_format":"base64"}"#)
                .unwrap()
        else {
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
    fn embedding_vector_is_deterministic_and_bounded() {
        let a = embedding_vector("hello", 512);
        assert_eq!(a, embedding_vector("hello", 512));
        assert_ne!(a, embedding_vector("hello!", 512));
        assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert!(a.iter().any(|x| *x < 0.0) && a.iter().any(|x| *x > 0.0));
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
