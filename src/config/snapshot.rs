//! Assembling the shards' routing snapshot from the configuration: the providers (from the
//! file, and those stored through the admin API), the model table with aliases and balanced
//! groups, fallbacks and request limits — and the stable per-shard slot of every provider name.

use shards::route::ModelTable;
use shards::snapshot::{Limits, Snapshot};

use super::provider::build_provider;
use super::{invalid, ms, BalanceName, Config, ConfigError, ProviderConfig};

/// Stable per-shard state slots for provider names (see `shards::snapshot::Provider::slot`).
#[derive(Debug, Default)]
pub struct Slots(std::collections::HashMap<String, usize>);

impl Slots {
    fn of(&mut self, name: &str) -> Result<usize, ConfigError> {
        let next = self.0.len();
        let slot = *self.0.entry(name.to_owned()).or_insert(next);
        if slot >= shards::snapshot::MAX_PROVIDERS {
            return Err(invalid(
                format!("providers.{name}"),
                format!(
                    "a node can know at most {} providers",
                    shards::snapshot::MAX_PROVIDERS
                ),
            ));
        }
        Ok(slot)
    }
}

impl Config {
    /// Validates the configuration and builds what the shards serve from.
    pub fn snapshot(&self) -> Result<Snapshot, ConfigError> {
        self.snapshot_with(&[], &mut Slots::default())
    }

    /// The snapshot with `stored` providers (from the admin API) added to the file's; a stored
    /// provider cannot replace one defined in the file.
    pub fn snapshot_with(
        &self,
        stored: &[(String, ProviderConfig)],
        slots: &mut Slots,
    ) -> Result<Snapshot, ConfigError> {
        if self.providers.is_empty() {
            return Err(invalid("providers", "at least one provider is required"));
        }
        let l = &self.limits;
        if l.max_header_bytes < 1024 {
            return Err(invalid("limits.max_header_bytes", "must be at least 1024"));
        }
        for (f, v) in [
            ("limits.header_read_timeout_ms", l.header_read_timeout_ms),
            ("limits.body_read_timeout_ms", l.body_read_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            (
                "limits.disconnect_check_interval_ms",
                l.disconnect_check_interval_ms,
            ),
        ] {
            if v == 0 {
                return Err(invalid(f, "must be greater than 0"));
            }
        }
        let mut providers = Vec::with_capacity(self.providers.len());
        for (name, p) in &self.providers {
            if name.is_empty() || name.contains('/') {
                return Err(invalid(
                    format!("providers.{name}"),
                    "a provider name must be non-empty and contain no `/`",
                ));
            }
            providers.push(build_provider(name, p, slots.of(name)?)?);
        }
        for (name, p) in stored {
            if self.providers.contains_key(name) || name.is_empty() || name.contains('/') {
                tracing::warn!(provider = %name, "a provider from the admin API may not replace one from the config file; skipped");
                continue;
            }
            match build_provider(name, p, slots.of(name)?) {
                Ok(provider) => providers.push(provider),
                Err(e) => {
                    tracing::warn!(provider = %name, error = %e, "provider from the admin API skipped")
                }
            }
        }
        let id_of = |name: &str| providers.iter().position(|p| p.name == name);
        let default = match &self.default_provider {
            Some(name) => Some(id_of(name).ok_or_else(|| {
                invalid("default_provider", format!("no provider named `{name}`"))
            })?),
            None => None,
        };
        let mut table = ModelTable::new(default);
        for (id, p) in providers.iter().enumerate() {
            table.add_provider(&p.name, id, &p.models);
        }
        for (alias, config) in &self.aliases {
            let field = format!("aliases.{alias}");
            let members = config.members();
            if members.is_empty() {
                return Err(invalid(&field, "must name at least one `provider/model`"));
            }
            let mut resolved = Vec::with_capacity(members.len());
            for target in members {
                let (provider, model) = target
                    .split_once('/')
                    .filter(|(_, m)| !m.is_empty())
                    .ok_or_else(|| {
                        invalid(&field, format!("`{target}` must name `provider/model`"))
                    })?;
                let id = id_of(provider)
                    .ok_or_else(|| invalid(&field, format!("no provider named `{provider}`")))?;
                resolved.push((id, model.to_owned()));
            }
            if resolved.len() == 1 {
                table.add_alias(alias, resolved[0].0, &resolved[0].1);
            } else {
                table.add_group(alias, resolved);
            }
        }
        let limits = Limits {
            max_header_bytes: l.max_header_bytes,
            max_body_bytes: l.max_body_bytes,
            header_read_timeout: ms(l.header_read_timeout_ms),
            body_read_timeout: ms(l.body_read_timeout_ms),
            idle_timeout: ms(l.idle_timeout_ms),
            disconnect_check_interval: ms(l.disconnect_check_interval_ms),
        };
        let mut fallbacks = shards::names::NameMap::default();
        for (model, list) in &self.fallbacks {
            if table.resolve(model).is_none() {
                return Err(invalid(
                    format!("fallbacks.{model}"),
                    "names no configured model",
                ));
            }
            for (i, fallback) in list.iter().enumerate() {
                if table.resolve(fallback).is_none() {
                    return Err(invalid(
                        format!("fallbacks.{model}[{i}]"),
                        format!("`{fallback}` names no configured model"),
                    ));
                }
            }
            fallbacks.insert(model.clone(), list.clone());
        }
        let aliases: Vec<String> = self.aliases.keys().cloned().collect();
        let balance = match self.routing.balance {
            BalanceName::Random => shards::snapshot::Balance::Random,
            BalanceName::Latency => shards::snapshot::Balance::Latency,
        };
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        let cache = match &self.cache {
            Some(c) => Some(c.policy(&table, &names)?),
            None => None,
        };
        Ok(Snapshot::new(limits, providers, table, aliases, fallbacks, balance).with_cache(cache))
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    const MINIMAL: &str =
        "providers:\n  mock:\n    base_url: http://127.0.0.1:9/v1\n    models: [m]\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL, "t").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.pin_cores);
        let s = c.snapshot().unwrap();
        assert_eq!(s.providers[0].base_path, "/v1");
        assert_eq!(s.providers[0].host_header, "127.0.0.1:9");
        assert!(c.shard_plan().unwrap().tls.is_none());
    }

    #[test]
    fn bad_references_are_named() {
        let c = parse(&format!("default_provider: nope\n{MINIMAL}"), "t").unwrap();
        assert!(c
            .snapshot()
            .unwrap_err()
            .to_string()
            .contains("default_provider"));
        let c = parse(&format!("aliases: {{fast: other/m}}\n{MINIMAL}"), "t").unwrap();
        assert!(c
            .snapshot()
            .unwrap_err()
            .to_string()
            .contains("aliases.fast"));
        let text = "providers:\n  p:\n    base_url: http://127.0.0.1/v1\n    api_key: sk-literal\n";
        let e = parse(text, "t")
            .unwrap()
            .snapshot()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("providers.p.api_key") && !e.contains("sk-literal"),
            "{e}"
        );
    }
}
