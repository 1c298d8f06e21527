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
//! operations and must not wait behind store I/O. In a fleet (PostgreSQL store) the node's
//! own share of each limit is leased from a shared counter in the database (docs/cluster.md)
//! and the desk hands slices of that share to the shards, so a limit holds across every node.
//! The database is never called on the desk's thread: a refill that needs more of the share
//! asks for it ([`ClusterLeases::acquire`]) and is completed when the answer comes; a pool
//! running low tops itself up ahead of need. Unused units go back to the fleet when the node
//! leaves, or when a limit has been idle on this node for a while ([`LeaseDesk::collect_unused`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// Fleet: units of this window this node has leased from the shared counter.
    node_quota: u64,
    /// Fleet: units of `node_quota` admitted on this node's word while the database could not
    /// be reached (`on_store_unavailable: fail_open`); never given back to the counter.
    unbacked: u64,
    /// Fleet: a top-up is on its way (one at a time).
    fetching: bool,
    /// Fleet: debts whose share from the counter is on its way. Until it comes, `debt`
    /// counts usage the share does not cover yet, so what is left reads short.
    debts_on_the_way: u32,
    /// Fleet: shards waiting for that top-up (or for a debt's share), with what each asked
    /// for. They are refused only when nothing that could bring units is on its way.
    waiters: Vec<Waiter>,
    /// Fleet: units leased under a limit object that was replaced before the answer came
    /// (the limit changed); never handed out, given back at the next heartbeat.
    stale: u64,
    /// Fleet: when a shard last used or asked for this limit, as far as the desk can tell.
    busy_at: Instant,
    /// Fleet: what the shards' slices held at the last idle check.
    seen_available: u64,
    /// Budget resets seen when the limit was registered: a reset starts a new shared counter.
    generation: u64,
}

mod fleet;

use fleet::AskedIn;
pub use fleet::{ClusterLeases, ShareAnswer, ShareRequest, Unused};

/// A shard waiting for its pool's top-up: the limit object it asked on, the shard, its want.
type Waiter = (Arc<Limit>, usize, u64);

