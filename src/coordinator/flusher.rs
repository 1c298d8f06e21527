//! The flusher: usage on its way from the shards to the store. Records arrive in the shards'
//! batches (each shard's in the order it sent them), are counted in the usage metrics and go
//! to the local spool at once, and are written every
//! flush interval (or as soon as [`FLUSH_AT`] records wait) as one batch — counters, settled fleet shares and request logs, all or
//! nothing, at most once. A batch the store refuses (an outage) stays sealed, on disk and in
//! memory, and is retried in order every interval until it is written: nothing is dropped
//! and nothing is counted twice. At start, batches a previous process left in the spool are
//! written first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shards::governance::ToFlusher;
use shards::names::NameHasher;
use shards::quiet::QuietWatch;
use store::leases::{ShareSettle, UsageBatch};
use store::{LogRow, UsageDelta};
use vocab::{BudgetPeriod, EntityKind, EntityRef, LimitKind, UsageBytes, UsageRef};

use super::fleet::counter_name;
use super::governance::GovRuntime;
use super::spool::{Sealed, Spool};
use crate::config::RequestLogs;

/// Sealed usage batches not yet in the store (one node per process), for `/metrics`.
pub static SPOOL_BACKLOG: AtomicU64 = AtomicU64::new(0);

/// Shard batches waiting in the flusher's queue when it last took one, for `/metrics`.
pub static QUEUE_DEPTH: AtomicU64 = AtomicU64::new(0);

