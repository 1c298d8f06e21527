//! Inbound translation: clients speaking another API (Anthropic Messages, OpenAI Responses)
//! served through the gateway's canonical OpenAI Chat Completions form, whichever provider
//! ends up answering.
//!
//! Both stream translators are a [`FromChatStream`] driver around a per-dialect
//! [`ChatStreamState`]: the driver parses the canonical chunk SSE and keeps what both dialects
//! track alike (started, usage, tool calls seen, finish reason, done, failed); the state
//! writes the client's dialect. The request and response translators share the pieces of the
//! chat form both read and write the same way (`chat_body`, `insert_tools`,
//! `finished_chat`, `first_choice`, `content_text`).

/// Gives an inbound dialect's public stream translator, a newtype over [`FromChatStream`],
/// the driver's `feed` and `finish` (see [`crate::StreamTranslator`]).
macro_rules! driver_feed_finish {
    ($t:ty) => {
        impl $t {
            pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
                self.0.feed(input, out)
            }

            pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
                self.0.finish(out)
            }
        }
    };
}

pub mod anthropic;
pub mod responses;

use serde_json::{json, Map, Value};

use crate::error::{Result, TranslateError};
use crate::openai::{self, parse_chat_event, ChatEvent, ChunkIn, ToolCallIn, Usage};
use crate::sse::{self, EventHandler, SseParser};

// ---- request ------------------------------------------------------------------------------

/// The request's `model`, which both dialects require.
fn required_model(req: &Map<String, Value>) -> Result<String> {
    req.get("model")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| TranslateError::invalid("model is required"))
}

/// `req[outer][inner]` when it is a string (`metadata.user_id`, `reasoning.effort`).
fn nested_str<'a>(req: &'a Map<String, Value>, outer: &str, inner: &str) -> Option<&'a str> {
    req.get(outer)
        .and_then(|v| v.get(inner))
        .and_then(Value::as_str)
}

/// A chat body's opening: `model`, `messages`, and the sampling parameters both dialects
/// carry over unchanged when they are numbers.
fn chat_body(model: &str, messages: Vec<Value>, req: &Map<String, Value>) -> Map<String, Value> {
    let mut chat = Map::new();
    chat.insert("model".into(), model.into());
    chat.insert("messages".into(), Value::Array(messages));
    for k in ["temperature", "top_p"] {
        if let Some(v) = req.get(k).filter(|v| v.is_number()) {
            chat.insert(k.into(), v.clone());
        }
    }
    chat
}

/// The request's `tools` as chat `tools` (left out when there are none), each made by
/// `function` into a chat function definition.
fn insert_tools(
    chat: &mut Map<String, Value>,
    req: &Map<String, Value>,
    function: impl Fn(&Value) -> Result<Map<String, Value>>,
) -> Result<()> {
    let Some(tools) = req.get("tools").and_then(Value::as_array) else {
        return Ok(());
    };
    let ts = tools
        .iter()
        .map(|t| Ok(json!({"type": "function", "function": function(t)?})))
        .collect::<Result<Vec<_>>>()?;
    if !ts.is_empty() {
        chat.insert("tools".into(), Value::Array(ts));
    }
    Ok(())
}

/// Ends a chat body and returns what `request_to_chat` does: (body, `stream`, `model`). A
/// stream asks for `stream_options.include_usage` so usage can be reported.
fn finished_chat(
    mut chat: Map<String, Value>,
    stream: bool,
    model: String,
) -> Result<(Vec<u8>, bool, String)> {
    if stream {
        chat.insert("stream".into(), true.into());
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok((openai::to_body(&Value::Object(chat)), stream, model))
}

// ---- response -----------------------------------------------------------------------------

/// The first choice of an upstream chat completion and its message, which both dialects'
/// responses are made from.
fn first_choice(chat: &Map<String, Value>) -> Result<(&Value, &Value)> {
    let choice = chat
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| TranslateError::upstream("chat completion has no choices"))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| TranslateError::upstream("chat completion choice has no message"))?;
    Ok((choice, msg))
}

/// A chat message's `content` as text (a string, or the text of an array of parts); `None`
/// when it has none.
fn content_text(msg: &Value) -> Result<Option<String>> {
    Ok(match msg.get("content") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(c @ Value::Array(_)) => {
            Some(openai::content_text(c).map_err(|e| TranslateError::upstream(e.message()))?)
        }
        _ => None,
    })
}

// ---- stream -------------------------------------------------------------------------------

