//! Chat completions as the tests send and read them: the request body and request, and the
//! `data:` payloads and text of an SSE stream.

use super::build_request;

/// A `POST /v1/chat/completions` request carrying `body` (usually [`chat_body`]). The tests
/// that drive the wire themselves send this one request over and over, differing only in
/// `headers` (an authorization, the mock's `x-mock-*` controls) and `close`.
pub fn chat_request(body: &str, headers: &[(&str, &str)], close: bool) -> Vec<u8> {
    build_request(
        "POST",
        "/v1/chat/completions",
        headers,
        Some(body.as_bytes()),
        close,
    )
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}

/// Concatenated `choices[0].delta.content` of a chat completion stream.
pub fn sse_chat_text(body: &[u8]) -> String {
    sse_data(body)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// A chat completion request body.
pub fn chat_body(model: &str, prompt: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    })
    .to_string()
}
