//! The coordinator's governance work: load keys, teams and customers from the store, build
//! the shards' [`GovSnapshot`] (with one [`Limit`] per limit, kept across reloads so leases
//! survive), publish it, answer the shards' lease requests on the lease desk thread, and
//! persist usage and request logs in batches every flush interval.
//!
//! Usage reaches the store at most one flush interval late: that is all a `kill -9` can lose.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shards::governance::{GovEvent, GovSnapshot, Governance, KeyPolicy, KeyTable, Limit, Prices};
use store::{now_unix, Store};
use tokio::sync::Notify;
use vocab::{BudgetPeriod, EntityKind, EntityRef, LimitKind, Window};

use super::fleet::{counter_name, Fleet};
use super::leases::{unix_now, LeaseDesk};
use super::metrics::usage::UsageMetrics;
use crate::config::RequestLogs;

/// What the coordinator needs to rebuild the data plane's snapshot when providers are
/// added, changed or removed through the admin API.
pub struct ProviderReload {
    pub config: Arc<crate::config::Config>,
    pub slots: Mutex<crate::config::Slots>,
    pub node: Arc<shards::snapshot::NodeState>,
    /// The stored providers the current snapshot was built from.
    pub last: Mutex<Option<Vec<StoredIdentity>>>,
}

/// What makes a stored provider different from before: name, kind, URL, config, secret.
pub type StoredIdentity = (String, String, String, String, Option<String>);

impl ProviderReload {
    /// Publishes a new snapshot if the stored providers changed.
    fn apply(&self, stored: &[store::Provider]) {
        let key: Vec<_> = stored
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.kind.clone(),
                    p.base_url.clone(),
                    p.config_json.clone(),
                    p.secret.clone(),
                )
            })
            .collect();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&key) {
            return;
        }
        let mut configs = Vec::with_capacity(stored.len());
        for p in stored {
            match crate::config::stored_provider(p) {
                Ok(c) => configs.push((p.name.clone(), c)),
                Err(e) => {
                    tracing::warn!(provider = %p.name, error = %e, "provider from the admin API skipped")
                }
            }
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match self.config.snapshot_with(&configs, &mut slots) {
            Ok(snapshot) => {
                self.node.snapshot.store(Arc::new(snapshot));
                *last = Some(key);
                tracing::info!(stored = stored.len(), "provider snapshot published");
            }
            Err(e) => {
                tracing::error!(error = %e, "provider change rejected; keeping the previous snapshot")
            }
        }
    }
}

/// A team's customer and its limits followed by its customer's.
pub(super) type TeamLimits = (Option<String>, Vec<Arc<Limit>>);

/// One reload's reading of the store: its time, the limits still in use, budget resets.
pub(super) struct Reading {
    pub(super) now: i64,
    /// Every limit the new snapshot holds, by identity and value.
    pub(super) live: HashSet<(EntityRef, LimitKind, u64)>,
    pub(super) resets: HashMap<EntityRef, u64>,
}

/// How the coordinator runs governance.
pub struct GovSettings {
    pub require_key: bool,
    pub prices: Prices,
    pub flush_interval: Duration,
    pub request_logs: RequestLogs,
    /// Set with PostgreSQL: node shares of every limit come from the fleet's counters.
    pub cluster: Option<crate::config::ClusterPlan>,
    /// Where usage waits on local disk until the store has it.
    pub spool_dir: std::path::PathBuf,
    /// Request logs older than this are purged (`None`: kept forever).
    pub request_log_retention: Option<Duration>,
    /// Which labels the token and spend metrics carry.
    pub usage_labels: super::metrics::usage::Labelling,
}

pub(super) struct Registered {
    pub(super) limit: Arc<Limit>,
    /// Budget resets seen when the limit was made; a new reset makes a new limit.
    resets: u64,
}

/// Governance state owned by the coordinator.
pub struct GovRuntime {
    pub gov: Arc<Governance>,
    pub desk: Arc<LeaseDesk>,
    pub(super) store: Store,
    pub(super) settings: GovSettings,
    shards: usize,
    pub(super) registry: Mutex<HashMap<(EntityRef, LimitKind, u64), Registered>>,
    /// Budget period per entity, for usage deltas.
    pub(super) periods: Mutex<HashMap<(EntityKind, String), BudgetPeriod>>,
    /// Random per process: part of usage batch and request log ids.
    pub(super) process_token: String,
    batch_seq: AtomicU64,
    /// Fleet: this node's membership, and the limits of each entity (with their budget
    /// generation) whose shares flushed usage settles.
    pub fleet: Option<Arc<Fleet>>,
    pub(super) shared_limits: Mutex<HashMap<EntityRef, Vec<(LimitKind, u64)>>>,
    /// Each team's customer and limits (its own, then its customer's), and each customer's
    /// limits, as last loaded: what a change applied alone needs without reading every entity.
    pub(super) teams: Mutex<HashMap<String, TeamLimits>>,
    pub(super) customers: Mutex<HashMap<String, Vec<Arc<Limit>>>>,
    pub changed: Arc<Notify>,
    /// Tokens and spend by provider, model, key and team, for `/metrics`.
    pub usage_metrics: Arc<UsageMetrics>,
    pub(super) log_seq: AtomicU64,
    providers: ProviderReload,
}

