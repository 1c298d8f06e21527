//! The `catalog` section: how often the coordinator asks providers without a `models` list
//! for their catalogs, and how long one such request may take.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Seconds between two fetches of every provider's catalog; 0 fetches once, at start.
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// Longest one catalog request may take (connecting and every page included).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            refresh_secs: default_refresh_secs(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_refresh_secs() -> u64 {
    600
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// The catalog settings the coordinator runs with.
#[derive(Debug, Clone)]
pub struct CatalogPlan {
    /// `None`: fetched once, at start.
    pub refresh: Option<Duration>,
    pub timeout: Duration,
}

impl CatalogConfig {
    pub fn plan(&self) -> Result<CatalogPlan, ConfigError> {
        if self.timeout_ms == 0 {
            return Err(invalid("catalog.timeout_ms", "must be greater than 0"));
        }
        Ok(CatalogPlan {
            refresh: (self.refresh_secs > 0).then(|| Duration::from_secs(self.refresh_secs)),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}
