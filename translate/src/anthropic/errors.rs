//! Anthropic error bodies and error types → OpenAI error bodies and types.

use crate::openai;
use serde_json::Value;

/// Anthropic error body → OpenAI error body. The status is unchanged (the gateway keeps it and
/// any Retry-After).
pub fn error_to_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = v.get("error");
    let kind = err.and_then(|e| e.get("type")).and_then(Value::as_str);
    let message = match err.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let (t, code) = map_error_type(kind, status);
    openai::error_body(&message, t, code)
}

pub(super) fn map_error_type(
    kind: Option<&str>,
    status: u16,
) -> (&'static str, Option<&'static str>) {
    match kind {
        Some("invalid_request_error") => ("invalid_request_error", None),
        Some("request_too_large") => ("invalid_request_error", Some("request_too_large")),
        Some("authentication_error") => ("authentication_error", Some("invalid_api_key")),
        Some("permission_error") => ("permission_error", None),
        Some("not_found_error") => ("not_found_error", None),
        Some("rate_limit_error") => ("rate_limit_error", Some("rate_limit_exceeded")),
        Some("overloaded_error") => ("server_error", Some("overloaded")),
        Some("api_error") => ("server_error", None),
        _ => (openai::error_type_for_status(status), None),
    }
}
