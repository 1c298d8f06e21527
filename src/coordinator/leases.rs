//! The lease desk: the coordinator's side of exact limits. For every limit it keeps what has
//! been handed out in the current window or period (`granted`), usage beyond grants
//! (`debt`), and, for budgets, what was already spent before this process started (`base`).
//! What is left is `value − base − granted − debt`; a shard asking for more gets a slice of
//! it, and when nothing is left, unused slices are reclaimed from the other shards first — so
//! the sum of slices never exceeds the limit and all of it stays reachable.
//!
//! It runs on its own thread, blocking on the shards' event queue: grants are memory
//! operations and must not wait behind store I/O. In a cluster (PostgreSQL store) the node's
//! own share of each limit is leased from a shared counter in the database — one atomic
//! statement per node lease, a few per window — and the desk hands slices of that share to
//! the shards, so a limit holds across every node. Unused node shares are not returned at the
//! end of a window (they lapse with it), which can only under-admit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shards::governance::Limit;
use vocab::LimitKind;

#[derive(Debug, Default, Clone, Copy)]
struct Pool {
    epoch: u32,
    granted: u64,
    debt: u64,
    /// Spent before this process (budgets), valid for `base_epoch`.
    base: u64,
    base_epoch: u32,
    /// Cluster mode: units of this window this node has leased from the shared counter.
    node_quota: u64,
    /// Budget resets seen when the limit was registered: a reset starts a new shared counter.
    generation: u64,
}

/// Where a node gets its share of a limit in a cluster: a shared counter that grants at most
/// what is left of the limit (`store::Store::acquire_lease`, one atomic statement).
pub trait ClusterLeases: Send + Sync {
    /// Leases up to `want` units of `limit` (counter `generation`) for the window starting at
    /// `window_start`.
    fn acquire(&self, limit: &Limit, generation: u64, window_start: i64, want: u64) -> u64;
}

/// Limit identity for the desk: the address of its `Arc` (held by the registry).
fn id(limit: &Arc<Limit>) -> usize {
    Arc::as_ptr(limit) as usize
}

#[derive(Default)]
pub struct LeaseDesk {
    pools: Mutex<HashMap<usize, Pool>>,
    /// Set in a cluster (PostgreSQL store): node shares come from the shared counter.
    cluster: Option<Box<dyn ClusterLeases>>,
}

impl LeaseDesk {
    /// A desk whose node shares come from `cluster` (the limit holds across nodes).
    pub fn clustered(cluster: Box<dyn ClusterLeases>) -> Self {
        Self {
            pools: Mutex::default(),
            cluster: Some(cluster),
        }
    }

    /// What the node may still hand its shards: in a cluster, what it leased from the shared
    /// counter; alone, what is left of the limit.
    fn left(&self, limit: &Limit, pool: &Pool) -> u64 {
        let budget = if self.cluster.is_some() {
            pool.node_quota
        } else {
            limit.value.saturating_sub(pool.base)
        };
        budget.saturating_sub(pool.granted + pool.debt)
    }

