//! HTTP/1.1 for both sides of the proxy, written over `httparse` instead of monoio-http's
//! codecs (see docs/architecture.md, "HTTP codec"): request heads with limits, incremental
//! chunked decoding (extensions and trailers included), response heads and chunk frames
//! written directly into reusable buffers so that each SSE event is one write.

pub mod chunked;
pub mod multipart;
pub mod request;
pub mod response;
pub mod upstream;

/// The end of a server-sent event (a blank line), and its CRLF form, each searcher built
/// once: `memmem::find` builds one per call, for every stream (`Searcher::new` showed at
/// 0.4 % of a governed stream's samples, docs/perf.md).
pub static EVENT_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n\n"));
pub static EVENT_END_CRLF: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// Header names the proxy owns on each hop; never forwarded in either direction. Names are
/// compared as bytes: httparse let only token characters (ASCII) into a header name, so
/// checking them for UTF-8 first was work for nothing (~1 % of a plain request's samples,
/// every header of the request and of the response, docs/perf.md).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"content-length",
        b"host",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a Content-Length value strictly: digits only, no sign, no overflow.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_strict() {
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"4 2"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        assert!(!is_hop_by_hop(b"x-mock-fail"));
    }
}
