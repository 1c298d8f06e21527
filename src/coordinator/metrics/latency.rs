//! The latency histograms: every shard's series of one provider, model and status class
//! merged at scrape time, and written with fixed `le` bounds so that a series' buckets never
//! change between scrapes (which `rate()` and `histogram_quantile()` need).

use std::collections::BTreeMap;
use std::fmt::Write;

use shards::histogram::{Counts, Histogram};
use shards::series::{Timings, CLASSES};
use shards::stats::ShardStats;

use super::{escape, family};

/// One histogram family: its name, help, which of a series' histograms it reads, and its
/// bounds (`le`), in microseconds.
struct Family {
    name: &'static str,
    help: &'static str,
    get: fn(&Timings) -> &Histogram,
    bounds: fn() -> Vec<u64>,
}

/// Powers of two from 64 µs to about 18 minutes: LLM requests span five orders of magnitude.
fn latency_bounds() -> Vec<u64> {
    (6..=30).map(|k| 1u64 << k).collect()
}

/// Overhead is microseconds: 1 µs to 98 ms, at each power of two and halfway between
/// (1.5× a power of two), so that a median of a few microseconds is told apart.
fn overhead_bounds() -> Vec<u64> {
    let mut b = vec![1];
    for k in 1..=16u32 {
        b.push(1 << k);
        b.push(3 << (k - 1));
    }
    b.sort_unstable();
    b.dedup();
    b
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "ringgate_request_duration_seconds",
        help: "Time from a request's first byte to its response's last byte",
        get: |t| &t.duration,
        bounds: latency_bounds,
    },
    Family {
        name: "ringgate_time_to_first_byte_seconds",
        help: "Time from a request's first byte to its response's first byte (for a stream, its first event)",
        get: |t| &t.first_byte,
        bounds: latency_bounds,
    },
    Family {
        name: "ringgate_upstream_duration_seconds",
        help: "Time spent waiting on the provider (connecting, its response head, its body)",
        get: |t| &t.upstream,
        bounds: latency_bounds,
    },
    Family {
        name: "ringgate_gateway_overhead_seconds",
        help: "Time spent inside ringgate: from the request read whole to the response's end, minus the time waiting on the provider",
        get: |t| &t.overhead,
        bounds: overhead_bounds,
    },
    Family {
        name: "ringgate_gateway_cpu_seconds",
        help: "ringgate's own running time on a request (its task's polls, from the request read whole to the response's end), measured on one connection in 8",
        get: |t| &t.cpu,
        bounds: overhead_bounds,
    },
];

/// (provider, model, class index) → one merged histogram per family.
pub type Merged = BTreeMap<(String, String, usize), [Counts; 5]>;

/// Merges every shard's series.
pub fn merge(shards: &[std::sync::Arc<ShardStats>]) -> Merged {
    let mut merged = Merged::new();
    for shard in shards {
        for series in shard.series.iter() {
            for class in 0..CLASSES.len() {
                let Some(timings) = series.seen(class) else {
                    continue;
                };
                let key = (series.provider.clone(), series.model.clone(), class);
                let counts = merged.entry(key).or_default();
                for (family, into) in FAMILIES.iter().zip(counts.iter_mut()) {
                    (family.get)(timings).add_to(into);
                }
            }
        }
    }
    merged
}

pub fn render(out: &mut String, merged: &Merged) {
    for (i, family_def) in FAMILIES.iter().enumerate() {
        family(out, family_def.name, "histogram", family_def.help);
        let bounds = (family_def.bounds)();
        for ((provider, model, class), counts) in merged {
            let counts = &counts[i];
            let total = counts.count();
            if total == 0 {
                continue;
            }
            let labels = format!(
                "provider=\"{}\",model=\"{}\",class=\"{}\"",
                escape(provider),
                escape(model),
                CLASSES[*class]
            );
            let name = family_def.name;
            for &edge in &bounds {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels},le=\"{}\"}} {}",
                    edge as f64 / 1e6,
                    counts.below(edge)
                );
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", counts.sum as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
        }
    }
}

/// Quantiles of every series for `GET /latency` (JSON), in microseconds, with the fine
/// buckets they come from: what `perf/` reports beside its client-side figures, finer than
/// the Prometheus buckets.
pub fn quantiles(merged: &Merged) -> serde_json::Value {
    let rows: Vec<_> = merged
        .iter()
        .map(|((provider, model, class), counts)| {
            let mut row = serde_json::json!({
                "provider": provider,
                "model": model,
                "class": CLASSES[*class],
                "count": counts[0].count(),
            });
            for (family_def, c) in FAMILIES.iter().zip(counts) {
                let short = family_def
                    .name
                    .trim_start_matches("ringgate_")
                    .trim_end_matches("_seconds");
                row[short] = serde_json::json!({
                    "count": c.count(),
                    "p50_us": c.quantile(0.5),
                    "p90_us": c.quantile(0.9),
                    "p99_us": c.quantile(0.99),
                    "p999_us": c.quantile(0.999),
                    "mean_us": if c.count() == 0 { 0.0 } else { c.sum as f64 / c.count() as f64 },
                    "buckets": sparse(c),
                });
            }
            row
        })
        .collect();
    serde_json::json!({ "object": "list", "data": rows })
}

/// The non-empty fine buckets as `[upper bound µs (exclusive), count]`: two readings
/// subtract to the quantiles of what happened between them.
fn sparse(c: &Counts) -> Vec<[u64; 2]> {
    c.buckets
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| [shards::histogram::upper_edge(i), n])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_bucket_edges() {
        use shards::histogram::{bucket_of, upper_edge};
        for edge in latency_bounds().into_iter().chain(overhead_bounds()) {
            assert_eq!(upper_edge(bucket_of(edge) - 1), edge, "{edge} is an edge");
        }
    }
}