/// The store writer's end of the shards' usage queue ([`shards::governance::UsageQueue`]):
/// the messages, and the wake-up a shard's send gives.
pub struct UsageReceiver {
    pub messages: crossbeam_channel::Receiver<ToFlusher>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl UsageReceiver {
    /// The next message, waiting for a send's wake-up while there is none (a wake-up given
    /// before the wait is kept by the `Notify`, so none is missed).
    async fn next(&self) -> ToFlusher {
        loop {
            if let Ok(message) = self.messages.try_recv() {
                return message;
            }
            self.wake.notified().await;
        }
    }
}

/// One batch folded for the store; its log rows borrow from the batch's records. Its maps
/// hash with foldhash (`NameHasher`): SipHash was 0.2 % of a governed stream's samples, and
/// the keys are the ids of configured keys, teams and customers, which no client chooses.
#[derive(Default)]
struct Pending<'a> {
    /// Keyed by the owner's id as the batch's bytes hold it (no copy per record), its period
    /// and the budget generation its requests were admitted under.
    deltas: HashMap<(EntityKind, &'a str, i64, Option<u64>), UsageDelta, NameHasher>,
    /// Each owner's budget period, looked up once per batch rather than once per record (a
    /// lock, an owned key and a hash each time: 0.6 % of a governed run's samples).
    periods: HashMap<(EntityKind, &'a str), BudgetPeriod, NameHasher>,
    /// Fleet: units spent of the node's shares, by (owner, shared limit, window start, the
    /// generation of the counter the requests were admitted on).
    settles: HashMap<(EntityKind, &'a str, LimitKind, i64, u64), u64, NameHasher>,
    /// Fleet: each owner's shared limits with the generations the node has them at, read
    /// once per batch.
    shares: HashMap<(EntityKind, &'a str), Vec<(LimitKind, u64)>, NameHasher>,
    logs: Vec<LogRow<'a>>,
}

/// Records that make a batch be written at once rather than at the next interval: at tens
/// of thousands of requests a second, a whole interval's records (and their request-log
/// rows and statement parameters, built at flush) would hold tens of megabytes at a time;
/// batches of this size keep the coordinator's memory flat and each transaction short.
const FLUSH_AT: usize = 2048;

/// How a flush's work shares the CPU. A full batch is milliseconds of folding and SQLite
/// writes; where the coordinator shares a core with a shard (one core, or no core left for
/// it), a shard woken meanwhile waits for the scheduler to preempt that work, which showed as
/// milliseconds of governed p99 at 5,000 req/s. `Yielding` gives up the CPU every 256 folded
/// records and after each SQLite statement, so the shard runs in between; it is used only
/// while nothing waits behind the flush, because at saturation the shard always has work and
/// a yielding store would fall behind it (measured: the queue at 245 of its 256 batches and
/// peak RSS 85 MB after 6 s; docs/perf.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    Yielding,
    FlatOut,
}

/// Sealed batches kept in memory as well as on disk; those beyond wait on disk alone (a long
/// outage grows the spool, not the process).
const IN_MEMORY: usize = 4;

/// A sealed batch waiting for the store: in memory, or on disk alone.
struct Queued {
    id: String,
    batch: Option<Sealed>,
}

/// The flusher's state: records not sealed yet, sealed batches not written yet, and the
/// buffers of the last written batch, emptied for the next one. At saturation a batch is
/// ~0.5 MB of records and ~0.5 MB of log rows, 30 times a second: allocated afresh, each
/// freed buffer's pages went back to the OS and were faulted in again, and the peak held
/// several of them at once (docs/perf.md, 2026-12-07).
pub struct Flusher {
    spool: Spool,
    open: UsageBytes,
    /// An emptied records buffer, to become the next open one.
    spare: UsageBytes,
    /// An emptied vector of log rows, for the next batch's rows.
    spare_rows: Vec<LogRow<'static>>,
    /// Whether every record of `open` reached the spool (else it must stay in memory).
    open_on_disk: bool,
    sealed: VecDeque<Queued>,
    /// The store refused the last write (logged once per outage).
    failing: bool,
}

impl Flusher {
    /// With `spool`, batches a previous process left there are written first (read from disk
    /// one at a time).
    pub fn new(mut spool: Spool, rt: &GovRuntime) -> Self {
        let left: VecDeque<Queued> = spool
            .recover(|| rt.next_batch_id())
            .into_iter()
            .map(|id| Queued { id, batch: None })
            .collect();
        if !left.is_empty() {
            tracing::warn!(
                batches = left.len(),
                "usage spooled by an earlier process will be written"
            );
        }
        Self {
            spool,
            open: UsageBytes::default(),
            spare: UsageBytes::default(),
            spare_rows: Vec::new(),
            open_on_disk: true,
            sealed: left,
            failing: false,
        }
    }

    /// Gives back the buffers kept for the next batches, and the thread's freed memory: a
    /// whole flush interval passed without usage after some came (under load they are
    /// reused; after a burst they held ~1 MB for good).
    fn release_buffers(&mut self) {
        self.open = UsageBytes::default();
        self.spare = UsageBytes::default();
        self.spare_rows = Vec::new();
        crate::memory::release_thread_memory();
    }

    /// Keeps a written batch's records buffer, emptied, for the next open batch (the larger
    /// of it and the spare held).
    fn keep_spare(&mut self, mut records: UsageBytes) {
        if records.capacity() > self.spare.capacity() {
            records.clear();
            self.spare = records;
        }
    }
}

/// `rows` emptied, its allocation kept for rows of another batch: an empty vector borrows
/// nothing, and collecting its (no) items into rows of another lifetime reuses the
/// allocation (the standard library collects a vector's own iterator in place).
fn emptied(mut rows: Vec<LogRow<'_>>) -> Vec<LogRow<'static>> {
    rows.clear();
    rows.into_iter()
        .map(|_| unreachable!("the vector was cleared"))
        .collect()
}

impl GovRuntime {
    /// Receives usage until the queue closes, writing it every flush interval; a flush request
    /// (shutdown) writes at once and is answered.
    pub async fn flush_loop(self: Arc<Self>, queue: UsageReceiver, mut flusher: Flusher) {
        let mut tick = tokio::time::interval(self.settings.flush_interval);
        let mut received: u64 = 0;
        let mut quiet = QuietWatch::new(received);
        loop {
            let reply = tokio::select! {
                next = queue.next() => match next {
                    ToFlusher::Usage(batch) => {
                        received += 1;
                        QUEUE_DEPTH.store(queue.messages.len() as u64, Ordering::Relaxed);
                        self.usage_metrics.record(&batch);
                        if let Err(e) = flusher.spool.append(&batch) {
                            tracing::error!(error = %e, "cannot write usage to the spool; it is kept in memory");
                            flusher.open_on_disk = false;
                        }
                        flusher.open.append(batch);
                        // While the store refuses, retries keep to the interval.
                        if flusher.open.len() < FLUSH_AT || flusher.failing {
                            continue;
                        }
                        None
                    }
                    ToFlusher::Now(ack) => Some(ack),
                },
                _ = tick.tick() => {
                    // Quiet means no batch since the last tick, whose flush sealed the open
                    // one; batches the store has not taken yet (an outage) keep their memory.
                    if quiet.tick(received) && flusher.sealed.is_empty() {
                        flusher.release_buffers();
                    }
                    None
                }
            };
            // With nothing waiting behind this flush, its store work may take longer and let
            // a shard on the same core run in between (see `Pace`); with a backlog it runs
            // flat out, so that the store keeps pace with the shards. Nothing means no message
            // at all: at saturation messages arrive during every flush, so most flushes run
            // flat out (allowing 2 raised peak RSS at saturation more; docs/perf.md).
            let pace = if queue.messages.is_empty() && flusher.sealed.is_empty() {
                Pace::Yielding
            } else {
                Pace::FlatOut
            };
            self.flush(&mut flusher, pace).await;
            SPOOL_BACKLOG.store(flusher.sealed.len() as u64, Ordering::Relaxed);
            if let Some(ack) = reply {
                let _ = ack.send(());
            }
        }
    }

    /// Seals what came since the last flush, then writes sealed batches in order until the
    /// store refuses one.
    async fn flush(&self, flusher: &mut Flusher, pace: Pace) {
        if !flusher.open.is_empty() {
            let id = self.next_batch_id();
            let mut on_disk = std::mem::replace(&mut flusher.open_on_disk, true);
            if let Err(e) = flusher.spool.seal(&id) {
                tracing::error!(error = %e, "cannot seal the usage spool's open file");
                on_disk = false;
            }
            // The next batch fills the last written one's buffer: under load it fills up to
            // FLUSH_AT again, with room for it already there.
            let next = std::mem::take(&mut flusher.spare);
            let records = std::mem::replace(&mut flusher.open, next);
            let keep = !on_disk || flusher.sealed.len() < IN_MEMORY;
            flusher.sealed.push_back(Queued {
                batch: keep.then(|| Sealed {
                    id: id.clone(),
                    node: self.fleet.as_ref().map(|f| f.node_id().to_owned()),
                    records,
                }),
                id,
            });
        }
        while let Some(queued) = flusher.sealed.front_mut() {
            if queued.batch.is_none() {
                queued.batch = flusher.spool.load(&queued.id).map(|b| self.with_ids(b));
            }
            let Some(batch) = &queued.batch else {
                tracing::error!(batch = %queued.id, "a spooled usage batch cannot be read; skipped");
                flusher.sealed.pop_front();
                continue;
            };
            match self.write(batch, pace, &mut flusher.spare_rows).await {
                Ok(written) => {
                    if !written {
                        tracing::info!(batch = %batch.id, "usage batch was already in the store");
                    }
                    if flusher.failing {
                        tracing::info!("the store takes usage again");
                        flusher.failing = false;
                    }
                    flusher.spool.remove(&batch.id);
                    if let Some(Queued {
                        batch: Some(written),
                        ..
                    }) = flusher.sealed.pop_front()
                    {
                        flusher.keep_spare(written.records);
                    }
                }
                Err(e) => {
                    if !flusher.failing {
                        tracing::error!(error = %e, backlog = flusher.sealed.len(), "usage flush failed; kept in the spool and retried every interval");
                        flusher.failing = true;
                    }
                    return;
                }
            }
        }
    }

    /// A batch read back from the spool, its records without an id (spooled by a version
    /// whose shards gave none) given one. Only batches read from disk take this pass: a
    /// shard's records always have their request's id.
    fn with_ids(&self, mut batch: Sealed) -> Sealed {
        if batch.records.iter().all(|r| !r.id.is_empty()) {
            return batch;
        }
        let mut records = UsageBytes::with_capacity(batch.records.as_bytes().len());
        for r in batch.records.iter() {
            let generated;
            let id = if r.id.is_empty() {
                let seq = self.log_seq.fetch_add(1, Ordering::Relaxed);
                generated = format!("req-{}-{}-{seq}", r.ts_ms, self.process_token);
                &generated
            } else {
                r.id
            };
            records.push(&UsageRef { id, ..r });
        }
        batch.records = records;
        batch
    }

    /// Folds a sealed batch and writes it (false: it was written before).
    /// `spare_rows`: an emptied vector for the batch's log rows, given back emptied.
    async fn write(
        &self,
        batch: &Sealed,
        pace: Pace,
        spare_rows: &mut Vec<LogRow<'static>>,
    ) -> store::Result<bool> {
        // At most one log row per record: room for all of them at once, rather than a
        // vector of rows of a few hundred bytes each doubled (and moved) eleven times on
        // the way to 2,048.
        let mut logs: Vec<LogRow<'_>> = std::mem::take(spare_rows);
        logs.reserve(batch.records.len());
        let mut pending = Pending {
            logs,
            ..Pending::default()
        };
        for (i, r) in batch.records.iter().enumerate() {
            self.fold(&r, &mut pending);
            if pace == Pace::Yielding && i % 256 == 255 {
                std::thread::yield_now();
            }
        }
        let deltas: Vec<UsageDelta> = pending.deltas.into_values().collect();
        let settles: Vec<ShareSettle> = pending
            .settles
            .into_iter()
            .map(
                |((kind, id, limit, window_start, generation), units)| ShareSettle {
                    entity: EntityRef {
                        kind,
                        id: id.to_owned(),
                    },
                    limit_name: counter_name(limit, generation),
                    window_start,
                    units,
                },
            )
            .collect();
        let written = self
            .store
            .write_batch(&UsageBatch {
                id: &batch.id,
                node_id: batch.node.as_deref(),
                deltas: &deltas,
                settles: &settles,
                logs: &pending.logs,
                yielding: pace == Pace::Yielding,
            })
            .await;
        *spare_rows = emptied(pending.logs);
        written
    }

    fn fold<'a>(&self, r: &UsageRef<'a>, pending: &mut Pending<'a>) {
        self.log(r, pending);
        // A refused request is only logged: it used nothing and held no share.
        if !r.admitted {
            return;
        }
        let now = (r.ts_ms / 1000) as i64;
        for (kind, id) in r.owners() {
            let period = *pending
                .periods
                .entry((kind, id))
                .or_insert_with(|| self.budget_period(kind, id));
            let start = period.start(now);
            let generation = r.budget_generation(kind);
            pending
                .deltas
                .entry((kind, id, start, generation))
                .or_insert_with(|| {
                    UsageDelta::new(
                        EntityRef {
                            kind,
                            id: id.to_owned(),
                        },
                        start,
                        generation,
                    )
                })
                .add(r);
        }
        if self.fleet.is_some() {
            self.settle(r, now, pending);
        }
    }

    /// The record's request log row, under `id`, when the config wants one.
    fn log<'a>(&self, r: &UsageRef<'a>, pending: &mut Pending<'a>) {
        let wanted = match self.settings.request_logs {
            RequestLogs::All => true,
            RequestLogs::Errors => r.status >= 400,
            RequestLogs::None => false,
        };
        if wanted {
            pending.logs.push(LogRow::of(r.id, r));
        }
    }

    /// Fleet: what the record spent of this node's shares — a request of each request limit,
    /// its tokens of each token limit, its cost of each budget — in the window it falls in.
    fn settle<'a>(&self, r: &UsageRef<'a>, now: i64, pending: &mut Pending<'a>) {
        for (kind, id) in r.owners() {
            let limits = pending
                .shares
                .entry((kind, id))
                .or_insert_with(|| self.shared_limits_of(kind, id));
            for &(limit, held_at) in limits.iter() {
                let (units, generation) = share_spent(r, kind, limit, held_at);
                *pending
                    .settles
                    .entry((kind, id, limit, limit.start(now), generation))
                    .or_default() += units;
            }
        }
    }

    /// Fleet: the limits of `kind` `id` shared by the nodes, with their generations.
    fn shared_limits_of(&self, kind: EntityKind, id: &str) -> Vec<(LimitKind, u64)> {
        let shared = self.shared_limits.lock().unwrap_or_else(|e| e.into_inner());
        let entity = EntityRef {
            kind,
            id: id.to_owned(),
        };
        shared.get(&entity).cloned().unwrap_or_default()
    }
}

/// What `r` spent of its `kind` owner's shared `limit` — a request, its tokens or its cost —
/// and the generation of the counter it settles on: the one the node holds (`held_at`),
/// except that spend goes to the budget it was admitted on, an older generation's when the
/// node has applied a reset since.
fn share_spent(r: &UsageRef, kind: EntityKind, limit: LimitKind, held_at: u64) -> (u64, u64) {
    match limit {
        LimitKind::Requests(_) => (1, held_at),
        LimitKind::Tokens(_) => (r.usage.prompt + r.usage.completion, held_at),
        LimitKind::Budget(_) => (r.cost.nanos(), r.budget_generation(kind).unwrap_or(held_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_settles_on_the_budget_it_was_admitted_on() {
        let record: vocab::UsageRecord = serde_json::from_value(serde_json::json!({
            "ts_ms": 0, "provider": "p", "model": "m", "status": 200, "key_id": "k",
            "team_id": "t", "usage": {"prompt": 3, "completion": 4, "cached": 0},
            "cost": 900, "latency_us": 0, "stream": false, "estimated": false,
            "budget_generations": [2, null, null],
        }))
        .unwrap();
        let r = record.view();
        let budget = LimitKind::Budget(BudgetPeriod::Daily);
        // The node holds generation 3 now: the key's spend was admitted on generation 2.
        assert_eq!(share_spent(&r, EntityKind::Key, budget, 3), (900, 2));
        // The team had no budget generation on record: the held one.
        assert_eq!(share_spent(&r, EntityKind::Team, budget, 3), (900, 3));
        // Requests and tokens always settle on the counter the node holds.
        let rpm = LimitKind::Requests(vocab::Window::Minute);
        let tpm = LimitKind::Tokens(vocab::Window::Minute);
        assert_eq!(share_spent(&r, EntityKind::Key, rpm, 3), (1, 3));
        assert_eq!(share_spent(&r, EntityKind::Key, tpm, 3), (7, 3));
    }

    #[test]
    fn emptied_rows_keep_their_allocation() {
        let id = String::from("req-1");
        let record: vocab::UsageRecord = serde_json::from_value(serde_json::json!({
            "ts_ms": 0, "provider": "p", "model": "m", "status": 200,
            "usage": {"prompt": 1, "completion": 1, "cached": 0}, "cost": 0,
            "latency_us": 0, "stream": false, "estimated": false,
        }))
        .unwrap();
        let view = record.view();
        let mut rows = Vec::with_capacity(64);
        rows.push(LogRow::of(&id, &view));
        let (at, room) = (rows.as_ptr() as usize, rows.capacity());
        let spare = emptied(rows);
        assert!(spare.is_empty());
        assert_eq!((spare.as_ptr() as usize, spare.capacity()), (at, room));
    }
}
