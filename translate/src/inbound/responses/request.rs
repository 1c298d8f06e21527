//! Responses API request → canonical chat request: `instructions` and `input` items to chat
//! messages, function tools, tool choice, text format and the sampling parameters.

use crate::error::{Result, TranslateError};
use crate::inbound::{chat_body, finished_chat, insert_tools, nested_str, required_model};
use crate::openai;
use serde_json::{json, Map, Value};

/// Responses API request → (OpenAI chat body, `stream`, `model`).
pub fn request_to_chat(body: &[u8]) -> Result<(Vec<u8>, bool, String)> {
    let req = openai::parse_request(body)?;
    let model = required_model(&req)?;
    for k in ["previous_response_id", "conversation", "prompt"] {
        if req.get(k).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::invalid(format!(
                "{k} is not supported: this gateway's Responses API is stateless"
            )));
        }
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut messages: Vec<Value> = Vec::new();
    if let Some(i) = req.get("instructions").and_then(Value::as_str) {
        if !i.is_empty() {
            messages.push(json!({"role": "system", "content": i}));
        }
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(i, item, &mut messages)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(TranslateError::invalid(
                "input must be a string or an array",
            ))
        }
    }

    let mut chat = chat_body(&model, messages, &req);
    if let Some(m) = req.get("max_output_tokens").and_then(Value::as_u64) {
        chat.insert("max_tokens".into(), m.into());
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        chat.insert("user".into(), u.into());
    }
    if let Some(p) = req.get("parallel_tool_calls").and_then(Value::as_bool) {
        chat.insert("parallel_tool_calls".into(), p.into());
    }
    if let Some(e) = nested_str(&req, "reasoning", "effort") {
        chat.insert("reasoning_effort".into(), e.into());
    }
    insert_tools(&mut chat, &req, |t| {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(TranslateError::invalid(format!(
                "tool type {} is not supported through this gateway",
                t.get("type").unwrap_or(&Value::Null)
            )));
        }
        let mut f = Map::new();
        for k in ["name", "description", "parameters", "strict"] {
            if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                f.insert(k.into(), v.clone());
            }
        }
        if !f.contains_key("name") {
            return Err(TranslateError::invalid("tools[].name missing"));
        }
        Ok(f)
    })?;
    match req.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => {
            chat.insert("tool_choice".into(), s.clone().into());
        }
        Some(v) if v.get("type").and_then(Value::as_str) == Some("function") => {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tool_choice.name missing"))?;
            chat.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": name}}),
            );
        }
        Some(v) => {
            return Err(TranslateError::invalid(format!(
                "tool_choice {v} is not supported"
            )))
        }
    }
    if let Some(f) = req.get("text").and_then(|t| t.get("format")) {
        match f.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut js = Map::new();
                for k in ["name", "schema", "strict", "description"] {
                    if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                        js.insert(k.into(), v.clone());
                    }
                }
                chat.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": js}),
                );
            }
            Some("json_object") => {
                chat.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    finished_chat(chat, stream, model)
}

fn input_item(i: usize, item: &Value, messages: &mut Vec<Value>) -> Result<()> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("");
            let role = match role {
                "user" | "assistant" | "system" | "developer" => role,
                _ => {
                    return Err(TranslateError::invalid(format!(
                        "input[{i}].role {role:?} is not supported"
                    )))
                }
            };
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => message_parts(role, parts)?,
                _ => {
                    return Err(TranslateError::invalid(format!(
                        "input[{i}].content must be a string or an array"
                    )))
                }
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                "type": "function",
                "function": {
                    "name": item.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or(""),
                }
            });
            // Consecutive calls (and a preceding assistant text) form one assistant message.
            match messages.last_mut() {
                Some(m) if m["role"] == "assistant" => {
                    if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        calls.push(call);
                    } else {
                        m["tool_calls"] = json!([call]);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let out = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(_)) => openai::content_text(v)?,
                _ => String::new(),
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                "content": out,
            }));
        }
        "reasoning" => {}
        other => {
            return Err(TranslateError::invalid(format!(
                "input item type {other:?} is not supported through this gateway"
            )))
        }
    }
    Ok(())
}

fn message_parts(role: &str, parts: &[Value]) -> Result<Value> {
    let mut out = Vec::with_capacity(parts.len());
    let mut text_only = true;
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text") | Some("output_text") | Some("text") => {
                out.push(json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or("")}));
            }
            Some("refusal") => {
                out.push(json!({"type": "text", "text": p.get("refusal").and_then(Value::as_str).unwrap_or("")}));
            }
            Some("input_image") => {
                let url = p.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid(
                        "input_image.image_url missing (file_id is not supported)",
                    )
                })?;
                let mut iu = json!({"url": url});
                if let Some(d) = p.get("detail").and_then(Value::as_str) {
                    iu["detail"] = d.into();
                }
                out.push(json!({"type": "image_url", "image_url": iu}));
                text_only = false;
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "content part type {other:?} is not supported through this gateway"
                )))
            }
        }
    }
    if text_only && (role != "user" || out.len() == 1) {
        let text: String = out
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("");
        return Ok(Value::String(text));
    }
    Ok(Value::Array(out))
}
