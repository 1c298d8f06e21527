//! The shard's outbox of usage: records of requests (as bytes, [`vocab::UsageBytes`]), sent
//! to the coordinator's store writer in batches, and debts, sent to its lease desk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::TrySendError;
use vocab::{UsageBytes, UsageRef};

use super::{GovEvent, Governance, ToFlusher};

/// Times a shard found the store writer's queue full and kept its batch, for `/metrics`
/// (written only then: never on a healthy node's request path).
pub static USAGE_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);

/// Collects a shard's usage records and sends them to the coordinator's store writer in
/// batches — when a batch is full, and from a timer — so the coordinator is woken a few times
/// per second, not once per request. A batch the queue has no room for stays here and goes
/// with the next one; beyond `MAX_PENDING` records the oldest are dropped and counted. Debts
/// (usage beyond a lease, which the lease desk's limits must count) its queue has no room for
/// stay here too, all of them, and go first at the next send.
///
/// A record is written into the batch's buffer as it is pushed (no allocation of its own);
/// a batch sent away takes its buffer with it, and the next one starts at the size a full
/// batch took.
#[derive(Debug, Default)]
pub struct UsageBatcher {
    pending: std::cell::RefCell<UsageBytes>,
    /// Bytes a full batch takes, as the last one sent took them.
    full_size: std::cell::Cell<usize>,
    debts: std::cell::RefCell<VecDeque<(Arc<super::Limit>, u64)>>,
}

impl UsageBatcher {
    /// Records sent together once this many are pending.
    pub const BATCH: usize = 256;
    /// Records kept while the coordinator's queue is full.
    pub const MAX_PENDING: usize = 65_536;
    /// Records kept beyond which the shard sheds new governed requests (503 `usage_backlog`)
    /// rather than serve requests whose records it might have to drop (usage no limit
    /// would count); the other half is room for the requests admitted before.
    pub const SHED_AT: usize = Self::MAX_PENDING / 2;

    /// Whether the coordinator is so far behind that new governed requests are shed.
    pub fn backlogged(&self) -> bool {
        self.pending.borrow().len() >= Self::SHED_AT
    }

    /// Whether nothing waits to be sent (records or debts).
    pub fn is_empty(&self) -> bool {
        self.pending.borrow().is_empty() && self.debts.borrow().is_empty()
    }

    /// Adds a record; sends the batch when full. Returns how many records were dropped.
    pub fn push(&self, record: &UsageRef<'_>, gov: &Governance) -> usize {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(record);
            pending.len() >= Self::BATCH
        };
        if full {
            self.flush(gov)
        } else {
            0
        }
    }

    /// Sends a debt of `units` of `limit` now, or with the next send when the queue is full
    /// (or debts wait already: they go in order).
    pub fn send_debt(&self, limit: &Arc<super::Limit>, units: u64, gov: &Governance) {
        let mut debts = self.debts.borrow_mut();
        debts.push_back((limit.clone(), units));
        send_debts(&mut debts, &gov.events);
    }

    /// Sends whatever is pending. Returns how many records were dropped.
    pub fn flush(&self, gov: &Governance) -> usize {
        send_debts(&mut self.debts.borrow_mut(), &gov.events);
        let batch = {
            let mut pending = self.pending.borrow_mut();
            if pending.is_empty() {
                return 0;
            }
            // The next batch starts at its full size rather than growing to it record by
            // record (a full batch is what a busy shard sends).
            if pending.len() >= Self::BATCH {
                let per_record = pending.as_bytes().len() / pending.len();
                self.full_size.set(per_record * Self::BATCH);
            }
            let next = UsageBytes::with_capacity(self.full_size.get());
            std::mem::replace(&mut *pending, next)
        };
        match gov.usage.try_send(ToFlusher::Usage(batch)) {
            Ok(()) => 0,
            // The node is stopping and its store writer gone: nothing can take the records.
            Err(TrySendError::Disconnected(_)) => 0,
            Err(TrySendError::Full(message)) => {
                USAGE_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
                let ToFlusher::Usage(mut batch) = message else {
                    return 0;
                };
                let dropped = batch.len().saturating_sub(Self::MAX_PENDING);
                batch.drop_oldest(dropped);
                *self.pending.borrow_mut() = batch;
                dropped
            }
        }
    }
}

// Shedding must start before records are dropped.
const _: () = assert!(UsageBatcher::SHED_AT < UsageBatcher::MAX_PENDING);

