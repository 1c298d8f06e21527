//! Traces on the request path, when `observability.traces` is configured. Three moments:
//!
//! - **begin** (before authenticate): the client's `traceparent` is read
//!   ([`crate::trace::parse_traceparent`]; a malformed one counts as none). Sampling is
//!   parent-based: the client's `sampled` flag decides when it sent a context; otherwise
//!   `sample_ratio`, drawn from the shard's own RNG, and the trace id is the request's own id
//!   (so a trace is found by request id). The gateway's span gets a fresh 64-bit id.
//! - **build** (every attempt): the upstream request carries `traceparent` with the gateway's
//!   span as parent and the client's flags — also for a context the client sent unsampled —
//!   and the client's `tracestate` with it; the client's own `traceparent` is not forwarded
//!   (`http/upstream.rs`, [`TraceHeaders`]). A sampled request also has its response read for
//!   tokens (`capture_usage`, as governance does) and for its finish reason and model
//!   (`describe_outcome`, for the span alone).
//! - **record** (phase 11, observe): a sampled request's span goes to the coordinator on a
//!   bounded queue with `try_send`; when the queue is full it is dropped and counted
//!   (`ShardStats::traces_dropped`). The shard never exports, waits or blocks.
//!
//! Hot-path cost: nothing when traces are off; else a header lookup and, without a client
//! context, one RNG draw per request. An unsampled request allocates nothing.

use std::time::Instant;

use crate::clock;
use crate::dialect::Wire;
use crate::http::upstream::TraceHeaders;
use crate::path::conn::ClientConn;
use crate::path::context::{RequestCtx, Scope};
use crate::path::observe::Outcome;
use crate::route::Target;
use crate::state::balance::Rng;
use crate::state::Shard;
use crate::trace::{hex, parse_traceparent, SpanRecord, TraceContext, HEADER_LINE_LEN};

/// What a request does with trace context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tracing {
    /// Traces are off: the client's `traceparent` and `tracestate` pass upstream untouched.
    #[default]
    Off,
    /// Traces are on: the request's context, if it has one (none: the client sent no usable
    /// `traceparent` and the request was not sampled, so nothing is propagated).
    On(Option<TraceContext>),
}

impl Tracing {
    /// The request's span is recorded.
    pub fn sampled(&self) -> bool {
        matches!(self, Self::On(Some(context)) if context.sampled())
    }

    /// The trace header of the request's upstream requests; `None` while traces are off.
    pub fn propagation(&self) -> Option<Propagation> {
        let Self::On(context) = self else {
            return None;
        };
        Some(match context {
            Some(c) => Propagation {
                line: c.header_line(),
                len: HEADER_LINE_LEN,
                client_tracestate: c.parent.is_some(),
            },
            None => Propagation {
                line: [0; HEADER_LINE_LEN],
                len: 0,
                client_tracestate: false,
            },
        })
    }
}

/// An upstream request's `traceparent` line, on the stack.
pub struct Propagation {
    line: [u8; HEADER_LINE_LEN],
    len: usize,
    client_tracestate: bool,
}

impl Propagation {
    pub fn headers(&self) -> TraceHeaders<'_> {
        TraceHeaders {
            line: &self.line[..self.len],
            client_tracestate: self.client_tracestate,
        }
    }
}

/// Decides the request's trace context (see the module doc), before anything else reads it.
pub fn begin(shard: &Shard, conn: &mut ClientConn) {
    let Some(sink) = &shard.traces else {
        return;
    };
    let span_id = || hex(u128::from(shard.rng.next_u64().max(1)));
    let context = match conn
        .request_header("traceparent")
        .and_then(parse_traceparent)
    {
        Some(client) => Some(TraceContext {
            trace_id: client.trace_id,
            parent: Some(client.parent),
            span_id: span_id(),
            flags: client.flags,
        }),
        None if drawn(&shard.rng, sink.sample_ratio) => Some(TraceContext {
            trace_id: conn.tracker.id.digits(),
            parent: None,
            span_id: span_id(),
            flags: *b"01",
        }),
        None => None,
    };
    conn.tracker.trace = Tracing::On(context);
}

/// A draw with probability `ratio`: 53 random bits as a fraction of 1, so that ratio 0 never
/// samples and ratio 1 always does.
fn drawn(rng: &Rng, ratio: f64) -> bool {
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < ratio
}

/// Sends a sampled request's span to the coordinator (phase 11). `target`: the target that
/// answered, or else the first one; `now`: when the response ended.
pub fn record(
    scope: Scope<'_>,
    conn: &ClientConn,
    req: &RequestCtx<'_>,
    outcome: Outcome,
    target: Option<&Target<'_>>,
    now: Instant,
) {
    let Tracing::On(Some(context)) = conn.tracker.trace else {
        return;
    };
    let Some(sink) = scope.shard.traces.as_ref().filter(|_| context.sampled()) else {
        return;
    };
    let provider = target.map(|t| &scope.snapshot.providers[t.provider]);
    let tally = req.served.as_ref().map(|s| &s.tally);
    let end = clock::unix_nanos_at(now);
    let took = now.saturating_duration_since(req.times.request_start());
    let span = SpanRecord {
        context,
        start_unix_nanos: end.saturating_sub(took.as_nanos() as u64),
        end_unix_nanos: end,
        endpoint: req.endpoint,
        wire: provider.map(|p| p.wire),
        provider: provider.map(|p| p.name.clone()),
        server: provider.map(|p| {
            let port = p.addrs.first().map_or(0, |a| a.port());
            (host_of(&p.host_header).to_owned(), port)
        }),
        request_model: target.map_or(req.ask.requested, |t| t.model).to_owned(),
        // A translated response names the model the client asked for; only an
        // OpenAI-speaking provider's body names the one that answered.
        response_model: tally
            .and_then(|t| t.model.clone())
            .filter(|_| provider.is_some_and(|p| matches!(p.wire, Wire::OpenAi | Wire::Azure))),
        max_tokens: req.ask.max_tokens,
        usage: tally.and_then(|t| t.usage),
        counted_output_tokens: tally.map_or(0, |t| t.output_tokens),
        finish_reason: tally.and_then(|t| t.finish_reason),
        status: outcome.status,
        error_code: outcome.error_code,
        request_id: conn.tracker.echoed_id().to_owned(),
        overhead_us: conn.tracker.overhead(now).as_micros() as u64,
        stream: req.ask.stream,
    };
    if sink.spans.try_send(span).is_err() {
        scope.shard.stats.traces_dropped.incr();
    }
}

/// The host of a `Host` header value (`host`, `host:port`, `[v6]:port`).
fn host_of(host_header: &str) -> &str {
    match host_header.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host_header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_zero_and_one_are_never_and_always() {
        let rng = Rng::new(11);
        assert!((0..1000).all(|_| drawn(&rng, 1.0)));
        assert!((0..1000).all(|_| !drawn(&rng, 0.0)));
        let half = (0..10_000).filter(|_| drawn(&rng, 0.5)).count();
        assert!((4_500..5_500).contains(&half), "{half}");
    }

    #[test]
    fn server_address_is_the_host_without_its_port() {
        assert_eq!(host_of("api.openai.com"), "api.openai.com");
        assert_eq!(host_of("127.0.0.1:8001"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8001"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
    }
}
