//! Response-cache replay. The cache stores every answer in one canonical form, the non-stream
//! `chat.completion` body, so that a streamed answer can serve a later non-stream request and
//! the other way round: [`fold_chat_stream`] turns a complete chat stream into the body OpenAI
//! would have sent for `stream: false`, [`chat_stream_from_response`] replays a body as a
//! stream. Both are pure.
//!
//! What does not survive the trip (kept out on purpose, or approximated):
//! - top level: only `id`, `created`, `model`, `choices`, `usage`, `service_tier` and
//!   `system_fingerprint` are kept (e.g. `obfuscation`, `prompt_filter_results` are dropped);
//! - message: only `role`, `content`, `refusal`, `reasoning_content` and function
//!   `tool_calls`; `annotations`, `audio`, legacy `function_call` are dropped. `refusal` is
//!   always written (`null` when none), as OpenAI's non-stream bodies do; `content` is `null`
//!   when there is no text but tool calls or a refusal, else a string (maybe `""`);
//! - a tool-call delta without `index` (some OpenAI-compatible providers) continues the last
//!   call unless it brings a new `id`;
//! - a replay sends the choices one after another (OpenAI interleaves them for `n > 1`), each
//!   as: role chunk (always `content: ""`), reasoning, content, refusal, tool calls, finish;
//!   text in pieces of at most [`PIECE`] bytes (not tokens); all of a choice's
//!   `logprobs.content` (`.refusal`) items on its first content (refusal) chunk; raw `usage`
//!   and logprob items of a pretty-printed body put on one line;
//! - a replay without `include_usage` carries no usage; tool calls that are not function
//!   calls (no `function` object) can't be replayed: `Err`.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{read_error, seq_of_opt, FunctionDelta, ToolCallDelta};
use crate::error::{Result, TranslateError};
use crate::sse::{self, EventHandler, SseParser};

/// Most bytes of text per replayed chunk: small enough that a replay looks like a stream.
const PIECE: usize = 64;

/// Pushed to the SSE parser at a time, so a long stream never looks like one huge event.
const FEED: usize = 64 * 1024;

// ---- one shape for a body and a chunk ------------------------------------------------------