/// Sends waiting debts, oldest first, until the queue is full.
fn send_debts(
    debts: &mut VecDeque<(Arc<super::Limit>, u64)>,
    events: &crossbeam_channel::Sender<GovEvent>,
) {
    while let Some((limit, units)) = debts.front() {
        let debt = GovEvent::Debt {
            limit: limit.clone(),
            units: *units,
        };
        if events.try_send(debt).is_err() {
            return;
        }
        debts.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Governance whose lease desk and store writer queues hold `events` and `usage`
    /// messages, with their receiving ends.
    fn governance(
        events: usize,
        usage: usize,
    ) -> (
        Governance,
        crossbeam_channel::Receiver<GovEvent>,
        crossbeam_channel::Receiver<ToFlusher>,
    ) {
        let (events, desk) = crossbeam_channel::bounded(events);
        let (messages, flusher) = crossbeam_channel::bounded(usage);
        let gov = Governance {
            snapshot: Default::default(),
            events,
            usage: super::super::UsageQueue {
                messages,
                wake: Box::new(|| {}),
            },
            lease_wait: std::time::Duration::ZERO,
            node_credential: None,
        };
        (gov, desk, flusher)
    }

    /// A record in its owned form (as older spools hold it): the fields without defaults
    /// are enough.
    fn record() -> vocab::UsageRecord {
        serde_json::from_value(serde_json::json!({
            "ts_ms": 0, "provider": "p", "model": "m", "status": 200,
            "usage": {"prompt": 1, "completion": 1, "cached": 0}, "cost": 0,
            "latency_us": 0, "stream": false, "estimated": false,
        }))
        .unwrap()
    }

    #[test]
    fn a_batch_the_queue_has_no_room_for_goes_with_the_next_send() {
        let (gov, _desk, flusher) = governance(1, 1);
        let batcher = UsageBatcher::default();
        let full = USAGE_QUEUE_FULL.load(Ordering::Relaxed);
        for _ in 0..UsageBatcher::BATCH {
            batcher.push(&record().view(), &gov);
        }
        batcher.push(&record().view(), &gov);
        assert_eq!(batcher.flush(&gov), 0, "kept, not dropped");
        assert!(USAGE_QUEUE_FULL.load(Ordering::Relaxed) > full, "counted");
        let Ok(ToFlusher::Usage(first)) = flusher.try_recv() else {
            panic!("the first batch was sent");
        };
        assert_eq!(first.len(), UsageBatcher::BATCH);
        batcher.flush(&gov);
        let Ok(ToFlusher::Usage(second)) = flusher.try_recv() else {
            panic!("the kept record went with the next send");
        };
        assert_eq!(second.len(), 1);
        assert!(batcher.is_empty());
    }

    #[test]
    fn a_shard_whose_records_wait_sheds_before_it_would_drop() {
        let (gov, _desk, _flusher) = governance(1, 1);
        // The queue is full: every batch stays on the shard.
        gov.usage
            .try_send(ToFlusher::Usage(UsageBytes::default()))
            .unwrap();
        let record = record();
        let batcher = UsageBatcher::default();
        let mut dropped = 0;
        while !batcher.backlogged() {
            dropped += batcher.push(&record.view(), &gov);
        }
        assert_eq!(batcher.pending.borrow().len(), UsageBatcher::SHED_AT);
        assert_eq!(dropped, 0, "shedding starts before anything is dropped");
    }

    #[test]
    fn debts_wait_for_room_in_the_queue_and_are_never_dropped() {
        let (gov, desk, _flusher) = governance(1, 1);
        let limit = Arc::new(super::super::Limit::new(
            vocab::EntityRef::key("k"),
            vocab::LimitKind::Budget(vocab::BudgetPeriod::Daily),
            100,
            1,
        ));
        let batcher = UsageBatcher::default();
        batcher.send_debt(&limit, 3, &gov);
        batcher.send_debt(&limit, 4, &gov); // the queue is full: kept
        batcher.send_debt(&limit, 5, &gov);
        let mut got = Vec::new();
        for _ in 0..6 {
            match desk.try_recv() {
                Ok(GovEvent::Debt { units, .. }) => got.push(units),
                Ok(other) => panic!("{other:?}"),
                Err(_) => {
                    batcher.flush(&gov);
                }
            }
        }
        assert_eq!(got, [3, 4, 5], "all of them, in order");
    }
}
