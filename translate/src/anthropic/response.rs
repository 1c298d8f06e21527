//! Anthropic message → OpenAI `chat.completion`: the stop-reason and usage mapping (which
//! the stream translator shares), the whole-message body, and `tool_use` blocks as tool calls.

use crate::error::{Result, TranslateError};
use crate::openai::{self, Usage};
use serde::Deserialize;
use serde_json::{json, Value};

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub(super) struct UsageIn {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Default, Debug, Clone, Copy)]
pub(super) struct UsageAcc {
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_creation: u64,
}

impl UsageAcc {
    pub(super) fn update(&mut self, u: &UsageIn) {
        if let Some(v) = u.input_tokens {
            self.input = v;
        }
        if let Some(v) = u.output_tokens {
            self.output = v;
        }
        if let Some(v) = u.cache_read_input_tokens {
            self.cache_read = Some(v);
        }
        if let Some(v) = u.cache_creation_input_tokens {
            self.cache_creation = v;
        }
    }

    pub(super) fn openai(&self) -> Usage {
        Usage::new(
            self.input + self.cache_read.unwrap_or(0) + self.cache_creation,
            self.output,
            self.cache_read,
        )
    }
}

/// Anthropic message → OpenAI `chat.completion` body. `model` is the name the client asked
/// for; `created` the timestamp to report.
pub fn chat_response(body: &[u8], model: &str, created: u64) -> Result<Vec<u8>> {
    let msg = openai::parse_upstream(body)?;
    let id = msg.get("id").and_then(Value::as_str).unwrap_or("msg");
    let mut text = String::new();
    let mut calls = Vec::new();
    if let Some(blocks) = msg.get("content").and_then(Value::as_array) {
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                Some("tool_use") => calls.push(tool_use_to_call(b)),
                _ => {} // thinking, redacted_thinking, server tool blocks: dropped
            }
        }
    } else {
        return Err(TranslateError::upstream("message has no content array"));
    }
    let reason = msg
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(finish_reason);
    let mut acc = UsageAcc::default();
    acc.update(&openai::field::<UsageIn>(&msg, "usage").unwrap_or_default());
    Ok(openai::completion_body(
        id,
        created,
        model,
        text,
        calls,
        reason,
        acc.openai(),
    ))
}

/// An Anthropic `tool_use` block → an OpenAI `tool_calls[]` entry (`input` as the arguments
/// text).
pub(crate) fn tool_use_to_call(block: &Value) -> Value {
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    openai::tool_call(
        block.get("id").and_then(Value::as_str).unwrap_or(""),
        block.get("name").and_then(Value::as_str).unwrap_or(""),
        &serde_json::to_string(&input).unwrap_or_default(),
    )
}
