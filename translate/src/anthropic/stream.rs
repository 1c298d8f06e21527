//! Anthropic Messages SSE → OpenAI chat completion chunks: the borrowed event views and the
//! [`ChatStream`] state machine.

use super::errors::map_error_type;
use super::response::{finish_reason, UsageAcc, UsageIn};
use crate::error::{Result, TranslateError};
use crate::openai::{self, ChunkWriter};
use crate::sse::{self, EventHandler, SseParser};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct Ev<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(borrow, default)]
    message: Option<MsgStart<'a>>,
    #[serde(borrow, default)]
    content_block: Option<BlockStart<'a>>,
    #[serde(borrow, default)]
    delta: Option<DeltaEv<'a>>,
    #[serde(default)]
    usage: Option<UsageIn>,
    #[serde(borrow, default)]
    error: Option<ErrEv<'a>>,
}

#[derive(Deserialize)]
struct MsgStart<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<UsageIn>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaEv<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrEv<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool(u32),
    Other,
}

#[derive(Debug)]
struct StreamState {
    w: ChunkWriter,
    include_usage: bool,
    started: bool,
    blocks: Vec<Block>,
    next_tool: u32,
    usage: UsageAcc,
    finish_sent: bool,
    done: bool,
    failed: Option<String>,
}

/// Anthropic Messages SSE → OpenAI chat completion chunks.
///
/// Contract: [`feed`](Self::feed) appends `data: {chunk}\n\n` events for every complete
/// upstream event; [`finish`](Self::finish) writes `data: [DONE]\n\n` only when `message_stop`
/// was seen. A malformed event makes `feed` return `Err(UpstreamPayload)` (output of earlier
/// events in the same input stays in `out`). An Anthropic `error` event is translated to an
/// OpenAI-shaped `data: {"error":{...}}\n\n` event and `feed` returns `Ok`; the stream is then
/// *finished with error*: later input is ignored and `finish` returns
/// `Err(UpstreamPayload)` without writing `[DONE]`.
#[derive(Debug)]
pub struct ChatStream {
    parser: SseParser,
    st: StreamState,
}

impl ChatStream {
    /// `model`: the name the client asked for; `created`: the timestamp for every chunk;
    /// `include_usage`: the client's `stream_options.include_usage`.
    pub fn new(model: String, created: u64, include_usage: bool) -> Self {
        ChatStream {
            parser: SseParser::new(),
            st: StreamState {
                w: ChunkWriter::new(model, created),
                include_usage,
                started: false,
                blocks: Vec::new(),
                next_tool: 0,
                usage: UsageAcc::default(),
                finish_sent: false,
                done: false,
                failed: None,
            },
        }
    }

    /// Translates whatever complete events `input` finishes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        sse::feed_events(&mut self.parser, &mut self.st, input, out)
    }

    /// Upstream end of body: writes `[DONE]` if the stream ended properly.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = &self.st.failed {
            return Err(TranslateError::upstream_error_event(e));
        }
        if !self.st.done {
            if let Some(ev) = self.parser.flush() {
                self.st.event(ev.data, out)?;
            }
        }
        if self.st.done {
            sse::write_done(out);
            Ok(())
        } else {
            Err(TranslateError::stream_ended_early())
        }
    }

    /// The upstream error message, once an `error` event was seen.
    pub fn upstream_error(&self) -> Option<&str> {
        self.st.failed.as_deref()
    }
}

impl EventHandler for StreamState {
    fn stopped(&self) -> bool {
        self.failed.is_some() || self.done
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let ev: Ev = serde_json::from_slice(data)
            .map_err(|e| TranslateError::upstream(format!("bad Anthropic stream event: {e}")))?;
        match &*ev.kind {
            "message_start" => {
                let m = ev
                    .message
                    .ok_or_else(|| TranslateError::upstream("message_start without message"))?;
                self.w.id.clear();
                self.w.id.push_str(m.id.as_deref().unwrap_or("msg"));
                if let Some(u) = &m.usage {
                    self.usage.update(u);
                }
                self.started = true;
                self.w.role(out);
            }
            "ping" => {}
            "error" => {
                let e = ev.error.as_ref();
                let kind = e.and_then(|e| e.kind.as_deref());
                let msg = e
                    .and_then(|e| e.message.as_deref())
                    .unwrap_or("upstream stream error");
                let (t, code) = map_error_type(kind, 500);
                sse::write_data(out, &openai::error_value(msg, t, code));
                self.failed = Some(format!("{}: {msg}", kind.unwrap_or("error")));
            }
            _ if !self.started => {
                return Err(TranslateError::upstream(format!(
                    "Anthropic stream event {} before message_start",
                    ev.kind
                )))
            }
            "content_block_start" => {
                let idx = ev
                    .index
                    .ok_or_else(|| TranslateError::upstream("content_block_start without index"))?;
                let b = ev.content_block.ok_or_else(|| {
                    TranslateError::upstream("content_block_start without content_block")
                })?;
                let kind = match &*b.kind {
                    "text" => {
                        if let Some(t) = b.text.as_deref().filter(|t| !t.is_empty()) {
                            self.w.content(out, t);
                        }
                        Block::Text
                    }
                    "tool_use" => {
                        let n = self.next_tool;
                        self.next_tool += 1;
                        let id = b.id.as_deref().unwrap_or("");
                        let name = b.name.as_deref().unwrap_or("");
                        self.w.tool_start(out, n, id, name, "");
                        Block::Tool(n)
                    }
                    _ => Block::Other,
                };
                if self.blocks.len() <= idx {
                    if idx > 4096 {
                        return Err(TranslateError::upstream("content block index out of range"));
                    }
                    self.blocks.resize(idx + 1, Block::Other);
                }
                self.blocks[idx] = kind;
            }
            "content_block_delta" => {
                let idx = ev
                    .index
                    .ok_or_else(|| TranslateError::upstream("content_block_delta without index"))?;
                let d = ev
                    .delta
                    .ok_or_else(|| TranslateError::upstream("content_block_delta without delta"))?;
                match (self.blocks.get(idx), d.kind.as_deref()) {
                    (Some(Block::Text), Some("text_delta")) => {
                        if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                            self.w.content(out, t);
                        }
                    }
                    (Some(Block::Tool(n)), Some("input_json_delta")) => {
                        if let Some(p) = d.partial_json.as_deref().filter(|p| !p.is_empty()) {
                            self.w.tool_args(out, *n, p);
                        }
                    }
                    (None, _) => {
                        return Err(TranslateError::upstream(
                            "content_block_delta for a block that was not started",
                        ))
                    }
                    _ => {} // thinking_delta, signature_delta, citations_delta: dropped
                }
            }
            "content_block_stop" => {}
            "message_delta" => {
                if let Some(u) = &ev.usage {
                    self.usage.update(u);
                }
                if let Some(r) = ev.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    if !self.finish_sent {
                        self.finish_sent = true;
                        self.w.finish(out, finish_reason(r));
                    }
                }
            }
            "message_stop" => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    self.w.finish(out, "stop");
                }
                if self.include_usage {
                    self.w.usage(out, &self.usage.openai());
                }
                self.done = true;
            }
            _ => {} // unknown event types are skipped for forward compatibility
        }
        Ok(())
    }
}
