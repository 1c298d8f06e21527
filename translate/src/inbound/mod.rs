//! Inbound translation: clients speaking another API (Anthropic Messages, OpenAI Responses)
//! served through the gateway's canonical OpenAI Chat Completions form, whichever provider
//! ends up answering.

pub mod anthropic;
pub mod responses;
