//! A shard's link to the coordinator's cache desk, which does the cache's work that must
//! not run on a shard: reading and writing the fleet's shared tier (a table in the fleet's
//! PostgreSQL) and the semantic cache (embedding a request through ringgate's own
//! providers, and searching the node's index of embeddings). A shard asks through a queue
//! and never blocks: an answer is polled for (every millisecond, up to a deadline, then the
//! lookup is a miss), an answer to keep is offered and forgotten (a full queue drops it:
//! the cache is an optimisation, never a duty).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Entry;

/// How often a waiting lookup looks for its answer.
const POLL: Duration = Duration::from_millis(1);

/// A request's place in the semantic cache: its partition (everything but the last user
/// turn, hashed) and the embedding of its last user turn.
#[derive(Debug, Clone)]
pub struct SemanticKey {
    pub partition: [u8; 32],
    pub vector: Arc<[f32]>,
}

/// What the semantic cache found for a request.
#[derive(Debug, Default)]
pub struct Similar {
    /// The request's embedding (`None`: it could not be made; nothing is kept for it).
    pub vector: Option<Arc<[f32]>>,
    /// The exact key of the most similar cached request above the threshold, and the
    /// similarity.
    pub nearest: Option<([u8; 32], f32)>,
}

/// What a shard asks the coordinator's cache desk.
pub enum DeskAsk {
    /// Look `key` up in the fleet's shared tier.
    Get {
        key: [u8; 32],
        reply: Arc<Reply<Option<Arc<Entry>>>>,
    },
    /// Keep `entry` under `key`: in the fleet's shared tier, and with its embedding in the
    /// semantic index.
    Put {
        key: [u8; 32],
        entry: Arc<Entry>,
        semantic: Option<SemanticKey>,
    },
    /// Embed `text` and find the most similar request of `partition` at least `threshold`
    /// similar.
    Similar {
        partition: [u8; 32],
        text: String,
        threshold: f32,
        reply: Arc<Reply<Similar>>,
    },
}

/// The answer to one ask, filled in by the coordinator.
pub struct Reply<T> {
    done: AtomicBool,
    value: Mutex<Option<T>>,
}

impl<T> Default for Reply<T> {
    fn default() -> Self {
        Self {
            done: AtomicBool::new(false),
            value: Mutex::new(None),
        }
    }
}

impl<T> Reply<T> {
    pub fn answer(&self, value: T) {
        if let Ok(mut slot) = self.value.lock() {
            *slot = Some(value);
        }
        self.done.store(true, Ordering::Release);
    }

    /// Waits for the answer until `timeout` has passed (`None`: no answer in time).
    async fn wait(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.done.load(Ordering::Acquire) {
                return self.value.lock().ok()?.take();
            }
            if Instant::now() >= deadline {
                return None;
            }
            crate::timer::sleep(POLL).await;
        }
    }
}

/// How a lookup through the desk ended.
pub enum Asked<T> {
    Answered(T),
    /// No answer in time, or the queue was full: a miss, counted apart.
    Unanswered,
}

/// The sending end of the coordinator's cache desk.
#[derive(Clone)]
pub struct DeskLink {
    pub asks: crossbeam_channel::Sender<DeskAsk>,
}

impl DeskLink {
    /// Looks `key` up in the fleet's shared tier, waiting at most `timeout`.
    pub async fn get(&self, key: [u8; 32], timeout: Duration) -> Asked<Option<Arc<Entry>>> {
        let reply = Arc::new(Reply::default());
        self.ask(DeskAsk::Get {
            key,
            reply: reply.clone(),
        })
        .then_wait(&reply, timeout)
        .await
    }

    /// Embeds `text` and looks for the most similar cached request of `partition`.
    pub async fn similar(
        &self,
        partition: [u8; 32],
        text: String,
        threshold: f32,
        timeout: Duration,
    ) -> Asked<Similar> {
        let reply = Arc::new(Reply::default());
        self.ask(DeskAsk::Similar {
            partition,
            text,
            threshold,
            reply: reply.clone(),
        })
        .then_wait(&reply, timeout)
        .await
    }

    /// Offers an answer to keep; dropped when the desk's queue is full.
    pub fn offer(&self, key: [u8; 32], entry: Arc<Entry>, semantic: Option<SemanticKey>) -> bool {
        self.asks
            .try_send(DeskAsk::Put {
                key,
                entry,
                semantic,
            })
            .is_ok()
    }

    fn ask(&self, ask: DeskAsk) -> Queued {
        Queued(self.asks.try_send(ask).is_ok())
    }
}

/// Whether an ask reached the desk's queue.
struct Queued(bool);

impl Queued {
    async fn then_wait<T>(self, reply: &Reply<T>, timeout: Duration) -> Asked<T> {
        if !self.0 {
            return Asked::Unanswered;
        }
        reply
            .wait(timeout)
            .await
            .map_or(Asked::Unanswered, Asked::Answered)
    }
}
