//! Usage: reading what an OpenAI-shaped response used — token counts, and how it ended (the
//! first choice's `finish_reason`) and which model it names — from whole bodies and streams
//! ([`Tally`]); streams event by event in [`super::stream_usage`]. Read only for requests that need it (`capture_usage`: governed or traced). The
//! records of requests go to the coordinator through [`super::batcher::UsageBatcher`].

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;
use tokens::Family;
use vocab::TokenUsage;

use super::units::{UnitMeter, Units};

/// The byte strings every governed response is searched for, each with its searcher built
/// once: `memmem::find` builds a new one per call (`Searcher::new` was 0.7 % of a governed
/// shard's profile, docs/perf.md).
pub(super) static FINISH_REASON: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"finish_reason"));
pub(super) static MODEL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"model"));
pub(super) static CHOICES: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"choices\""));
pub(super) static NO_CHOICES: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"choices\":[]"));

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Counts {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Counts>,
    #[serde(default)]
    choices: Option<serde::de::IgnoredAny>,
}

impl From<Counts> for TokenUsage {
    fn from(c: Counts) -> Self {
        TokenUsage {
            prompt: c.prompt_tokens,
            completion: c.completion_tokens,
            cached: c
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}

pub(super) fn parse(json: &[u8]) -> Option<(TokenUsage, bool)> {
    let v: WithUsage = serde_json::from_slice(json).ok()?;
    Some((v.usage?.into(), v.choices.is_some()))
}

/// Usage from a whole OpenAI response body (chat, completions, embeddings, responses).
pub fn from_body(body: &[u8]) -> Option<TokenUsage> {
    match top_level_usage(body) {
        Some(top) => top.counts,
        None => parse(body).map(|(u, _)| u),
    }
}

/// The outermost object's `usage` member, as [`top_level_usage`] finds it.
pub(super) struct TopUsage {
    /// `None`: the usage is `null`.
    pub counts: Option<TokenUsage>,
    /// Where the member lies: from its key's opening quote to the end of its value.
    pub member: Range<usize>,
}

/// The `usage` member of the outermost object, read without parsing what comes before it
/// (the choices: most of the body, and most of what parsing it all cost — ~1 µs of a governed
/// request, docs/perf.md). It is the last `"usage":` key, taken only when the bytes after its
/// value close exactly one object and end the body: then the object it belongs to is the
/// outermost one. `None` when that cannot be shown, and the caller parses the whole body.
pub(super) fn top_level_usage(body: &[u8]) -> Option<TopUsage> {
    top_level_usage_at(body, last_usage_key(body)?)
}

/// Where the last `"usage"` of `body` starts: its quotes, found from the end by a vector
/// search, each looked at until one opens the key. The usage member ends a body, so only the
/// last few quotes are looked at; memchr's reverse substring search has no vector form and
/// was most of the time of reading a body's usage (docs/perf.md).
pub(super) fn last_usage_key(body: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"usage\"";
    memchr::memrchr_iter(b'"', body).find(|&at| body[at..].starts_with(KEY))
}

/// [`top_level_usage`], the last `"usage"` of `body` being at `at`.
pub(super) fn top_level_usage_at(body: &[u8], at: usize) -> Option<TopUsage> {
    // A quote after an odd number of backslashes is inside a string, not a key's.
    let backslashes = body[..at].iter().rev().take_while(|b| **b == b'\\').count();
    if backslashes % 2 == 1 {
        return None;
    }
    let value = body[at + b"\"usage\"".len()..]
        .trim_ascii_start()
        .strip_prefix(b":")?;
    let (counts, end) = match value.trim_ascii_start().strip_prefix(b"null") {
        // Every chunk of a stream but the last has `"usage":null`: no parser for that.
        Some(after) => {
            let next = after.trim_ascii_start().first();
            if !matches!(next, Some(b',' | b'}')) {
                return None;
            }
            (None, body.len() - after.len())
        }
        None => {
            let (counts, used) = match super::usage_counts::read(value) {
                Some((counts, used)) => (Some(counts), used),
                None => counts_by_serde(value)?,
            };
            (counts, body.len() - value.len() + used)
        }
    };
    closes_one_object(&body[end..]).then_some(TopUsage {
        counts,
        member: at..end,
    })
}

/// The usage value (an object, or `null`) at the start of `json` read by serde, and the
/// length of `json` up to its end: for the shapes [`super::usage_counts::read`] leaves to it.
pub(super) fn counts_by_serde(json: &[u8]) -> Option<(Option<TokenUsage>, usize)> {
    let mut values = serde_json::Deserializer::from_slice(json).into_iter::<Option<Counts>>();
    let counts = values.next()?.ok()?;
    Some((counts.map(TokenUsage::from), values.byte_offset()))
}

/// `member` of the object `json` with the comma that parts it from a neighbour: the one
/// before it, else the one after it (none for an object's only member).
pub(super) fn with_separator(json: &[u8], member: Range<usize>) -> Range<usize> {
    let before = json[..member.start].trim_ascii_end();
    if before.ends_with(b",") {
        return before.len() - 1..member.end;
    }
    let after = &json[member.end..];
    let rest = after.trim_ascii_start();
    if rest.starts_with(b",") {
        return member.start..member.end + (after.len() - rest.len()) + 1;
    }
    member
}

/// Whether `rest` (what follows a member's value) is more members of the same object and
/// then its closing brace, at the end of the input.
fn closes_one_object(rest: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in rest.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b'}' => return rest[i + 1..].trim_ascii().is_empty(),
            b']' => return false,
            _ => {}
        }
    }
    false
}

