//! Prometheus text exposition of the node's counters. Each shard's block is read as it is
//! (no locks; values may lag by an instant). Counters are labelled by shard, so imbalance
//! between shards — SO_REUSEPORT hashing few connections unevenly — is visible; the latency
//! histograms ([`latency`]) are merged across shards; tokens and spend ([`usage`]) are
//! counted by the coordinator from usage records; traces ([`super::traces`]) by the exporter;
//! catalog fetches by the catalog task ([`super::catalog`]).
//! docs/observability.md lists every family.

mod cache;
pub mod latency;
pub mod usage;

use std::fmt::Write;
use std::sync::atomic::Ordering;

use shards::stats::{Counter, ProviderStats, ShardStats};

use super::NodeView;

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it (`\`, `"` and newlines escaped).
pub(super) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

fn per_shard(
    out: &mut String,
    view: &NodeView,
    name: &str,
    kind: &str,
    help: &str,
    get: impl Fn(&ShardStats) -> &Counter,
) {
    family(out, name, kind, help);
    for (i, s) in view.shards.iter().enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", get(s).get());
    }
}

fn per_provider(
    out: &mut String,
    view: &NodeView,
    name: &str,
    kind: &str,
    help: &str,
    get: impl Fn(&ProviderStats) -> u64,
) {
    family(out, name, kind, help);
    let snapshot = view.node.snapshot.load();
    for (i, s) in view.shards.iter().enumerate() {
        for p in &snapshot.providers {
            let _ = writeln!(
                out,
                "{name}{{provider=\"{}\",shard=\"{i}\"}} {}",
                p.name,
                get(&s.providers[p.slot])
            );
        }
    }
}

