//! Governance on the request path: who is calling (virtual keys), what they may use, and
//! whether their limits and budgets — and their team's and customer's — admit one more
//! request. The coordinator builds the [`GovSnapshot`] from the store and publishes it through
//! an `ArcSwap`; shards read it per request without a lock. Limits are enforced with per-shard
//! leases ([`lease`]); lease refills and debts go to the coordinator's lease desk as events on
//! a bounded channel, and usage records straight to its store writer in batches.
//!
//! Hot-path cost when enabled: one SHA-256 of the presented key, one hash lookup, and one
//! compare-and-swap per limit on this shard's own cache line.

pub mod admit;
pub mod batcher;
pub mod lease;
pub mod prices;
pub mod request;
pub mod stream_usage;
pub mod units;
pub mod usage;
mod usage_counts;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::TrySendError;
use vocab::usage::owner_index;
use vocab::{BudgetGenerations, EntityRef, LimitKind, UsageBytes};

use lease::Lease;
pub use prices::{Price, Prices};

/// One limit of one entity, with every shard's lease on it.
#[derive(Debug)]
pub struct Limit {
    pub entity: EntityRef,
    pub kind: LimitKind,
    pub value: u64,
    /// Indexed by shard.
    pub leases: Box<[Lease]>,
    /// Nodes that share the limit (a fleet's live nodes; 1 alone), set by the coordinator.
    nodes: AtomicU64,
    /// A budget's generation: the entity's budget resets before it was made (0 for other
    /// limits). A request's usage record carries it, so that spend admitted before a reset
    /// is not counted against the fresh budget (vocab's `BudgetGenerations`).
    pub generation: u64,
}

impl Limit {
    pub fn new(entity: EntityRef, kind: LimitKind, value: u64, shards: usize) -> Self {
        Self {
            entity,
            kind,
            value,
            leases: (0..shards).map(|_| Lease::default()).collect(),
            nodes: AtomicU64::new(1),
            generation: 0,
        }
    }

    /// The limit as a budget of generation `generation`.
    pub fn of_generation(self, generation: u64) -> Self {
        Self { generation, ..self }
    }

    /// The slice the coordinator grants at a time: a quarter of a fair share of every shard
    /// of every node, so that what shards hold unused stays a small part of the limit.
    pub fn chunk(&self) -> u64 {
        let sharers = self.leases.len() as u64 * self.nodes.load(Ordering::Relaxed);
        (self.value / (4 * sharers).max(1)).clamp(1, lease::MAX_SLICE)
    }

    /// Coordinator: how many nodes share the limit now.
    pub fn share_among(&self, nodes: u64) {
        self.nodes.store(nodes.max(1), Ordering::Relaxed);
    }
}

/// A virtual key as the shards see it.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    pub id: String,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    /// Empty: all.
    pub allowed_providers: Vec<String>,
    /// Empty: all. Entries are `provider/model` or bare model names.
    pub allowed_models: Vec<String>,
    pub expires_at: Option<u64>,
    pub active: bool,
    /// The key's own limits, then its team's, then its customer's.
    pub limits: Vec<Arc<Limit>>,
    /// How long the response cache keeps this key's answers, seconds: `Some(0)` never caches
    /// them (even where the configuration would), `None` follows the configuration.
    pub cache_ttl_secs: Option<u64>,
}

impl KeyPolicy {
    /// The generations of the budgets of the key, its team and its customer, as its usage
    /// record carries them.
    pub fn budget_generations(&self) -> BudgetGenerations {
        let mut generations = [None; 3];
        for limit in self.limits.iter().filter(|l| l.kind.is_budget()) {
            generations[owner_index(limit.entity.kind)] = Some(limit.generation);
        }
        generations
    }
}

