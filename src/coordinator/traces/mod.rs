//! OTLP trace export, on the coordinator's runtime. The shards put each sampled request's
//! span on a bounded queue ([`QUEUE`]; a span that finds it full is dropped and counted by its
//! shard). Every `export_interval` this task takes what is queued, in requests of at most
//! [`BATCH`] spans, encodes them as OTLP/HTTP JSON ([`otlp`]) and POSTs them to the collector
//! ([`post`]). Taking from the queue never blocks: it is read with `try_recv` from a timer.
//!
//! A collector that fails (refuses, times out, answers non-2xx) costs the batch at hand: it is
//! dropped and counted, the next batches wait for the next interval (one failing request per
//! interval, not one per batch), and the failure is logged at most once a minute. Spans still
//! queued when the node stops are not sent.

pub mod otlp;
mod post;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shards::trace::SpanRecord;

use super::metrics::family;
use super::NodeView;
use crate::config::Traces;

/// Spans the shards may queue between two exports (~400 bytes each).
pub const QUEUE: usize = 16_384;
/// Spans per export request.
const BATCH: usize = 512;
/// At most one warning about a failing collector per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Traces to export, when `observability.traces` is set.
pub struct TraceExport {
    /// The receiving end of the queue the shards' [`shards::trace::TraceSink`] sends to.
    pub spans: crossbeam_channel::Receiver<SpanRecord>,
    pub settings: Traces,
}

/// What the exporter did, for `/metrics`.
#[derive(Debug, Default)]
pub struct TraceMetrics {
    exported: AtomicU64,
    dropped_export_failed: AtomicU64,
    exports_failed: AtomicU64,
}

impl TraceMetrics {
    /// The trace families; spans dropped on a full queue are the shards' counts.
    pub fn render(&self, out: &mut String, view: &NodeView) {
        let queue_full: u64 = view.shards.iter().map(|s| s.traces_dropped.get()).sum();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let name = "ringgate_traces_spans_exported_total";
        family(out, name, "counter", "Spans the collector accepted");
        let _ = writeln!(out, "{name} {}", load(&self.exported));
        let name = "ringgate_traces_spans_dropped_total";
        family(
            out,
            name,
            "counter",
            "Spans not exported: the shards' queue was full, or the collector failed their export",
        );
        let _ = writeln!(out, "{name}{{reason=\"queue_full\"}} {queue_full}");
        let failed = load(&self.dropped_export_failed);
        let _ = writeln!(out, "{name}{{reason=\"export_failed\"}} {failed}");
        let name = "ringgate_traces_exports_failed_total";
        family(
            out,
            name,
            "counter",
            "Export requests the collector failed (refused, timed out, or answered non-2xx)",
        );
        let _ = writeln!(out, "{name} {}", load(&self.exports_failed));
    }
}

/// Exports spans until the runtime stops. `resource`: what every span's resource says.
pub async fn run(export: TraceExport, resource: otlp::Resource, metrics: Arc<TraceMetrics>) {
    let TraceExport { spans, settings } = export;
    let mut tick = tokio::time::interval(settings.export_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: Option<Instant> = None;
    loop {
        tick.tick().await;
        loop {
            let batch: Vec<SpanRecord> = spans.try_iter().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let body = otlp::encode(&resource, &batch);
            let n = batch.len() as u64;
            match post::post(&settings.endpoint, &settings.headers, body).await {
                Ok(()) => {
                    metrics.exported.fetch_add(n, Ordering::Relaxed);
                }
                Err(error) => {
                    metrics.exports_failed.fetch_add(1, Ordering::Relaxed);
                    metrics
                        .dropped_export_failed
                        .fetch_add(n, Ordering::Relaxed);
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        warned = Some(Instant::now());
                        tracing::warn!(
                            endpoint = %settings.endpoint,
                            %error,
                            spans = n,
                            "trace export failed; spans dropped (logged at most once a minute)"
                        );
                    }
                    break;
                }
            }
            if batch.len() < BATCH {
                break;
            }
        }
    }
}