pub fn render(
    view: &NodeView,
    fleet: Option<&super::fleet::Fleet>,
    usage: Option<&usage::UsageMetrics>,
    traces: Option<&super::traces::TraceMetrics>,
    catalog: &super::catalog::metrics::CatalogMetrics,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    family(
        &mut out,
        "ringgate_build_info",
        "gauge",
        "The running build: version and io driver, always 1",
    );
    let _ = writeln!(
        out,
        "ringgate_build_info{{version=\"{}\",io_driver=\"{}\",shards=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        view.io_driver.as_str(),
        view.shards.len()
    );
    latency::render(&mut out, &latency::merge(&view.shards));
    if let Some(usage) = usage {
        usage.render(&mut out);
    }
    refusals(&mut out, view);
    if let Some(fleet) = fleet {
        fleet.render_metrics(&mut out);
    }
    if let Some(traces) = traces {
        traces.render(&mut out, view);
    }
    catalog.render(&mut out);
    cache::render(&mut out, view);
    family(
        &mut out,
        "ringgate_ready",
        "gauge",
        "1 when the node takes traffic",
    );
    let _ = writeln!(out, "ringgate_ready {}", u8::from(view.node.is_ready()));
    if let Some(gov) = &view.gov {
        family(
            &mut out,
            "ringgate_governance_snapshot_read_timestamp_seconds",
            "gauge",
            "When the coordinator began reading the store for the keys and limits in force (every admin write committed before then applies)",
        );
        family(
            &mut out,
            "ringgate_usage_spool_backlog_batches",
            "gauge",
            "Usage batches waiting in the local spool for the store (above 0 while the store refuses writes)",
        );
        let _ = writeln!(
            out,
            "ringgate_usage_spool_backlog_batches {}",
            super::flusher::SPOOL_BACKLOG.load(std::sync::atomic::Ordering::Relaxed)
        );
        let flusher_queue = [
            (
                "ringgate_usage_queue_messages",
                "gauge",
                "Usage batches queued from the shards to the store writer (bounded: at the bound shards keep their records)",
                &super::flusher::QUEUE_DEPTH,
            ),
            (
                "ringgate_usage_queue_full_total",
                "counter",
                "Times a shard found the store writer's queue full and kept its batch for the next send (the store is slower than the traffic)",
                &shards::governance::batcher::USAGE_QUEUE_FULL,
            ),
        ];
        for (name, kind, help, value) in flusher_queue {
            family(&mut out, name, kind, help);
            let _ = writeln!(
                out,
                "{name} {}",
                value.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        let read_at = gov.snapshot.load().read_at_ms;
        let _ = writeln!(
            out,
            "ringgate_governance_snapshot_read_timestamp_seconds {}.{:03}",
            read_at / 1000,
            read_at % 1000
        );
    }
    config_watch(&mut out);
    family(
        &mut out,
        "ringgate_io_driver",
        "gauge",
        "The io driver the shards run on (io_uring, or epoll as the fallback), always 1",
    );
    let _ = writeln!(
        out,
        "ringgate_io_driver{{driver=\"{}\"}} 1",
        view.io_driver.as_str()
    );
    per_shard(
        &mut out,
        view,
        "ringgate_connections",
        "gauge",
        "Client connections open",
        |s| &s.connections,
    );
    per_shard(
        &mut out,
        view,
        "ringgate_requests_in_flight",
        "gauge",
        "Requests being served",
        |s| &s.in_flight,
    );
    family(
        &mut out,
        "ringgate_responses_total",
        "counter",
        "Responses sent, by status class",
    );
    for (i, s) in view.shards.iter().enumerate() {
        for (class, c) in [
            ("2xx", &s.responses_2xx),
            ("4xx", &s.responses_4xx),
            ("5xx", &s.responses_5xx),
        ] {
            let _ = writeln!(
                out,
                "ringgate_responses_total{{class=\"{class}\",shard=\"{i}\"}} {}",
                c.get()
            );
        }
    }
    per_shard(
        &mut out,
        view,
        "ringgate_client_gone_total",
        "counter",
        "Requests abandoned by their client",
        |s| &s.client_gone,
    );
    per_shard(
        &mut out,
        view,
        "ringgate_usage_dropped_total",
        "counter",
        "Usage records dropped on a full coordinator queue",
        |s| &s.usage_dropped,
    );
    per_shard(
        &mut out,
        view,
        "ringgate_usage_estimated_total",
        "counter",
        "Governed requests whose tokens the gateway counted itself (the provider reported none, or the client left first)",
        |s| &s.usage_estimated,
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_attempts_total",
        "counter",
        "Upstream attempts (tries, retries, fallbacks)",
        |p| p.attempts.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_failures_total",
        "counter",
        "Upstream attempts that failed",
        |p| p.failures.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_retries_total",
        "counter",
        "Retries of the same provider",
        |p| p.retries.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_fallbacks_total",
        "counter",
        "Requests that reached the provider as a fallback",
        |p| p.fallbacks.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_shed_total",
        "counter",
        "Requests refused by backpressure",
        |p| p.shed.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_circuit_opens_total",
        "counter",
        "Times the circuit opened",
        |p| p.circuit_opens.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_breaker_state",
        "gauge",
        "0 closed, 1 open, 2 half-open",
        |p| u64::from(p.breaker_state.load(Ordering::Relaxed)),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_latency_ewma_microseconds",
        "gauge",
        "Moving average of time to response head",
        |p| p.ewma_latency_us.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_requests_active",
        "gauge",
        "Requests sent to the provider now (holding a slot of its admission gate)",
        |p| p.active.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_requests_queued",
        "gauge",
        "Requests waiting for a slot of the provider's admission gate",
        |p| p.queued.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_pool_idle_connections",
        "gauge",
        "Upstream connections idle in the shard's pool",
        |p| p.idle_connections.get(),
    );
    per_provider(
        &mut out,
        view,
        "ringgate_provider_connections_opened_total",
        "counter",
        "Upstream connections opened (a pool that works keeps this flat under steady load)",
        |p| p.connections_opened.get(),
    );
    out
}

/// Governance refusals by reason, summed over shards.
fn refusals(out: &mut String, view: &NodeView) {
    family(
        out,
        "ringgate_governance_refusals_total",
        "counter",
        "Requests refused by governance, by reason (the error code)",
    );
    for (i, reason) in shards::stats::REFUSALS.iter().enumerate() {
        let n: u64 = view.shards.iter().map(|s| s.refusals[i].get()).sum();
        let _ = writeln!(
            out,
            "ringgate_governance_refusals_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// The config watch (src/coordinator/watch.rs), once it runs.
fn config_watch(out: &mut String) {
    let w = &super::watch::WATCH;
    if !w.running.load(Ordering::Relaxed) {
        return;
    }
    for (name, kind, help, value) in [
        (
            "ringgate_cluster_config_version",
            "gauge",
            "Config version the keys and limits in force were loaded at",
            w.version.load(Ordering::Relaxed),
        ),
        (
            "ringgate_cluster_listen_connected",
            "gauge",
            "1 while the node's LISTEN connection for config changes is up",
            u64::from(w.connected.load(Ordering::Relaxed)),
        ),
        (
            "ringgate_cluster_config_reloads_total",
            "counter",
            "Reloads of keys and limits from the store (every entity read)",
            w.reloads.load(Ordering::Relaxed),
        ),
        (
            "ringgate_cluster_config_changes_applied_total",
            "counter",
            "Other nodes' changes applied alone (only the changed keys, teams and customers read)",
            w.applied.load(Ordering::Relaxed),
        ),
    ] {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}
