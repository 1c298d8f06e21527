//! The lease desk: the coordinator's side of exact limits. For every limit it keeps what has
//! been handed out in the current window or period (`granted`), usage beyond grants
//! (`debt`), and, for budgets, what was already spent before this process started (`base`).
//! What is left is `value − base − granted − debt`; a shard asking for more gets a slice of
//! it, and when nothing is left, unused slices are reclaimed from the other shards first — so
//! the sum of slices never exceeds the limit and all of it stays reachable.
//!
//! It runs on its own thread, blocking on the shards' event queue: grants are memory
//! operations and must not wait behind store I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shards::governance::{Limit, LimitKind};

#[derive(Debug, Default, Clone, Copy)]
struct Pool {
    epoch: u32,
    granted: u64,
    debt: u64,
    /// Spent before this process (budgets), valid for `base_epoch`.
    base: u64,
    base_epoch: u32,
}

/// Limit identity for the desk: the address of its `Arc` (held by the registry).
fn id(limit: &Arc<Limit>) -> usize {
    Arc::as_ptr(limit) as usize
}

#[derive(Debug, Default)]
pub struct LeaseDesk {
    pools: Mutex<HashMap<usize, Pool>>,
}

impl LeaseDesk {
    /// Registers a limit; `base` is what its entity already spent in the current period.
    pub fn register(&self, limit: &Arc<Limit>, base: u64, now: u64) {
        let epoch = limit.kind.epoch(now);
        self.pools.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id(limit),
            Pool {
                epoch,
                base,
                base_epoch: epoch,
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

    fn with_pool<R>(&self, limit: &Arc<Limit>, now: u64, f: impl FnOnce(&mut Pool, u32) -> R) -> R {
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
    pub fn refill(&self, limit: &Arc<Limit>, shard: usize, want: u64, now: u64) {
        self.with_pool(limit, now, |pool, epoch| {
            let left = |p: &Pool| limit.value.saturating_sub(p.base + p.granted + p.debt);
            if left(pool) < want {
                for (i, lease) in limit.leases.iter().enumerate() {
                    if i != shard {
                        pool.granted -= lease.reclaim(epoch).min(pool.granted);
                    }
                }
            }
            let grant = want.max(limit.chunk()).min(left(pool));
            if grant == 0 || grant < want {
                limit.leases[shard].refill_refused();
                return;
            }
            pool.granted += grant;
            limit.leases[shard].grant(epoch, grant);
        });
    }

    /// Usage beyond what a shard's lease held.
    pub fn debt(&self, limit: &Arc<Limit>, epoch: u32, units: u64, now: u64) {
        self.with_pool(limit, now, |pool, current| {
            if current == epoch {
                pool.debt += units;
            }
        });
    }

    /// What is left of a limit now.
    #[cfg(test)]
    pub fn remaining(&self, limit: &Arc<Limit>, now: u64) -> u64 {
        self.with_pool(limit, now, |pool, epoch| {
            let unused: u64 = limit.leases.iter().map(|l| l.available(epoch)).sum();
            limit
                .value
                .saturating_sub(pool.base + pool.granted + pool.debt)
                .saturating_add(unused)
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
    use shards::governance::{Entity, EntityKind, Window};

    fn limit(value: u64, shards: usize) -> Arc<Limit> {
        Arc::new(Limit::new(
            Entity {
                kind: EntityKind::Key,
                id: "k".into(),
            },
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
        desk.register(&l, 0, now);
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
    fn base_spend_counts_and_a_new_window_starts_fresh() {
        let now = 1_000_000;
        let desk = LeaseDesk::default();
        let l = limit(10, 1);
        desk.register(&l, 8, now);
        desk.refill(&l, 0, 1, now);
        assert_eq!(l.leases[0].available(l.kind.epoch(now)), 2);
        let later = now + 60;
        desk.refill(&l, 0, 1, later);
        assert!(l.leases[0].available(l.kind.epoch(later)) >= 1);
    }
}
