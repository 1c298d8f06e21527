//! Reply logic shared by every API dialect: what the mock answers (an echo of
//! the last user text, or a tool call), its deterministic token counts, the
//! deterministic embedding vectors, and the handler output type that the
//! server turns into a response.
//!
//! Each dialect module only parses its own request shape into a
//! [`Transcript`] and renders the resulting [`Reply`] in its own wire format.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// Text sent before a tool call (Anthropic and Bedrock put it in its own
/// text block, like Claude does).
pub const TOOL_PREAMBLE: &str = "Let me check.";
/// Arguments of every mock tool call.
pub const TOOL_INPUT: &str = r#"{"location":"Paris"}"#;
/// Tool name when tools are offered but none of them has a name.
const DEFAULT_TOOL: &str = "get_weather";
/// Word in the last user text that makes the mock call a tool.
const TOOL_TRIGGER: &str = "weather";

/// Result of handling a request body.
#[derive(Debug)]
pub enum Output {
    Json(Bytes),
    Stream(StreamOutput),
    /// A whole body that is not JSON: plain-text transcripts, subtitles, file contents.
    Raw {
        content_type: &'static str,
        body: Bytes,
    },
}

/// Why a handler refused a request: the status, the message, and, for OpenAI's error shape
/// (the only one that names them), the error type and the parameter at fault.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
}

impl Rejection {
    /// 400 `invalid_request_error` about `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::from(message.into())
        }
    }

    /// 404 for an object that does not exist; OpenAI types it `invalid_request_error`, not
    /// `not_found_error`.
    pub fn no_such(object: &str, id: &str) -> Self {
        Self {
            status: 404,
            ..Self::invalid("id", format!("No such {object} object: {id}"))
        }
    }
}

/// A plain 400 `invalid_request_error`, what the chat-style handlers' messages mean.
impl From<String> for Rejection {
    fn from(message: String) -> Self {
        Self {
            status: 400,
            message,
            kind: "invalid_request_error",
            param: None,
        }
    }
}

/// A reply body (or an event's data) as JSON, for the dialects' unit tests.
#[cfg(test)]
pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// For the dialects' unit tests, which know which kind of reply they get.
#[cfg(test)]
impl Output {
    pub fn into_json(self) -> Bytes {
        match self {
            Output::Json(body) => body,
            other => panic!("expected json, got {other:?}"),
        }
    }

    pub fn into_stream(self) -> StreamOutput {
        match self {
            Output::Stream(out) => out,
            other => panic!("expected stream, got {other:?}"),
        }
    }

    /// (content type, body) of a raw reply.
    pub fn into_raw(self) -> (&'static str, Bytes) {
        match self {
            Output::Raw { content_type, body } => (content_type, body),
            other => panic!("expected a raw body, got {other:?}"),
        }
    }
}

/// A streamed reply, already encoded, plus what fault injection needs to
/// know about it.
#[derive(Debug)]
pub struct StreamOutput {
    /// Body pieces in order; each is written as one body frame.
    pub events: Vec<Bytes>,
    /// Indices of the events that carry reply content (text or tool input):
    /// faults cut the stream half-way through these.
    pub content: Range<usize>,
    pub content_type: &'static str,
    /// Well-framed but malformed event for `x-mock-fail: bad-json-chunk`.
    pub bad_event: Bytes,
    /// Events are AWS event-stream frames (`x-mock-fail: bad-crc` applies).
    pub crc_framed: bool,
}

/// The conversation as far as the mock cares: how much prompt text there is
/// and what the user said last.
#[derive(Debug, Default)]
pub struct Transcript {
    chars: usize,
    last_user: String,
    last_user_is_tool_result: bool,
}

impl Transcript {
    /// System prompt text (counts toward input tokens only).
    pub fn system(&mut self, text: &str) {
        self.chars += text.chars().count();
    }

    /// One message. `tool_result` marks a user turn that returns tool output,
    /// which must not trigger another tool call (or agent loops never end).
    pub fn message(&mut self, from_user: bool, text: String, tool_result: bool) {
        self.chars += text.chars().count();
        if from_user {
            self.last_user = text;
            self.last_user_is_tool_result = tool_result;
        }
    }

