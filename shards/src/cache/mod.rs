//! The response cache: answers kept by a key of the normalized request ([`key`]), judged
//! per request by [`policy`], replayed in the client's API and stream mode ([`replay`]), and
//! shared by a fleet through its database ([`fleet`]).
//!
//! One memory tier per node, shared by every shard: a concurrent map whose reads take no
//! lock (moka: TinyLFU admission, LRU eviction, bounded in bytes, each entry with its own
//! TTL). An entry is an answer in its canonical form — a whole OpenAI chat completion or
//! embeddings list, whatever API the client spoke and whether it streamed — so one entry
//! serves the chat, Anthropic and Responses clients, streamed or not.

pub mod desk;
pub mod key;
pub mod nearest;
pub mod policy;
pub(crate) mod replay;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vocab::TokenUsage;

pub use key::Form;

/// What the cache did for one request (the response's `x-ringgate-cache`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheStatus {
    Hit,
    /// Answered with a similar request's answer.
    SemanticHit {
        similarity: f32,
    },
    /// Looked up and not found (or not looked up: `no-cache`); the fresh answer is kept.
    Miss,
    /// Not looked up and not kept.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::SemanticHit { .. } => "semantic-hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// A cached answer.
#[derive(Debug)]
pub struct Entry {
    pub form: Form,
    /// The answer's canonical JSON (a `chat.completion` or an embeddings `list`).
    pub body: Box<[u8]>,
    /// What making the answer cost: a hit saves it.
    pub usage: TokenUsage,
    /// Who answered, to price what a hit saves.
    pub provider: Box<str>,
    pub model: Box<str>,
    /// Unix milliseconds after which the entry is not served.
    pub expires_at_ms: u64,
}

/// An entry's fields but the body, as the fleet's shared tier stores them beside it.
#[derive(Serialize, Deserialize)]
struct Meta<'a> {
    form: &'a str,
    provider: &'a str,
    model: &'a str,
    prompt: u64,
    completion: u64,
    #[serde(default)]
    cached: u64,
}

impl Entry {
    /// Bytes the entry holds, as the memory bound counts them (the body plus its keeping).
    pub fn weight(&self) -> u32 {
        let bytes = self.body.len() + self.provider.len() + self.model.len() + 128;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// The fields but the body, as JSON text (the shared tier's `meta`).
    pub fn meta_json(&self) -> String {
        let meta = Meta {
            form: self.form.as_str(),
            provider: &self.provider,
            model: &self.model,
            prompt: self.usage.prompt,
            completion: self.usage.completion,
            cached: self.usage.cached,
        };
        serde_json::to_string(&meta).unwrap_or_default()
    }

    /// An entry from the shared tier's row; `None` when its meta cannot be read (written by
    /// a newer version, or damaged): a miss.
    pub fn from_row(body: Vec<u8>, meta: &str, expires_at_ms: u64) -> Option<Entry> {
        let meta: Meta<'_> = serde_json::from_str(meta).ok()?;
        Some(Entry {
            form: Form::parse(meta.form)?,
            body: body.into_boxed_slice(),
            usage: TokenUsage {
                prompt: meta.prompt,
                completion: meta.completion,
                cached: meta.cached,
            },
            provider: meta.provider.into(),
            model: meta.model.into(),
            expires_at_ms,
        })
    }

    fn remaining(&self, now_ms: u64) -> Duration {
        Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms))
    }
}

/// Each entry lives until its own expiry.
struct EntryExpiry;

impl moka::Expiry<[u8; 32], Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        entry: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.remaining(crate::clock::unix_now_ms()))
    }
}

/// The node's cache: the memory tier, and the link to the coordinator's cache desk when
/// the node shares a fleet's tier or has a semantic cache.
pub struct NodeCache {
    memory: moka::sync::Cache<[u8; 32], Arc<Entry>>,
    evictions: Arc<AtomicU64>,
    pub desk: Option<desk::DeskLink>,
    /// The desk reads and writes the fleet's shared tier.
    pub fleet: bool,
    /// Embeddings in the semantic index (kept by the desk, which owns the index).
    semantic_entries: AtomicU64,
}