/// A `chat.completion` body, or a `chat.completion.chunk` (its `delta` read as `message`):
/// fold's input and output, replay's input. Every field may be missing or `null` in a chunk.
/// `usage` and logprob items stay raw JSON so nested details pass untouched (the crate's
/// `Usage` and `ChunkIn` keep less: only cached tokens, only the first choice).
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Completion {
    id: String,
    object: String,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<String>,
    /// A stream's error event (`{"error": {...}}`).
    #[serde(skip_serializing)]
    error: Option<IgnoredAny>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Choice {
    index: u32,
    #[serde(alias = "delta")]
    message: Message,
    logprobs: Option<Logprobs>,
    finish_reason: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Message {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct ToolCall {
    /// Only in chunks: which call a fragment belongs to.
    #[serde(skip_serializing)]
    index: Option<u32>,
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<Function>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Function {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Logprobs {
    content: Option<Vec<Box<RawValue>>>,
    refusal: Option<Vec<Box<RawValue>>>,
}

// ---- folding a stream ---------------------------------------------------------------------

/// Folds a complete OpenAI chat-completions SSE stream into the `chat.completion` body OpenAI
/// would have answered with for `stream: false` (what is kept: the
/// module doc of `openai/replay.rs`).
///
/// `Err(UpstreamPayload)` when the stream is not a whole answer: no `data: [DONE]`, an event
/// that is not JSON, an error event, or a choice that never got a `finish_reason`; a cache
/// must never store half an answer.
pub fn fold_chat_stream(sse: &[u8]) -> Result<Vec<u8>> {
    fold_pieces(sse.chunks(FEED))
}

/// [`fold_chat_stream`] over the stream given in pieces (tests split it anywhere).
fn fold_pieces<'p>(pieces: impl IntoIterator<Item = &'p [u8]>) -> Result<Vec<u8>> {
    let mut parser = SseParser::new();
    let mut fold = Fold::default();
    for piece in pieces {
        sse::feed_events(&mut parser, &mut fold, piece, &mut Vec::new())?;
    }
    if !fold.done {
        if let Some(ev) = parser.flush() {
            fold.event(ev.data, &mut Vec::new())?;
        }
    }
    fold.finish()
}

/// The answer so far: top-level fields and choices as they will be written, tool calls
/// keeping their stream `index` until the end.
#[derive(Default)]
struct Fold {
    done: bool,
    body: Completion,
}

impl EventHandler for Fold {
    fn event(&mut self, data: &[u8], _out: &mut Vec<u8>) -> Result<()> {
        if data == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Completion = serde_json::from_slice(data)
            .map_err(|e| TranslateError::upstream(format!("bad chat completion chunk: {e}")))?;
        if chunk.error.is_some() {
            return Err(TranslateError::upstream_error_event(&read_error(data).0));
        }
        let b = &mut self.body;
        if b.id.is_empty() {
            b.id = chunk.id;
        }
        if b.model.is_empty() {
            b.model = chunk.model;
        }
        if b.created == 0 {
            b.created = chunk.created;
        }
        first(&mut b.service_tier, chunk.service_tier);
        first(&mut b.system_fingerprint, chunk.system_fingerprint);
        if chunk.usage.is_some() {
            b.usage = chunk.usage;
        }
        for c in chunk.choices {
            let new = || Choice {
                index: c.index,
                ..Choice::default()
            };
            let ch = entry(&mut b.choices, |x| x.index == c.index, new);
            let (m, d) = (&mut ch.message, c.message);
            first(&mut m.role, d.role);
            append(&mut m.content, d.content);
            append(&mut m.refusal, d.refusal);
            append(&mut m.reasoning_content, d.reasoning_content);
            for call in d.tool_calls.into_iter().flatten() {
                add_call(m.tool_calls.get_or_insert_default(), call);
            }
            if let Some(lp) = c
                .logprobs
                .filter(|l| l.content.is_some() || l.refusal.is_some())
            {
                let acc = ch.logprobs.get_or_insert_default();
                extend(&mut acc.content, lp.content);
                extend(&mut acc.refusal, lp.refusal);
            }
            if c.finish_reason.is_some() {
                ch.finish_reason = c.finish_reason;
            }
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.done
    }
}

impl Fold {
    fn finish(self) -> Result<Vec<u8>> {
        let mut b = self.body;
        if !self.done {
            return Err(TranslateError::stream_ended_early());
        }
        if b.choices.is_empty() || b.choices.iter().any(|c| c.finish_reason.is_none()) {
            return Err(TranslateError::upstream(
                "stream ended without a finish_reason",
            ));
        }
        b.object = "chat.completion".into();
        b.choices.sort_by_key(|c| c.index);
        for c in &mut b.choices {
            let m = &mut c.message;
            m.role.get_or_insert("assistant".into());
            let calls = m.tool_calls.take().unwrap_or_default();
            if m.content.as_ref().is_none_or(|t| t.is_empty()) {
                let absent = !calls.is_empty() || m.refusal.is_some();
                m.content = (!absent).then_some("".into());
            }
            m.tool_calls = (!calls.is_empty()).then(|| finish_calls(calls));
        }
        Ok(serde_json::to_vec(&b).unwrap_or_default())
    }
}

/// Adds a tool-call fragment to the calls so far. A fragment without `index` continues the
/// last call unless it brings a new `id`.
fn add_call(calls: &mut Vec<ToolCall>, call: ToolCall) {
    let id = call.id.filter(|s| !s.is_empty());
    let index = call.index.unwrap_or_else(|| match calls.last() {
        Some(last) if id.is_some() && last.id.is_some() && last.id != id => {
            last.index.map_or(0, |k| k + 1)
        }
        Some(last) => last.index.unwrap_or(0),
        None => 0,
    });
    let new = || ToolCall {
        index: Some(index),
        ..ToolCall::default()
    };
    let acc = entry(calls, |c| c.index == Some(index), new);
    first(&mut acc.id, id);
    first(&mut acc.kind, call.kind);
    let f = acc.function.get_or_insert_default();
    let fragment = call.function.unwrap_or_default();
    first(&mut f.name, fragment.name);
    append(&mut f.arguments, fragment.arguments);
}

/// The calls ordered by index, every field filled (`type` defaults to `"function"`).
fn finish_calls(mut calls: Vec<ToolCall>) -> Vec<ToolCall> {
    calls.sort_by_key(|c| c.index);
    for c in &mut calls {
        c.id.get_or_insert_default();
        c.kind.get_or_insert("function".into());
        let f = c.function.get_or_insert_default();
        f.name.get_or_insert_default();
        f.arguments.get_or_insert_default();
    }
    calls
}

/// The element `matches` picks; `make()` pushed when there is none.
fn entry<T>(v: &mut Vec<T>, matches: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> &mut T {
    let i = v.iter().position(matches);
    let i = i.unwrap_or_else(|| {
        v.push(make());
        v.len() - 1
    });
    &mut v[i]
}

/// Keeps the first non-empty value.
fn first(acc: &mut Option<String>, v: Option<String>) {
    if acc.is_none() {
        *acc = v.filter(|s| !s.is_empty());
    }
}

fn append(acc: &mut Option<String>, v: Option<String>) {
    if let Some(v) = v {
        acc.get_or_insert_default().push_str(&v);
    }
}

fn extend<T>(acc: &mut Option<Vec<T>>, v: Option<Vec<T>>) {
    if let Some(v) = v {
        acc.get_or_insert_default().extend(v);
    }
}

// ---- replaying a body as a stream ---------------------------------------------------------

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a str>,
    #[serde(serialize_with = "seq_of_opt")]
    choices: Option<ChunkChoice<'a>>,
    /// `None`: no `usage` key (no `include_usage`); `Some(None)`: `"usage": null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a RawValue>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<&'a Logprobs>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seq_of_opt")]
    tool_calls: Option<ToolCallDelta<'a>>,
}

/// What a delta carries: a piece of text, or a tool call's start or a piece of its arguments.
#[derive(Clone, Copy)]
enum Part<'a> {
    Reasoning,
    Content,
    Refusal,
    /// The first delta of tool call `.0`: its `id`, `type` and `name`.
    CallStart(u32, &'a str, &'a str, &'a str),
    /// A piece of the arguments of tool call `.0`.
    Arguments(u32),
}

impl<'a> DeltaOut<'a> {
    fn of(part: Part<'a>, piece: &'a str) -> Self {
        let mut d = DeltaOut::default();
        let call = |index, start: Option<(_, _, _)>| ToolCallDelta {
            index,
            id: start.map(|s| s.0),
            kind: start.map(|s| s.1),
            function: FunctionDelta {
                name: start.map(|s| s.2),
                arguments: piece,
            },
        };
        match part {
            Part::Reasoning => d.reasoning_content = Some(piece),
            Part::Content => d.content = Some(piece),
            Part::Refusal => d.refusal = Some(piece),
            Part::CallStart(k, id, kind, name) => {
                d.tool_calls = Some(call(k, Some((id, kind, name))))
            }
            Part::Arguments(k) => d.tool_calls = Some(call(k, None)),
        }
        d
    }
}

/// `logprobs` with only these items, for the first chunk of their text.
fn only(
    content: Option<Vec<Box<RawValue>>>,
    refusal: Option<Vec<Box<RawValue>>>,
) -> Option<Logprobs> {
    (content.is_some() || refusal.is_some()).then_some(Logprobs { content, refusal })
}

/// A raw value of a pretty-printed body on one line, as an SSE `data:` line needs. JSON
/// strings can't hold a raw line break, so every `\n` / `\r` is whitespace between tokens.
fn one_line(raw: &mut Box<RawValue>) {
    if raw.get().contains(['\n', '\r']) {
        if let Ok(flat) = RawValue::from_string(raw.get().replace(['\n', '\r'], " ")) {
            *raw = flat;
        }
    }
}

/// Writes the chunks of one replay, of choice `index` (the body's choices are taken out).
struct Replay<'a> {
    body: &'a Completion,
    include_usage: bool,
    index: u32,
    out: Vec<u8>,
}

impl Replay<'_> {
    fn write(&mut self, choice: Option<ChunkChoice<'_>>, usage: Option<&RawValue>) {
        let chunk = ChunkOut {
            id: &self.body.id,
            object: "chat.completion.chunk",
            created: self.body.created,
            model: &self.body.model,
            service_tier: self.body.service_tier.as_deref(),
            system_fingerprint: self.body.system_fingerprint.as_deref(),
            choices: choice,
            usage: self.include_usage.then_some(usage),
        };
        sse::write_data(&mut self.out, &chunk);
    }

    fn delta(
        &mut self,
        delta: DeltaOut<'_>,
        logprobs: Option<&Logprobs>,
        finish_reason: Option<&str>,
    ) {
        let index = self.index;
        self.write(
            Some(ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason,
            }),
            None,
        );
    }

    /// `text` as `part` in pieces of at most [`PIECE`] bytes, `lp` on the first; one empty
    /// piece when there is no text but there are logprobs.
    fn text(&mut self, part: Part<'_>, text: Option<&str>, mut lp: Option<Logprobs>) {
        let mut rest = text.unwrap_or("");
        while !rest.is_empty() || lp.is_some() {
            let mut end = rest.len().min(PIECE);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (piece, tail) = rest.split_at(end);
            self.delta(DeltaOut::of(part, piece), lp.take().as_ref(), None);
            rest = tail;
        }
    }
}

/// Replays a stored `chat.completion` body as the SSE stream OpenAI sends for `stream: true`
/// (every chunk with `"usage": null` and a final `choices: []` usage chunk when
/// `include_usage`), ending with `data: [DONE]`. What is approximated:
/// the module doc of `openai/replay.rs`.
///
/// `Err(UpstreamPayload)` when `body` is not a `chat.completion` with choices.
pub fn chat_stream_from_response(body: &[u8], include_usage: bool) -> Result<Vec<u8>> {
    let not_completion =
        |why: &str| TranslateError::upstream(format!("not a chat completion: {why}"));
    let mut c: Completion =
        serde_json::from_slice(body).map_err(|e| not_completion(&e.to_string()))?;
    if c.object != "chat.completion" || c.choices.is_empty() {
        return Err(not_completion("no chat.completion object with choices"));
    }
    let mut choices = std::mem::take(&mut c.choices);
    choices.sort_by_key(|ch| ch.index);
    c.usage.iter_mut().for_each(one_line);
    let logprobs = choices.iter_mut().filter_map(|ch| ch.logprobs.as_mut());
    logprobs
        .flat_map(|l| l.content.iter_mut().chain(&mut l.refusal).flatten())
        .for_each(one_line);
    let mut r = Replay {
        body: &c,
        include_usage,
        index: 0,
        out: Vec::new(),
    };
    for ch in choices {
        let m = ch.message;
        r.index = ch.index;
        let first = DeltaOut {
            role: m.role.as_deref().or(Some("assistant")),
            ..DeltaOut::of(Part::Content, "")
        };
        r.delta(first, None, None);
        let lp = ch.logprobs.unwrap_or_default();
        r.text(Part::Reasoning, m.reasoning_content.as_deref(), None);
        r.text(Part::Content, m.content.as_deref(), only(lp.content, None));
        r.text(Part::Refusal, m.refusal.as_deref(), only(None, lp.refusal));
        for (k, call) in (0u32..).zip(m.tool_calls.iter().flatten()) {
            let f = call
                .function
                .as_ref()
                .ok_or_else(|| not_completion("a tool call without function"))?;
            let id = call.id.as_deref().unwrap_or("");
            let kind = call.kind.as_deref().unwrap_or("function");
            let start = Part::CallStart(k, id, kind, f.name.as_deref().unwrap_or(""));
            r.delta(DeltaOut::of(start, ""), None, None);
            r.text(Part::Arguments(k), f.arguments.as_deref(), None);
        }
        r.delta(DeltaOut::default(), None, ch.finish_reason.as_deref());
    }
    if let (true, Some(u)) = (include_usage, c.usage.as_deref()) {
        r.write(None, Some(u));
    }
    sse::write_done(&mut r.out);
    Ok(r.out)
}

#[cfg(test)]
mod tests;
