//! Distributed tracing's vocabulary: the W3C trace context of a request (a client's
//! `traceparent`, read strictly; the one the gateway sends upstream) and the record of the
//! gateway's span that a shard hands to the coordinator, which exports it (OTLP). The request
//! path's use of it is in `path/trace.rs`.
//!
//! Everything here is plain bytes on the stack until a request is sampled; only a sampled
//! request's [`SpanRecord`] owns heap data, because it crosses to another thread.

use vocab::TokenUsage;

use crate::dialect::{Inbound, Wire};
use crate::governance::usage::FinishReason;

/// Lowercase hex digits of the low `4 * N` bits of `value`.
pub fn hex<const N: usize>(value: u128) -> [u8; N] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; N];
    for (i, byte) in text.iter_mut().enumerate() {
        *byte = DIGITS[((value >> (4 * (N - 1 - i))) & 0xf) as usize];
    }
    text
}

/// A request's place in a trace. Ids are kept as the lowercase hex they are written in
/// (headers and OTLP/JSON alike), so nothing is converted on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 hex digits.
    pub trace_id: [u8; 32],
    /// The client's span, when the client sent a `traceparent`.
    pub parent: Option<[u8; 16]>,
    /// The gateway's span, the parent of every upstream request of the request.
    pub span_id: [u8; 16],
    /// Trace flags as two hex digits: the client's, or `01` for a trace the gateway began.
    pub flags: [u8; 2],
}

/// `traceparent: 00-{trace id}-{span id}-{flags}\r\n`
pub const HEADER_LINE_LEN: usize = 70;

impl TraceContext {
    /// The `sampled` flag: the caller records this trace.
    pub fn sampled(&self) -> bool {
        hex_value(self.flags[1]).is_some_and(|v| v & 1 == 1)
    }

    /// The header line every upstream request of the request carries: the gateway's span is
    /// the parent of the provider's work.
    pub fn header_line(&self) -> [u8; HEADER_LINE_LEN] {
        let mut line = [0u8; HEADER_LINE_LEN];
        let mut at = 0;
        for part in [
            &b"traceparent: 00-"[..],
            &self.trace_id,
            b"-",
            &self.span_id,
            b"-",
            &self.flags,
            b"\r\n",
        ] {
            line[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        line
    }
}

/// A client's `traceparent`, when it is well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    pub trace_id: [u8; 32],
    pub parent: [u8; 16],
    pub flags: [u8; 2],
}

/// Reads a `traceparent` value of version `00`: `00-{32 hex}-{16 hex}-{2 hex}`, lowercase, ids
/// not all zeros (W3C Trace Context). Anything else is `None`, and the request is treated as
/// carrying no trace context.
pub fn parse_traceparent(value: &[u8]) -> Option<Traceparent> {
    let value = value.trim_ascii();
    if value.len() != 55 || !value.starts_with(b"00-") || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let (trace_id, parent, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    let lower_hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |s: &[u8]| s.iter().all(|b| *b == b'0');
    if !lower_hex(trace_id) || !lower_hex(parent) || !lower_hex(flags) {
        return None;
    }
    if zeros(trace_id) || zeros(parent) {
        return None;
    }
    Some(Traceparent {
        trace_id: trace_id.try_into().ok()?,
        parent: parent.try_into().ok()?,
        flags: flags.try_into().ok()?,
    })
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Where a shard's sampled spans go, when traces are on.
#[derive(Debug, Clone)]
pub struct TraceSink {
    /// Bounded: a span that finds it full is dropped and counted, never waited for.
    pub spans: crossbeam_channel::Sender<SpanRecord>,
    /// Share of requests traced when the client sent no `traceparent` (0 to 1).
    pub sample_ratio: f64,
}

/// The gateway's span of one sampled request: facts only. The coordinator's exporter names
/// them (OpenTelemetry's GenAI conventions) and encodes them.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub context: TraceContext,
    /// From the request's first byte to its response's last, in Unix nanoseconds.
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// The API the client called.
    pub endpoint: Inbound,
    /// The provider's API family, once a provider was chosen.
    pub wire: Option<Wire>,
    /// The provider's name in the gateway's configuration.
    pub provider: Option<String>,
    /// The provider's host and port.
    pub server: Option<(String, u16)>,
    /// The model the provider was asked for (the client's name before one was resolved).
    pub request_model: String,
    /// The model the response names.
    pub response_model: Option<Box<str>>,
    /// The output cap the client set.
    pub max_tokens: Option<u64>,
    /// Tokens the provider reported.
    pub usage: Option<TokenUsage>,
    /// Output tokens the gateway counted when the provider reported none (else 0).
    pub counted_output_tokens: u64,
    pub finish_reason: Option<FinishReason>,
    /// The status the client got (0: none, the client left first).
    pub status: u16,
    /// The error code of a failed request.
    pub error_code: Option<&'static str>,
    /// The id the client saw in `x-request-id`.
    pub request_id: String,
    /// Time spent inside the gateway (see `path/tracker.rs`).
    pub overhead_us: u64,
    pub stream: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_a_valid_traceparent() {
        let tp = parse_traceparent(VALID).unwrap();
        assert_eq!(&tp.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&tp.parent, b"00f067aa0ba902b7");
        assert_eq!(&tp.flags, b"01");
        assert_eq!(
            parse_traceparent(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ")
                .unwrap()
                .flags,
            *b"00"
        );
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            &b""[..],
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn writes_the_upstream_header_line() {
        let context = TraceContext {
            trace_id: *b"4bf92f3577b34da6a3ce929d0e0e4736",
            parent: None,
            span_id: hex(0xabc),
            flags: *b"01",
        };
        assert_eq!(
            &context.header_line()[..],
            b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01\r\n"
        );
        assert!(context.sampled());
        assert!(!TraceContext {
            flags: *b"00",
            ..context
        }
        .sampled());
        assert!(TraceContext {
            flags: *b"03",
            ..context
        }
        .sampled());
        assert_eq!(&hex::<4>(0x1_f00d), b"f00d");
    }
}
