//! The model catalog: which models each provider offers, as the coordinator last learned them
//! (a provider's configured `models` list, else its own catalog fetched by the coordinator,
//! never on the request path). The coordinator publishes a new [`Catalog`] into
//! `NodeState::catalog` (an `ArcSwap`); a shard loads it only to answer `GET /v1/models`,
//! `/v1/models/{id}` and their Anthropic twins, so the listing costs nothing on the proxy path.
//!
//! [`for_snapshot`] joins the catalog with the routing snapshot's aliases and filters both by what
//! the caller's virtual key may use (the same rule as chat: `governance::request::allows`);
//! [`render`] writes the listing in OpenAI's or Anthropic's shape.

pub mod render;

use vocab::NanoUsd;

use crate::governance::request::allows;
use crate::governance::KeyPolicy;
use crate::snapshot::Snapshot;

/// Every provider's models, in the order providers are configured.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Catalog {
    pub providers: Vec<ProviderModels>,
}

/// One provider's models.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProviderModels {
    pub provider: String,
    pub models: Vec<CatalogModel>,
}

/// One model as its provider names it (without the `provider/` prefix).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CatalogModel {
    pub name: String,
    /// The provider's display name for it, when its catalog gives one.
    pub display_name: Option<String>,
    /// Unix seconds the provider says it was created; 0 when unknown.
    pub created: u64,
    /// List price, when the pricing catalog knows the model.
    pub pricing: Option<Pricing>,
}

/// What a million tokens cost, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pricing {
    pub input_per_mtok: NanoUsd,
    pub output_per_mtok: NanoUsd,
}

/// One entry of a models listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<'a> {
    /// `provider/model`, or an alias.
    pub id: String,
    /// The provider's name; `ringgate` for an alias.
    pub owned_by: &'a str,
    pub display_name: &'a str,
    pub created: u64,
    pub pricing: Option<Pricing>,
}

/// Who owns an alias in a listing: the gateway, not one provider.
const ALIAS_OWNER: &str = "ringgate";

/// An alias and the model it resolves to.
#[derive(Debug, Clone, Copy)]
pub struct AliasTarget<'a> {
    pub alias: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
}

/// [`listing`] for the routing snapshot a shard serves from: its providers and aliases.
pub fn for_snapshot<'a>(
    catalog: &'a Catalog,
    snapshot: &'a Snapshot,
    key: Option<&KeyPolicy>,
) -> Vec<Listed<'a>> {
    let providers: Vec<&str> = snapshot.providers.iter().map(|p| p.name.as_str()).collect();
    let aliases: Vec<AliasTarget<'a>> = snapshot
        .aliases
        .iter()
        .filter_map(|alias| {
            let target = snapshot.models.resolve(alias)?;
            Some(AliasTarget {
                alias,
                provider: &snapshot.providers[target.provider].name,
                model: target.model,
            })
        })
        .collect();
    listing(catalog, &providers, &aliases, key)
}

/// The models `key` may use: every catalog model of a provider in `providers` as
/// `provider/model`, then the aliases (priced like the model they resolve to). `None`: no key
/// (governance off or keys optional), everything is listed.
pub fn listing<'a>(
    catalog: &'a Catalog,
    providers: &[&str],
    aliases: &[AliasTarget<'a>],
    key: Option<&KeyPolicy>,
) -> Vec<Listed<'a>> {
    let permitted = |provider: &str, model: &str, requested: &str| {
        key.is_none_or(|k| allows(k, provider, model, requested))
    };
    let mut out = Vec::new();
    // A provider removed through the admin API leaves the catalog at its next publication;
    // until then the routing snapshot, which the request path follows, decides.
    let live = catalog
        .providers
        .iter()
        .filter(|p| providers.contains(&p.provider.as_str()));
    for p in live {
        for m in &p.models {
            let id = format!("{}/{}", p.provider, m.name);
            if permitted(&p.provider, &m.name, &id) {
                out.push(Listed {
                    owned_by: &p.provider,
                    display_name: m.display_name.as_deref().unwrap_or(&m.name),
                    created: m.created,
                    pricing: m.pricing,
                    id,
                });
            }
        }
    }
    for a in aliases {
        if permitted(a.provider, a.model, a.alias) {
            out.push(Listed {
                id: a.alias.to_owned(),
                owned_by: ALIAS_OWNER,
                display_name: a.alias,
                created: 0,
                pricing: catalog.model(a.provider, a.model).and_then(|m| m.pricing),
            });
        }
    }
    out
}

impl Catalog {
    /// `provider`'s entry for `model`, if the catalog lists it.
    pub fn model(&self, provider: &str, model: &str) -> Option<&CatalogModel> {
        self.providers
            .iter()
            .find(|p| p.provider == provider)?
            .models
            .iter()
            .find(|m| m.name == model)
    }
}

#[cfg(test)]
mod tests;
