//! OpenAI chat request → Anthropic `/messages` request: messages to system text and
//! alternating user/assistant content blocks, tools and tool choice, sampling parameters.

use super::{API_VERSION, DEFAULT_MAX_TOKENS};
use crate::error::{Result, TranslateError};
use crate::openai::{self, content_text, split_data_url, ToolChoice};
use crate::ProviderRequest;
use serde_json::{json, Map, Value};

/// OpenAI chat request → Anthropic `/messages` request for `upstream_model`.
pub fn chat_request(openai_body: &[u8], upstream_model: &str) -> Result<ProviderRequest> {
    let req = openai::parse_request(openai_body)?;
    openai::reject_several_choices(&req, "Anthropic")?;
    let messages = openai::messages(&req)?;

    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid(format!("messages[{i}].role missing")))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = content_text(content)?;
                if !text.is_empty() {
                    system.push(json!({"type": "text", "text": text}));
                }
            }
            "user" => {
                let blocks = user_blocks(content)?;
                push_merged(&mut out, "user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                let text = content_text(content)?;
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for c in openai::tool_calls(m) {
                    blocks.push(tool_use_block(c)?);
                }
                push_merged(&mut out, "assistant", blocks);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        TranslateError::invalid(format!("messages[{i}].tool_call_id missing"))
                    })?;
                let text = content_text(content)?;
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": text});
                push_merged(&mut out, "user", vec![block]);
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "message role {other:?} is not supported by the Anthropic provider"
                )))
            }
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    let max = openai::max_tokens(&req).unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), max.into());
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let msgs: Vec<Value> = out
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), Value::Array(msgs));
    if let Some(t) = req.get("temperature").and_then(Value::as_f64) {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.get("top_p").filter(|v| v.is_number()) {
        body.insert("top_p".into(), p.clone());
    }
    if let Some(stop) = openai::stop_sequences(&req) {
        body.insert("stop_sequences".into(), stop);
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        body.insert("stream".into(), true.into());
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let mut ts = Vec::with_capacity(tools.len());
        for t in tools {
            ts.push(tool_def(t)?);
        }
        if !ts.is_empty() {
            body.insert("tools".into(), Value::Array(ts));
        }
    }
    let parallel_off = req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    let mut choice = openai::tool_choice(&req)?.map(|c| match c {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
    });
    if parallel_off && body.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }

    Ok(ProviderRequest {
        path: "/messages".into(),
        headers: vec![
            ("anthropic-version".into(), API_VERSION.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: openai::to_body(&Value::Object(body)),
    })
}

fn push_merged(out: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    match out.last_mut() {
        Some((r, b)) if *r == role => {
            // Anthropic wants tool_result blocks first in a user message.
            if role == "user" && blocks.iter().any(|x| x["type"] == "tool_result") {
                let at = b.iter().take_while(|x| x["type"] == "tool_result").count();
                for (k, blk) in blocks.into_iter().enumerate() {
                    b.insert(at + k, blk);
                }
            } else {
                b.extend(blocks);
            }
        }
        _ => out.push((role, blocks)),
    }
}

fn user_blocks(content: &Value) -> Result<Vec<Value>> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).unwrap_or("");
                        if !t.is_empty() {
                            blocks.push(json!({"type": "text", "text": t}));
                        }
                    }
                    Some("image_url") => {
                        let url = p
                            .pointer("/image_url/url")
                            .or_else(|| p.get("image_url"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| TranslateError::invalid("image_url.url missing"))?;
                        blocks.push(image_block(url)?);
                    }
                    other => {
                        return Err(TranslateError::invalid(format!(
                            "content part type {other:?} is not supported by the Anthropic provider"
                        )))
                    }
                }
            }
            Ok(blocks)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(TranslateError::invalid(
            "message content must be a string or an array",
        )),
    }
}

fn image_block(url: &str) -> Result<Value> {
    if let Some((media, data)) = split_data_url(url) {
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        );
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(TranslateError::invalid(
        "image_url must be a base64 data: URL or an http(s) URL",
    ))
}

fn tool_use_block(call: &Value) -> Result<Value> {
    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
    let name = openai::tool_call_name(call)?;
    let input = openai::tool_call_input(call)?;
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_def(t: &Value) -> Result<Value> {
    let (f, name) = openai::function_tool(t, "Anthropic")?;
    let name = name
        .as_str()
        .ok_or_else(|| TranslateError::invalid("tools[].function.name missing"))?;
    let mut d = Map::new();
    d.insert("name".into(), name.into());
    if let Some(desc) = f.get("description").and_then(Value::as_str) {
        d.insert("description".into(), desc.into());
    }
    let schema = f
        .get("parameters")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    d.insert("input_schema".into(), schema);
    Ok(Value::Object(d))
}
