//! Client request heads: parsed with `httparse` straight from the connection's read buffer,
//! with the header-size limit enforced and body framing decided strictly (a request that
//! carries both `Transfer-Encoding` and `Content-Length`, or two different lengths, is
//! refused: that ambiguity is how request smuggling starts). An HTTP/1.1 request must carry
//! exactly one `Host` header and any request at most one (RFC 9112 §3.2); HTTP/1.0 may omit it.
//!
//! Hot-path cost: one httparse pass; header positions are kept as offsets into the read
//! buffer in a reused vector, so parsing allocates nothing.

use std::ops::Range;

use super::{has_token, parse_content_length};
use crate::error::GatewayError;

/// Most headers accepted on one request.
pub const MAX_HEADERS: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// Where one header's name and value sit in the read buffer.
#[derive(Debug, Clone)]
pub struct HeaderSpan {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// The value of the first header named `name` (any case), among `spans` into `buf`.
/// Used for client requests and upstream responses alike.
pub fn find_header<'b>(buf: &'b [u8], spans: &[HeaderSpan], name: &str) -> Option<&'b [u8]> {
    spans
        .iter()
        .find(|h| buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| &buf[h.value.clone()])
}

#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub method_text: Range<usize>,
    pub target: Range<usize>,
    /// Length of the head including the blank line: the body starts here.
    pub head_len: usize,
    pub body: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// The path without the query string.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let target = &buf[self.target.clone()];
        match memchr::memchr(b'?', target) {
            Some(q) => &target[..q],
            None => target,
        }
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more.
/// `spans` is cleared and filled with the header positions.
pub fn parse_request_head(
    buf: &[u8],
    max_header_bytes: usize,
    spans: &mut Vec<HeaderSpan>,
) -> Result<Option<RequestHead>, GatewayError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let too_large = || GatewayError::HeadersTooLarge {
        limit: max_header_bytes,
    };
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > max_header_bytes => return Err(too_large()),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_header_bytes => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => {
            return Err(GatewayError::InvalidRequest(format!(
                "malformed HTTP request: {e}"
            )))
        }
    };
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let method_str = req.method.unwrap_or("");
    let method = match method_str {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let method_text =
        offset(method_str.as_bytes())..offset(method_str.as_bytes()) + method_str.len();
    let path = req.path.unwrap_or("/");
    let target = offset(path.as_bytes())..offset(path.as_bytes()) + path.len();
    let mut facts = HeaderFacts::new(req.version == Some(0));
    spans.clear();
    for h in req.headers.iter() {
        facts.read(h.name, h.value)?;
        let n = offset(h.name.as_bytes());
        let v = offset(h.value);
        spans.push(HeaderSpan {
            name: n..n + h.name.len(),
            value: v..v + h.value.len(),
        });
    }
    Ok(Some(RequestHead {
        method,
        method_text,
        target,
        head_len,
        body: facts.finish()?,
        keep_alive: facts.keep_alive,
        expect_continue: facts.expect_continue,
    }))
}

/// What the headers that matter to the gateway itself say: framing and connection reuse.
struct HeaderFacts {
    http10: bool,
    hosts: u32,
    keep_alive: bool,
    content_length: Option<u64>,
    chunked: bool,
    expect_continue: bool,
}

impl HeaderFacts {
    fn new(http10: bool) -> Self {
        Self {
            http10,
            hosts: 0,
            keep_alive: !http10,
            content_length: None,
            chunked: false,
            expect_continue: false,
        }
    }

    fn read(&mut self, name: &str, value: &[u8]) -> Result<(), GatewayError> {
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_content_length(value)
                .ok_or_else(|| GatewayError::InvalidRequest("invalid Content-Length".into()))?;
            if self.content_length.is_some_and(|prev| prev != len) {
                return Err(GatewayError::InvalidRequest(
                    "conflicting Content-Length headers".into(),
                ));
            }
            self.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked` as the final coding can frame a request body we understand.
            let last = value.rsplit(|b| *b == b',').next().unwrap_or_default();
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(GatewayError::InvalidRequest(
                    "unsupported Transfer-Encoding".into(),
                ));
            }
            self.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                self.keep_alive = false;
            } else if has_token(value, "keep-alive") {
                self.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    /// The body's framing, once every header was read and the `Host` rule holds.
    fn finish(&self) -> Result<BodyFraming, GatewayError> {
        match (self.hosts, self.http10) {
            (0, false) => {
                return Err(GatewayError::InvalidRequest(
                    "an HTTP/1.1 request must carry a Host header".into(),
                ))
            }
            (2.., _) => {
                return Err(GatewayError::InvalidRequest(
                    "more than one Host header".into(),
                ))
            }
            _ => {}
        }
        Ok(match (self.chunked, self.content_length) {
            (true, Some(_)) => {
                return Err(GatewayError::InvalidRequest(
                    "both Transfer-Encoding and Content-Length are set".into(),
                ))
            }
            (true, None) => BodyFraming::Chunked,
            (false, Some(0) | None) => BodyFraming::Empty,
            (false, Some(n)) => BodyFraming::Length(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<RequestHead>, GatewayError> {
        parse_request_head(s.as_bytes(), 8192, &mut Vec::new())
    }

    #[test]
    fn parses_post_with_length() {
        let raw = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n";
        let head = parse(raw).unwrap().unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path(raw.as_bytes()), b"/v1/chat/completions");
        assert_eq!(head.body, BodyFraming::Length(12));
        assert_eq!(head.head_len, raw.len());
        assert!(head.keep_alive);
    }

    #[test]
    fn partial_then_too_large() {
        assert!(parse("POST / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "a".repeat(9000));
        assert!(matches!(
            parse(&big),
            Err(GatewayError::HeadersTooLarge { .. })
        ));
    }

    #[test]
    fn refuses_smuggling_shapes() {
        let both =
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert!(parse(both).is_err());
        let two = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(parse(two).is_err());
        let gzip = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(parse(gzip).is_err());
    }

    #[test]
    fn http10_and_connection_close() {
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h =
            parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.body, BodyFraming::Chunked);
        assert!(h.expect_continue);
    }

    #[test]
    fn host_header_rules() {
        let missing = parse("GET /health HTTP/1.1\r\n\r\n");
        assert!(matches!(missing, Err(GatewayError::InvalidRequest(m)) if m.contains("Host")));
        let two = parse("GET /health HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
        assert!(matches!(two, Err(GatewayError::InvalidRequest(m)) if m.contains("Host")));
        assert!(parse("GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n").is_err());
        assert!(parse("GET /health HTTP/1.0\r\n\r\n").unwrap().is_some());
        assert!(parse("GET /health HTTP/1.1\r\nHOST: a\r\n\r\n")
            .unwrap()
            .is_some());
    }

    #[test]
    fn garbage_is_invalid_request() {
        assert!(matches!(
            parse("\x01\x02 nonsense\r\n\r\n"),
            Err(GatewayError::InvalidRequest(_))
        ));
    }
}
