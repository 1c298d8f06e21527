//! Response heads written by the gateway to its clients: local answers (JSON bodies and
//! errors) and proxied heads, whose upstream headers are copied minus the hop-by-hop ones.
//! Everything appends to a reused output buffer so a small response is one write.

use super::{is_hop_by_hop, request::HeaderSpan};
use crate::error::GatewayError;

/// How the gateway frames a body it sends to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    Length(u64),
    Chunked,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

pub fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `extra` (the lines the gateway adds to every response, such as `x-request-id`), framing
/// and connection headers, then the blank line that ends the head.
pub fn finish_head(out: &mut Vec<u8>, framing: OutFraming, keep_alive: bool, extra: &[u8]) {
    out.extend_from_slice(extra);
    match framing {
        OutFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        OutFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete local JSON response.
pub fn push_json_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    keep_alive: bool,
    extra: &[u8],
) {
    push_status_line(out, status);
    out.extend_from_slice(b"content-type: application/json\r\n");
    finish_head(
        out,
        OutFraming::Length(body.len() as u64),
        keep_alive,
        extra,
    );
    out.extend_from_slice(body);
}

/// The head of an error response whose JSON body of `body_len` bytes follows: the error's
/// status, and `Retry-After` and `x-ratelimit-*` when the error has them.
pub fn push_error_head(
    out: &mut Vec<u8>,
    err: &GatewayError,
    body_len: usize,
    keep_alive: bool,
    extra: &[u8],
) {
    push_status_line(out, err.status());
    out.extend_from_slice(b"content-type: application/json\r\n");
    if let Some(secs) = err.retry_after() {
        out.extend_from_slice(b"retry-after: ");
        push_decimal(out, secs);
        out.extend_from_slice(b"\r\n");
    }
    err.push_rate_limit_headers(out);
    finish_head(out, OutFraming::Length(body_len as u64), keep_alive, extra);
}

/// The status line and end-to-end headers of a proxied head, without framing.
pub fn push_proxied_lines(
    out: &mut Vec<u8>,
    status: u16,
    upstream_buf: &[u8],
    headers: &[HeaderSpan],
) {
    push_status_line(out, status);
    for h in headers {
        let name = &upstream_buf[h.name.clone()];
        if is_hop_by_hop(name) {
            continue;
        }
        // The gateway's own `x-request-id` is the one the client sees; the provider's is
        // kept under another name.
        if name.eq_ignore_ascii_case(b"x-request-id") {
            out.extend_from_slice(b"x-upstream-request-id");
        } else {
            out.extend_from_slice(name);
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(&upstream_buf[h.value.clone()]);
        out.extend_from_slice(b"\r\n");
    }
}

pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// `n` in decimal, written at the end of `digits`.
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_response_is_complete() {
        let mut out = Vec::new();
        push_json_response(&mut out, 200, b"{}", false, b"x-request-id: 7\r\n");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: 7\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
        );
    }

    #[test]
    fn proxied_head_drops_hop_by_hop_and_renames_the_provider_request_id() {
        let up = b"Content-Type: text/event-streamTransfer-Encoding: chunkedX-Request-Id: 7";
        let spans = [
            HeaderSpan {
                name: 0..12,
                value: 14..31,
            },
            HeaderSpan {
                name: 31..48,
                value: 50..57,
            },
            HeaderSpan {
                name: 57..69,
                value: 71..72,
            },
        ];
        let mut out = Vec::new();
        push_proxied_lines(&mut out, 200, up, &spans);
        finish_head(&mut out, OutFraming::Chunked, true, b"x-request-id: 8\r\n");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Type: text/event-stream\r\n"));
        assert!(
            text.contains("x-upstream-request-id: 7\r\nx-request-id: 8\r\n"),
            "{text}"
        );
        assert!(!text.contains("chunkedX"));
        assert_eq!(text.matches("transfer-encoding").count(), 1);
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