impl std::fmt::Debug for NodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCache")
            .field("entries", &self.memory.entry_count())
            .field("bytes", &self.memory.weighted_size())
            .field("desk", &self.desk.is_some())
            .field("fleet", &self.fleet)
            .finish()
    }
}

impl NodeCache {
    /// A memory tier of at most `max_bytes`; `fleet`: the desk serves a fleet's shared tier.
    pub fn new(max_bytes: u64, desk: Option<desk::DeskLink>, fleet: bool) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let evicted = evictions.clone();
        let memory = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &[u8; 32], entry: &Arc<Entry>| entry.weight())
            .expire_after(EntryExpiry)
            .eviction_listener(move |_key, _entry, cause| {
                // Expired entries and replaced ones are not evictions: only the byte bound's.
                if cause == moka::notification::RemovalCause::Size {
                    evicted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            memory,
            evictions,
            desk,
            fleet,
            semantic_entries: AtomicU64::new(0),
        }
    }

    /// The entry for `key`, unless it has expired.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Entry>> {
        let entry = self.memory.get(key)?;
        (entry.expires_at_ms > crate::clock::unix_now_ms()).then_some(entry)
    }

    pub fn insert(&self, key: [u8; 32], entry: Arc<Entry>) {
        self.memory.insert(key, entry);
    }

    /// Drops every entry of the memory tier (the admin API's flush).
    pub fn clear(&self) {
        self.memory.invalidate_all();
    }

    pub fn semantic_entries(&self) -> u64 {
        self.semantic_entries.load(Ordering::Relaxed)
    }

    pub fn set_semantic_entries(&self, entries: u64) {
        self.semantic_entries.store(entries, Ordering::Relaxed);
    }

    /// Entries, bytes and evictions so far, after the tier's pending upkeep (for metrics).
    pub fn stats(&self) -> CacheTierStats {
        self.memory.run_pending_tasks();
        CacheTierStats {
            entries: self.memory.entry_count(),
            bytes: self.memory.weighted_size(),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CacheTierStats {
    pub entries: u64,
    pub bytes: u64,
    pub evictions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: usize, ttl_ms: u64) -> Arc<Entry> {
        Arc::new(Entry {
            form: Form::Chat,
            body: vec![b'x'; bytes].into_boxed_slice(),
            usage: TokenUsage {
                prompt: 3,
                completion: 4,
                cached: 0,
            },
            provider: "p".into(),
            model: "m".into(),
            expires_at_ms: crate::clock::unix_now_ms() + ttl_ms,
        })
    }

    #[test]
    fn expired_entries_are_not_served() {
        let cache = NodeCache::new(1 << 20, None, false);
        cache.insert([1; 32], entry(10, 60_000));
        cache.insert([2; 32], entry(10, 0));
        assert!(cache.get(&[1; 32]).is_some());
        assert!(cache.get(&[2; 32]).is_none());
    }

    #[test]
    fn the_byte_bound_evicts() {
        let cache = NodeCache::new(64 * 1024, None, false);
        for i in 0..64u8 {
            cache.insert([i; 32], entry(4096, 60_000));
        }
        let stats = cache.stats();
        assert!(stats.bytes <= 64 * 1024, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
    }

    #[test]
    fn meta_round_trips() {
        let e = entry(5, 1000);
        let back = Entry::from_row(e.body.to_vec(), &e.meta_json(), e.expires_at_ms).unwrap();
        assert_eq!(back.usage, e.usage);
        assert_eq!(back.form, Form::Chat);
        assert_eq!(&*back.model, "m");
        assert!(Entry::from_row(vec![], "{}", 0).is_none());
    }
}
