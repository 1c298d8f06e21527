//! Which API each side of a request speaks, and the glue between them. A client speaks
//! OpenAI chat/completions/embeddings, the Anthropic Messages API or the OpenAI Responses API
//! ([`Inbound`]); a provider speaks OpenAI (also Azure's flavour), Anthropic, Gemini or
//! Bedrock ([`Wire`]). OpenAI chat is the pivot: a request is turned into OpenAI chat, then
//! into the provider's form; a response goes the other way. When both sides speak the same
//! API nothing is converted and bytes pass through (the fast path).
//!
//! The conversions themselves are the pure code of the `translate` crate; this module only
//! picks them and chains the stream translators.

use std::cell::LazyCell;

use translate::{StreamTranslator, TranslateError};

use crate::clock::unix_now;
use crate::error::write_error_json;
use crate::governance::stream_usage::StreamUsage;
use crate::governance::units::UnitMeter;
use crate::governance::usage::Tally;

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
    /// `POST /anthropic/v1/messages/count_tokens`: relayed to Anthropic providers as it is.
    AnthropicCountTokens,
    /// Audio, images, moderations, files, batches: relayed to OpenAI-style providers as they
    /// are ([`crate::direct`]).
    Direct(crate::direct::DirectApi),
}

impl Inbound {
    /// Whether the request carries a prompt that is counted in tokens (chat and its
    /// conversions, completions, embeddings); relayed APIs are charged by their own units and
    /// a token count uses none.
    pub fn has_prompt(self) -> bool {
        !matches!(self, Self::Direct(_) | Self::AnthropicCountTokens)
    }

    /// An OpenAI-shaped error body, in this API (the one place each API's error is made).
    pub fn error_body(self, status: u16, openai_body: Vec<u8>) -> Vec<u8> {
        match self {
            Self::AnthropicMessages | Self::AnthropicCountTokens => {
                translate::inbound::anthropic::error_from_openai(status, &openai_body)
            }
            _ => openai_body,
        }
    }

    /// The translator from an OpenAI chat stream to this API's stream (`None`: this API
    /// streams OpenAI chunks as they are). `model` and `created` are what the stream reports;
    /// `created` is asked only by a translator that writes it.
    pub fn stream_from_chat(
        self,
        model: &str,
        created: impl FnOnce() -> u64,
    ) -> Option<Box<dyn StreamTranslator>> {
        match self {
            Self::AnthropicMessages => Some(Box::new(
                translate::inbound::anthropic::StreamFromChat::new(model.to_owned()),
            )),
            Self::Responses => Some(Box::new(
                translate::inbound::responses::StreamFromChat::new(model.to_owned(), created()),
            )),
            _ => None,
        }
    }