fn hash_bytes(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl GovRuntime {
    pub fn new(
        gov: Arc<Governance>,
        store: Store,
        settings: GovSettings,
        shards: usize,
        providers: ProviderReload,
        fleet: Option<Arc<Fleet>>,
    ) -> Self {
        let desk = match &fleet {
            Some(fleet) => LeaseDesk::clustered(Box::new(fleet.clone())),
            None => LeaseDesk::default(),
        };
        Self {
            gov,
            desk: Arc::new(desk),
            store,
            usage_metrics: Arc::new(UsageMetrics::new(settings.usage_labels)),
            settings,
            shards,
            registry: Mutex::new(HashMap::new()),
            periods: Mutex::new(HashMap::new()),
            fleet,
            shared_limits: Mutex::new(HashMap::new()),
            teams: Mutex::new(HashMap::new()),
            customers: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
            log_seq: AtomicU64::new(0),
            process_token: process_token(),
            batch_seq: AtomicU64::new(0),
            providers,
        }
    }

    /// The limits of one entity, reusing those already registered (their leases carry on).
    pub(super) async fn limits_of(
        &self,
        entity: &EntityRef,
        limits: &store::Limits,
        budget: Option<store::Budget>,
        reading: &mut Reading,
    ) -> store::Result<Vec<Arc<Limit>>> {
        let now = reading.now;
        let mut wanted = Vec::new();
        let windows = [
            (limits.rpm, LimitKind::Requests(Window::Minute)),
            (limits.rph, LimitKind::Requests(Window::Hour)),
            (limits.rpd, LimitKind::Requests(Window::Day)),
            (limits.tpm, LimitKind::Tokens(Window::Minute)),
            (limits.tph, LimitKind::Tokens(Window::Hour)),
            (limits.tpd, LimitKind::Tokens(Window::Day)),
        ];
        for (value, kind) in windows {
            if let Some(v) = value {
                wanted.push((kind, v));
            }
        }
        if let Some(b) = budget {
            wanted.push((LimitKind::Budget(b.period), b.limit_nanos.nanos()));
        }
        let mut out = Vec::with_capacity(wanted.len());
        let mut shared = Vec::with_capacity(wanted.len());
        for (kind, value) in wanted {
            let resets = if kind.is_budget() {
                reading.resets.get(entity).copied().unwrap_or(0)
            } else {
                0
            };
            let key = (entity.clone(), kind, value);
            let existing = {
                let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
                registry
                    .get(&key)
                    .filter(|r| r.resets == resets)
                    .map(|r| r.limit.clone())
            };
            let limit = match existing {
                Some(limit) => limit,
                None => {
                    let limit = Arc::new(
                        Limit::new(entity.clone(), kind, value, self.shards).of_generation(resets),
                    );
                    let base = if kind.is_budget() {
                        self.store.budget_spent(entity, now).await?.nanos()
                    } else {
                        0
                    };
                    if let (Some(_), true) = (&self.fleet, kind.is_budget()) {
                        // The fleet's counter starts from what was spent before it existed.
                        let name = counter_name(kind, resets);
                        self.store
                            .seed_counter(entity, &name, kind.start(now), value, base)
                            .await?;
                    }
                    let unused = self.desk.register(&limit, base, resets, now);
                    if let (Some(fleet), Some(unused)) = (&self.fleet, unused) {
                        fleet.give_back(vec![unused]).await;
                    }
                    let old = self
                        .registry
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(
                            key.clone(),
                            Registered {
                                limit: limit.clone(),
                                resets,
                            },
                        );
                    if let Some(old) = old {
                        self.desk.forget(&old.limit);
                    }
                    limit
                }
            };
            shared.push((kind, resets));
            reading.live.insert(key);
            out.push(limit);
        }
        if self.fleet.is_some() {
            self.shared_limits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(entity.clone(), shared);
        }
        Ok(out)
    }

    /// A key as the shards see it: its own limits, then its team's and its customer's. `None`
    /// when its stored hash is malformed (it cannot be presented).
    pub(super) async fn key_policy(
        &self,
        k: &store::VirtualKey,
        teams: &HashMap<String, TeamLimits>,
        reading: &mut Reading,
    ) -> store::Result<Option<([u8; 32], Arc<KeyPolicy>)>> {
        let Some(hash) = hash_bytes(&k.key_hash) else {
            tracing::warn!(key = %k.id, "stored key hash is malformed; key skipped");
            return Ok(None);
        };
        let entity = EntityRef::key(&k.id);
        let mut limits = self
            .limits_of(&entity, &k.limits, k.budget, reading)
            .await?;
        let (customer_id, team_limits) = match k.team_id.as_ref().and_then(|t| teams.get(t)) {
            Some((customer, limits)) => (customer.clone(), limits.clone()),
            None => (None, Vec::new()),
        };
        limits.extend(team_limits);
        let policy = KeyPolicy {
            id: k.id.clone(),
            team_id: k.team_id.clone(),
            customer_id,
            allowed_providers: k.allowed_providers.clone(),
            allowed_models: k.allowed_models.clone(),
            expires_at: k.expires_at.map(|t| t.max(0) as u64),
            active: k.active,
            limits,
            cache_ttl_secs: k.cache_ttl_secs.map(|t| t.max(0).unsigned_abs()),
        };
        Ok(Some((hash, Arc::new(policy))))
    }

    /// Reads every entity from the store and publishes a new snapshot.
    pub async fn reload(&self) -> store::Result<()> {
        let read_at_ms = unix_ms();
        let now = now_unix();
        self.providers.apply(&self.store.list_providers().await?);
        let customers = self.store.list_customers().await?;
        let teams = self.store.list_teams().await?;
        let keys = self.store.list_keys().await?;
        let mut reading = Reading {
            now,
            live: HashSet::new(),
            resets: self.store.budget_reset_counts().await?,
        };
        let mut periods = HashMap::new();
        let mut customer_limits = HashMap::new();
        for c in &customers {
            let entity = EntityRef::customer(&c.id);
            customer_limits.insert(
                c.id.clone(),
                self.limits_of(&entity, &c.limits, c.budget, &mut reading)
                    .await?,
            );
            if let Some(b) = c.budget {
                periods.insert((EntityKind::Customer, c.id.clone()), b.period);
            }
        }
        let mut team_info = HashMap::new();
        for t in &teams {
            let entity = EntityRef::team(&t.id);
            let mut limits = self
                .limits_of(&entity, &t.limits, t.budget, &mut reading)
                .await?;
            if let Some(c) = t.customer_id.as_ref().and_then(|c| customer_limits.get(c)) {
                limits.extend(c.iter().cloned());
            }
            team_info.insert(t.id.clone(), (t.customer_id.clone(), limits));
            if let Some(b) = t.budget {
                periods.insert((EntityKind::Team, t.id.clone()), b.period);
            }
        }
        let mut table = KeyTable::with_capacity_and_hasher(keys.len(), Default::default());
        for k in &keys {
            if let Some((hash, policy)) = self.key_policy(k, &team_info, &mut reading).await? {
                table.insert(hash, policy);
            }
            if let Some(b) = k.budget {
                periods.insert((EntityKind::Key, k.id.clone()), b.period);
            }
        }
        *self.teams.lock().unwrap_or_else(|e| e.into_inner()) = team_info;
        *self.customers.lock().unwrap_or_else(|e| e.into_inner()) = customer_limits;
        *self.periods.lock().unwrap_or_else(|e| e.into_inner()) = periods;
        self.gov.snapshot.store(Arc::new(GovSnapshot {
            require_key: self.settings.require_key,
            keys: table,
            prices: self.settings.prices.clone(),
            read_at_ms,
        }));
        // Limits of deleted entities or changed values are dropped, after the snapshot that no
        // longer holds them is out: the desk keeps answering shards still on the old one.
        {
            let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            let entities: HashSet<&EntityRef> = reading.live.iter().map(|(e, _, _)| e).collect();
            self.shared_limits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|e, _| entities.contains(e));
            registry.retain(|key, r| {
                let keep = reading.live.contains(key);
                if !keep {
                    self.desk.forget(&r.limit);
                }
                keep
            });
        }
        tracing::debug!(
            keys = keys.len(),
            teams = teams.len(),
            customers = customers.len(),
            "governance snapshot published"
        );
        Ok(())
    }

    /// The lease desk: answers the shards' refills and debts until the queue closes.
    pub fn run_desk(&self, events: &crossbeam_channel::Receiver<GovEvent>) {
        while let Ok(event) = events.recv() {
            match event {
                GovEvent::Refill { limit, shard, want } => {
                    self.desk.refill(&limit, shard, want, unix_now())
                }
                GovEvent::Debt { limit, units } => self.desk.debt(&limit, units, unix_now()),
            }
        }
    }

    /// The budget period `kind` `id`'s usage is summed over (`Never`: no budget).
    pub(super) fn budget_period(&self, kind: EntityKind, id: &str) -> BudgetPeriod {
        let periods = self.periods.lock().unwrap_or_else(|e| e.into_inner());
        periods
            .get(&(kind, id.to_owned()))
            .copied()
            .unwrap_or(BudgetPeriod::Never)
    }

    /// A batch id no other batch of any node or process has: this process's random token
    /// and a sequence number.
    pub(super) fn next_batch_id(&self) -> String {
        let seq = self.batch_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq:010}", self.process_token)
    }
}

/// 64 random bits for this process, in hex: with a sequence number, ids (usage batches,
/// request logs) that no other node or restart repeats.
fn process_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(unix_ms() as u128);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