/// Why a generation ended, in OpenAI's words (`finish_reason`; the translators turn other
/// APIs' reasons into these). A value outside OpenAI's set is [`FinishReason::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
    Other,
}

impl FinishReason {
    pub(super) fn of(value: &[u8]) -> Self {
        match value {
            b"stop" => Self::Stop,
            b"length" => Self::Length,
            b"tool_calls" => Self::ToolCalls,
            b"content_filter" => Self::ContentFilter,
            b"function_call" => Self::FunctionCall,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::FunctionCall => "function_call",
            Self::Other => "other",
        }
    }
}

/// What a response used and how it ended, as far as it was read (`capture_usage`): also when
/// the client left or the stream broke midway.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Token usage the provider reported.
    pub usage: Option<TokenUsage>,
    /// Without that: output tokens of what was read, counted by the gateway.
    pub output_tokens: u64,
    /// Why the first choice ended.
    pub finish_reason: Option<FinishReason>,
    /// The model the response names.
    pub model: Option<Box<str>>,
    /// A relayed API's units (audio seconds, images).
    pub units: Units,
}

impl Tally {
    /// What a relayed API's response used, from its meter.
    pub fn of_units(meter: &UnitMeter) -> Self {
        let (units, usage) = meter.used();
        Self {
            usage,
            units,
            ..Self::default()
        }
    }

    /// Reads a whole OpenAI-form body; `family` counts its output when it reports no usage.
    /// With `describe` (a traced request), also how it ended and the model it names: two more
    /// scans of the body and a copy of the name, which only a trace reads.
    pub fn of_body(body: &[u8], family: Family, describe: bool) -> Self {
        let usage = from_body(body);
        Self {
            usage,
            output_tokens: if usage.is_none() {
                tokens::count_body(family, body)
            } else {
                0
            },
            finish_reason: describe
                .then(|| string_field(body, &FINISH_REASON).map(FinishReason::of))
                .flatten(),
            model: describe
                .then(|| string_field(body, &MODEL).map(text))
                .flatten(),
            units: Units::default(),
        }
    }
}

pub(super) fn text(raw: &[u8]) -> Box<str> {
    String::from_utf8_lossy(raw).into()
}

