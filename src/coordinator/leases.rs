//! The lease desk: the coordinator's side of exact limits. For every limit it keeps what has
//! been handed out in the current window or period (`granted`), usage beyond grants
//! (`debt`), and, for budgets, what was already spent before this process started (`base`).
//! What is left is `value − base − granted − debt`; a shard asking for more gets a slice of
//! it, and when nothing is left, unused slices are reclaimed from the other shards first — so
//! the sum of slices never exceeds the limit and all of it stays reachable.
//!
//! A pool belongs to a limit's identity — whose limit, of what kind — not to one `Limit`
//! object: a reload that changes a limit's value builds a new `Limit` (new leases), and the
//! pool carries on with what this window already handed out and used, so a lowered limit is
//! in force from the next grant and a raised one adds only the difference. Units still held
//! in the replaced object's leases are taken back. A pool is created only by [`register`]
//! (never by a refill of a limit the desk does not know), it never moves back to an earlier
//! window (a clock that steps back cannot reopen one), and usage settled after its window
//! ended is charged to the window the store charges it to: the current one.
//!
//! [`register`]: LeaseDesk::register
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
use vocab::{EntityRef, LimitKind};

/// What a limit's pool is kept under: its identity across reloads.
type PoolKey = (EntityRef, LimitKind);

fn key(limit: &Limit) -> PoolKey {
    (limit.entity.clone(), limit.kind)
}

#[derive(Debug)]
struct Pool {
    /// The `Limit` object shards are given now (its value is the limit in force).
    current: Arc<Limit>,
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

    /// Gives back `units` of an earlier lease that were never handed to a shard. Must not
    /// block: it is called while the coordinator reloads.
    fn give_back(&self, limit: &Limit, generation: u64, window_start: i64, units: u64);
}

impl Pool {
    fn new(current: Arc<Limit>, epoch: u32, base: u64, generation: u64) -> Self {
        Self {
            current,
            epoch,
            granted: 0,
            debt: 0,
            base,
            base_epoch: epoch,
            node_quota: 0,
            generation,
        }
    }

    /// Moves the pool to `epoch` if that is later: a new window starts empty (spend from
    /// before this process counts only in the period it was read for). An earlier epoch (the
    /// clock stepped back) is not taken: the pool stays in its window.
    fn advance(&mut self, epoch: u32) -> u32 {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.granted = 0;
            self.debt = 0;
            self.node_quota = 0;
            if self.base_epoch != epoch {
                self.base = 0;
            }
        }
        self.epoch
    }

    /// Takes back what `old`'s leases still hold of this window.
    fn reclaim_all(&mut self, old: &Limit) {
        for lease in old.leases.iter() {
            self.granted -= lease.reclaim(self.epoch).min(self.granted);
        }
    }
}

#[derive(Default)]
pub struct LeaseDesk {
    pools: Mutex<HashMap<PoolKey, Pool>>,
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
    /// counter; alone, what is left of the limit in force (the current object's value).
    fn left(&self, pool: &Pool) -> u64 {
        let budget = if self.cluster.is_some() {
            pool.node_quota
        } else {
            pool.current.value.saturating_sub(pool.base)
        };
        budget.saturating_sub(pool.granted + pool.debt)
    }

    /// Registers a limit; `base` is what its entity already spent in the current period and
    /// `generation` counts its budget resets. A limit already known by its identity keeps its
    /// pool (what this window handed out and used) and takes over from the object it
    /// replaces, whose unused units come back; a budget reset (a new `generation`) starts
    /// the pool afresh from `base`.
    pub fn register(&self, limit: &Arc<Limit>, base: u64, generation: u64, now: i64) {
        let epoch = limit.kind.epoch(now);
        let mut surplus = 0;
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        match pools.get_mut(&key(limit)) {
            Some(pool) if pool.generation == generation => {
                pool.advance(epoch);
                if !Arc::ptr_eq(&pool.current, limit) {
                    let old = std::mem::replace(&mut pool.current, limit.clone());
                    pool.reclaim_all(&old);
                    // Cluster: a lowered limit is in force from the next lease, not once this
                    // node's share of the old value is spent. What the share holds beyond
                    // what was handed out goes back to the shared counter.
                    if self.cluster.is_some() && limit.value < old.value {
                        surplus = pool.node_quota.saturating_sub(pool.granted + pool.debt);
                        pool.node_quota -= surplus;
                    }
                }
            }
            Some(pool) => {
                let old = pool.current.clone();
                for lease in old.leases.iter() {
                    lease.reclaim(pool.epoch);
                }
                *pool = Pool::new(limit.clone(), epoch, base, generation);
            }
            None => {
                pools.insert(
                    key(limit),
                    Pool::new(limit.clone(), epoch, base, generation),
                );
            }
        }
        drop(pools);
        if let (Some(cluster), true) = (&self.cluster, surplus > 0) {
            cluster.give_back(limit, generation, limit.kind.start(now), surplus);
        }
    }