    /// Registers a limit; `base` is what its entity already spent in the current period and
    /// `generation` counts its budget resets.
    pub fn register(&self, limit: &Arc<Limit>, base: u64, generation: u64, now: i64) {
        let epoch = limit.kind.epoch(now);
        self.pools.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id(limit),
            Pool {
                epoch,
                base,
                base_epoch: epoch,
                generation,
                ..Pool::default()
            },
        );
    }

    pub fn forget(&self, limit: &Arc<Limit>) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id(limit));
    }

    fn with_pool<R>(&self, limit: &Arc<Limit>, now: i64, f: impl FnOnce(&mut Pool, u32) -> R) -> R {
        let epoch = limit.kind.epoch(now);
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pools.entry(id(limit)).or_default();
        if pool.epoch != epoch {
            *pool = Pool {
                epoch,
                base: if pool.base_epoch == epoch {
                    pool.base
                } else {
                    0
                },
                base_epoch: epoch,
                ..Pool::default()
            };
        }
        f(pool, epoch)
    }

    /// A shard's lease ran low: grant it a slice of what is left (at least `want` if there
    /// is that much), reclaiming other shards' unused slices when the pool is empty.
    pub fn refill(&self, limit: &Arc<Limit>, shard: usize, want: u64, now: i64) {
        // Reclaim idle slices first; in a cluster, see how much of the node's share is missing.
        let (epoch, generation, short) = self.with_pool(limit, now, |pool, epoch| {
            if self.left(limit, pool) < want {
                for (i, lease) in limit.leases.iter().enumerate() {
                    if i != shard {
                        pool.granted -= lease.reclaim(epoch).min(pool.granted);
                    }
                }
            }
            let short = want
                .max(limit.chunk())
                .saturating_sub(self.left(limit, pool));
            (epoch, pool.generation, short)
        });
        // The database call happens without the pools lock: the coordinator's runtime, which
        // drives the call, also takes that lock when it reloads.
        if let (Some(cluster), true) = (&self.cluster, short > 0) {
            let node_share = short.max(limit.chunk() * limit.leases.len() as u64);
            let leased = cluster.acquire(limit, generation, limit.kind.start(now), node_share);
            self.with_pool(limit, now, |pool, current| {
                if current == epoch && pool.generation == generation {
                    pool.node_quota += leased;
                }
            });
        }
        self.with_pool(limit, now, |pool, epoch| {
            let grant = want.max(limit.chunk()).min(self.left(limit, pool));
            if grant == 0 || grant < want {
                limit.leases[shard].refill_refused();
                return;
            }
            pool.granted += grant;
            limit.leases[shard].grant(epoch, grant);
        });
    }

    /// Usage beyond what a shard's lease held.
    pub fn debt(&self, limit: &Arc<Limit>, epoch: u32, units: u64, now: i64) {
        let generation = self.with_pool(limit, now, |pool, current| {
            (current == epoch).then(|| {
                pool.debt += units;
                pool.generation
            })
        });
        // In a cluster the overshoot is counted against the shared limit too (outside the lock).
        if let (Some(cluster), Some(generation)) = (&self.cluster, generation) {
            let leased = cluster.acquire(limit, generation, limit.kind.start(now), units);
            self.with_pool(limit, now, |pool, current| {
                if current == epoch && pool.generation == generation {
                    pool.node_quota += leased;
                }
            });
        }
    }

    /// What is left of a limit now.
    #[cfg(test)]
    pub fn remaining(&self, limit: &Arc<Limit>, now: i64) -> u64 {
        self.with_pool(limit, now, |pool, epoch| {
            let unused: u64 = limit.leases.iter().map(|l| l.available(epoch)).sum();
            self.left(limit, pool).saturating_add(unused)
        })
    }
}

/// Whether usage of this kind is money (budgets) rather than requests or tokens.
pub fn is_budget(kind: LimitKind) -> bool {
    matches!(kind, LimitKind::Budget(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vocab::{BudgetPeriod, EntityRef, Window};

    fn limit(value: u64, shards: usize) -> Arc<Limit> {
        Arc::new(Limit::new(
            EntityRef::key("k"),
            LimitKind::Requests(Window::Minute),
            value,
            shards,
        ))
    }

    #[test]
    fn grants_never_exceed_the_limit_and_reclaim_keeps_it_reachable() {
        let now = 1_000_000;
        let desk = LeaseDesk::default();
        let l = limit(10, 2);
        desk.register(&l, 0, 0, now);
        let epoch = l.kind.epoch(now);
        desk.refill(&l, 0, 1, now);
        desk.refill(&l, 1, 1, now);
        let a = l.leases[0].available(epoch);
        let b = l.leases[1].available(epoch);
        assert!(a + b <= 10);
        // Shard 1 uses everything it can, shard 0 holds its slice unused.
        while l.leases[1].take(epoch, 1) {
            if l.leases[1].available(epoch) == 0 {
                desk.refill(&l, 1, 1, now);
            }
        }
        assert_eq!(
            l.leases[0].available(epoch),
            0,
            "shard 0's idle slice was reclaimed"
        );
        assert_eq!(desk.remaining(&l, now), 0);
    }

    #[test]
    fn a_spent_daily_budget_comes_back_at_midnight_utc() {
        let budget = Arc::new(Limit::new(
            EntityRef::key("k"),
            LimitKind::Budget(BudgetPeriod::Daily),
            1_000,
            1,
        ));
        let desk = LeaseDesk::default();
        let evening = 1_709_250_000; // 2024-02-29T23:40Z
        desk.register(&budget, 1_000, 0, evening); // already spent today
        desk.refill(&budget, 0, 1, evening);
        assert_eq!(
            budget.leases[0].available(budget.kind.epoch(evening)),
            0,
            "spent: nothing to grant"
        );
        let morning = 1_709_251_260; // 2024-03-01T00:01Z
        desk.refill(&budget, 0, 1, morning);
        assert!(
            budget.leases[0].available(budget.kind.epoch(morning)) > 0,
            "a new day, a new budget"
        );
        assert_eq!(budget.kind.start(morning), 1_709_251_200);
    }

    #[test]
    fn base_spend_counts_and_a_new_window_starts_fresh() {
        let now = 1_000_000;
        let desk = LeaseDesk::default();
        let l = limit(10, 1);
        desk.register(&l, 8, 0, now);
        desk.refill(&l, 0, 1, now);
        assert_eq!(l.leases[0].available(l.kind.epoch(now)), 2);
        let later = now + 60;
        desk.refill(&l, 0, 1, later);
        assert!(l.leases[0].available(l.kind.epoch(later)) >= 1);
    }
}
