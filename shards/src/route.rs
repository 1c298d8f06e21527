//! Model resolution: turns the `model` a client asked for into a provider and the model name
//! that provider expects. Order: alias → `provider/model` prefix → default provider. A
//! provider that lists its models serves only those (aliases are the operator's explicit
//! choice and always resolve); one that lists none serves any name.
//! Built once per configuration snapshot; a lookup is two or three hash probes.

use crate::names::{NameMap, NameSet};

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
    providers: NameMap<ProviderId>,
    aliases: NameMap<(ProviderId, String)>,
    /// Aliases naming several equivalent targets, balanced per request.
    groups: NameMap<Vec<(ProviderId, String)>>,
    /// Per provider: the models it may serve, or `None` for any.
    allowed: Vec<Option<NameSet>>,
    default_provider: Option<ProviderId>,
}

impl ModelTable {
    pub fn new(default_provider: Option<ProviderId>) -> Self {
        Self {
            default_provider,
            ..Self::default()
        }
    }

    /// Registers provider `id` (ids are assigned in order from 0). An empty `models` list
    /// lets it serve any model name.
    pub fn add_provider(&mut self, name: &str, id: ProviderId, models: &[String]) {
        self.providers.insert(name.to_owned(), id);
        if self.allowed.len() <= id {
            self.allowed.resize(id + 1, None);
        }
        self.allowed[id] = (!models.is_empty()).then(|| models.iter().cloned().collect());
    }

    fn serves(&self, provider: ProviderId, model: &str) -> bool {
        match self.allowed.get(provider) {
            Some(Some(models)) => models.contains(model),
            _ => true,
        }
    }

    pub fn add_alias(&mut self, alias: &str, provider: ProviderId, model: &str) {
        self.aliases
            .insert(alias.to_owned(), (provider, model.to_owned()));
    }

    /// An alias for several equivalent targets; it also resolves (to its first member).
    pub fn add_group(&mut self, alias: &str, members: Vec<(ProviderId, String)>) {
        if let Some((provider, model)) = members.first() {
            self.add_alias(alias, *provider, model);
        }
        self.groups.insert(alias.to_owned(), members);
    }

    /// The members of a balanced alias.
    pub fn group<'a>(&'a self, requested: &str) -> Option<impl Iterator<Item = Target<'a>>> {
        self.groups.get(requested).map(|members| {
            members.iter().map(|(provider, model)| Target {
                provider: *provider,
                model,
            })
        })
    }

    /// The provider a model name without a known prefix goes to.
    pub fn default_provider(&self) -> Option<ProviderId> {
        self.default_provider
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
                return (!model.is_empty() && self.serves(provider, model))
                    .then_some(Target { provider, model });
            }
        }
        self.default_provider
            .filter(|&provider| self.serves(provider, requested))
            .map(|provider| Target {
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
        t.add_provider("openai", 0, &["gpt-4o".into(), "gpt-4o-mini".into()]);
        t.add_provider("openrouter", 1, &[]);
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
    fn groups_resolve_to_their_first_member() {
        let mut t = table(None);
        t.add_group("smart", vec![(1, "a".into()), (0, "gpt-4o".into())]);
        assert_eq!(
            t.resolve("smart"),
            Some(Target {
                provider: 1,
                model: "a"
            })
        );
        assert_eq!(t.group("smart").unwrap().count(), 2);
        assert!(t.group("fast").is_none());
    }

    #[test]
    fn unknown_without_default() {
        let t = table(None);
        assert_eq!(t.resolve("gpt-4o"), None);
        assert_eq!(t.resolve("nope/gpt-4o"), None);
        assert_eq!(t.resolve("openai/"), None);
        assert_eq!(t.resolve("openai/gpt-5"), None, "not in openai's list");
    }
}
