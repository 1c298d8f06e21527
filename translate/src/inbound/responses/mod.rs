//! Inbound OpenAI Responses API: `/v1/responses` requests to the canonical chat form, chat
//! completions back to `response` objects, and chat chunk streams to the Responses API's typed
//! stream events (`event: TYPE` + `data: {"type": TYPE, "sequence_number": n, ...}`).
//!
//! Stateless: `previous_response_id`, `conversation`, `item_reference` items and stored
//! prompts are rejected; built-in tools (web/file search, computer use, code interpreter, MCP,
//! image generation) are rejected; `input_file` parts are rejected; `reasoning` input items are
//! dropped; `store`, `metadata`, `truncation`, `include`, `background` are ignored.
//! `max_output_tokens` becomes chat `max_tokens`; `reasoning.effort` becomes
//! `reasoning_effort`.
//!
//! Layout: `request` reads the request ([`request_to_chat`]); `response` writes the
//! `response` object ([`response_from_chat`]) and the ids, items and status the stream writes
//! too; `stream` writes the typed stream events ([`StreamFromChat`]).

mod request;
mod response;
mod stream;

pub use request::request_to_chat;
pub use response::response_from_chat;
pub use stream::StreamFromChat;