    pub fn input_tokens(&self) -> usize {
        prompt_tokens(self.chars)
    }
}

/// Tools the request offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tools<'a> {
    pub offered: bool,
    /// Name of the first tool that has one.
    pub first_name: Option<&'a str>,
}

/// What the mock answers.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// `"echo: " + last user text`, or [`TOOL_PREAMBLE`] before a tool call.
    pub text: String,
    /// Name of the tool to call (its input is always [`TOOL_INPUT`]).
    pub tool: Option<String>,
    pub input_tokens: usize,
}

impl Reply {
    /// Tool call when `forced` (the `x-mock-tool-call` header) names one, or
    /// when tools are offered and the last user text mentions the weather;
    /// an echo otherwise.
    pub fn new(transcript: &Transcript, tools: Tools<'_>, forced: Option<&str>) -> Self {
        let tool = match forced {
            Some(name) => Some(name.to_owned()),
            None if tools.offered
                && !transcript.last_user_is_tool_result
                && mentions(&transcript.last_user, TOOL_TRIGGER) =>
            {
                Some(tools.first_name.unwrap_or(DEFAULT_TOOL).to_owned())
            }
            None => None,
        };
        let text = match tool {
            Some(_) => TOOL_PREAMBLE.to_owned(),
            None => format!("echo: {}", transcript.last_user),
        };
        Self {
            text,
            tool,
            input_tokens: transcript.input_tokens(),
        }
    }

    /// Output tokens of the text part.
    pub fn text_tokens(&self) -> usize {
        completion_tokens(&self.text)
    }

    /// Output tokens of the tool call's arguments (0 without one).
    pub fn tool_tokens(&self) -> usize {
        if self.tool.is_some() {
            prompt_tokens(TOOL_INPUT.len())
        } else {
            0
        }
    }

    /// Output tokens of a reply made of the text and the tool call.
    pub fn output_tokens(&self) -> usize {
        self.text_tokens() + self.tool_tokens()
    }
}

/// True if `word` occurs in `text` as a whole word, ignoring ASCII case.
fn mentions(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Text of a JSON value that is a string or a list of blocks with `text`
/// (and, for tool results, `json`) members: system prompts and tool results
/// in the Anthropic and Bedrock shapes. Other blocks contribute nothing.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match (b.get("text"), b.get("json")) {
                (Some(Value::String(s)), _) => s.clone(),
                (_, Some(json)) => json.to_string(),
                _ => String::new(),
            })
            .collect(),
        _ => String::new(),
    }
}

/// Mock tokenizer: roughly four characters per token, like English text.
pub fn prompt_tokens(chars: usize) -> usize {
    chars.div_ceil(4)
}

