//! One shard's state: what a core's thread owns (its snapshot handle, upstream pool,
//! per-provider health, key cooldowns and admission gates, counters, spare buffers, usage
//! batch, span queue) and the background tasks that keep it current ([`upkeep`]). Everything here is
//! `!Send` on purpose; shards share nothing but the read-only snapshot, the node's flags,
//! and their own counter blocks, which only they write. The request path
//! ([`crate::path`]) reads it through [`Shard`].

pub mod balance;
pub mod buffers;
pub mod gate;
pub mod health;
pub mod histogram;
pub mod pool;
pub mod series;
pub mod stats;
pub mod upkeep;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::governance::batcher::UsageBatcher;
use crate::governance::{GovSnapshot, Governance};
use crate::path::tracker::RequestIds;
use crate::snapshot::{NodeState, Snapshot, MAX_PROVIDERS};
use crate::trace::TraceSink;
use balance::{KeyStates, Rng};
use buffers::BufferPool;
use gate::Gate;
use health::Health;
use pool::Pool;
use stats::ShardStats;

/// This shard's view of one provider's condition.
#[derive(Debug, Default)]
pub struct ProviderRuntime {
    pub health: Health,
    pub keys: KeyStates,
    pub gate: Gate,
}

pub struct Shard {
    pub index: usize,
    /// The snapshot requests are served from. An `Rc` around the shared `Arc` so taking it per
    /// request is a non-atomic increment on this core's memory, not an atomic one on a cache
    /// line every shard touches.
    #[allow(clippy::redundant_allocation)]
    pub(crate) current: RefCell<Rc<Arc<Snapshot>>>,
    pub node: Arc<NodeState>,
    pub pool: Pool,
    /// Indexed by [`crate::snapshot::Provider::slot`].
    pub providers: Vec<ProviderRuntime>,
    pub rng: Rng,
    pub stats: Arc<ShardStats>,
    /// Virtual keys, limits and budgets; `None` when governance is off.
    pub gov: Option<Arc<Governance>>,
    /// The governance snapshot requests last took, as an `Rc` for the same reason as
    /// `current` ([`Shard::gov_snapshot`]).
    #[allow(clippy::redundant_allocation)]
    gov_current: RefCell<Option<Rc<Arc<GovSnapshot>>>>,
    /// Usage records on their way to the coordinator.
    pub usage: UsageBatcher,
    /// Spare buffers lent to requests.
    pub buffers: BufferPool,
    /// The `/ready` answers while the node takes traffic, made once per node.
    pub ready_bodies: ReadyBodies,
    /// This shard's request ids.
    pub ids: RequestIds,
    /// Where each model's series sits in `stats.series`.
    pub series: series::SeriesIndex,
    /// Where sampled spans go; `None` when traces are off.
    pub traces: Option<TraceSink>,
    /// The node's response cache; `None` when the configuration has none.
    pub cache: Option<Arc<crate::cache::NodeCache>>,
    /// Gives this thread's freed memory back to the system (`ShardPlan::release_memory`).
    pub release_memory: Option<fn()>,
}

/// What a shard shares with the rest of the node besides its configuration.
pub struct ShardLinks {
    /// Virtual keys, limits and budgets; `None` when governance is off.
    pub gov: Option<Arc<Governance>>,
    /// Where sampled spans go; `None` when traces are off.
    pub traces: Option<TraceSink>,
    /// The node's response cache.
    pub cache: Option<Arc<crate::cache::NodeCache>>,
    /// Gives this thread's freed memory back to the system (`ShardPlan::release_memory`).
    pub release_memory: Option<fn()>,
}

/// `/ready` while the node takes traffic: with its store, or serving without it.
#[derive(Clone)]
pub struct ReadyBodies {
    pub ok: Arc<[u8]>,
    pub store_unavailable: Arc<[u8]>,
}

impl Shard {
    pub fn new(
        index: usize,
        snapshot: Arc<Snapshot>,
        node: Arc<NodeState>,
        stats: Arc<ShardStats>,
        links: ShardLinks,
        ready_bodies: ReadyBodies,
    ) -> Self {
        let ShardLinks {
            gov,
            traces,
            cache,
            release_memory,
        } = links;
        let pool = Pool::new(MAX_PROVIDERS, stats.clone());
        let providers = (0..MAX_PROVIDERS)
            .map(|_| ProviderRuntime::default())
            .collect();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = clock ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            index,
            current: RefCell::new(Rc::new(snapshot)),
            node,
            pool,
            providers,
            rng: Rng::new(seed ^ std::process::id() as u64),
            stats,
            gov,
            gov_current: RefCell::new(None),
            usage: UsageBatcher::default(),
            buffers: BufferPool::default(),
            ready_bodies,
            ids: RequestIds::new(index),
            series: series::SeriesIndex::default(),
            traces,
            cache,
            release_memory,
        }
    }

    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        self.current.borrow().clone()
    }

    /// The governance snapshot for a request (`None`: governance is off): this shard's `Rc`
    /// of the coordinator's latest, taken anew when the coordinator published another (a key
    /// made a moment ago is known to the next request). A request holds it to its end; an
    /// arc-swap guard held that long takes one of the thread's eight fast slots, and with
    /// more requests in flight on the shard, `load` falls back to counting in the `Arc` — a
    /// cache line every shard writes. The guard here lives for the comparison alone.
    #[allow(clippy::redundant_allocation)]
    pub fn gov_snapshot(&self) -> Option<Rc<Arc<GovSnapshot>>> {
        let latest = self.gov.as_deref()?.snapshot.load();
        let mut cached = self.gov_current.borrow_mut();
        if let Some(current) = &*cached {
            if Arc::ptr_eq(current, &latest) {
                return Some(current.clone());
            }
        }
        let current = Rc::new(arc_swap::Guard::into_inner(latest));
        *cached = Some(current.clone());
        Some(current)
    }
}
