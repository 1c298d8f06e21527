//! Attempt step "first event": when another attempt could still answer, a 200 event stream
//! is held back until its first event is complete, because some providers report failures
//! as an `{"error": …}` first event of a stream that began well. Such an event, or a stream
//! that ends before its first event, fails the attempt (and counts against the provider);
//! otherwise the bytes stay in `upbuf` for the relay.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memchr::memmem::Finder;

use crate::error::GatewayError;
use crate::http::chunked::ChunkedDecoder;
use crate::http::upstream::{InFraming, ResponseHead};
use crate::http::{EVENT_END, EVENT_END_CRLF};
use crate::io::{read_watching, Stream, WaitError};
use crate::path::conn::ClientConn;
use crate::path::outcome::Stop;
use crate::snapshot::Provider;

static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// Reads an event stream until its first event is complete. A first event that is an
/// error (`data: {"error": …}`), or a stream that ends before its first event, is a failed
/// attempt; otherwise the connection is returned with the bytes kept in `upbuf` for the relay.
pub async fn check(
    conn: &mut ClientConn,
    mut upstream: Stream,
    head: &ResponseHead,
    provider: &Provider,
    deadline: Instant,
) -> Result<Stream, Stop> {
    let client_fd = conn.stream.raw_fd();
    let broken = |detail: String| {
        Stop::Error(GatewayError::UpstreamStreamError {
            provider: provider.name.clone(),
            detail,
        })
    };
    loop {
        conn.payload.clear();
        let raw = &conn.upbuf[head.head_len..];
        match head.framing {
            InFraming::Chunked => {
                ChunkedDecoder::new()
                    .decode(raw, &mut conn.payload)
                    .map_err(|e| broken(e.to_string()))?;
            }
            _ => conn.payload.extend_from_slice(raw),
        }
        let end = EVENT_END
            .find(&conn.payload)
            .or_else(|| EVENT_END_CRLF.find(&conn.payload));
        if let Some(end) = end {
            return match event_error(&conn.payload[..end]) {
                Some(detail) => Err(broken(detail)),
                None => Ok(upstream),
            };
        }
        let budget = deadline.saturating_duration_since(Instant::now());
        let wait = provider.timeouts.first_byte.min(budget);
        let check = Duration::from_millis(500);
        let waited = &mut conn.tracker.upstream_wait;
        match read_watching(
            &mut upstream,
            &mut conn.upbuf,
            client_fd,
            (wait, check),
            waited,
        )
        .await
        {
            Ok(n) if n > 0 => {}
            Ok(_) => return Err(broken("stream ended before its first event".into())),
            Err(WaitError::ClientGone) => return Err(Stop::ClientGone),
            Err(WaitError::Timeout) => return Err(broken("no first event in time".into())),
            Err(WaitError::Io(e)) => return Err(broken(e.to_string())),
        }
    }
}

/// The error message of an SSE event whose data is an `{"error": …}` object. An event
/// without the bytes `"error"` is not one: most first events are content, and parsing each
/// into a JSON value cost every stream an allocation per field (providers write the key
/// plainly, never escaped).
fn event_error(event: &[u8]) -> Option<String> {
    ERROR_KEY.find(event)?;
    let text = std::str::from_utf8(event).ok()?;
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let value: serde_json::Value = serde_json::from_str(&data).ok()?;
    let error = value.get("error")?;
    Some(
        error
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| error.to_string(), str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_events_are_recognised() {
        assert_eq!(
            event_error(b"data: {\"error\":{\"message\":\"overloaded\"}}").as_deref(),
            Some("overloaded")
        );
        assert_eq!(event_error(b"event: x\ndata: {\"choices\":[]}"), None);
        assert_eq!(event_error(b"data: [DONE]"), None);
        // Content that mentions errors, and an `error` key below the top: not an error event.
        assert_eq!(
            event_error(br#"data: {"choices":[{"delta":{"content":"the \"error\" key"}}]}"#),
            None
        );
        assert_eq!(event_error(br#"data: {"choices":[{"error":"x"}]}"#), None);
        assert_eq!(
            event_error(b"event: error\ndata: {\"error\":\"busy\"}").as_deref(),
            Some("\"busy\"")
        );
    }
}
