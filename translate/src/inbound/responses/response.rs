//! Chat completion → Responses API `response` object, and the pieces of it (ids, usage,
//! status, output items) that the stream writes as well.

use crate::error::Result;
use crate::inbound::{content_text, first_choice};
use crate::openai::{self, Usage};
use serde_json::{json, Value};

pub(super) fn core_id(chat_id: &str) -> &str {
    chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id)
}

fn usage_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached()},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// (status, incomplete_details) for an OpenAI `finish_reason`.
pub(super) fn status_for(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

pub(super) fn response_object(
    id: &str,
    created: u64,
    model: &str,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage.map(usage_value),
        "metadata": {},
    })
}

pub(super) fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

pub(super) fn call_item(call_id: &str, name: &str, args: &str, status: &str) -> Value {
    json!({"id": format!("fc_{call_id}"), "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": args})
}

/// OpenAI `chat.completion` → Responses API `response` object (`created_at` is the
/// completion's `created`). `finish_reason: length` gives `status: incomplete`.
pub fn response_from_chat(openai_body: &[u8], model: &str) -> Result<Vec<u8>> {
    let chat = openai::parse_upstream(openai_body)?;
    let id = chat.get("id").and_then(Value::as_str).unwrap_or("");
    let created = chat.get("created").and_then(Value::as_u64).unwrap_or(0);
    let (choice, msg) = first_choice(&chat)?;
    let mut output = Vec::new();
    let text = match content_text(msg)? {
        Some(text) => text,
        None => msg
            .get("refusal")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    };
    if !text.is_empty() {
        output.push(message_item(
            &format!("msg_{}", core_id(id)),
            &text,
            "completed",
        ));
    }
    if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            output.push(call_item(
                c.get("id").and_then(Value::as_str).unwrap_or(""),
                c.pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                c.pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                "completed",
            ));
        }
    }
    let (status, incomplete) = status_for(choice.get("finish_reason").and_then(Value::as_str));
    let usage = openai::field::<Usage>(&chat, "usage");
    let v = response_object(
        &format!("resp_{}", core_id(id)),
        created,
        model,
        status,
        incomplete,
        output,
        usage.as_ref(),
    );
    Ok(openai::to_body(&v))
}
