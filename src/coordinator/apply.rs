//! Changes applied alone: other nodes' writes to keys, teams and customers, each read again
//! from the store and folded into the snapshot in force, without reading every entity. A
//! team's change reaches its keys, a customer's its teams and their keys; the rest of the
//! snapshot is kept as it is. What a full reload would do for the changed entities, at the
//! cost of a few queries each (src/coordinator/watch.rs decides when this is enough).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use shards::governance::{GovSnapshot, KeyPolicy, KeyTable, Limit};
use store::now_unix;
use vocab::{EntityKind, EntityRef};

use super::governance::{GovRuntime, Reading, TeamLimits};

/// Budget periods of entities read again (`None`: no budget, or gone).
type Periods = Vec<((EntityKind, String), Option<store::Budget>)>;

/// Entities changed by other nodes, by kind and id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub keys: HashSet<String>,
    pub teams: HashSet<String>,
    pub customers: HashSet<String>,
}

impl Changes {
    fn touches(&self, entity: &EntityRef) -> bool {
        let ids = match entity.kind {
            EntityKind::Key => &self.keys,
            EntityKind::Team => &self.teams,
            EntityKind::Customer => &self.customers,
        };
        ids.contains(&entity.id)
    }

    fn entities(&self) -> impl Iterator<Item = EntityRef> + '_ {
        let keys = self.keys.iter().map(EntityRef::key);
        let teams = self.teams.iter().map(EntityRef::team);
        keys.chain(teams)
            .chain(self.customers.iter().map(EntityRef::customer))
    }
}

/// `limits` without those of other entities than `owner` (a key's or team's own, out of the
/// list that also holds its team's and customer's).
fn own(limits: &[Arc<Limit>], owner: &EntityRef) -> Vec<Arc<Limit>> {
    limits
        .iter()
        .filter(|l| &l.entity == owner)
        .cloned()
        .collect()
}

impl GovRuntime {
    /// Applies `changes` to the snapshot in force. The snapshot keeps its read time: it claims
    /// no other write.
    pub async fn apply_changes(&self, changes: &Changes) -> store::Result<()> {
        let mut reading = Reading {
            now: now_unix(),
            live: HashSet::new(),
            resets: HashMap::new(),
        };
        for entity in changes.entities() {
            let resets = self.store.budget_reset_count(&entity).await?;
            reading.resets.insert(entity, resets);
        }
        let mut periods = Vec::new();
        let mut customers = self
            .customers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for id in &changes.customers {
            let c = self.store.get_customer(id).await?;
            let entity = EntityRef::customer(id);
            let stored = c.as_ref().map(|c| (&c.limits, c.budget));
            match self
                .reread(entity, stored, &mut reading, &mut periods)
                .await?
            {
                Some(limits) => customers.insert(id.clone(), limits),
                None => customers.remove(id),
            };
        }
        let mut teams = self.teams.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for id in &changes.teams {
            let t = self.store.get_team(id).await?;
            let stored = t.as_ref().map(|t| (&t.limits, t.budget));
            let limits = self
                .reread(EntityRef::team(id), stored, &mut reading, &mut periods)
                .await?;
            match (t, limits) {
                (Some(t), Some(limits)) => teams.insert(id.clone(), (t.customer_id, limits)),
                _ => teams.remove(id),
            };
        }
        // Every team takes its own limits, then its customer's as they are now.
        let mut affected_teams: HashSet<String> = changes.teams.clone();
        for (id, (customer, limits)) in teams.iter_mut() {
            let changed = changes.teams.contains(id)
                || customer
                    .as_ref()
                    .is_some_and(|c| changes.customers.contains(c));
            if !changed {
                continue;
            }
            let mut combined = own(limits, &EntityRef::team(id));
            if let Some(c) = customer.as_ref().and_then(|c| customers.get(c)) {
                combined.extend(c.iter().cloned());
            }
            *limits = combined;
            affected_teams.insert(id.clone());
        }
        let current = self.gov.snapshot.load_full();
        let mut table = current.keys.clone();
        // Keys of changed teams take their team's limits as they are now.
        for policy in table.values_mut() {
            let team = policy
                .team_id
                .as_ref()
                .filter(|t| affected_teams.contains(*t));
            let Some(team) = team else { continue };
            let (customer_id, team_limits) = teams.get(team).cloned().unwrap_or_default();
            let mut limits = own(&policy.limits, &EntityRef::key(&policy.id));
            limits.extend(team_limits);
            *policy = Arc::new(KeyPolicy {
                customer_id,
                limits,
                ..KeyPolicy::clone(policy)
            });
        }
        // Changed keys are read again (gone, when deleted).
        table.retain(|_, policy| !changes.keys.contains(&policy.id));
        for id in &changes.keys {
            let stored = self.store.get_key(id).await?;
            let budget = stored.as_ref().and_then(|k| k.budget);
            periods.push(((EntityKind::Key, id.clone()), budget));
            let Some(k) = stored else { continue };
            if let Some((hash, policy)) = self.key_policy(&k, &teams, &mut reading).await? {
                table.insert(hash, policy);
            }
        }
        self.publish(&current, table, teams, customers, periods);
        self.forget_unused(changes, &reading);
        Ok(())
    }

    /// An entity read again (`stored`: its limits and budget, `None` when it is gone): its
    /// own limits, its budget period noted for the usage flush.
    async fn reread(
        &self,
        entity: EntityRef,
        stored: Option<(&store::Limits, Option<store::Budget>)>,
        reading: &mut Reading,
        periods: &mut Periods,
    ) -> store::Result<Option<Vec<Arc<Limit>>>> {
        periods.push((
            (entity.kind, entity.id.clone()),
            stored.and_then(|(_, b)| b),
        ));
        match stored {
            Some((limits, budget)) => Ok(Some(
                self.limits_of(&entity, limits, budget, reading).await?,
            )),
            None => Ok(None),
        }
    }

    fn publish(
        &self,
        current: &GovSnapshot,
        keys: KeyTable,
        teams: HashMap<String, TeamLimits>,
        customers: HashMap<String, Vec<Arc<Limit>>>,
        periods: Periods,
    ) {
        {
            let mut known = self.periods.lock().unwrap_or_else(|e| e.into_inner());
            for (entity, budget) in periods {
                match budget {
                    Some(b) => known.insert(entity, b.period),
                    None => known.remove(&entity),
                };
            }
        }
        *self.teams.lock().unwrap_or_else(|e| e.into_inner()) = teams;
        *self.customers.lock().unwrap_or_else(|e| e.into_inner()) = customers;
        self.gov.snapshot.store(Arc::new(GovSnapshot {
            require_key: current.require_key,
            keys,
            prices: current.prices.clone(),
            read_at_ms: current.read_at_ms,
        }));
    }

    /// The changed entities' limits no longer in force go, as in a full reload (after the
    /// snapshot without them is out: the desk keeps answering shards still on the old one).
    fn forget_unused(&self, changes: &Changes, reading: &Reading) {
        let still = |e: &EntityRef| reading.live.iter().any(|(l, _, _)| l == e);
        self.shared_limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e, _| !changes.touches(e) || still(e));
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, r| {
                let keep = !changes.touches(&key.0) || reading.live.contains(key);
                if !keep {
                    self.desk.forget(&r.limit);
                }
                keep
            });
    }
}