    /// A limit object the node no longer uses. Its pool goes only when no newer object of
    /// the same identity took over (the limit itself is gone); otherwise what the old
    /// object's leases still hold comes back to the pool.
    pub fn forget(&self, limit: &Arc<Limit>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let id = key(limit);
        match pools.get_mut(&id) {
            Some(pool) if Arc::ptr_eq(&pool.current, limit) => {
                pools.remove(&id);
            }
            Some(pool) => pool.reclaim_all(limit),
            None => {}
        }
    }

    /// Runs `f` on the limit's pool in its current window; `None` when the desk does not
    /// know the limit (it was removed): nothing is created for it.
    fn with_pool<R>(
        &self,
        limit: &Limit,
        now: i64,
        f: impl FnOnce(&mut Pool, u32) -> R,
    ) -> Option<R> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pools.get_mut(&key(limit))?;
        let epoch = pool.advance(limit.kind.epoch(now));
        Some(f(pool, epoch))
    }

    /// A shard's lease ran low: grant it a slice of what is left (at least `want` if there
    /// is that much), reclaiming other shards' unused slices when the pool is empty.
    pub fn refill(&self, limit: &Arc<Limit>, shard: usize, want: u64, now: i64) {
        // Reclaim idle slices first; in a cluster, see how much of the node's share is missing.
        let planned = self.with_pool(limit, now, |pool, epoch| {
            if self.left(pool) < want {
                for (i, lease) in limit.leases.iter().enumerate() {
                    if i != shard {
                        pool.granted -= lease.reclaim(epoch).min(pool.granted);
                    }
                }
            }
            let short = want.max(limit.chunk()).saturating_sub(self.left(pool));
            (epoch, pool.generation, short)
        });
        let Some((epoch, generation, short)) = planned else {
            // A limit the desk no longer knows: nothing is granted from a pool made anew.
            limit.leases[shard].refill_refused();
            return;
        };
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
        let granted = self.with_pool(limit, now, |pool, epoch| {
            let grant = want.max(limit.chunk()).min(self.left(pool));
            if grant == 0 || grant < want {
                return false;
            }
            pool.granted += grant;
            limit.leases[shard].grant(epoch, grant);
            true
        });
        if granted != Some(true) {
            limit.leases[shard].refill_refused();
        }
    }

    /// Usage beyond what a shard's lease held. It counts in the current window, whatever
    /// window the request was admitted in: that is where the store charges it.
    pub fn debt(&self, limit: &Arc<Limit>, units: u64, now: i64) {
        let charged = self.with_pool(limit, now, |pool, epoch| {
            pool.debt += units;
            (epoch, pool.generation)
        });
        // In a cluster the overshoot is counted against the shared limit too (outside the lock).
        if let (Some(cluster), Some((epoch, generation))) = (&self.cluster, charged) {
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
            self.left(pool).saturating_add(unused)
        })
        .unwrap_or(0)
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

    #[test]
    fn a_refill_for_a_limit_the_desk_no_longer_knows_grants_nothing() {
        let now = 1_000_000;
        let desk = LeaseDesk::default();
        let l = limit(10, 1);
        desk.register(&l, 0, 0, now);
        desk.forget(&l);
        desk.refill(&l, 0, 1, now);
        assert_eq!(l.leases[0].available(l.kind.epoch(now)), 0);
        assert!(!l.leases[0].refill_pending(), "the shard was told at once");
        assert_eq!(desk.remaining(&l, now), 0, "no pool was made anew");
    }

    /// Uses every unit shard 0 can get from the desk, one refill at a time.
    fn drain(desk: &LeaseDesk, l: &Arc<Limit>, now: i64) -> u64 {
        let epoch = l.kind.epoch(now);
        let mut used = 0;
        loop {
            if l.leases[0].take(epoch, 1) {
                used += 1;
                continue;
            }
            desk.refill(l, 0, 1, now);
            if l.leases[0].available(epoch) == 0 {
                return used;
            }
        }
    }

    #[test]
    fn a_changed_limit_keeps_what_its_window_used() {
        let now = 1_000_000;
        let desk = LeaseDesk::default();
        let old = limit(10, 2);
        desk.register(&old, 0, 0, now);
        assert_eq!(drain(&desk, &old, now), 10);
        // Lowered to 6 after 10 were used: nothing more this window, under the old object or
        // the new one — and no window's worth is handed out again.
        let lowered = limit(6, 2);
        desk.register(&lowered, 0, 0, now);
        desk.forget(&old);
        assert_eq!(drain(&desk, &lowered, now), 0);
        assert_eq!(drain(&desk, &old, now), 0);
        // Raised to 15: only the difference is left.
        let raised = limit(15, 2);
        desk.register(&raised, 0, 0, now);
        desk.forget(&lowered);
        assert_eq!(drain(&desk, &raised, now), 5);
    }

    /// A shared counter of one limit, as PostgreSQL keeps it.
    #[derive(Default)]
    struct Counter(Mutex<u64>);

    impl ClusterLeases for Arc<Counter> {
        fn acquire(&self, limit: &Limit, _: u64, _: i64, want: u64) -> u64 {
            let mut used = self.0.lock().unwrap();
            let grant = want.min(limit.value.saturating_sub(*used));
            *used += grant;
            grant
        }

        fn give_back(&self, _: &Limit, _: u64, _: i64, units: u64) {
            let mut used = self.0.lock().unwrap();
            *used = used.saturating_sub(units);
        }
    }

    #[test]
    fn a_lowered_limit_is_in_force_from_the_next_cluster_lease() {
        let now = 1_000_000;
        let counter = Arc::new(Counter::default());
        let desk = LeaseDesk::clustered(Box::new(counter.clone()));
        let old = limit(1_000, 2);
        desk.register(&old, 0, 0, now);
        let epoch = old.kind.epoch(now);
        desk.refill(&old, 0, 1, now);
        assert!(old.leases[0].take(epoch, 1));
        assert!(*counter.0.lock().unwrap() > 100, "the node leased a share");
        // Lowered to 1, which the one request used: the share goes back, nothing more.
        let lowered = limit(1, 2);
        desk.register(&lowered, 0, 0, now);
        desk.forget(&old);
        assert_eq!(*counter.0.lock().unwrap(), 1);
        assert_eq!(drain(&desk, &lowered, now), 0);
        // Raised again: the node leases what is left.
        let raised = limit(3, 2);
        desk.register(&raised, 0, 0, now);
        desk.forget(&lowered);
        assert_eq!(drain(&desk, &raised, now), 2);
    }

    #[test]
    fn a_replaced_limit_gives_back_what_its_leases_held() {
        let now = 1_000_000;
        let desk = LeaseDesk::default();
        let old = limit(8, 1);
        desk.register(&old, 0, 0, now);
        desk.refill(&old, 0, 1, now);
        let held = old.leases[0].available(old.kind.epoch(now));
        assert!(held > 0);
        let same = limit(8, 1);
        desk.register(&same, 0, 0, now);
        assert_eq!(old.leases[0].available(old.kind.epoch(now)), 0);
        assert_eq!(
            drain(&desk, &same, now),
            8,
            "all of the limit stays reachable"
        );
    }

    #[test]
    fn a_clock_stepped_back_does_not_reopen_a_window() {
        let now = 1_000_020;
        let desk = LeaseDesk::default();
        let l = limit(3, 1);
        desk.register(&l, 0, 0, now);
        assert_eq!(drain(&desk, &l, now), 3);
        let earlier = now - 60;
        desk.refill(&l, 0, 1, earlier);
        assert_eq!(l.leases[0].available(l.kind.epoch(earlier)), 0);
        assert_eq!(drain(&desk, &l, now), 0);
    }

    #[test]
    fn usage_settled_after_its_window_counts_in_the_current_one() {
        let now = 1_000_020;
        let desk = LeaseDesk::default();
        let l = limit(10, 1);
        desk.register(&l, 0, 0, now);
        let next = now + 60;
        desk.debt(&l, 4, next);
        assert_eq!(drain(&desk, &l, next), 6);
    }

    #[test]
    fn re_registering_a_spent_budget_grants_nothing_more() {
        let now = 1_709_250_000;
        let desk = LeaseDesk::default();
        let budget = || {
            Arc::new(Limit::new(
                EntityRef::key("k"),
                LimitKind::Budget(BudgetPeriod::Daily),
                1_000,
                1,
            ))
        };
        let first = budget();
        desk.register(&first, 0, 0, now);
        desk.debt(&first, 1_000, now); // spent, not yet flushed to the store
        for _ in 0..20 {
            // A reload storm: each reload builds a new object; the store still says 0 spent.
            let again = budget();
            desk.register(&again, 0, 0, now);
            desk.refill(&again, 0, 1, now);
            assert_eq!(again.leases[0].available(again.kind.epoch(now)), 0);
        }
    }
}
