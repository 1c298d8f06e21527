//! Gateway configurations as data: the standard test config, overlays, and the YAML file.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

/// The standard test config: two shards, one `mock` provider serving `gpt-4o-mini` and
/// `text-embedding-3-small`, alias `fast`, bare model names to `mock`.
pub fn basic_config(mock_base_url: &str) -> Value {
    json!({
        "shards": 2,
        "default_provider": "mock",
        "aliases": {"fast": "mock/gpt-4o-mini"},
        "providers": {
            "mock": {
                "base_url": mock_base_url,
                "models": ["gpt-4o-mini", "text-embedding-3-small"],
            },
        },
    })
}

/// `base` with `patch` laid over it: maps merge key by key, anything else replaces.
pub fn merged(mut base: Value, patch: Value) -> Value {
    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(base), Value::Object(patch)) => {
                for (key, value) in patch {
                    match base.get_mut(&key) {
                        Some(slot) => merge(slot, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (base, patch) => *base = patch,
        }
    }
    merge(&mut base, patch);
    base
}

/// Writes `config` as a YAML file for ringgate; returns the YAML.
pub fn write_config(path: &Path, config: &Value) -> String {
    let yaml = serde_yaml::to_string(config).expect("a config serializes to YAML");
    fs::write(path, &yaml).expect("write config");
    yaml
}
