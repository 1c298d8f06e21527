//! ringgate's translation layer: pure conversions between OpenAI Chat Completions (the
//! gateway's canonical form) and other LLM APIs. No I/O, no async, no clocks: the caller
//! passes in bodies, byte slices of streams, the model name and the `created` timestamp.
//!
//! Outbound (client speaks OpenAI chat, provider doesn't): [`anthropic`], [`gemini`],
//! [`bedrock`]. Inbound (client speaks another API, provider is reached in OpenAI chat form):
//! [`inbound::anthropic`], [`inbound::responses`].
//!
//! Stream translators are state machines with `feed(input, out)` and `finish(out)`; see the
//! crate README for the contract.

pub mod anthropic;
pub mod bedrock;
pub mod error;
pub mod gemini;
pub mod inbound;
pub mod openai;
pub mod percent;
pub mod sse;

pub use error::TranslateError;

/// A request ready to send to a provider. The gateway adds the auth header(s) and the
/// host/base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    /// Appended to the provider base URL's path; may include a query (`?alt=sse`).
    pub path: String,
    /// Provider-specific headers other than auth (e.g. `anthropic-version`), plus
    /// `content-type`.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

/// The common shape of every stream translator, so the gateway can hold any of them as
/// `Box<dyn StreamTranslator>`.
///
/// `feed` appends the translation of whatever complete upstream events `input` finishes
/// (input may be split anywhere); `finish` is called at upstream end-of-body and writes the
/// stream's proper ending, or returns `Err(UpstreamPayload)` when the upstream stream did not
/// end properly. On `Err` from `feed`, `out` may already hold the output of earlier complete
/// events; it is valid to send it before ending the stream.
pub trait StreamTranslator {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError>;
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TranslateError>;
}

macro_rules! impl_stream_translator {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::StreamTranslator for $t {
            fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), $crate::TranslateError> {
                <$t>::feed(self, input, out)
            }
            fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), $crate::TranslateError> {
                <$t>::finish(self, out)
            }
        }
    )*};
}

impl_stream_translator!(
    anthropic::ChatStream,
    bedrock::ChatStream,
    gemini::ChatStream,
    inbound::anthropic::StreamFromChat,
    inbound::responses::StreamFromChat,
);
