//! Answering a request with the gateway's own error, in the API the client speaks: OpenAI's
//! `{"error":{"message","type","param","code"}}` for the OpenAI APIs, Anthropic's
//! `{"type":"error","error":{"type","message"}}` for the Messages API — with the same status
//! and the same `Retry-After` / `x-ratelimit-*` headers either way. The one place a local
//! error response is written.

use crate::dialect::Inbound;
use crate::error::GatewayError;
use crate::http::response::push_error_head;
use crate::path::conn::ClientConn;

/// Writes `err` to the client. False when the client is gone.
pub async fn error(
    conn: &mut ClientConn,
    err: &GatewayError,
    endpoint: Inbound,
    keep_alive: bool,
) -> bool {
    let mut openai = Vec::with_capacity(192);
    err.write_body(&mut openai);
    let body = endpoint.error_body(err.status(), openai);
    conn.out.clear();
    let lines = conn.tracker.head_lines();
    push_error_head(&mut conn.out, err, body.len(), keep_alive, &lines);
    conn.out.extend_from_slice(&body);
    conn.flush_out().await
}