/// Tells waiting shards there is nothing for them (they may ask again).
fn refuse(waiters: Vec<Waiter>) {
    for (limit, shard, _) in waiters {
        limit.leases[shard].refill_refused();
    }
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
            unbacked: 0,
            fetching: false,
            debts_on_the_way: 0,
            waiters: Vec::new(),
            stale: 0,
            busy_at: Instant::now(),
            seen_available: 0,
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
            self.unbacked = 0;
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
    ///
    /// In a fleet, a limit whose value changed gives back what the node held of it unused
    /// (returned for the caller to hand back to the counter before it publishes the change):
    /// that share was sized and leased under the old value, and the counter grants anew
    /// against the new one.
    pub fn register(
        &self,
        limit: &Arc<Limit>,
        base: u64,
        generation: u64,
        now: i64,
    ) -> Option<Unused> {
        if let Some(cluster) = &self.cluster {
            limit.share_among(cluster.nodes());
        }
        let epoch = limit.kind.epoch(now);
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        match pools.get_mut(&key(limit)) {
            Some(pool) if pool.generation == generation => {
                pool.advance(epoch);
                if !Arc::ptr_eq(&pool.current, limit) {
                    let old = std::mem::replace(&mut pool.current, limit.clone());
                    pool.reclaim_all(&old);
                    if self.cluster.is_some() && old.value != limit.value {
                        for lease in old.leases.iter().chain(limit.leases.iter()) {
                            pool.granted -= lease.reclaim(epoch).min(pool.granted);
                        }
                        let units = self.left(pool).saturating_sub(pool.unbacked);
                        if units > 0 {
                            pool.node_quota -= units;
                            return Some(Unused {
                                limit: limit.clone(),
                                generation,
                                window_start: limit.kind.start(now),
                                units,
                            });
                        }
                    }
                }
            }
            Some(pool) => {
                let old = pool.current.clone();
                for lease in old.leases.iter() {
                    lease.reclaim(pool.epoch);
                }
                let fresh = Pool::new(limit.clone(), epoch, base, generation);
                refuse(std::mem::replace(pool, fresh).waiters);
            }
            None => {
                pools.insert(
                    key(limit),
                    Pool::new(limit.clone(), epoch, base, generation),
                );
            }
        }
        None
    }

    /// A limit object the node no longer uses. Its pool goes only when no newer object of
    /// the same identity took over (the limit itself is gone); otherwise what the old
    /// object's leases still hold comes back to the pool.
    pub fn forget(&self, limit: &Arc<Limit>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let id = key(limit);
        match pools.get_mut(&id) {
            Some(pool) if Arc::ptr_eq(&pool.current, limit) => {
                if let Some(pool) = pools.remove(&id) {
                    refuse(pool.waiters);
                }
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
    /// is that much), reclaiming other shards' unused slices when the pool is empty. In a
    /// fleet, a pool without enough asks the database and the refill completes with its
    /// answer; a pool running low is topped up ahead of need.
    pub fn refill(self: &Arc<Self>, limit: &Arc<Limit>, shard: usize, want: u64, now: i64) {
        let planned = self.with_pool(limit, now, |pool, epoch| {
            pool.busy_at = Instant::now();
            if self.left(pool) < want {
                for (i, lease) in limit.leases.iter().enumerate() {
                    if i != shard {
                        pool.granted -= lease.reclaim(epoch).min(pool.granted);
                    }
                }
            }
            let granted = self.grant(pool, limit, shard, want, epoch);
            if self.cluster.is_none() {
                return (granted, None);
            }
            if !granted {
                // Answered when the share arrives: by the fetch on its way, or by a new one.
                pool.waiters.push((limit.clone(), shard, want));
            }
            let share = limit.chunk() * limit.leases.len() as u64;
            if pool.fetching || (granted && self.left(pool) >= share / 2) {
                return (true, None);
            }
            (true, Some(self.top_up(pool, epoch, now, share)))
        });
        let Some((answered, top_up)) = planned else {
            // A limit the desk no longer knows: nothing is granted from a pool made anew.
            limit.leases[shard].refill_refused();
            return;
        };
        if !answered {
            limit.leases[shard].refill_refused();
        }
        if let Some(top_up) = top_up {
            self.send(top_up);
        }
    }

    /// Grants shard `shard` a slice of at least `want` from the pool if there is that much.
    fn grant(&self, pool: &mut Pool, limit: &Limit, shard: usize, want: u64, epoch: u32) -> bool {
        let grant = want.max(limit.chunk()).min(self.left(pool));
        if grant == 0 || grant < want {
            return false;
        }
        pool.granted += grant;
        limit.leases[shard].grant(epoch, grant);
        true
    }

    /// Usage beyond what a shard's lease held. It counts in the current window, whatever
    /// window the request was admitted in: that is where the store charges it. In a fleet the
    /// overshoot is taken from the shared counter too.
    pub fn debt(self: &Arc<Self>, limit: &Arc<Limit>, units: u64, now: i64) {
        let charged = self.with_pool(limit, now, |pool, epoch| {
            pool.debt += units;
            pool.busy_at = Instant::now();
            if self.cluster.is_some() {
                pool.debts_on_the_way += 1;
            }
            (epoch, pool.generation, pool.current.clone())
        });
        if let Some((epoch, generation, current)) = charged {
            let asked = AskedIn::new(epoch, generation, now);
            self.ask_fleet(
                &current,
                asked,
                (units, units),
                move |desk, limit, leased| desk.debt_backed(limit, asked, leased),
            );
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

/// The desk's clock: the shards' own (it never steps back), so both count the same windows.
pub fn unix_now() -> i64 {
    i64::try_from(shards::clock::unix_now()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