    /// The final event of a stream that broke, in this API.
    pub fn stream_error_event(self, message: &str) -> Vec<u8> {
        let mut event = Vec::with_capacity(256);
        match self {
            Self::AnthropicMessages => {
                event.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
                crate::error::push_json_string(&mut event, message);
                event.extend_from_slice(b"}}\n\n");
            }
            Self::Responses => {
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

/// How one response is turned into what the client expects.
#[derive(Debug, Clone)]
pub struct Conversion<'a> {
    pub wire: Wire,
    pub inbound: Inbound,
    /// The provider answers in the client's own API (no conversion at all).
    pub passthrough: bool,
    /// The model name the client asked for, used in converted responses.
    pub model: &'a str,
    /// The client asked for a stream.
    pub stream: bool,
    /// Translators emit the usage chunk (the client asked, or the gateway needs it).
    pub include_usage: bool,
    /// Read token usage from the response (governed or sampled requests).
    pub capture_usage: bool,
    /// With it, also read the finish reason and the model the response names (sampled
    /// requests: only the trace reads them).
    pub describe_outcome: bool,
    /// The tokenizer that counts the output when the provider reports no usage.
    pub family: tokens::Family,
    /// The client did not ask for the stream usage chunk: keep it out of its stream.
    pub strip_usage: bool,
    /// Gemini and Bedrock embeddings: the client asked for base64 vectors.
    pub embed_base64: bool,
    /// A relayed API charged by what its response reports: read its units as they pass.
    pub meter_units: bool,
    /// A transcription the client asked as `text`, asked upstream as `json`: the client gets
    /// the JSON's `text` as plain text.
    pub transcript_text: bool,
    /// The answer is to be kept by the response cache, in its OpenAI form (the stream
    /// before the client's API is made of it), when it is at most this many bytes.
    pub keep_answer: Option<usize>,
}

impl Conversion<'_> {
    /// Converts a whole response body. Returns the status to send (a success body that cannot
    /// be read becomes a 502) and the body in the client's API.
    pub fn whole(&self, status: u16, body: &[u8], error_type: Option<&str>) -> Converted {
        let success = (200..300).contains(&status);
        let as_openai = if success {
            let converted = match (self.wire, self.inbound) {
                (Wire::OpenAi | Wire::Azure, _) => Ok(body.to_vec()),
                (Wire::Anthropic, _) => {
                    translate::anthropic::chat_response(body, self.model, unix_now())
                }
                (Wire::Gemini, Inbound::Embeddings) => {
                    translate::gemini::embed_response(body, self.model, self.embed_base64)
                }
                (Wire::Gemini, _) => translate::gemini::chat_response(body, self.model, unix_now()),
                (Wire::Bedrock, Inbound::Embeddings) => {
                    translate::bedrock::embed_response(body, self.model, self.embed_base64)
                }
                (Wire::Bedrock, _) => {
                    translate::bedrock::chat_response(body, self.model, unix_now())
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
        let answer = self
            .keep_answer
            .filter(|max| success && as_openai.len() <= *max)
            .map(|_| as_openai.clone());
        let tally = if success && self.capture_usage {
            Tally::of_body(&as_openai, self.family, self.describe_outcome)
        } else if success && self.meter_units {
            let mut meter = UnitMeter::default();
            meter.feed(&as_openai);
            Tally::of_units(&meter)
        } else {
            Tally::default()
        };
        if success && self.transcript_text {
            return match transcript_text(&as_openai) {
                Some(text) => Converted {
                    status,
                    body: text,
                    tally,
                    content_type: "text/plain; charset=utf-8",
                    answer: None,
                },
                None => {
                    let mut body = Vec::with_capacity(128);
                    let message = "the provider's transcription has no `text`";
                    write_error_json(&mut body, message, "api_error", None, "translation_failed");
                    self.whole(502, &body, None)
                }
            };
        }
        let out = match (self.inbound, success) {
            (Inbound::AnthropicMessages, true) => {
                translate::inbound::anthropic::response_from_chat(&as_openai, self.model)
            }
            (_, false) => Ok(self.inbound.error_body(status, as_openai)),
            (Inbound::Responses, true) => {
                translate::inbound::responses::response_from_chat(&as_openai, self.model)
            }
            _ => Ok(as_openai),
        };
        match out {
            Ok(body) => Converted {
                status,
                body,
                tally,
                content_type: JSON,
                answer,
            },
            Err(e) => Converted {
                status: 502,
                body: self.inbound.error_body(502, openai_error(&e)),
                tally,
                content_type: JSON,
                answer: None,
            },
        }
    }

    /// The chain of stream translators from the provider's stream to the client's.
    pub fn stream(&self) -> StreamChain {
        // When the response was made, for the translators that write it; pass-through
        // streams have none and leave the clock alone.
        let created = LazyCell::new(unix_now);
        let outbound: Option<Box<dyn StreamTranslator>> = match self.wire {
            Wire::OpenAi | Wire::Azure => None,
            Wire::Anthropic => Some(Box::new(translate::anthropic::ChatStream::new(
                self.model.to_owned(),
                *created,
                self.include_usage,
            ))),
            Wire::Gemini => Some(Box::new(translate::gemini::ChatStream::new(
                self.model.to_owned(),
                *created,
                self.include_usage,
            ))),
            Wire::Bedrock => Some(Box::new(translate::bedrock::ChatStream::new(
                self.model.to_owned(),
                *created,
                self.include_usage,
            ))),
        };
        let inbound = self.inbound.stream_from_chat(self.model, || *created);
        StreamChain {
            outbound,
            usage: self
                .capture_usage
                .then(|| StreamUsage::new(self.strip_usage, self.family, self.describe_outcome)),
            meter: self.meter_units.then(UnitMeter::default),
            inbound,
            answer: self.keep_answer.map(|max| Answer {
                bytes: Some(Vec::new()),
                max,
            }),
            mid: Vec::new(),
            mid2: Vec::new(),
        }
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

/// A whole response converted for the client.
pub struct Converted {
    pub status: u16,
    pub body: Vec<u8>,
    /// What a success used (when capturing).
    pub tally: Tally,
    pub content_type: &'static str,
    /// The success in OpenAI form, for the response cache (when it keeps the answer).
    pub answer: Option<Vec<u8>>,
}

const JSON: &str = "application/json";

/// The `text` of a transcription's JSON.
fn transcript_text(body: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Transcript {
        text: String,
    }
    serde_json::from_slice::<Transcript>(body)
        .ok()
        .map(|t| t.text.into_bytes())
}

/// Provider stream → (OpenAI chat stream, usage read and maybe stripped) → client stream.
pub struct StreamChain {
    outbound: Option<Box<dyn StreamTranslator>>,
    usage: Option<StreamUsage>,
    /// A relayed API's units, read from what passes (nothing is changed).
    meter: Option<UnitMeter>,
    inbound: Option<Box<dyn StreamTranslator>>,
    /// The OpenAI stream kept for the response cache.
    answer: Option<Answer>,
    mid: Vec<u8>,
    mid2: Vec<u8>,
}

/// The OpenAI form of a stream, copied as it passes, up to `max` bytes (`bytes` is `None`
/// once it outgrew them: such an answer is not kept).
struct Answer {
    bytes: Option<Vec<u8>>,
    max: usize,
}

impl Answer {
    fn keep(&mut self, piece: &[u8]) {
        if let Some(bytes) = &mut self.bytes {
            if bytes.len() + piece.len() > self.max {
                self.bytes = None;
            } else {
                bytes.extend_from_slice(piece);
            }
        }
    }
}

impl StreamChain {
    pub fn is_identity(&self) -> bool {
        self.outbound.is_none()
            && self.usage.is_none()
            && self.meter.is_none()
            && self.inbound.is_none()
            && self.answer.is_none()
    }

    /// The stream's OpenAI form as it passed, when it was kept and fit.
    pub fn take_answer(&mut self) -> Option<Vec<u8>> {
        self.answer.take()?.bytes
    }

    /// What the stream used and how it ended so far (when capturing or metering).
    pub fn tally(&mut self) -> Tally {
        if let Some(meter) = &self.meter {
            return Tally::of_units(meter);
        }
        self.usage
            .as_mut()
            .map(StreamUsage::tally)
            .unwrap_or_default()
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        self.run(input, out, false)
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        self.run(&[], out, true)
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>, end: bool) -> Result<(), TranslateError> {
        let Self {
            outbound,
            usage,
            meter,
            inbound,
            answer,
            mid,
            mid2,
        } = self;
        // Stage 1: the provider's stream into OpenAI chunks.
        let mut first = Ok(());
        let openai: &[u8] = match outbound {
            Some(o) => {
                mid.clear();
                first = if end {
                    o.finish(mid)
                } else {
                    o.feed(input, mid)
                };
                mid
            }
            None => input,
        };
        if let Some(answer) = answer {
            answer.keep(openai);
        }
        // Stage 2: usage read (and the usage chunk dropped when the client did not ask).
        let observed: &[u8] = match usage {
            Some(u) => {
                mid2.clear();
                u.feed(openai, mid2);
                if end {
                    u.finish(mid2);
                }
                mid2
            }
            None => openai,
        };
        if let Some(m) = meter {
            m.feed(observed);
        }
        // Stage 3: OpenAI chunks into the client's API.
        match inbound {
            Some(i) => {
                i.feed(observed, out)?;
                first?;
                if end {
                    i.finish(out)?;
                }
                Ok(())
            }
            // The usage stage's output is the client's: handed over, not copied.
            None if usage.is_some() && out.is_empty() => {
                std::mem::swap(out, mid2);
                first
            }
            None => {
                out.extend_from_slice(observed);
                first
            }
        }
    }
}
