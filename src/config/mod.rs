//! The YAML configuration, in four parts: the serde [`schema`] (`deny_unknown_fields`,
//! defaults from named `default_*` functions), then validation and conversion into what the
//! node runs — [`provider`] building (one provider's URL, TLS, keys and policies),
//! [`snapshot`] assembly (the shards' routing [`shards::snapshot::Snapshot`]) and the
//! [`plan`]s (the shards' [`shards::runtime::ShardPlan`], the coordinator's
//! [`plan::GovernancePlan`]), whose invariants hold by construction. Errors name the field at
//! fault. Every field is documented in docs/configuration.md.
//!
//! This module knows nothing of the coordinator: the coordinator reads what it needs from
//! here (plans, [`RequestLogs`], providers stored through the admin API), never the reverse.

mod cache;
mod catalog;
mod observability;
mod plan;
mod provider;
mod schema;
mod snapshot;

use std::path::Path;
use std::time::Duration;

pub use cache::CacheConfig;
pub use catalog::{CatalogConfig, CatalogPlan};
pub use observability::{LogFormat, ObservabilityConfig, Traces};
pub use plan::{host_name, ClusterPlan};
pub use provider::stored_provider;
pub use schema::*;
pub use snapshot::Slots;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: field `{field}`: {message}")]
    Parse {
        path: String,
        field: String,
        message: String,
    },
    #[error("field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads and parses a config file; errors carry the path of the offending field.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
        path: origin.into(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Resolves an `env.NAME` reference. Secrets may only come from the environment, so a
/// literal never sits in a file that gets committed or logged.
fn env_reference(field: &str, value: &str) -> Result<String, ConfigError> {
    let name = value
        .strip_prefix("env.")
        .ok_or_else(|| invalid(field, "must be an environment reference `env.NAME`"))?;
    std::env::var(name)
        .map_err(|_| invalid(field, format!("environment variable {name} is not set")))
}

/// A value that may be literal or `env.NAME`: header values, and the database URL (which
/// carries a password when it names a PostgreSQL server).
fn literal_or_env(field: &str, value: &str) -> Result<String, ConfigError> {
    if value.starts_with("env.") {
        env_reference(field, value)
    } else {
        Ok(value.to_owned())
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named() {
        let text = "providers:\n  mock:\n    base_ur: http://x/v1\n";
        let e = parse(text, "t").unwrap_err().to_string();
        assert!(e.contains("providers.mock"), "{e}");
        assert!(e.contains("base_ur"), "{e}");
    }
}