/// The per-dialect half of an inbound stream translator: how each part of the canonical chat
/// stream is written in the client's dialect. The driver calls [`start`](Self::start) before
/// anything else it writes, and [`close`](Self::close) on a finish reason and before
/// [`end`](Self::end).
pub(crate) trait ChatStreamState {
    /// Writes the stream's opening; `chat_id` is the upstream's (empty when unknown).
    fn start(&mut self, chat_id: &str, out: &mut Vec<u8>);
    /// Writes an upstream `{"error":...}` chunk (`message` is its message) in the dialect;
    /// the stream has failed afterwards. `started`: whether the opening was written.
    fn error(&mut self, err: &Value, message: &str, started: bool, out: &mut Vec<u8>);
    /// Writes a piece of the answer's text (content or refusal).
    fn text(&mut self, t: &str, out: &mut Vec<u8>);
    /// Writes a tool-call delta; `is_new`: the first one for its index.
    fn tool_call(&mut self, tc: &ToolCallIn<'_>, is_new: bool, out: &mut Vec<u8>) -> Result<()>;
    /// Closes the open block or item, if any.
    fn close(&mut self, out: &mut Vec<u8>);
    /// Writes the dialect's proper end of stream, with the usage the upstream reported and
    /// the last finish reason seen.
    fn end(&mut self, usage: Option<Usage>, finish_reason: Option<&str>, out: &mut Vec<u8>);
}

/// OpenAI chat chunk SSE → a client dialect: `feed` / `finish` shared by the inbound stream
/// translators. `finish` succeeds once `[DONE]` or a `finish_reason` was seen, and errs after
/// an upstream error chunk.
#[derive(Debug)]
pub(crate) struct FromChatStream<S> {
    parser: SseParser,
    chat: ChatDriver<S>,
}

/// The dialect's state and what the driver tracks for both dialects alike.
#[derive(Debug)]
struct ChatDriver<S> {
    st: S,
    seen: Seen,
}

/// What a stream has seen so far, the same for both dialects.
#[derive(Debug, Default)]
struct Seen {
    started: bool,
    usage: Option<Usage>,
    /// OpenAI tool-call indexes.
    tools: Vec<u32>,
    finish_reason: Option<String>,
    done: bool,
    /// The upstream error's message, once an error chunk was translated.
    failed: Option<String>,
}

impl<S: ChatStreamState> ChatDriver<S> {
    fn start_once(&mut self, chat_id: &str, out: &mut Vec<u8>) {
        if !self.seen.started {
            self.seen.started = true;
            self.st.start(chat_id, out);
        }
    }

    /// Translates one chat chunk (an `{"error":...}` chunk makes the stream failed).
    fn chunk(&mut self, c: ChunkIn<'_>, out: &mut Vec<u8>) -> Result<()> {
        if let Some(err) = &c.error {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream stream error")
                .to_owned();
            self.st.error(err, &message, self.seen.started, out);
            self.seen.failed = Some(message);
            return Ok(());
        }
        self.start_once(c.id.as_deref().unwrap_or(""), out);
        if let Some(u) = c.usage {
            self.seen.usage = Some(u);
        }
        let Some(choice) = c.choices else {
            return Ok(());
        };
        if let Some(d) = &choice.delta {
            for t in [&d.content, &d.refusal].into_iter().flatten() {
                self.st.text(t, out);
            }
            for tc in d.tool_calls.iter().flatten() {
                let is_new = !self.seen.tools.contains(&tc.index);
                if is_new {
                    self.seen.tools.push(tc.index);
                }
                self.st.tool_call(tc, is_new, out)?;
            }
        }
        if let Some(r) = &choice.finish_reason {
            self.seen.finish_reason = Some(r.to_string());
            self.st.close(out);
        }
        Ok(())
    }

    /// Writes the dialect's end of stream; the stream is done afterwards.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.start_once("", out);
        self.st.close(out);
        self.st
            .end(self.seen.usage, self.seen.finish_reason.as_deref(), out);
        self.seen.done = true;
    }
}

/// Routes canonical chat events: `[DONE]` ends the stream, a chunk is translated.
impl<S: ChatStreamState> EventHandler for ChatDriver<S> {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match parse_chat_event(data)? {
            ChatEvent::Done => self.end(out),
            ChatEvent::Chunk(c) => self.chunk(c, out)?,
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.seen.done || self.seen.failed.is_some()
    }
}

impl<S: ChatStreamState> FromChatStream<S> {
    pub fn new(st: S) -> Self {
        FromChatStream {
            parser: SseParser::new(),
            chat: ChatDriver {
                st,
                seen: Seen::default(),
            },
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        sse::feed_events(&mut self.parser, &mut self.chat, input, out)
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = &self.chat.seen.failed {
            return Err(TranslateError::upstream_error_event(e));
        }
        if !self.chat.seen.done {
            // A last event without its blank line: a chunk still counts, `[DONE]` alone
            // doesn't end the stream properly.
            if let Some(ev) = self.parser.flush() {
                if let ChatEvent::Chunk(c) = parse_chat_event(ev.data)? {
                    self.chat.chunk(c, out)?;
                }
            }
            if self.chat.seen.finish_reason.is_none() {
                return Err(TranslateError::stream_ended_early());
            }
            self.chat.end(out);
        }
        Ok(())
    }
}
