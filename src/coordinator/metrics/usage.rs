//! Tokens and spend by provider, model, virtual key and team, counted by the coordinator from
//! the usage records the shards send it (so the shards keep no per-key counters). Only
//! governed requests have records: with governance off the gateway reads no usage and knows
//! no prices.
//!
//! Label sets are bounded: at most [`MAX_MODELS`] provider/model pairs and
//! `max_key_labels` keys get their own series; the rest are summed under `other`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::Mutex;

use vocab::{UsageBytes, UsageRef};

use super::{escape, family};

/// Provider/model pairs with their own series.
const MAX_MODELS: usize = 256;
const OTHER: &str = "other";

/// Whether and how many keys are labelled (`observability.key_labels`, `max_key_labels`).
#[derive(Debug, Clone, Copy)]
pub struct Labelling {
    pub keys: bool,
    pub max_keys: usize,
}

/// A family with one sample per series: its name, help, and value.
type PerSeries = (&'static str, &'static str, fn(&Totals) -> f64);

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    requests: u64,
    prompt: u64,
    completion: u64,
    cached: u64,
    cost_nanos: u64,
}

/// A series' names, borrowed: provider, model, key, team.
type SeriesOf<'a> = (&'a str, &'a str, &'a str, &'a str);

impl Totals {
    /// One request's.
    fn of(r: &UsageRef<'_>) -> Self {
        Self {
            requests: 1,
            prompt: r.usage.prompt,
            completion: r.usage.completion,
            cached: r.usage.cached,
            cost_nanos: r.cost.nanos(),
        }
    }

    fn merge(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.prompt += other.prompt;
        self.completion += other.completion;
        self.cached += other.cached;
        self.cost_nanos += other.cost_nanos;
    }
}

#[derive(Debug, Default)]
struct Inner {
    series: HashMap<(String, String, String, String), Totals>,
    models: HashSet<(String, String)>,
    keys: HashSet<String>,
}

#[derive(Debug)]
pub struct UsageMetrics {
    labelling: Labelling,
    inner: Mutex<Inner>,
}

impl UsageMetrics {
    pub fn new(labelling: Labelling) -> Self {
        Self {
            labelling,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Counts a batch of records (those of admitted requests: a refused one used nothing).
    /// The batch is summed per series first, its names borrowed from the records (a batch's
    /// records share a few series: a record costs a comparison or a lookup, not the four
    /// strings an owned series name would allocate); the series are then labelled and added
    /// in the order they first appear, so that the keys labelled before the cap are the
    /// first seen.
    pub fn record(&self, batch: &UsageBytes) {
        let mut order: Vec<(SeriesOf<'_>, Totals)> = Vec::new();
        let mut index: HashMap<SeriesOf<'_>, usize> = HashMap::new();
        for r in batch.iter().filter(|r| r.admitted) {
            let series = self.series_of(&r);
            let i = match order.last() {
                Some((last, _)) if *last == series => order.len() - 1,
                _ => *index.entry(series).or_insert_with(|| {
                    order.push((series, Totals::default()));
                    order.len() - 1
                }),
            };
            order[i].1.merge(&Totals::of(&r));
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for ((provider, model, key, team), sum) in order {
            let (provider, model) = inner.model_label(provider, model);
            let key = if self.labelling.keys {
                inner.key_label(key, self.labelling.max_keys)
            } else {
                String::new()
            };
            let t = inner
                .series
                .entry((provider, model, key, team.to_owned()))
                .or_default();
            t.merge(&sum);
        }
    }

    /// The names of `r`'s series: provider, model, and key and team when keys are labelled.
    fn series_of<'a>(&self, r: &UsageRef<'a>) -> SeriesOf<'a> {
        if self.labelling.keys {
            let or_none = |s: Option<&'a str>| s.unwrap_or("");
            (r.provider, r.model, or_none(r.key_id), or_none(r.team_id))
        } else {
            (r.provider, r.model, "", "")
        }
    }

    pub fn render(&self, out: &mut String) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = inner.series.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let labels = |(provider, model, key, team): &(String, String, String, String)| {
            let mut l = format!(
                "provider=\"{}\",model=\"{}\"",
                escape(provider),
                escape(model)
            );
            if self.labelling.keys {
                let _ = write!(l, ",key=\"{}\",team=\"{}\"", escape(key), escape(team));
            }
            l
        };
        family(
            out,
            "ringgate_tokens_total",
            "counter",
            "Tokens of governed requests, by type (input, output; cached_input is part of input)",
        );
        for (k, t) in &rows {
            let l = labels(k);
            for (kind, n) in [
                ("input", t.prompt),
                ("output", t.completion),
                ("cached_input", t.cached),
            ] {
                let _ = writeln!(out, "ringgate_tokens_total{{{l},type=\"{kind}\"}} {n}");
            }
        }
        let per_series: [PerSeries; 2] = [
            (
                "ringgate_cost_usd_total",
                "Spend of governed requests, US dollars, at the pricing catalog's prices",
                |t| t.cost_nanos as f64 / 1e9,
            ),
            (
                "ringgate_governed_requests_total",
                "Governed requests admitted and settled",
                |t| t.requests as f64,
            ),
        ];
        for (name, help, value) in per_series {
            family(out, name, "counter", help);
            for (k, t) in &rows {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k), value(t));
            }
        }
    }
}

impl Inner {
    fn model_label(&mut self, provider: &str, model: &str) -> (String, String) {
        let pair = (provider.to_owned(), model.to_owned());
        if self.models.contains(&pair) {
            pair
        } else if self.models.len() < MAX_MODELS {
            self.models.insert(pair.clone());
            pair
        } else {
            (OTHER.to_owned(), OTHER.to_owned())
        }
    }

    fn key_label(&mut self, key: &str, max: usize) -> String {
        if self.keys.contains(key) {
            key.to_owned()
        } else if self.keys.len() < max {
            self.keys.insert(key.to_owned());
            key.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vocab::UsageRecord;

    fn batch(records: &[UsageRecord]) -> UsageBytes {
        let mut batch = UsageBytes::default();
        for r in records {
            batch.push(&r.view());
        }
        batch
    }

    fn record(key: &str, model: &str) -> UsageRecord {
        let mut r: UsageRecord = serde_json::from_value(serde_json::json!({
            "ts_ms": 0, "key_id": key, "team_id": "t", "customer_id": null,
            "provider": "p", "model": model, "status": 200,
            "usage": {"prompt": 10, "completion": 5, "cached": 2},
            "cost": 1_500_000_000u64, "latency_us": 1, "stream": false, "estimated": false
        }))
        .unwrap();
        r.admitted = true;
        r
    }

    #[test]
    fn keys_past_the_cap_are_summed_as_other() {
        let m = UsageMetrics::new(Labelling {
            keys: true,
            max_keys: 2,
        });
        m.record(&batch(&[
            record("a", "m"),
            record("b", "m"),
            record("c", "m"),
            record("a", "m"),
        ]));
        let mut refused = record("a", "m");
        refused.admitted = false;
        m.record(&batch(&[refused]));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "ringgate_tokens_total{provider=\"p\",model=\"m\",key=\"a\",team=\"t\",type=\"input\"} 20"
        ), "{out}");
        assert!(out.contains("key=\"other\""), "{out}");
        assert!(
            out.contains(
                "ringgate_cost_usd_total{provider=\"p\",model=\"m\",key=\"a\",team=\"t\"} 3"
            ),
            "{out}"
        );
        assert!(!out.contains("key=\"c\""), "{out}");
    }
}
