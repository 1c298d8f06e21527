//! Which API each side of a request speaks, and the glue between them. A client speaks
//! OpenAI chat/completions/embeddings, the Anthropic Messages API or the OpenAI Responses API
//! ([`Inbound`]); a provider speaks OpenAI (also Azure's flavour), Anthropic, Gemini or
//! Bedrock ([`Wire`]). OpenAI chat is the pivot: a request is turned into OpenAI chat, then
//! into the provider's form; a response goes the other way. When both sides speak the same
//! API nothing is converted and bytes pass through (the fast path).
//!
//! The conversions themselves are the pure code of the `translate` crate; this module only
//! picks them and chains the stream translators.

use translate::{StreamTranslator, TranslateError};

use crate::error::write_error_json;

/// A provider's API family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    /// OpenAI behind Azure's deployment URLs, `api-version` and `api-key`.
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
}

/// The API a client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Chat,
    Completions,
    Embeddings,
    /// `POST /anthropic/v1/messages`
    AnthropicMessages,
    /// `POST /v1/responses`
    Responses,
}

impl Inbound {
    /// Whether the client's body is already an OpenAI chat request.
    pub fn speaks_chat(self) -> bool {
        matches!(self, Self::Chat)
    }
}

/// How one response is turned into what the client expects.
#[derive(Debug, Clone)]
pub struct Conversion<'a> {
    pub wire: Wire,
    pub inbound: Inbound,
    /// The provider answers in the client's own API (no conversion at all).
    pub passthrough: bool,
    /// The model name the client asked for, used in converted responses.
    pub model: &'a str,
    pub created: u64,
    /// The client asked for a stream.
    pub stream: bool,
    pub include_usage: bool,
    /// Gemini embeddings: the client asked for base64 vectors.
    pub embed_base64: bool,
}

