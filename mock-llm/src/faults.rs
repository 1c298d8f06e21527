//! Fault and timing injection: CLI defaults, per-request `x-mock-*` header
//! overrides, random failures and the error type each status maps to.

use std::cell::Cell;
use std::time::Duration;

use http::HeaderMap;

/// Timing defaults from the command line; headers override them per request.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub latency: Duration,
    pub stream_chunks: usize,
    pub stream_interval: Duration,
    /// OpenAI dialect: report token usage (off: like the many compatible servers that send
    /// none, even when asked with `stream_options.include_usage`).
    pub usage: bool,
}

/// How a request should misbehave (`x-mock-fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    None,
    /// RST the connection right after reading the request.
    Reset,
    /// Read the request and never answer.
    Hang,
    /// Streaming: send about half the events, then RST.
    ResetMidStream,
    /// Streaming: send about half the events, then FIN without the last chunk.
    TruncateStream,
    /// Streaming: inject one event whose payload is not JSON.
    BadJsonChunk,
    /// Event-stream (Bedrock): one frame carries a wrong message CRC.
    BadCrc,
    /// Streaming: the only event is an OpenAI-style `data: {"error": …}` (as providers send
    /// when they fail after answering 200).
    ErrorEvent,
}

/// How a streamed body is delimited on the wire (`x-mock-stream-framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    /// No Content-Length, no chunked encoding: the body ends at connection close.
    Close,
    /// Chunked, with chunks cut in two writes, extensions and a trailer
    /// (`stream::write_raw`); the connection closes after it.
    CutChunks,
}

/// Effective behaviour of one request after applying header overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOptions {
    pub latency: Duration,
    pub status: Option<u16>,
    pub stream_chunks: usize,
    pub stream_interval: Duration,
    pub fail: FailMode,
    pub framing: Framing,
    /// Force a tool call with this name (`x-mock-tool-call`; native-API
    /// dialects only).
    pub tool_call: Option<String>,
    /// OpenAI dialect: report token usage (`x-mock-usage: on|off`).
    pub usage: bool,
}

impl RequestOptions {
    /// Apply the `x-mock-*` headers on top of `defaults`. A malformed header
    /// is an error rather than silently ignored, so a typo in a test shows up.
    pub fn from_headers(headers: &HeaderMap, defaults: &Defaults) -> Result<Self, String> {
        let mut opts = Self {
            latency: defaults.latency,
            status: None,
            stream_chunks: defaults.stream_chunks,
            stream_interval: defaults.stream_interval,
            fail: FailMode::None,
            framing: Framing::Chunked,
            tool_call: None,
            usage: defaults.usage,
        };
        if let Some(ms) = header_num::<u64>(headers, "x-mock-latency-ms")? {
            opts.latency = Duration::from_millis(ms);
        }
        if let Some(code) = header_num::<u16>(headers, "x-mock-status")? {
            opts.status = Some(parse_status(&code.to_string())?);
        }
        if let Some(n) = header_num::<usize>(headers, "x-mock-stream-chunks")? {
            opts.stream_chunks = n;
        }
        if let Some(ms) = header_num::<u64>(headers, "x-mock-stream-interval-ms")? {
            opts.stream_interval = Duration::from_millis(ms);
        }
        if let Some(mode) = header_str(headers, "x-mock-fail")? {
            opts.fail = match mode {
                "reset" => FailMode::Reset,
                "hang" => FailMode::Hang,
                "reset-mid-stream" => FailMode::ResetMidStream,
                "truncate-stream" => FailMode::TruncateStream,
                "bad-json-chunk" => FailMode::BadJsonChunk,
                "bad-crc" => FailMode::BadCrc,
                "error-event" => FailMode::ErrorEvent,
                other => return Err(format!("unknown x-mock-fail mode {other:?}")),
            };
        }
        if let Some(framing) = header_str(headers, "x-mock-stream-framing")? {
            opts.framing = match framing {
                "chunked" => Framing::Chunked,
                "close" => Framing::Close,
                "cut-chunks" => Framing::CutChunks,
                other => return Err(format!("unknown x-mock-stream-framing {other:?}")),
            };
        }
        if let Some(usage) = header_str(headers, "x-mock-usage")? {
            opts.usage = match usage {
                "on" => true,
                "off" => false,
                other => return Err(format!("unknown x-mock-usage {other:?}")),
            };
        }
        if let Some(name) = header_str(headers, "x-mock-tool-call")? {
            if name.is_empty() {
                return Err("empty x-mock-tool-call header".to_owned());
            }
            opts.tool_call = Some(name.to_owned());
        }
        Ok(opts)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| format!("invalid {name} header")),
    }
}

fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, String> {
    match header_str(headers, name)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid {name} header {s:?}")),
    }
}

/// clap value parser for `--fail-rate`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a probability in [0, 1]")),
    }
}

/// Injected statuses must be errors: a 2xx with an error body would just
/// confuse the client under test.
pub fn parse_status(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(code) if (400..=599).contains(&code) => Ok(code),
        _ => Err(format!("{s:?} is not an error status (400-599)")),
    }
}

/// OpenAI `error.type` for a status code.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

thread_local! {
    // xorshift64 state; per thread so the hot path takes no lock. Seeded from
    // the state's own address and the clock so threads diverge.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let here = &nanos as *const u64 as u64;
    (nanos ^ here.rotate_left(32)) | 1
}

/// True with probability `rate`.
pub fn roll(rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let x = RNG.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    // Top 53 bits give a uniform double in [0, 1).
    ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn defaults() -> Defaults {
        Defaults {
            latency: Duration::from_millis(5),
            stream_chunks: 8,
            stream_interval: Duration::ZERO,
            usage: true,
        }
    }

    #[test]
    fn no_headers_gives_defaults() {
        let opts = RequestOptions::from_headers(&HeaderMap::new(), &defaults()).unwrap();
        assert_eq!(opts.latency, Duration::from_millis(5));
        assert_eq!(opts.stream_chunks, 8);
        assert_eq!(opts.status, None);
        assert_eq!(opts.fail, FailMode::None);
        assert_eq!(opts.framing, Framing::Chunked);
        assert_eq!(opts.tool_call, None);
    }

    #[test]
    fn headers_override() {
        let mut h = HeaderMap::new();
        h.insert("x-mock-latency-ms", HeaderValue::from_static("250"));
        h.insert("x-mock-status", HeaderValue::from_static("429"));
        h.insert("x-mock-stream-chunks", HeaderValue::from_static("3"));
        h.insert("x-mock-stream-interval-ms", HeaderValue::from_static("10"));
        h.insert("x-mock-fail", HeaderValue::from_static("truncate-stream"));
        h.insert("x-mock-stream-framing", HeaderValue::from_static("close"));
        h.insert("x-mock-tool-call", HeaderValue::from_static("get_time"));
        let opts = RequestOptions::from_headers(&h, &defaults()).unwrap();
        assert_eq!(opts.latency, Duration::from_millis(250));
        assert_eq!(opts.status, Some(429));
        assert_eq!(opts.stream_chunks, 3);
        assert_eq!(opts.stream_interval, Duration::from_millis(10));
        assert_eq!(opts.fail, FailMode::TruncateStream);
        assert_eq!(opts.framing, Framing::Close);
        assert_eq!(opts.tool_call.as_deref(), Some("get_time"));
    }

    #[test]
    fn bad_headers_are_errors() {
        for (name, value) in [
            ("x-mock-latency-ms", "soon"),
            ("x-mock-status", "200"),
            ("x-mock-status", "abc"),
            ("x-mock-fail", "explode"),
            ("x-mock-stream-framing", "carrier-pigeon"),
            ("x-mock-tool-call", ""),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert!(
                RequestOptions::from_headers(&h, &defaults()).is_err(),
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn cli_parsers() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert_eq!(parse_status("503"), Ok(503));
        assert!(parse_status("302").is_err());
    }

    #[test]
    fn error_types() {
        assert_eq!(error_type(400), "invalid_request_error");
        assert_eq!(error_type(401), "authentication_error");
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(503), "server_error");
    }

    #[test]
    fn roll_extremes_and_rate() {
        assert!(!(0..1000).any(|_| roll(0.0)));
        assert!((0..1000).all(|_| roll(1.0)));
        let hits = (0..100_000).filter(|_| roll(0.3)).count();
        assert!((27_000..33_000).contains(&hits), "{hits}");
    }
}
