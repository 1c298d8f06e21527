//! Attempt step "first event": when another attempt could still answer, a 200 event stream
//! is held back until its first event is complete, because some providers report failures
//! as an `{"error": …}` first event of a stream that began well. Such an event, or a stream
//! that ends before its first event, fails the attempt (and counts against the provider);
//! otherwise the bytes stay in `upbuf` for the relay.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memchr::memmem::Finder;

use crate::error::GatewayError;
use crate::http::chunked::{first_chunk, ChunkedDecoder};
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
        let raw = &conn.upbuf[head.head_len..];
        let event = match head.framing {
            // Mostly the first event is whole in the first chunk: looked at there, in place.
            InFraming::Chunked => match first_chunk(raw).and_then(first_event) {
                Some(event) => Some(event),
                None => {
                    conn.payload.clear();
                    ChunkedDecoder::new()
                        .decode(raw, &mut conn.payload)
                        .map_err(|e| broken(e.to_string()))?;
                    first_event(&conn.payload)
                }
            },
            _ => first_event(raw),
        };
        if let Some(event) = event {
            return match event_error(event) {
                Some(detail) => Err(broken(detail)),
                None => Ok(upstream),
            };
        }
        let budget = deadline.saturating_duration_since(crate::poll_clock::now());
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

/// The first event of an event stream's bytes, when it is complete.
fn first_event(bytes: &[u8]) -> Option<&[u8]> {
    let end = EVENT_END
        .find(bytes)
        .or_else(|| EVENT_END_CRLF.find(bytes))?;
    Some(&bytes[..end])
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
    fn the_first_chunk_is_read_in_place_only_when_whole() {
        let body = b"13\r\ndata: {\"a\":1}\n\nmore\r\n0\r\n\r\n";
        assert_eq!(
            first_chunk(body),
            Some(b"data: {\"a\":1}\n\nmore".as_slice())
        );
        assert_eq!(
            first_chunk(body).and_then(first_event),
            Some(b"data: {\"a\":1}".as_slice())
        );
        for cut in [b"13\r\ndata: {".as_slice(), b"13", b"13\r", b""] {
            assert_eq!(first_chunk(cut), None, "{cut:?}");
        }
        // An extension, a bad delimiter, no digits: left to the decoder.
        assert_eq!(first_chunk(b"2;x=1\r\nab\r\n"), None);
        assert_eq!(first_chunk(b"2\r\nabXY"), None);
        assert_eq!(first_chunk(b"\r\nab\r\n"), None);
        // A first event that spans chunks is not in the first one.
        assert_eq!(first_chunk(b"3\r\nda\n\r\n").and_then(first_event), None);
    }

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
