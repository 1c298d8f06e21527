//! Reading what clients and providers send: bodies as JSON objects, the small JSON helpers the
//! translators share, and the fields of an OpenAI chat request that every outbound request
//! translator reads the same way.

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::error::{Result, TranslateError};

// ---- JSON helpers shared by the request translators -------------------------------------

/// A client's request body as a JSON object; otherwise [`TranslateError::InvalidRequest`].
pub(crate) fn parse_request(body: &[u8]) -> Result<Map<String, Value>> {
    json_object(
        body,
        "request body must be a JSON object",
        "request body is not valid JSON",
        TranslateError::InvalidRequest,
    )
}

/// A provider's response body as a JSON object; otherwise [`TranslateError::UpstreamPayload`].
pub(crate) fn parse_upstream(body: &[u8]) -> Result<Map<String, Value>> {
    json_object(
        body,
        "response body is not a JSON object",
        "response body is not valid JSON",
        TranslateError::UpstreamPayload,
    )
}

/// `body` as a JSON object, or `error` saying `not_object`, or `not_json` and why.
fn json_object(
    body: &[u8],
    not_object: &str,
    not_json: &str,
    error: fn(String) -> TranslateError,
) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(error(not_object.to_owned())),
        Err(e) => Err(error(format!("{not_json}: {e}"))),
    }
}

pub(crate) fn to_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The text of an OpenAI message `content`: a string, or the `text` of its text parts joined.
pub(crate) fn content_text(content: &Value) -> Result<String> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut s = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") | Some("refusal") | Some("input_text") | Some("output_text") => {
                        let t = p
                            .get("text")
                            .or_else(|| p.get("refusal"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        s.push_str(t);
                    }
                    other => {
                        return Err(TranslateError::invalid(format!(
                            "content part type {other:?} is not supported here"
                        )))
                    }
                }
            }
            Ok(s)
        }
        _ => Err(TranslateError::invalid(
            "message content must be a string or an array",
        )),
    }
}

/// Deserializes `obj[key]`; `None` when it is missing or doesn't fit `T`.
pub(crate) fn field<T: DeserializeOwned>(obj: &Map<String, Value>, key: &str) -> Option<T> {
    obj.get(key)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Splits a `data:` URL into (media type, base64 payload).
pub(crate) fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

// ---- reading chat requests (shared by the outbound request translators) ------------------

/// Rejects `n > 1`: every outbound provider answers with one choice.
pub(crate) fn reject_several_choices(req: &Map<String, Value>, provider: &str) -> Result<()> {
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::invalid(format!(
            "n > 1 is not supported by the {provider} provider"
        )));
    }
    Ok(())
}

/// `messages`, which must be an array.
pub(crate) fn messages(req: &Map<String, Value>) -> Result<&Vec<Value>> {
    req.get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages must be an array"))
}

/// The client's output limit: `max_completion_tokens`, else `max_tokens`.
pub(crate) fn max_tokens(req: &Map<String, Value>) -> Option<u64> {
    req.get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
}

/// `stop` as an array of sequences: a string becomes a one-element array; an empty array or
/// anything else is no stop sequences.
pub(crate) fn stop_sequences(req: &Map<String, Value>) -> Option<Value> {
    match req.get("stop") {
        Some(Value::String(s)) => Some(json!([s])),
        Some(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a.clone())),
        _ => None,
    }
}

/// A `tools[]` entry's `function` and its `name`, after checking it is a function tool.
pub(crate) fn function_tool<'a>(t: &'a Value, provider: &str) -> Result<(&'a Value, &'a Value)> {
    if t.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
        return Err(TranslateError::invalid(format!(
            "only function tools are supported by the {provider} provider"
        )));
    }
    let f = t
        .get("function")
        .ok_or_else(|| TranslateError::invalid("tools[].function missing"))?;
    let name = f
        .get("name")
        .ok_or_else(|| TranslateError::invalid("tools[].function.name missing"))?;
    Ok((f, name))
}

/// `tool_choice`, when the client gave one.
pub(crate) enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    Function(&'a str),
}

