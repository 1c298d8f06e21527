//! Phase 11, observe: once the response is written, what the request took goes where an
//! operator looks — the latency histograms of its provider and model (duration, time to first
//! byte, upstream time, gateway overhead, by status class), the governance refusal counters,
//! the access log line (target `access`, off unless `logging.access_log`), a governed
//! request's usage record, now with its timings, to the coordinator, and a sampled request's
//! span ([`trace::record`]). Reads everything the request gathered and the connection's
//! [`Tracker`](crate::path::tracker::Tracker).
//!
//! Hot-path cost: a hash lookup of the model's series, four histogram records (a shift and
//! a store each), a few clock reads; the access log costs nothing when it is off.

use crate::path::conn::ClientConn;
use crate::path::context::{RequestCtx, Scope, Served};
use crate::path::outcome::Stop;
use crate::path::settle::Charge;
use crate::path::trace;
use crate::state::series::class_of;

/// How a request ended, as its logs and metrics say it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: u16,
    /// The error code of a failed request (OpenAI's `error.code`).
    pub error_code: Option<&'static str>,
}

impl Outcome {
    /// A provider's own failure response (relayed or kept) has no code of the gateway's.
    const PROVIDER_ERROR: &'static str = "provider_error";

    pub fn of(stop: Option<&Stop>, served: Option<&Served>) -> Self {
        let status = match stop {
            Some(stop) => stop.status(),
            None => served.map_or(0, |s| s.status),
        };
        let error_code = match stop {
            Some(Stop::Error(e)) => Some(e.code()),
            Some(Stop::ClientGone) => Some("client_closed_request"),
            _ => (status >= 400).then_some(Self::PROVIDER_ERROR),
        };
        Self { status, error_code }
    }
}

pub fn observe(
    scope: Scope<'_>,
    conn: &ClientConn,
    req: &RequestCtx<'_>,
    outcome: Outcome,
    charge: Option<Charge>,
) {
    let now = crate::poll_clock::now();
    let shard = scope.shard;
    let tracker = &conn.tracker;
    let start = req.times.request_start();
    let duration = now.saturating_duration_since(start);
    let overhead = tracker.overhead(now);
    if let Some(code) = outcome.error_code {
        shard.stats.record_refusal(code);
    }
    let target = req.answering_target();
    let provider = target.map(|t| &scope.snapshot.providers[t.provider]);
    // A cached answer says nothing of its provider's latency.
    let from_provider = req.cache.hit.is_none();
    if let (Some(t), Some(p), true) = (target, provider, from_provider) {
        let series = shard
            .series
            .series(&shard.stats.series, p.slot, &p.name, t.model);
        let timings = series.class(class_of(outcome.status));
        timings.duration.record(duration.as_micros() as u64);
        if let Some(first) = tracker.first_write {
            timings
                .first_byte
                .record(first.saturating_duration_since(start).as_micros() as u64);
        }
        if !tracker.upstream_wait.is_zero() {
            timings
                .upstream
                .record(tracker.upstream_wait.as_micros() as u64);
        }
        timings.overhead.record(overhead.as_micros() as u64);
        if let (Some(meter), Some(at_read)) = (&conn.busy, tracker.busy_at_read) {
            timings
                .cpu
                .record(meter.now().saturating_sub(at_read).as_micros() as u64);
        }
    }
    tracing::info!(
        target: "access",
        request_id = tracker.echoed_id(),
        peer = %conn.peer,
        path = %String::from_utf8_lossy(req.head.path(&conn.inbuf)),
        provider = provider.map_or("", |p| &p.name[..]),
        model = target.map_or(req.ask.requested, |t| t.model),
        status = outcome.status,
        error_code = outcome.error_code.unwrap_or(""),
        stream = req.ask.stream,
        cache = tracker.cache.map_or("", |c| c.as_str()),
        duration_us = duration.as_micros() as u64,
        upstream_us = tracker.upstream_wait.as_micros() as u64,
        overhead_us = overhead.as_micros() as u64,
        "request"
    );
    trace::record(scope, conn, req, outcome, target, now);
    if let (Some(charge), Some(gov)) = (charge, shard.gov.as_deref()) {
        let timings = (duration.as_micros() as u64, overhead.as_micros() as u64);
        let record = charge.record(scope, conn, req, outcome, timings);
        let dropped = shard.usage.push(&record, gov);
        shard.stats.usage_dropped.add(dropped as u64);
    }
}
