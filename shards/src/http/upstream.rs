//! The upstream side of HTTP/1.1: the request head the gateway sends to a provider, and the
//! provider's response head with its body framing. Unlike monoio-http's decoder, a response
//! with neither length nor chunked coding is read until the connection closes (some SSE
//! servers answer that way) instead of being taken as empty.

use super::{has_token, is_hop_by_hop, parse_content_length, request::HeaderSpan};

/// Most headers accepted on one upstream response.
const MAX_HEADERS: usize = 128;

/// How an upstream response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Ends when the upstream closes the connection.
    UntilClose,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub head_len: usize,
    pub framing: InFraming,
    /// The connection may go back to the pool once the body is read.
    pub reusable: bool,
    pub event_stream: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Partial,
    /// A 1xx interim response of this many bytes: skip it and parse again.
    Interim(usize),
    Complete,
}

/// Parses a response head at the start of `buf` into `head` and `spans`.
pub fn parse_response_head(
    buf: &[u8],
    max_header_bytes: usize,
    spans: &mut Vec<HeaderSpan>,
    head: &mut ResponseHead,
) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_header_bytes => {
            return Err(format!(
                "response head larger than {max_header_bytes} bytes"
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    if (100..200).contains(&status) && status != 101 {
        return Ok(Parsed::Interim(head_len));
    }
    let base = buf.as_ptr() as usize;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = resp.version == Some(1);
    let mut event_stream = false;
    spans.clear();
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(parse_content_length(h.value).ok_or("invalid Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = has_token(h.value, "chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                keep_alive = false;
            } else if has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            event_stream = h.value.starts_with(b"text/event-stream");
        }
        let n = name.as_ptr() as usize - base;
        let v = h.value.as_ptr() as usize - base;
        spans.push(HeaderSpan {
            name: n..n + name.len(),
            value: v..v + h.value.len(),
        });
    }
    let framing = if status == 204 || status == 304 {
        InFraming::Empty
    } else if chunked {
        InFraming::Chunked
    } else {
        match length {
            Some(0) => InFraming::Empty,
            Some(n) => InFraming::Length(n),
            None => InFraming::UntilClose,
        }
    };
    *head = ResponseHead {
        status,
        head_len,
        framing,
        reusable: keep_alive && framing != InFraming::UntilClose,
        event_stream,
    };
    Ok(Parsed::Complete)
}

impl Default for ResponseHead {
    fn default() -> Self {
        Self {
            status: 0,
            head_len: 0,
            framing: InFraming::Empty,
            reusable: false,
            event_stream: false,
        }
    }
}

/// What the gateway adds to every upstream request head, fixed per provider.
pub struct UpstreamHead<'a> {
    /// `host[:port]`
    pub host: &'a str,
    /// Complete header lines (`Name: value\r\n`) sent on every request to the provider.
    pub fixed_headers: &'a [u8],
    /// The chosen API key's credentials line, or empty.
    pub key_line: &'a [u8],
    /// Headers of a converted request (content type, API version, signature); client
    /// headers of the same names are not forwarded.
    pub extra: &'a [(String, String)],
    /// The gateway's trace context, when traces are on (else the client's passes through).
    pub trace: Option<TraceHeaders<'a>>,
}

/// W3C trace context of an upstream request while traces are on: the gateway's
/// `traceparent` replaces the client's, and the client's `tracestate` goes along only when
/// the client's `traceparent` was valid (it describes that trace, and no other).
#[derive(Debug, Clone, Copy)]
pub struct TraceHeaders<'a> {
    /// `traceparent: …\r\n`, or empty when the request is in no trace.
    pub line: &'a [u8],
    pub client_tracestate: bool,
}

impl TraceHeaders<'_> {
    /// A client header these replace.
    fn replaces(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(b"traceparent")
            || (!self.client_tracestate && name.eq_ignore_ascii_case(b"tracestate"))
    }
}

/// Client headers the gateway never forwards: credentials for the gateway itself, and
/// `accept-encoding`, so upstream bodies arrive uncompressed and streams can be relayed and
/// ended with an error event.
fn is_gateway_owned(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authorization")
        || name.eq_ignore_ascii_case(b"accept-encoding")
        || name.eq_ignore_ascii_case(b"expect")
        || name.eq_ignore_ascii_case(b"api-key")
        || name.eq_ignore_ascii_case(b"x-api-key")
        || name.eq_ignore_ascii_case(b"x-goog-api-key")
        || name.len() >= 11 && name[..11].eq_ignore_ascii_case(b"x-ringgate-")
}

