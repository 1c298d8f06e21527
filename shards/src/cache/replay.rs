//! A cached answer rendered for the client that asked: its API (OpenAI chat or embeddings,
//! Anthropic Messages, Responses) and its mode — a whole body, or an event stream made from
//! the whole answer with the chunk shape the API streams (the same translators as a live
//! stream's, fed the replayed chat chunks).

use translate::TranslateError;

use super::{Entry, Form};
use crate::dialect::Inbound;

/// A replayed answer: a whole JSON body, or an event stream.
pub struct Replayed {
    pub body: Vec<u8>,
    pub stream: bool,
}

impl Replayed {
    pub fn content_type(&self) -> &'static str {
        if self.stream {
            "text/event-stream"
        } else {
            "application/json"
        }
    }
}

/// How the client asked.
pub struct Asked<'a> {
    pub inbound: Inbound,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The model name as the client wrote it (converted APIs report it).
    pub model: &'a str,
    /// `created` of a converted stream.
    pub created: u64,
}

pub fn replay(entry: &Entry, asked: &Asked<'_>) -> Result<Replayed, TranslateError> {
    let json = |body| Replayed {
        body,
        stream: false,
    };
    let events = |body| Replayed { body, stream: true };
    let chat = &entry.body[..];
    if entry.form == Form::Embeddings || !asked.stream {
        return Ok(json(match asked.inbound {
            Inbound::AnthropicMessages => {
                translate::inbound::anthropic::response_from_chat(chat, asked.model)?
            }
            Inbound::Responses => {
                translate::inbound::responses::response_from_chat(chat, asked.model)?
            }
            _ => chat.to_vec(),
        }));
    }
    match asked
        .inbound
        .stream_from_chat(asked.model, || asked.created)
    {
        None => Ok(events(translate::openai::chat_stream_from_response(
            chat,
            asked.include_usage,
        )?)),
        Some(mut translator) => {
            // The converted APIs report usage in their own events: they need the chunk.
            let chunks = translate::openai::chat_stream_from_response(chat, true)?;
            let mut out = Vec::with_capacity(chunks.len() * 2);
            translator.feed(&chunks, &mut out)?;
            translator.finish(&mut out)?;
            Ok(events(out))
        }
    }
}
