//! The model catalog, kept by the coordinator: for every provider in the routing snapshot,
//! its configured `models` list, or else its own catalog fetched from the provider
//! ([`fetch`], [`protocol`]) at start and every `catalog.refresh_secs`. A failed fetch keeps
//! the last good list. Each change is published to the shards as a new
//! [`shards::catalog::Catalog`] in `NodeState::catalog`, priced from the pricing catalog;
//! the shards answer the models routes from it without asking anyone.
//!
//! The task also looks at the routing snapshot every [`SNAPSHOT_CHECK`]: a provider added
//! through the admin API is fetched then, not at the next refresh.

mod fetch;
pub mod metrics;
mod protocol;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shards::catalog::{Catalog, CatalogModel, Pricing, ProviderModels};
use shards::governance::Prices;
use shards::snapshot::{NodeState, Provider, Snapshot};
use tokio::time::Instant;

use crate::config::CatalogPlan;
use fetch::Fetched;
use metrics::{CatalogMetrics, Outcome};

/// How often the task looks for providers added or removed at run time.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(1);

/// What the catalog task runs with.
pub struct CatalogStart {
    pub node: Arc<NodeState>,
    pub plan: CatalogPlan,
    /// List prices shown beside each model.
    pub prices: Prices,
    pub metrics: Arc<CatalogMetrics>,
}

/// The last good fetched list per provider name.
type FetchedLists = HashMap<String, Vec<CatalogModel>>;

impl CatalogStart {
    /// Publishes the configured lists, before the shards start and before any fetch, so
    /// that those models are listed from the first request.
    pub fn publish_configured(&self) {
        self.publish(&self.node.snapshot.load(), &FetchedLists::new());
    }

    /// Runs for the node's lifetime: fetches, refreshes, publishes.
    pub async fn run(self) {
        let mut lists = FetchedLists::new();
        let mut seen: Option<Arc<Snapshot>> = None;
        let mut next_refresh = Some(Instant::now());
        loop {
            let snapshot = self.node.snapshot.load_full();
            let due = next_refresh.is_some_and(|at| Instant::now() >= at);
            if due || !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &snapshot)) {
                // On a snapshot change, only providers never fetched are asked.
                let wanted: Vec<&Provider> = snapshot
                    .providers
                    .iter()
                    .filter(|p| p.models.is_empty() && (due || !lists.contains_key(&p.name)))
                    .collect();
                self.fetch_all(&wanted, &mut lists).await;
                lists.retain(|name, _| snapshot.providers.iter().any(|p| &p.name == name));
                self.publish(&snapshot, &lists);
                seen = Some(snapshot);
            }
            if due {
                // Without a refresh interval the catalog is fetched once.
                next_refresh = self.plan.refresh.map(|every| Instant::now() + every);
            }
            tokio::time::sleep(SNAPSHOT_CHECK).await;
        }
    }

    /// Fetches the providers' catalogs concurrently; a success replaces the provider's list,
    /// a failure keeps it.
    async fn fetch_all(&self, providers: &[&Provider], lists: &mut FetchedLists) {
        let mut tasks = tokio::task::JoinSet::new();
        for p in providers {
            let (p, timeout) = ((*p).clone(), self.plan.timeout);
            tasks.spawn(async move {
                let fetched = fetch::catalog(&p, timeout).await;
                (p.name, fetched)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let Ok((name, fetched)) = done else { continue };
            let outcome = match fetched {
                Fetched::Models(models) => {
                    tracing::debug!(provider = %name, models = models.len(), "catalog fetched");
                    lists.insert(name.clone(), models);
                    Outcome::Ok
                }
                Fetched::Unsupported => {
                    tracing::debug!(provider = %name, "the provider has no listable catalog; configure `models` to list some");
                    lists.insert(name.clone(), Vec::new());
                    Outcome::Unsupported
                }
                Fetched::Failed(error) => {
                    tracing::warn!(provider = %name, %error, "catalog fetch failed; the last good list stays");
                    Outcome::Error
                }
            };
            self.metrics.refreshed(&name, outcome);
        }
    }

    fn publish(&self, snapshot: &Snapshot, lists: &FetchedLists) {
        let catalog = build(snapshot, lists, &self.prices);
        self.metrics.set_models(
            catalog
                .providers
                .iter()
                .map(|p| (p.provider.clone(), p.models.len())),
        );
        if **self.node.catalog.load() != catalog {
            self.node.catalog.store(Arc::new(catalog));
        }
    }
}

/// The catalog of `snapshot`'s providers: configured lists, else the fetched ones, priced.
fn build(snapshot: &Snapshot, lists: &FetchedLists, prices: &Prices) -> Catalog {
    let providers = snapshot.providers.iter().map(|p| {
        let models = if p.models.is_empty() {
            lists.get(&p.name).cloned().unwrap_or_default()
        } else {
            p.models
                .iter()
                .map(|name| CatalogModel {
                    name: name.clone(),
                    ..CatalogModel::default()
                })
                .collect()
        };
        let models = models
            .into_iter()
            .map(|m| CatalogModel {
                pricing: prices.lookup(&p.name, &m.name).map(|price| Pricing {
                    input_per_mtok: price.input_per_mtok,
                    output_per_mtok: price.output_per_mtok,
                }),
                ..m
            })
            .collect();
        ProviderModels {
            provider: p.name.clone(),
            models,
        }
    });
    Catalog {
        providers: providers.collect(),
    }
}