/// Writes `POST {path} HTTP/1.1` and headers for an upstream request with a body of
/// `body_len` bytes, forwarding the client's end-to-end headers.
pub fn push_upstream_request_head(
    out: &mut Vec<u8>,
    method: &[u8],
    path_and_query: &[&[u8]],
    up: &UpstreamHead<'_>,
    client_buf: &[u8],
    client_headers: &[HeaderSpan],
    body_len: Option<usize>,
) {
    out.extend_from_slice(method);
    out.push(b' ');
    for part in path_and_query {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(up.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(up.fixed_headers);
    out.extend_from_slice(up.key_line);
    if let Some(trace) = up.trace {
        out.extend_from_slice(trace.line);
    }
    for (name, value) in up.extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for h in client_headers {
        let name = &client_buf[h.name.clone()];
        if is_hop_by_hop(name)
            || is_gateway_owned(name)
            || up.trace.is_some_and(|t| t.replaces(name))
            || up
                .extra
                .iter()
                .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&client_buf[h.value.clone()]);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = body_len {
        out.extend_from_slice(b"content-length: ");
        super::response::push_decimal(out, len as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> (Result<Parsed, String>, ResponseHead) {
        let mut head = ResponseHead::default();
        let r = parse_response_head(raw.as_bytes(), 8192, &mut Vec::new(), &mut head);
        (r, head)
    }

    #[test]
    fn framings() {
        let (r, h) = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(r, Ok(Parsed::Complete));
        assert_eq!(h.framing, InFraming::Length(5));
        assert!(h.reusable);
        let (_, h) = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n");
        assert_eq!(h.framing, InFraming::Chunked);
        assert!(h.event_stream);
        let (_, h) = parse("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
        assert_eq!(h.framing, InFraming::UntilClose);
        assert!(!h.reusable);
        let (_, h) = parse("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(h.framing, InFraming::Empty);
        let (_, h) = parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n");
        assert!(!h.reusable);
    }

    #[test]
    fn interim_and_partial() {
        assert_eq!(
            parse("HTTP/1.1 100 Continue\r\n\r\n").0,
            Ok(Parsed::Interim(25))
        );
        assert_eq!(parse("HTTP/1.1 200 OK\r\nA: b").0, Ok(Parsed::Partial));
        assert!(parse("garbage\r\n\r\n").0.is_err());
    }

    #[test]
    fn request_head_forwards_end_to_end_headers_only() {
        let client = b"Authorization: Bearer vkX-Mock-Fail: resetConnection: keep-alive";
        let spans = [
            HeaderSpan {
                name: 0..13,
                value: 15..24,
            },
            HeaderSpan {
                name: 24..35,
                value: 37..42,
            },
            HeaderSpan {
                name: 42..52,
                value: 54..64,
            },
        ];
        let mut out = Vec::new();
        let up = UpstreamHead {
            host: "api.example.com",
            fixed_headers: b"",
            key_line: b"authorization: Bearer sk\r\n",
            extra: &[],
            trace: None,
        };
        push_upstream_request_head(
            &mut out,
            b"POST",
            &[b"/v1", b"/chat/completions"],
            &up,
            client,
            &spans,
            Some(17),
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: api.example.com\r\nauthorization: Bearer sk\r\nX-Mock-Fail: reset\r\ncontent-length: 17\r\n\r\n"
        );
    }

    #[test]
    fn the_gateways_trace_context_replaces_the_clients() {
        let mut client = Vec::new();
        let mut spans = Vec::new();
        for (name, value) in [("traceparent", "00-client"), ("tracestate", "k=v")] {
            let n = client.len();
            client.extend_from_slice(name.as_bytes());
            let v = client.len();
            client.extend_from_slice(value.as_bytes());
            spans.push(HeaderSpan {
                name: n..n + name.len(),
                value: v..v + value.len(),
            });
        }
        let head = |trace: Option<TraceHeaders<'_>>| {
            let up = UpstreamHead {
                host: "h",
                fixed_headers: b"",
                key_line: b"",
                extra: &[],
                trace,
            };
            let mut out = Vec::new();
            push_upstream_request_head(&mut out, b"POST", &[b"/"], &up, &client, &spans, None);
            String::from_utf8(out).unwrap()
        };
        let ours = |client_tracestate| TraceHeaders {
            line: b"traceparent: 00-ours\r\n",
            client_tracestate,
        };
        let lines = "POST / HTTP/1.1\r\nhost: h\r\n";
        assert_eq!(
            head(None),
            format!("{lines}traceparent: 00-client\r\ntracestate: k=v\r\n\r\n")
        );
        assert_eq!(
            head(Some(ours(true))),
            format!("{lines}traceparent: 00-ours\r\ntracestate: k=v\r\n\r\n")
        );
        assert_eq!(
            head(Some(ours(false))),
            format!("{lines}traceparent: 00-ours\r\n\r\n")
        );
        let none = TraceHeaders {
            line: b"",
            client_tracestate: false,
        };
        assert_eq!(head(Some(none)), format!("{lines}\r\n"));
    }
}
