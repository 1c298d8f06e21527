//! The `cache` section: the response cache's size, TTLs, scope, and the models whose
//! answers it keeps without being asked (docs/caching.md). Absent: the node has no cache.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use shards::cache::policy::{CachePolicy, CacheScope, SemanticPolicy};
use shards::route::ModelTable;

use super::{invalid, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The node's memory tier, in bytes (answers plus their keeping).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Larger answers are not kept.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: usize,
    /// TTL of the answers of a `models` entry that names none.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// No answer is kept longer, whoever asks.
    #[serde(default = "default_max_ttl_secs")]
    pub max_ttl_secs: u64,
    /// Who may be served an answer another request caused: `key`, `team` or `global`.
    #[serde(default)]
    pub scope: ScopeName,
    /// `x-ringgate-cache-ttl` may opt a request in.
    #[serde(default = "yes")]
    pub request_opt_in: bool,
    /// A hit takes a request from its key's request limits.
    #[serde(default = "yes")]
    pub hits_count_requests: bool,
    /// Model name (as clients write it), `provider/model` or `provider/*` → TTL in seconds
    /// (null: `ttl_secs`). Their answers are kept without being asked.
    #[serde(default)]
    pub models: BTreeMap<String, Option<u64>>,
    /// In a fleet (PostgreSQL), share answers through the database.
    #[serde(default = "yes")]
    pub fleet: bool,
    /// How long a request waits for the fleet's shared tier before it is a miss.
    #[serde(default = "default_fleet_lookup_timeout_ms")]
    pub fleet_lookup_timeout_ms: u64,
    /// The semantic cache (absent: exact matches only).
    #[serde(default)]
    pub semantic: Option<SemanticConfig>,
}

/// `cache.semantic`: a chat request whose exact key misses is served the answer of a cached
/// request whose last user turn means nearly the same (docs/caching.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticConfig {
    /// The embedding model, named as a client would name it: the node asks it through its
    /// own providers (routing, failover, retries and request logs included).
    pub embedding_model: String,
    /// Sent as the embeddings request's `dimensions` (models that can shorten vectors).
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// Least cosine similarity of two last user turns for one's answer to serve the other.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// How long a request waits for its embedding and the search before it is a miss.
    #[serde(default = "default_semantic_timeout_ms")]
    pub lookup_timeout_ms: u64,
    /// Most embeddings the node's index holds; beyond it, those expiring soonest go.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_threshold() -> f32 {
    0.9
}

fn default_semantic_timeout_ms() -> u64 {
    2000
}

fn default_max_entries() -> usize {
    100_000
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ScopeName {
    #[default]
    Key,
    Team,
    Global,
}

fn yes() -> bool {
    true
}

fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_max_entry_bytes() -> usize {
    1024 * 1024
}

fn default_ttl_secs() -> u64 {
    3600
}

fn default_max_ttl_secs() -> u64 {
    86_400
}

fn default_fleet_lookup_timeout_ms() -> u64 {
    50
}

impl CacheConfig {
    /// The policy requests are judged by; `models` names are checked against `table`.
    pub fn policy(
        &self,
        table: &ModelTable,
        providers: &[&str],
    ) -> Result<CachePolicy, ConfigError> {
        if self.max_bytes == 0 {
            return Err(invalid("cache.max_bytes", "must be greater than 0"));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes as u64 > self.max_bytes {
            return Err(invalid(
                "cache.max_entry_bytes",
                "must be greater than 0 and at most cache.max_bytes",
            ));
        }
        if self.max_ttl_secs == 0 {
            return Err(invalid("cache.max_ttl_secs", "must be greater than 0"));
        }
        let mut rules = shards::names::NameMap::default();
        for (name, ttl) in &self.models {
            let known = match name.strip_suffix("/*") {
                Some(provider) => providers.contains(&provider),
                None => table.resolve(name).is_some(),
            };
            if !known {
                return Err(invalid(
                    format!("cache.models.{name}"),
                    "names no configured model or provider",
                ));
            }
            let secs = ttl.unwrap_or(self.ttl_secs);
            rules.insert(name.clone(), Duration::from_secs(secs));
        }
        Ok(CachePolicy {
            scope: match self.scope {
                ScopeName::Key => CacheScope::Key,
                ScopeName::Team => CacheScope::Team,
                ScopeName::Global => CacheScope::Global,
            },
            max_ttl: Duration::from_secs(self.max_ttl_secs),
            request_opt_in: self.request_opt_in,
            hits_count_requests: self.hits_count_requests,
            max_entry_bytes: self.max_entry_bytes,
            rules,
            fleet_lookup_timeout: Duration::from_millis(self.fleet_lookup_timeout_ms),
            semantic: self
                .semantic
                .as_ref()
                .map(|s| s.policy(table))
                .transpose()?,
        })
    }
}

impl SemanticConfig {
    fn policy(&self, table: &ModelTable) -> Result<SemanticPolicy, ConfigError> {
        if table.resolve(&self.embedding_model).is_none() {
            return Err(invalid(
                "cache.semantic.embedding_model",
                "names no configured model",
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(invalid(
                "cache.semantic.threshold",
                "must be greater than 0 and at most 1",
            ));
        }
        if self.lookup_timeout_ms == 0 || self.max_entries == 0 || self.dimensions == Some(0) {
            return Err(invalid(
                "cache.semantic",
                "lookup_timeout_ms, max_entries and dimensions must be greater than 0",
            ));
        }
        Ok(SemanticPolicy {
            threshold: self.threshold,
            timeout: Duration::from_millis(self.lookup_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    const PROVIDERS: &str =
        "providers:\n  mock:\n    base_url: http://127.0.0.1:9/v1\n    models: [m]\n";

    #[test]
    fn a_cache_section_becomes_the_snapshot_policy() {
        let text = format!(
            "cache:\n  scope: team\n  models: {{mock/m: 60, 'mock/*': ~}}\n  max_ttl_secs: 30\n{PROVIDERS}"
        );
        let s = parse(&text, "t").unwrap().snapshot().unwrap();
        let policy = s.cache.expect("a policy");
        assert_eq!(policy.rules["mock/m"].as_secs(), 60);
        assert_eq!(policy.rules["mock/*"].as_secs(), 3600);
        assert_eq!(policy.max_ttl.as_secs(), 30);
        assert!(parse(PROVIDERS, "t")
            .unwrap()
            .snapshot()
            .unwrap()
            .cache
            .is_none());
    }

    #[test]
    fn unknown_models_and_bad_sizes_are_named() {
        for (section, field) in [
            ("models: {nope: 1}", "cache.models.nope"),
            ("models: {'other/*': 1}", "cache.models.other/*"),
            ("max_bytes: 0", "cache.max_bytes"),
            ("max_entry_bytes: 0", "cache.max_entry_bytes"),
            (
                "semantic: {embedding_model: nope}",
                "cache.semantic.embedding_model",
            ),
            (
                "semantic: {embedding_model: mock/m, threshold: 1.5}",
                "cache.semantic.threshold",
            ),
            (
                "semantic: {embedding_model: mock/m, max_entries: 0}",
                "cache.semantic",
            ),
        ] {
            let text = format!("cache: {{{section}}}\n{PROVIDERS}");
            let e = parse(&text, "t")
                .unwrap()
                .snapshot()
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
