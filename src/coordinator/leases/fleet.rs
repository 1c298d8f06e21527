//! The lease desk in a fleet: a node's share of each limit comes from a counter in the
//! database ([`ClusterLeases`]); top-ups are planned under the desk's lock and asked for after
//! it, their answers (and the answers to debts' share requests) serve the shards that wait,
//! and unused units go back to the fleet (docs/cluster.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shards::governance::Limit;

use super::{refuse, LeaseDesk, Pool, Waiter};

/// What to do with a share request's answer: the units granted, or `None` when the database
/// could not answer in time.
pub type ShareAnswer = Box<dyn FnOnce(Option<u64>) + Send>;

/// A node's request for more of its share of one limit's window.
pub struct ShareRequest {
    pub limit: Arc<Limit>,
    /// Budget resets: a reset starts a new shared counter.
    pub generation: u64,
    pub window_start: i64,
    /// Granted in full if that much is left.
    pub need: u64,
    /// The most worth taking now.
    pub want: u64,
}

/// Where a node gets its share of a limit in a fleet: a shared counter that grants at most
/// what is left of the limit (`store::Store::acquire_share`).
pub trait ClusterLeases: Send + Sync {
    /// Asks for a share without blocking; `done` runs with the units granted, or `None` when
    /// the database could not answer in time.
    fn acquire(&self, ask: ShareRequest, done: ShareAnswer);
    /// Rate limits may be admitted on the node's word while the database is unreachable.
    fn fail_open(&self) -> bool;
    /// Live nodes of the fleet (shares are sized for them).
    fn nodes(&self) -> u64;
}

/// The window, counter and time a share was asked for in: its answer counts there or not
/// at all (a window that ended meanwhile does not get it).
#[derive(Debug, Clone, Copy)]
pub(super) struct AskedIn {
    epoch: u32,
    generation: u64,
    now: i64,
}

impl AskedIn {
    pub(super) fn new(epoch: u32, generation: u64, now: i64) -> Self {
        Self {
            epoch,
            generation,
            now,
        }
    }
}

/// Fleet: a pool's top-up, planned under the desk's lock and asked for after it.
pub(super) struct TopUp {
    asked: AskedIn,
    need: u64,
    want: u64,
    limit: Arc<Limit>,
}

/// Units of a node's share handed back to the fleet.
#[derive(Debug)]
pub struct Unused {
    pub limit: Arc<Limit>,
    pub generation: u64,
    pub window_start: i64,
    pub units: u64,
}

impl LeaseDesk {
    /// Fleet: plans the pool's top-up (the one on its way from now): what its waiting shards
    /// need beyond what the pool holds, and up to `share` for the requests to come.
    pub(super) fn top_up(&self, pool: &mut Pool, epoch: u32, now: i64, share: u64) -> TopUp {
        pool.fetching = true;
        let need: u64 = pool.waiters.iter().map(|w| w.2).sum();
        let need = need.saturating_sub(self.left(pool));
        TopUp {
            asked: AskedIn::new(epoch, pool.generation, now),
            need,
            want: share.max(need),
            // Leased for the limit in force, whatever object the shard asked on: a shard still
            // on the previous snapshot must not lease under a changed limit's old value.
            limit: pool.current.clone(),
        }
    }

    /// Fleet: asks the database for a planned top-up; its answer goes to [`Self::fetched`].
    pub(super) fn send(self: &Arc<Self>, top_up: TopUp) {
        let TopUp {
            asked,
            need,
            want,
            limit,
        } = top_up;
        self.ask_fleet(&limit, asked, (need, want), move |desk, limit, got| {
            desk.fetched(limit, asked, need, got)
        });
    }

    /// Asks the fleet's counter for `need`..`want` units of `limit` in the counter and window
    /// of `asked`; `then` runs on the desk with the answer.
    pub(super) fn ask_fleet(
        self: &Arc<Self>,
        limit: &Arc<Limit>,
        asked: AskedIn,
        (need, want): (u64, u64),
        then: impl FnOnce(&Arc<LeaseDesk>, &Arc<Limit>, Option<u64>) + Send + 'static,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let (desk, object) = (self.clone(), limit.clone());
        cluster.acquire(
            ShareRequest {
                limit: limit.clone(),
                generation: asked.generation,
                window_start: limit.kind.start(asked.now),
                need,
                want,
            },
            Box::new(move |leased| then(&desk, &object, leased)),
        );
    }

