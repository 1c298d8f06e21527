//! The catalog's metrics: fetches by provider and result, and the models each provider's
//! catalog holds now. Written by the catalog task only, read by `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::super::metrics::{escape, family};

/// How one refresh of one provider's catalog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// Failed; the last good list is kept.
    Error,
    /// The provider has no listable catalog.
    Unsupported,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Unsupported => "unsupported",
        }
    }
}

#[derive(Debug, Default)]
pub struct CatalogMetrics {
    /// A lock, not atomics: written once per provider per refresh (minutes apart), read per
    /// scrape, on the coordinator only — never by a shard.
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    refreshes: BTreeMap<(String, Outcome), u64>,
    models: BTreeMap<String, usize>,
}

impl CatalogMetrics {
    pub fn refreshed(&self, provider: &str, result: Outcome) {
        let mut counts = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .refreshes
            .entry((provider.to_owned(), result))
            .or_default() += 1;
    }

    /// The models listed now, per provider (replacing what was there).
    pub fn set_models(&self, models: impl IntoIterator<Item = (String, usize)>) {
        let mut counts = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        counts.models = models.into_iter().collect();
    }

    pub fn render(&self, out: &mut String) {
        let counts = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let name = "ringgate_catalog_refreshes_total";
        family(
            out,
            name,
            "counter",
            "Fetches of a provider's model catalog, by result (ok, error: the last good list is kept, unsupported: nothing to list)",
        );
        for ((provider, result), n) in &counts.refreshes {
            let _ = writeln!(
                out,
                "{name}{{provider=\"{}\",result=\"{}\"}} {n}",
                escape(provider),
                result.as_str()
            );
        }
        let name = "ringgate_catalog_models";
        family(
            out,
            name,
            "gauge",
            "Models in a provider's catalog now (its configured list, or the last good fetch)",
        );
        for (provider, n) in &counts.models {
            let _ = writeln!(out, "{name}{{provider=\"{}\"}} {n}", escape(provider));
        }
    }
}