/// The raw string value (escapes as they are) of the first `"key":` in `json`; `None` when the
/// key is absent or its value is not a string (`null`). A scan, not a parse, because streams
/// are read this way event by event: a key's quotes cannot stand unescaped inside a string
/// value, so the first match is a key — in OpenAI's shapes the top-level `model`, and the
/// first choice's `finish_reason` (in a stream, the first to end).
pub(super) fn string_field<'a>(json: &'a [u8], key: &Finder<'_>) -> Option<&'a [u8]> {
    let mut from = 0;
    loop {
        let at = from + key.find(&json[from..])?;
        from = at + key.needle().len();
        let quoted = at > 0 && json[at - 1] == b'"' && json.get(from) == Some(&b'"');
        if !quoted {
            continue;
        }
        let rest = json[from + 1..].trim_ascii_start();
        let Some(value) = rest.strip_prefix(b":") else {
            continue;
        };
        let value = value.trim_ascii_start().strip_prefix(b"\"")?;
        let mut escaped = false;
        let end = value.iter().position(|&b| {
            let closes = b == b'"' && !escaped;
            escaped = b == b'\\' && !escaped;
            closes
        })?;
        return Some(&value[..end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_from_bodies() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(
            from_body(body),
            Some(TokenUsage {
                prompt: 12,
                completion: 5,
                cached: 4
            })
        );
        let responses = br#"{"object":"response","usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}"#;
        assert_eq!(
            from_body(responses),
            Some(TokenUsage {
                prompt: 3,
                completion: 2,
                cached: 0
            })
        );
        assert_eq!(from_body(br#"{"usage":null}"#), None);
    }

    #[test]
    fn reads_the_top_level_usage_and_no_other() {
        let usage = |p, c| {
            Some(TokenUsage {
                prompt: p,
                completion: c,
                cached: 0,
            })
        };
        let top = |body: &[u8]| top_level_usage(body).map(|t| t.counts);
        // OpenAI's own order: members after the usage.
        let body = br#"{"choices":[{"message":{"content":"a \"usage\": {\"prompt_tokens\":9}"}}],
            "usage": {"prompt_tokens":1,"completion_tokens":2}, "service_tier":"default",
            "system_fingerprint":"fp_}{\"x"}
        "#;
        assert_eq!(top(body), Some(usage(1, 2)));
        assert_eq!(from_body(body), usage(1, 2));
        // A nested `usage` after the top-level one is not taken by the scan; the parse
        // finds the right one.
        let nested = br#"{"usage":{"prompt_tokens":1},"x":{"usage":{"prompt_tokens":7}}}"#;
        assert_eq!(top(nested), None);
        assert_eq!(from_body(nested), usage(1, 0));
        let in_array = br#"{"data":[{"usage":{"prompt_tokens":7}}]}"#;
        assert_eq!(top(in_array), None);
        assert_eq!(from_body(in_array), None);
        // Inside a string value a key's quotes are escaped: `\"usage\"` does not match, and
        // a match that starts at an escaped quote is refused.
        let quoted = br#"{"usage":{"prompt_tokens":3},"note":"\"usage\":{}"}"#;
        assert_eq!(top(quoted), Some(usage(3, 0)));
        let escaped_quote = br#"{"usage":{"prompt_tokens":3},"note":"a\"usage"}"#;
        assert_eq!(top(escaped_quote), None);
        assert_eq!(from_body(escaped_quote), usage(3, 0));
        // Something after the outermost object, or a body cut short: not shown, parsed.
        assert_eq!(top(br#"{"usage":{"prompt_tokens":3}} x"#), None);
        assert_eq!(top(br#"{"usage":{"prompt_tokens":3}"#), None);
        assert_eq!(top(br#"{"usage":null}"#), Some(None));
        assert_eq!(top(br#"{"usage": null , "a":1}"#), Some(None));
        assert_eq!(top(br#"{"usage":nullish}"#), None);
        assert_eq!(top(br#"{"usage": {"prompt_tokens":"x"}}"#), None);
        // The member's bytes, and with the comma that parts it from a neighbour.
        let member = |json: &[u8]| {
            let range = with_separator(json, top_level_usage(json).unwrap().member);
            [&json[..range.start], &json[range.end..]].concat()
        };
        assert_eq!(member(br#"{"a":1, "usage" : null }"#), br#"{"a":1 }"#);
        assert_eq!(member(br#"{"usage":null ,"a":1}"#), br#"{"a":1}"#);
        assert_eq!(member(br#"{"usage":null}"#), b"{}");
    }

    #[test]
    fn reads_the_finish_reason_and_model_of_bodies() {
        // OpenAI's own bodies are pretty-printed; a content that quotes a key is not a key.
        let body = br#"{
  "id": "x", "model": "gpt-4o-mini-2024-07-18",
  "choices": [{"message": {"content": "say \"finish_reason\": \"no\""}, "finish_reason" : "length"},
              {"finish_reason": "stop"}],
  "usage": {"prompt_tokens": 3, "completion_tokens": 2}
}"#;
        let tally = Tally::of_body(body, Family::O200k, true);
        assert_eq!(tally.finish_reason, Some(FinishReason::Length));
        assert_eq!(tally.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(tally.usage.map(|u| u.completion), Some(2));
        let bare = Tally::of_body(
            br#"{"choices":[{"finish_reason":null}],"model":null}"#,
            Family::O200k,
            true,
        );
        assert_eq!((bare.finish_reason, bare.model), (None, None));
        // Not described (an untraced request): usage only.
        let untraced = Tally::of_body(body, Family::O200k, false);
        assert_eq!((untraced.finish_reason, untraced.model), (None, None));
        assert_eq!(untraced.usage, tally.usage);
        assert_eq!(
            string_field(br#"{"finish_reason":"something_new"}"#, &FINISH_REASON)
                .map(FinishReason::of),
            Some(FinishReason::Other)
        );
        assert_eq!(
            string_field(br#"{"model":"a\"b"}"#, &MODEL),
            Some(&br#"a\"b"#[..])
        );
    }
}
