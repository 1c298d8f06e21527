//! The response cache's metrics: what it did (summed over the node's shards), what it saved,
//! and its memory tier's size.

use std::fmt::Write as _;

use shards::stats::{CacheCounters, Counter};

use super::family;
use crate::coordinator::NodeView;

/// Picks one counter of a shard's cache counters.
type Pick = fn(&CacheCounters) -> &Counter;

/// Writes the cache's families when the node has a cache.
pub fn render(out: &mut String, view: &NodeView) {
    let Some(cache) = &view.cache else {
        return;
    };
    let sum = |pick: Pick| -> u64 { view.shards.iter().map(|s| pick(&s.cache).get()).sum() };
    family(
        out,
        "ringgate_cache_requests_total",
        "counter",
        "Requests by what the response cache did: hit (exact), semantic_hit, miss, bypass",
    );
    for (result, pick) in [
        ("hit", (|c| &c.hits_exact) as Pick),
        ("semantic_hit", |c| &c.hits_semantic),
        ("miss", |c| &c.misses),
        ("bypass", |c| &c.bypassed),
    ] {
        let _ = writeln!(
            out,
            "ringgate_cache_requests_total{{result=\"{result}\"}} {}",
            sum(pick)
        );
    }
    let tier = cache.stats();
    let values: [(&str, &str, &str, u64); 11] = [
        (
            "ringgate_cache_stored_total",
            "counter",
            "Fresh answers kept",
            sum(|c| &c.stored),
        ),
        (
            "ringgate_cache_fleet_hits_total",
            "counter",
            "Misses of this node's memory answered by the fleet's shared tier",
            sum(|c| &c.fleet_hits),
        ),
        (
            "ringgate_cache_fleet_unanswered_total",
            "counter",
            "Shared-tier lookups not answered within cache.fleet_lookup_timeout_ms (served as misses)",
            sum(|c| &c.fleet_unanswered),
        ),
        (
            "ringgate_cache_semantic_unanswered_total",
            "counter",
            "Semantic lookups not answered within cache.semantic.lookup_timeout_ms (served as misses)",
            sum(|c| &c.semantic_unanswered),
        ),
        (
            "ringgate_cache_desk_dropped_total",
            "counter",
            "Answers not shared with the fleet or indexed by meaning because the cache desk's queue was full",
            sum(|c| &c.desk_dropped),
        ),
        (
            "ringgate_cache_saved_prompt_tokens_total",
            "counter",
            "Prompt tokens hits saved",
            sum(|c| &c.saved_prompt_tokens),
        ),
        (
            "ringgate_cache_saved_completion_tokens_total",
            "counter",
            "Completion tokens hits saved",
            sum(|c| &c.saved_completion_tokens),
        ),
        (
            "ringgate_cache_entries",
            "gauge",
            "Answers in this node's memory tier",
            tier.entries,
        ),
        (
            "ringgate_cache_bytes",
            "gauge",
            "Bytes this node's memory tier holds (bounded by cache.max_bytes)",
            tier.bytes,
        ),
        (
            "ringgate_cache_semantic_entries",
            "gauge",
            "Request embeddings in this node's semantic index",
            cache.semantic_entries(),
        ),
        (
            "ringgate_cache_evictions_total",
            "counter",
            "Answers evicted from this node's memory tier to stay within cache.max_bytes",
            tier.evictions,
        ),
    ];
    for (name, kind, help, value) in values {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        out,
        "ringgate_cache_saved_cost_usd_total",
        "counter",
        "What hits would have cost at the governance prices",
    );
    let nanos = sum(|c| &c.saved_cost_nanos);
    let _ = writeln!(
        out,
        "ringgate_cache_saved_cost_usd_total {}.{:09}",
        nanos / 1_000_000_000,
        nanos % 1_000_000_000
    );
}
