//! Inbound translation: clients speaking another API (Anthropic Messages, OpenAI Responses)
//! served through the gateway's canonical OpenAI Chat Completions form, whichever provider
//! ends up answering.
//!
//! Both stream translators are a [`FromChatStream`] driver around a per-dialect
//! [`ChatStreamState`]: the driver parses the canonical chunk SSE, the state writes the
//! client's dialect.

pub mod anthropic;
pub mod responses;

use crate::error::{Result, TranslateError};
use crate::openai::{parse_chat_event, ChatEvent, ChunkIn};
use crate::sse::{self, EventHandler, SseParser};

/// The per-dialect half of an inbound stream translator.
pub(crate) trait ChatStreamState {
    /// Translates one chat chunk (an `{"error":...}` chunk makes the stream failed).
    fn chunk(&mut self, c: ChunkIn<'_>, out: &mut Vec<u8>) -> Result<()>;
    /// Writes the dialect's proper end of stream; the stream is done afterwards.
    fn end(&mut self, out: &mut Vec<u8>);
    /// The upstream error message, once an error chunk was translated.
    fn failure(&self) -> Option<&str>;
    /// Whether [`end`](Self::end) was written.
    fn is_done(&self) -> bool;
    /// Whether a `finish_reason` was seen: the stream may then end without `[DONE]`.
    fn saw_finish_reason(&self) -> bool;
}

/// OpenAI chat chunk SSE → a client dialect: `feed` / `finish` shared by the inbound stream
/// translators. `finish` succeeds once `[DONE]` or a `finish_reason` was seen, and errs after
/// an upstream error chunk.
#[derive(Debug)]
pub(crate) struct FromChatStream<S> {
    parser: SseParser,
    st: S,
}

/// Routes canonical chat events to a dialect state: `[DONE]` ends the stream, a chunk is
/// translated.
struct ChatEvents<'a, S>(&'a mut S);

impl<S: ChatStreamState> EventHandler for ChatEvents<'_, S> {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match parse_chat_event(data)? {
            ChatEvent::Done => self.0.end(out),
            ChatEvent::Chunk(c) => self.0.chunk(c, out)?,
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.0.is_done() || self.0.failure().is_some()
    }
}

impl<S: ChatStreamState> FromChatStream<S> {
    pub fn new(st: S) -> Self {
        FromChatStream {
            parser: SseParser::new(),
            st,
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        sse::feed_events(&mut self.parser, &mut ChatEvents(&mut self.st), input, out)
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = self.st.failure() {
            return Err(TranslateError::upstream_error_event(e));
        }
        if !self.st.is_done() {
            // A last event without its blank line: a chunk still counts, `[DONE]` alone
            // doesn't end the stream properly.
            if let Some(ev) = self.parser.flush() {
                if let ChatEvent::Chunk(c) = parse_chat_event(ev.data)? {
                    self.st.chunk(c, out)?;
                }
            }
            if !self.st.saw_finish_reason() {
                return Err(TranslateError::stream_ended_early());
            }
            self.st.end(out);
        }
        Ok(())
    }
}
