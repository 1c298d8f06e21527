//! A shard's link to the fleet's shared cache tier. The tier is a table in the fleet's
//! PostgreSQL that only the coordinator talks to; a shard asks it through a queue and never
//! blocks: a lookup is polled for (every millisecond, up to the policy's
//! `fleet_lookup_timeout`, then it is a miss), an answer to keep is offered and forgotten
//! (a full queue drops it: the cache is an optimisation, never a duty).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Entry;

/// How often a waiting lookup looks for its answer.
const POLL: Duration = Duration::from_millis(1);

/// What a shard asks the coordinator's cache desk.
pub enum FleetAsk {
    /// Look `key` up in the shared tier and answer in `reply`.
    Get {
        key: [u8; 32],
        reply: Arc<FleetReply>,
    },
    /// Keep `entry` under `key` in the shared tier.
    Put { key: [u8; 32], entry: Arc<Entry> },
}

/// The answer to one lookup, filled in by the coordinator.
#[derive(Default)]
pub struct FleetReply {
    done: AtomicBool,
    entry: Mutex<Option<Arc<Entry>>>,
}

impl FleetReply {
    /// Answers the lookup (`None`: the tier has no live entry, or could not be read).
    pub fn answer(&self, entry: Option<Arc<Entry>>) {
        if let Ok(mut slot) = self.entry.lock() {
            *slot = entry;
        }
        self.done.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<Arc<Entry>> {
        self.entry.lock().ok()?.take()
    }
}

/// How a fleet lookup ended.
pub enum FleetLookup {
    Found(Arc<Entry>),
    Missing,
    /// No answer in time, or the queue was full: a miss, counted apart.
    Unanswered,
}

/// The sending end of the coordinator's cache desk.
#[derive(Clone)]
pub struct FleetLink {
    pub asks: crossbeam_channel::Sender<FleetAsk>,
}

impl FleetLink {
    /// Looks `key` up in the shared tier, waiting at most `timeout`.
    pub async fn lookup(&self, key: [u8; 32], timeout: Duration) -> FleetLookup {
        let reply = Arc::new(FleetReply::default());
        let ask = FleetAsk::Get {
            key,
            reply: reply.clone(),
        };
        if self.asks.try_send(ask).is_err() {
            return FleetLookup::Unanswered;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if reply.done.load(Ordering::Acquire) {
                return reply
                    .take()
                    .map_or(FleetLookup::Missing, FleetLookup::Found);
            }
            if Instant::now() >= deadline {
                return FleetLookup::Unanswered;
            }
            monoio::time::sleep(POLL).await;
        }
    }

    /// Offers an answer to the shared tier; dropped when the desk's queue is full.
    pub fn offer(&self, key: [u8; 32], entry: Arc<Entry>) -> bool {
        self.asks.try_send(FleetAsk::Put { key, entry }).is_ok()
    }
}
