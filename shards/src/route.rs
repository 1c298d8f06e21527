//! Model resolution: turns the `model` a client asked for into a provider and the model name
//! that provider expects. Order: alias → `provider/model` prefix → default provider.
//! Built once per configuration snapshot; a lookup is one or two hash probes.

use std::collections::HashMap;

/// Index of a provider in the snapshot's provider list.
pub type ProviderId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub provider: ProviderId,
    /// The model name to send upstream.
    pub model: &'a str,
}

#[derive(Debug, Default, Clone)]
pub struct ModelTable {
    providers: HashMap<String, ProviderId>,
    aliases: HashMap<String, (ProviderId, String)>,
    default_provider: Option<ProviderId>,
}

impl ModelTable {
    pub fn new(default_provider: Option<ProviderId>) -> Self {
        Self {
            default_provider,
            ..Self::default()
        }
    }

    pub fn add_provider(&mut self, name: &str, id: ProviderId) {
        self.providers.insert(name.to_owned(), id);
    }

    pub fn add_alias(&mut self, alias: &str, provider: ProviderId, model: &str) {
        self.aliases
            .insert(alias.to_owned(), (provider, model.to_owned()));
    }

    pub fn provider_id(&self, name: &str) -> Option<ProviderId> {
        self.providers.get(name).copied()
    }

    pub fn resolve<'a>(&'a self, requested: &'a str) -> Option<Target<'a>> {
        if let Some((provider, model)) = self.aliases.get(requested) {
            return Some(Target {
                provider: *provider,
                model,
            });
        }
        if let Some((prefix, model)) = requested.split_once('/') {
            if let Some(&provider) = self.providers.get(prefix) {
                if !model.is_empty() {
                    return Some(Target { provider, model });
                }
            }
        }
        self.default_provider.map(|provider| Target {
            provider,
            model: requested,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(default: Option<ProviderId>) -> ModelTable {
        let mut t = ModelTable::new(default);
        t.add_provider("openai", 0);
        t.add_provider("openrouter", 1);
        t.add_alias("fast", 0, "gpt-4o-mini");
        t
    }

    #[test]
    fn resolution_order() {
        let t = table(Some(1));
        assert_eq!(
            t.resolve("fast"),
            Some(Target {
                provider: 0,
                model: "gpt-4o-mini"
            })
        );
        assert_eq!(
            t.resolve("openai/gpt-4o"),
            Some(Target {
                provider: 0,
                model: "gpt-4o"
            })
        );
        assert_eq!(
            t.resolve("openrouter/anthropic/claude"),
            Some(Target {
                provider: 1,
                model: "anthropic/claude"
            })
        );
        assert_eq!(
            t.resolve("meta/llama"),
            Some(Target {
                provider: 1,
                model: "meta/llama"
            })
        );
    }

    #[test]
    fn unknown_without_default() {
        let t = table(None);
        assert_eq!(t.resolve("gpt-4o"), None);
        assert_eq!(t.resolve("nope/gpt-4o"), None);
        assert_eq!(t.resolve("openai/"), None);
    }
}
