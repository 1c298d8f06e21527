//! The shard's outbox of usage: records of requests (as bytes, [`vocab::UsageBytes`]) and
//! debts, sent to the coordinator in batches.

use std::collections::VecDeque;
use std::sync::Arc;

use vocab::{UsageBytes, UsageRef};

/// Collects a shard's usage records and sends them to the coordinator in batches — when a
/// batch is full, and from a timer — so the coordinator is woken a few times per second, not
/// once per request. A batch the queue has no room for stays here and goes with the next one;
/// beyond `MAX_PENDING` records the oldest are dropped and counted. Debts (usage beyond a
/// lease, which the coordinator's limits must count) the queue has no room for stay here too,
/// all of them, and go first at the next send.
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

    /// Adds a record; sends the batch when full. Returns how many records were dropped.
    pub fn push(
        &self,
        record: &UsageRef<'_>,
        events: &crossbeam_channel::Sender<super::GovEvent>,
    ) -> usize {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(record);
            pending.len() >= Self::BATCH
        };
        if full {
            self.flush(events)
        } else {
            0
        }
    }

    /// Sends a debt of `units` of `limit` now, or with the next send when the queue is full
    /// (or debts wait already: they go in order).
    pub fn send_debt(
        &self,
        limit: &Arc<super::Limit>,
        units: u64,
        events: &crossbeam_channel::Sender<super::GovEvent>,
    ) {
        let mut debts = self.debts.borrow_mut();
        debts.push_back((limit.clone(), units));
        send_debts(&mut debts, events);
    }

    /// Sends whatever is pending. Returns how many records were dropped.
    pub fn flush(&self, events: &crossbeam_channel::Sender<super::GovEvent>) -> usize {
        send_debts(&mut self.debts.borrow_mut(), events);
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
        match events.try_send(super::GovEvent::Usage(batch)) {
            Ok(()) => 0,
            Err(e) => {
                let super::GovEvent::Usage(mut batch) = e.into_inner() else {
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
    events: &crossbeam_channel::Sender<super::GovEvent>,
) {
    while let Some((limit, units)) = debts.front() {
        let debt = super::GovEvent::Debt {
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

    #[test]
    fn a_shard_whose_records_wait_sheds_before_it_would_drop() {
        let (events, _queue) = crossbeam_channel::bounded(1);
        // The queue is full: every batch stays on the shard.
        events
            .try_send(super::super::GovEvent::Usage(UsageBytes::default()))
            .unwrap();
        // A record in its owned form (as older spools hold it): the fields without defaults
        // are enough.
        let record: vocab::UsageRecord = serde_json::from_value(serde_json::json!({
            "ts_ms": 0, "provider": "p", "model": "m", "status": 200,
            "usage": {"prompt": 1, "completion": 1, "cached": 0}, "cost": 0,
            "latency_us": 0, "stream": false, "estimated": false,
        }))
        .unwrap();
        let batcher = UsageBatcher::default();
        let mut dropped = 0;
        while !batcher.backlogged() {
            dropped += batcher.push(&record.view(), &events);
        }
        assert_eq!(batcher.pending.borrow().len(), UsageBatcher::SHED_AT);
        assert_eq!(dropped, 0, "shedding starts before anything is dropped");
    }

    #[test]
    fn debts_wait_for_room_in_the_queue_and_are_never_dropped() {
        let (events, queue) = crossbeam_channel::bounded(1);
        let limit = Arc::new(super::super::Limit::new(
            vocab::EntityRef::key("k"),
            vocab::LimitKind::Budget(vocab::BudgetPeriod::Daily),
            100,
            1,
        ));
        let batcher = UsageBatcher::default();
        batcher.send_debt(&limit, 3, &events);
        batcher.send_debt(&limit, 4, &events); // the queue is full: kept
        batcher.send_debt(&limit, 5, &events);
        let mut got = Vec::new();
        for _ in 0..6 {
            match queue.try_recv() {
                Ok(super::super::GovEvent::Debt { units, .. }) => got.push(units),
                Ok(other) => panic!("{other:?}"),
                Err(_) => {
                    batcher.flush(&events);
                }
            }
        }
        assert_eq!(got, [3, 4, 5], "all of them, in order");
    }
}