impl Conversion<'_> {
    /// Converts a whole response body. Returns the status to send (a success body that cannot
    /// be read becomes a 502) and the body in the client's API.
    pub fn whole(&self, status: u16, body: &[u8], error_type: Option<&str>) -> (u16, Vec<u8>) {
        let success = (200..300).contains(&status);
        let as_openai = if success {
            let converted = match (self.wire, self.inbound) {
                (Wire::OpenAi | Wire::Azure, _) => Ok(body.to_vec()),
                (Wire::Anthropic, _) => {
                    translate::anthropic::chat_response(body, self.model, self.created)
                }
                (Wire::Gemini, Inbound::Embeddings) => {
                    translate::gemini::embed_response(body, self.model, self.embed_base64)
                }
                (Wire::Gemini, _) => {
                    translate::gemini::chat_response(body, self.model, self.created)
                }
                (Wire::Bedrock, _) => {
                    translate::bedrock::chat_response(body, self.model, self.created)
                }
            };
            match converted {
                Ok(b) => b,
                Err(e) => return self.whole(502, &openai_error(&e), None),
            }
        } else {
            match self.wire {
                Wire::OpenAi | Wire::Azure => body.to_vec(),
                Wire::Anthropic => translate::anthropic::error_to_openai(status, body),
                Wire::Gemini => translate::gemini::error_to_openai(status, body),
                Wire::Bedrock => translate::bedrock::error_to_openai(status, error_type, body),
            }
        };
        let out = match (self.inbound, success) {
            (Inbound::AnthropicMessages, true) => {
                translate::inbound::anthropic::response_from_chat(&as_openai, self.model)
            }
            (Inbound::AnthropicMessages, false) => Ok(
                translate::inbound::anthropic::error_from_openai(status, &as_openai),
            ),
            (Inbound::Responses, true) => {
                translate::inbound::responses::response_from_chat(&as_openai, self.model)
            }
            _ => Ok(as_openai),
        };
        match out {
            Ok(b) => (status, b),
            Err(e) => (502, self.error_body(502, &openai_error(&e))),
        }
    }

    /// An OpenAI-shaped error body, in the client's API.
    pub fn error_body(&self, status: u16, openai_body: &[u8]) -> Vec<u8> {
        match self.inbound {
            Inbound::AnthropicMessages => {
                translate::inbound::anthropic::error_from_openai(status, openai_body)
            }
            _ => openai_body.to_vec(),
        }
    }

    /// The chain of stream translators from the provider's stream to the client's.
    pub fn stream(&self) -> StreamChain {
        let outbound: Option<Box<dyn StreamTranslator>> = match self.wire {
            Wire::OpenAi | Wire::Azure => None,
            Wire::Anthropic => Some(Box::new(translate::anthropic::ChatStream::new(
                self.model.to_owned(),
                self.created,
                self.include_usage,
            ))),
            Wire::Gemini => Some(Box::new(translate::gemini::ChatStream::new(
                self.model.to_owned(),
                self.created,
                self.include_usage,
            ))),
            Wire::Bedrock => Some(Box::new(translate::bedrock::ChatStream::new(
                self.model.to_owned(),
                self.created,
                self.include_usage,
            ))),
        };
        let inbound: Option<Box<dyn StreamTranslator>> = match self.inbound {
            Inbound::AnthropicMessages => Some(Box::new(
                translate::inbound::anthropic::StreamFromChat::new(self.model.to_owned()),
            )),
            Inbound::Responses => Some(Box::new(
                translate::inbound::responses::StreamFromChat::new(
                    self.model.to_owned(),
                    self.created,
                ),
            )),
            _ => None,
        };
        StreamChain {
            outbound,
            inbound,
            mid: Vec::new(),
        }
    }

    /// The final event of a stream that broke, in the client's API.
    pub fn stream_error_event(&self, message: &str) -> Vec<u8> {
        let mut event = Vec::with_capacity(256);
        match self.inbound {
            Inbound::AnthropicMessages => {
                event.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
                crate::error::push_json_string(&mut event, message);
                event.extend_from_slice(b"}}\n\n");
            }
            Inbound::Responses => {
                event.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_stream_broken\",\"message\":");
                crate::error::push_json_string(&mut event, message);
                event.extend_from_slice(b",\"param\":null}\n\n");
            }
            _ => {
                event.extend_from_slice(b"data: ");
                write_error_json(
                    &mut event,
                    message,
                    "api_error",
                    None,
                    "upstream_stream_broken",
                );
                event.extend_from_slice(b"\n\n");
            }
        }
        event
    }
}

fn openai_error(e: &TranslateError) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    let kind = if e.status() == 400 {
        "invalid_request_error"
    } else {
        "api_error"
    };
    write_error_json(&mut body, e.message(), kind, None, "translation_failed");
    body
}

/// Provider stream → (OpenAI chat stream) → client stream.
pub struct StreamChain {
    outbound: Option<Box<dyn StreamTranslator>>,
    inbound: Option<Box<dyn StreamTranslator>>,
    mid: Vec<u8>,
}

impl StreamChain {
    pub fn is_identity(&self) -> bool {
        self.outbound.is_none() && self.inbound.is_none()
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        match (&mut self.outbound, &mut self.inbound) {
            (None, None) => {
                out.extend_from_slice(input);
                Ok(())
            }
            (Some(o), None) => o.feed(input, out),
            (None, Some(i)) => i.feed(input, out),
            (Some(o), Some(i)) => {
                self.mid.clear();
                let first = o.feed(input, &mut self.mid);
                i.feed(&self.mid, out)?;
                first
            }
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        match (&mut self.outbound, &mut self.inbound) {
            (None, None) => Ok(()),
            (Some(o), None) => o.finish(out),
            (None, Some(i)) => i.finish(out),
            (Some(o), Some(i)) => {
                self.mid.clear();
                let first = o.finish(&mut self.mid);
                i.feed(&self.mid, out)?;
                first?;
                i.finish(out)
            }
        }
    }
}
