//! Outbound Anthropic Messages API: OpenAI chat requests to `/messages`, Anthropic messages
//! and SSE streams back to OpenAI chat completions and chunks, and Anthropic error bodies to
//! OpenAI ones.
//!
//! Request mapping notes: `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`] when the client sent
//! neither `max_completion_tokens` nor `max_tokens` (Anthropic requires it); `temperature` is
//! clamped to Anthropic's 0..=1. `n > 1` is rejected. Ignored (no Anthropic equivalent):
//! `logprobs`, `top_logprobs`, `response_format` (incl. `json_schema`), `presence_penalty`,
//! `frequency_penalty`, `seed`, `logit_bias`, `stream_options`, `service_tier`, `store`,
//! `reasoning_effort`, `modalities`, `prediction`.
//!
//! Layout: `request` builds the `/messages` request ([`chat_request`]); `response` reads a
//! whole message back ([`chat_response`]) and holds the stop-reason and usage mapping the
//! stream shares; `stream` translates the SSE stream ([`ChatStream`]); `errors` maps error
//! bodies ([`error_to_openai`]).

mod errors;
mod request;
mod response;
mod stream;

pub use errors::error_to_openai;
pub use request::chat_request;
pub(crate) use response::tool_use_to_call;
pub use response::{chat_response, finish_reason};
pub use stream::ChatStream;

/// `anthropic-version` sent with every request.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the client gave no limit (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