/// Reads `tool_choice`: `"auto"`, `"none"`, `"required"` or `{"function": {"name"}}`; other
/// strings and a choice without a function name are rejected.
pub(crate) fn tool_choice(req: &Map<String, Value>) -> Result<Option<ToolChoice<'_>>> {
    Ok(match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(TranslateError::invalid(format!(
                    "tool_choice {other:?} is not supported"
                )))
            }
        }),
        Some(v) => Some(ToolChoice::Function(
            v.pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tool_choice.function.name missing"))?,
        )),
    })
}

/// An assistant message's `tool_calls`, none when absent.
pub(crate) fn tool_calls(message: &Value) -> impl Iterator<Item = &Value> {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A tool call's `function.name`, which must be there.
pub(crate) fn tool_call_name(call: &Value) -> Result<&str> {
    call.pointer("/function/name")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("tool_calls[].function.name missing"))
}

/// A tool call's `function.arguments` parsed into a JSON object (see [`parse_arguments`]).
pub(crate) fn tool_call_input(call: &Value) -> Result<Value> {
    let args = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    parse_arguments(args).map_err(TranslateError::InvalidRequest)
}

/// Parses tool-call `arguments` (a JSON string) into an object; empty means `{}`.
pub(crate) fn parse_arguments(args: &str) -> std::result::Result<Value, String> {
    if args.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("tool call arguments must be a JSON object".into()),
        Err(e) => Err(format!("tool call arguments are not valid JSON: {e}")),
    }
}

/// A user message `content` as the parts of a provider whose text part is `{"text": ...}`
/// (Gemini, Bedrock): a string is one text part, `null` none; each `image_url` part goes
/// through `image` (given its `image_url.url`, when there is one).
pub(crate) fn text_or_image_parts(
    content: &Value,
    provider: &str,
    image: impl Fn(Option<&str>) -> Result<Value>,
) -> Result<Vec<Value>> {
    match content {
        Value::String(s) => Ok(vec![json!({"text": s})]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out
                        .push(json!({"text": p.get("text").and_then(Value::as_str).unwrap_or("")})),
                    Some("image_url") => {
                        out.push(image(p.pointer("/image_url/url").and_then(Value::as_str))?)
                    }
                    other => {
                        return Err(TranslateError::invalid(format!(
                        "content part type {other:?} is not supported by the {provider} provider"
                    )))
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(TranslateError::invalid(
            "message content must be a string or an array",
        )),
    }
}

/// An assistant message as the parts of a provider whose text part is `{"text": ...}`
/// (Gemini, Bedrock): the text, when there is any, then each tool call through `call`.
pub(crate) fn text_and_call_parts(
    message: &Value,
    mut call: impl FnMut(&Value) -> Result<Value>,
) -> Result<Vec<Value>> {
    let mut parts = Vec::new();
    let text = content_text(message.get("content").unwrap_or(&Value::Null))?;
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    for c in tool_calls(message) {
        parts.push(call(c)?);
    }
    Ok(parts)
}

/// One conversation turn for a provider: its role and its parts.
pub(crate) type Turn = (&'static str, Vec<Value>);

/// Chat messages → (system parts, turns) for a provider whose text part is `{"text": ...}`
/// (Gemini, Bedrock): the text of `system` / `developer` messages becomes system parts; every
/// other message goes through `turn` (its index, role and the message), which gives the
/// provider role and parts. Consecutive turns of the same provider role are merged (the
/// providers want alternating turns).
pub(crate) fn system_and_turns<'m>(
    messages: &'m [Value],
    mut turn: impl FnMut(usize, &str, &'m Value) -> Result<Turn>,
) -> Result<(Vec<Value>, Vec<Turn>)> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if let "system" | "developer" = role {
            let t = content_text(m.get("content").unwrap_or(&Value::Null))?;
            if !t.is_empty() {
                system.push(json!({"text": t}));
            }
            continue;
        }
        let (role, parts) = turn(i, role, m)?;
        match turns.last_mut() {
            Some((r, p)) if *r == role => p.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    Ok((system, turns))
}