/// Virtual keys by the SHA-256 of their secret. The digest is already uniform, so the table
/// hashes it no further ([`DigestHasher`]): a lookup costs a few nanoseconds, and a request
/// looks its key up again where it needs it instead of holding an `Arc` of it (whose count
/// would be a cache line written by every shard serving that key).
pub type KeyTable = HashMap<[u8; 32], Arc<KeyPolicy>, BuildHasherDefault<DigestHasher>>;

/// Hashes a SHA-256 digest by its first eight bytes. Only for digests of secrets: their
/// bits are uniform and nobody can choose them (the table holds only keys an admin made).
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes its length first, then its bytes: the digest's bytes win.
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 = u64::from_ne_bytes(first);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What the coordinator publishes for the shards.
#[derive(Debug, Default)]
pub struct GovSnapshot {
    /// Requests without a virtual key are refused.
    pub require_key: bool,
    /// SHA-256 of the key → its policy.
    pub keys: KeyTable,
    pub prices: Prices,
    /// Unix milliseconds at which the coordinator began reading the store for this snapshot:
    /// every write committed before then is in it.
    pub read_at_ms: u64,
}

/// What a shard asks of the coordinator's lease desk.
#[derive(Debug)]
pub enum GovEvent {
    /// This shard's lease on `limit` is running low; it needs at least `want` units.
    Refill {
        limit: Arc<Limit>,
        shard: usize,
        want: u64,
    },
    /// Units used beyond what the lease held (usage larger than estimated). The desk counts
    /// them in the window current when it gets them, as the store does.
    Debt { limit: Arc<Limit>, units: u64 },
}

/// What goes to the coordinator's store writer (the flusher), in the order it was sent.
#[derive(Debug)]
pub enum ToFlusher {
    /// Usage of requests, batched per shard (see [`batcher::UsageBatcher`]).
    Usage(UsageBytes),
    /// The node stops: write everything queued before this message, then answer. It travels
    /// the queue usage travels, so nothing a shard sent before it is left behind.
    Now(std::sync::mpsc::Sender<()>),
}

/// The queue to the coordinator's store writer: bounded, and a wake-up after each message,
/// because the writer waits on the coordinator's runtime, which shards do not know (it gives
/// the wake-up: on a node, a tokio `Notify`).
pub struct UsageQueue {
    pub messages: crossbeam_channel::Sender<ToFlusher>,
    pub wake: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for UsageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageQueue")
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl UsageQueue {
    /// Sends `message` if there is room, and wakes the writer.
    pub fn try_send(&self, message: ToFlusher) -> Result<(), TrySendError<ToFlusher>> {
        self.messages.try_send(message)?;
        (self.wake)();
        Ok(())
    }

    /// Sends `message`, waiting up to `timeout` for room, and wakes the writer.
    pub fn send_timeout(&self, message: ToFlusher, timeout: Duration) -> bool {
        let sent = self.messages.send_timeout(message, timeout).is_ok();
        (self.wake)();
        sent
    }
}

/// Shard batches the store writer's queue holds: with batches of up to 256 records, 65,536
/// records (some 20 MB). A shard that finds it full keeps its records and sends them with its
/// next batch (from half its most, it sheds new governed requests: [`batcher::UsageBatcher`]),
/// so governed traffic is held to what the store takes instead of the process growing. Never
/// reached in a healthy node (the flusher writes ~2,000 records per transaction in a few
/// milliseconds).
pub const USAGE_QUEUE: usize = 256;

/// Node-wide governance state shared by the coordinator and the shards.
#[derive(Debug)]
pub struct Governance {
    pub snapshot: ArcSwap<GovSnapshot>,
    pub events: crossbeam_channel::Sender<GovEvent>,
    /// Usage batches to the store writer.
    pub usage: UsageQueue,
    /// Longest a request waits for the coordinator to refill a dry lease.
    pub lease_wait: Duration,
    /// SHA-256 of the node's own credential: the coordinator's requests (the semantic
    /// cache's embeddings) present it and pass as a caller without a key. Random per
    /// process, never stored or shown.
    pub node_credential: Option<[u8; 32]>,
}