    /// The database answered a fetch: the share grows, and the shards that waited get their
    /// slices or are told there are none.
    pub(super) fn fetched(
        self: &Arc<Self>,
        limit: &Arc<Limit>,
        asked: AskedIn,
        need: u64,
        leased: Option<u64>,
    ) {
        let AskedIn {
            epoch,
            generation,
            now,
        } = asked;
        let fail_open =
            self.cluster.as_ref().is_some_and(|c| c.fail_open()) && !limit.kind.is_budget();
        let answered = self.with_pool(limit, now, |pool, current| {
            pool.fetching = false;
            if current != epoch || pool.generation != generation {
                return (std::mem::take(&mut pool.waiters), None);
            }
            if !Arc::ptr_eq(&pool.current, limit) {
                // Leased under a limit that changed meanwhile: none of it is used (it goes
                // back at the next heartbeat), and the waiting shards' units are asked for
                // anew, under the limit in force.
                pool.stale += leased.unwrap_or(0);
                if pool.waiters.is_empty() {
                    return (Vec::new(), None);
                }
                let share = pool.current.chunk() * pool.current.leases.len() as u64;
                return (Vec::new(), Some(self.top_up(pool, current, now, share)));
            }
            match leased {
                Some(units) => pool.node_quota += units,
                None if fail_open => {
                    pool.node_quota += need;
                    pool.unbacked += need;
                }
                None => {}
            }
            (self.serve_waiters(pool, current), None)
        });
        let (refused, top_up) = answered.unwrap_or_default();
        refuse(refused);
        if let Some(top_up) = top_up {
            self.send(top_up);
        }
    }

    /// Grants the waiting shards what the pool now holds; returns those it cannot serve
    /// once nothing that could bring more units (a top-up, a debt's share) is on its way.
    /// A debt's share can come back after a top-up that found the counter empty: the
    /// counter gave the debt what was left, and what the debt does not need is the waiters'.
    fn serve_waiters(&self, pool: &mut Pool, epoch: u32) -> Vec<Waiter> {
        let waiters = std::mem::take(&mut pool.waiters);
        let unserved: Vec<Waiter> = waiters
            .into_iter()
            .filter(|(limit, shard, want)| !self.grant(pool, limit, *shard, *want, epoch))
            .collect();
        if pool.fetching || pool.debts_on_the_way > 0 {
            pool.waiters = unserved;
            return Vec::new();
        }
        unserved
    }

    /// The database answered a debt's share request: the share grows by what it granted,
    /// and shards that waited meanwhile may be served from it.
    pub(super) fn debt_backed(&self, limit: &Arc<Limit>, asked: AskedIn, leased: Option<u64>) {
        let refused = self.with_pool(limit, asked.now, |pool, current| {
            if pool.generation != asked.generation {
                return Vec::new();
            }
            pool.debts_on_the_way = pool.debts_on_the_way.saturating_sub(1);
            if current == asked.epoch {
                match Arc::ptr_eq(&pool.current, limit) {
                    true => pool.node_quota += leased.unwrap_or(0),
                    false => pool.stale += leased.unwrap_or(0),
                }
            }
            self.serve_waiters(pool, current)
        });
        refuse(refused.unwrap_or_default());
    }

    /// Fleet: takes back the unused units of every limit no shard has touched for `idle`
    /// (all limits with `Duration::ZERO`, when the node leaves) — the shards' slices and what
    /// the node held beyond them — for the caller to give back to the fleet's counters.
    pub fn collect_unused(&self, idle: Duration, now: i64) -> Vec<Unused> {
        if self.cluster.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let at = Instant::now();
        for pool in pools.values_mut() {
            let epoch = pool.advance(pool.current.kind.epoch(now));
            let limit = pool.current.clone();
            let available: u64 = limit.leases.iter().map(|l| l.available(epoch)).sum();
            if available != pool.seen_available {
                pool.seen_available = available;
                pool.busy_at = at;
            }
            if pool.stale > 0 {
                out.push(Unused {
                    window_start: limit.kind.start(now),
                    generation: pool.generation,
                    limit: limit.clone(),
                    units: std::mem::take(&mut pool.stale),
                });
            }
            if at.duration_since(pool.busy_at) < idle || pool.fetching {
                continue;
            }
            for lease in limit.leases.iter() {
                pool.granted -= lease.reclaim(epoch).min(pool.granted);
            }
            pool.seen_available = 0;
            let units = self.left(pool).saturating_sub(pool.unbacked);
            if units > 0 {
                pool.node_quota -= units;
                out.push(Unused {
                    window_start: limit.kind.start(now),
                    generation: pool.generation,
                    limit,
                    units,
                });
            }
        }
        out
    }

    /// Fleet: the number of live nodes changed; slices and shares are sized for it.
    pub fn share_among(&self, nodes: u64) {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        for pool in pools.values() {
            pool.current.share_among(nodes);
        }
    }

    /// Fleet: the node was taken for dead and its shares were handed back by a survivor:
    /// nothing it holds is its own any more.
    pub fn forfeit_all(&self, now: i64) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        for pool in pools.values_mut() {
            let epoch = pool.advance(pool.current.kind.epoch(now));
            for lease in pool.current.leases.iter() {
                pool.granted -= lease.reclaim(epoch).min(pool.granted);
            }
            pool.node_quota = pool.granted + pool.debt;
            pool.unbacked = 0;
        }
    }
}