/// Mock tokenizer for replies: one token per whitespace-separated word.
pub fn completion_tokens(text: &str) -> usize {
    text.split_whitespace().count()
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

/// Deterministic bag-of-words embedding of unit length: each word (lower-cased runs of
/// letters and digits) stands for a pseudo-random direction seeded by its FNV-1a hash, and
/// the text is the normalised sum of its words' directions. So texts that share most words
/// are close (cosine ≈ shared / √(words₁·words₂), within ~1/√dims of noise) and a text is
/// far from one it shares nothing with — what a semantic cache's tests need from a mock.
/// A text without words gets its whole text's direction.
pub fn embedding_vector(text: &str, dims: usize) -> Vec<f32> {
    let lower = text.to_lowercase();
    let mut words = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .peekable();
    let mut sum = vec![0.0f32; dims];
    if words.peek().is_none() {
        add_direction(&mut sum, text);
    }
    for word in words {
        add_direction(&mut sum, word);
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        sum.iter_mut().for_each(|x| *x /= norm);
    }
    sum
}

/// Adds the pseudo-random direction of `word` (components in [-1, 1]): FNV-1a of the word
/// seeds a splitmix64 sequence.
fn add_direction(sum: &mut [f32], word: &str) {
    let mut state = word.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    for x in sum {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // 24 random bits are exactly representable in an f32 mantissa.
        *x += (z >> 40) as f32 / (1u32 << 23) as f32 - 1.0;
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Process-wide counter for response, message and tool-call ids.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn transcript(last_user: &str, tool_result: bool) -> Transcript {
        let mut t = Transcript::default();
        t.system("be brief");
        t.message(true, "first".into(), false);
        t.message(false, "ok".into(), false);
        t.message(true, last_user.into(), tool_result);
        t
    }

    const OFFERED: Tools<'static> = Tools {
        offered: true,
        first_name: Some("lookup"),
    };

    #[test]
    fn echo_and_tokens() {
        let r = Reply::new(&transcript("hello world", false), Tools::default(), None);
        assert_eq!(r.text, "echo: hello world");
        assert_eq!(r.tool, None);
        // 8 + 5 + 2 + 11 chars.
        assert_eq!(r.input_tokens, 7);
        assert_eq!(
            (r.text_tokens(), r.tool_tokens(), r.output_tokens()),
            (3, 0, 3)
        );
    }

    #[test]
    fn tool_trigger() {
        let t = transcript("What's the Weather in Paris?", false);
        let r = Reply::new(&t, OFFERED, None);
        assert_eq!(r.text, TOOL_PREAMBLE);
        assert_eq!(r.tool.as_deref(), Some("lookup"));
        assert_eq!(r.output_tokens(), 3 + 5);

        // No tools offered, a longer word, or a tool result: no call.
        assert_eq!(Reply::new(&t, Tools::default(), None).tool, None);
        let t2 = transcript("weatherproof", false);
        assert_eq!(Reply::new(&t2, OFFERED, None).tool, None);
        let t3 = transcript("weather: 21C", true);
        let r3 = Reply::new(&t3, OFFERED, None);
        assert_eq!((r3.tool, r3.text.as_str()), (None, "echo: weather: 21C"));

        // Unnamed tools fall back to a default name; the header always wins.
        let unnamed = Tools {
            offered: true,
            first_name: None,
        };
        assert_eq!(
            Reply::new(&t, unnamed, None).tool.as_deref(),
            Some("get_weather")
        );
        let forced = Reply::new(&transcript("hi", true), Tools::default(), Some("calc"));
        assert_eq!(forced.tool.as_deref(), Some("calc"));
    }

    #[test]
    fn value_text_shapes() {
        assert_eq!(value_text(&json!("plain")), "plain");
        assert_eq!(
            value_text(
                &json!([{"type":"text","text":"a"},{"type":"image"},{"text":"b"},{"json":{"t":1}}])
            ),
            r#"ab{"t":1}"#
        );
        assert_eq!(value_text(&json!(null)), "");
    }

    #[test]
    fn tool_input_is_json() {
        assert_eq!(
            serde_json::from_str::<Value>(TOOL_INPUT).unwrap(),
            json!({"location": "Paris"})
        );
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
    fn embedding_vector_is_deterministic_and_bounded() {
        let a = embedding_vector("hello", 512);
        assert_eq!(a, embedding_vector("hello", 512));
        assert_ne!(a, embedding_vector("goodbye", 512));
        assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert!(a.iter().any(|x| *x < 0.0) && a.iter().any(|x| *x > 0.0));
        assert!(embedding_vector("?!", 16).iter().any(|x| *x != 0.0));
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn texts_sharing_words_are_close() {
        let v = |t| embedding_vector(t, 512);
        let same = cosine(
            &v("Tell me the capital of France"),
            &v("tell me THE capital of France?"),
        );
        assert!((same - 1.0).abs() < 1e-5, "{same}");
        let near = cosine(
            &v("Tell me the capital of France"),
            &v("Tell me the capital city of France"),
        );
        assert!((0.85..0.99).contains(&near), "{near}");
        let far = cosine(
            &v("Tell me the capital of France"),
            &v("How do I bake sourdough bread"),
        );
        assert!(far.abs() < 0.3, "{far}");
    }
}
