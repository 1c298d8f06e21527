//! Per-shard counters, written only by their shard and read by whoever renders metrics.
//! A single writer means an increment is a plain load and store (no locked instruction), and
//! each shard's block sits on its own cache lines, so shards never contend. Readers see
//! values that may lag by an instant, which is all a metrics scrape needs.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::series::SeriesTable;

/// A counter with exactly one writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    pub fn incr(&self) {
        self.add(1);
    }

    /// For gauges that go down too (single writer).
    pub fn decr(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }

    /// For values that are replaced rather than counted (single writer).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge raised while this value lives (also when its task is dropped mid-way).
pub struct Held<'a>(&'a Counter);

impl<'a> Held<'a> {
    pub fn new(gauge: &'a Counter) -> Self {
        gauge.incr();
        Self(gauge)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.decr();
    }
}

/// What one shard did with one provider.
#[derive(Debug, Default)]
pub struct ProviderStats {
    /// Attempts sent (first tries, retries and fallbacks alike).
    pub attempts: Counter,
    /// Attempts that failed (transport errors, retryable statuses).
    pub failures: Counter,
    /// Attempts that were retries of the same target.
    pub retries: Counter,
    /// Requests that reached this provider as a fallback.
    pub fallbacks: Counter,
    /// Requests refused by backpressure.
    pub shed: Counter,
    /// Times the circuit opened.
    pub circuit_opens: Counter,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: AtomicU8,
    /// EWMA latency in microseconds (updated per attempt).
    pub ewma_latency_us: Counter,
    /// Requests sent to this provider now (holding a slot of its admission gate).
    pub active: Counter,
    /// Requests waiting for a slot of its admission gate now.
    pub queued: Counter,
    /// Upstream connections idle in this shard's pool now.
    pub idle_connections: Counter,
    /// Upstream connections opened.
    pub connections_opened: Counter,
}

/// One shard's counters, aligned so two shards never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardStats {
    /// Client connections open now.
    pub connections: Counter,
    /// Requests being served now (read, not yet answered).
    pub in_flight: Counter,
    /// Requests served, by class of status.
    pub responses_2xx: Counter,
    pub responses_4xx: Counter,
    pub responses_5xx: Counter,
    /// Streams ended early because the upstream broke.
    pub streams_broken: Counter,
    /// Requests abandoned by their client before the response ended.
    pub client_gone: Counter,
    /// Usage records the coordinator's queue had no room for.
    pub usage_dropped: Counter,
    /// Governed requests whose tokens the gateway counted (the provider reported none, or
    /// the client left first).
    pub usage_estimated: Counter,
    /// Sampled spans the coordinator's trace queue had no room for.
    pub traces_dropped: Counter,
    /// What the response cache did.
    pub cache: CacheCounters,
    /// Requests refused by governance, by reason ([`REFUSALS`]).
    pub refusals: [Counter; REFUSALS.len()],
    pub providers: Vec<ProviderStats>,
    /// Latency histograms per provider and model.
    pub series: SeriesTable,
}

/// One shard's response-cache counters (the node sums them).
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub hits_exact: Counter,
    pub hits_semantic: Counter,
    pub misses: Counter,
    /// Requests the cache played no part in (not turned on, opted out, not cacheable).
    pub bypassed: Counter,
    /// Fresh answers kept.
    pub stored: Counter,
    /// Misses of this node's memory that the fleet's shared tier answered.
    pub fleet_hits: Counter,
    /// Shared-tier lookups unanswered in time (counted as misses).
    pub fleet_unanswered: Counter,
    /// Semantic lookups unanswered in time (counted as misses).
    pub semantic_unanswered: Counter,
    /// Answers the cache desk's queue had no room for (not shared, not indexed).
    pub desk_dropped: Counter,
    /// Tokens and money hits saved (what their answers cost when they were made).
    pub saved_prompt_tokens: Counter,
    pub saved_completion_tokens: Counter,
    pub saved_cost_nanos: Counter,
}

/// Why governance refuses a request: the error codes of its refusals, which are the `reason`
/// label of `ringgate_governance_refusals_total`.
pub const REFUSALS: [&str; 8] = [
    "missing_api_key",
    "invalid_api_key",
    "key_not_usable",
    "model_not_allowed",
    "rate_limit_exceeded",
    "budget_exceeded",
    "limits_unavailable",
    "usage_backlog",
];

impl ShardStats {
    pub fn new(providers: usize) -> Self {
        Self {
            providers: (0..providers).map(|_| ProviderStats::default()).collect(),
            ..Self::default()
        }
    }

    /// Counts a refusal when `code` is one of governance's.
    pub fn record_refusal(&self, code: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == code) {
            self.refusals[i].incr();
        }
    }

    pub fn record_status(&self, status: u16) {
        match status {
            200..=399 => self.responses_2xx.incr(),
            400..=499 => self.responses_4xx.incr(),
            _ => self.responses_5xx.incr(),
        }
    }
}
