//! ringgate's shared vocabulary: the words the data plane (`shards`), the store and the
//! coordinator all speak, defined once so that no two crates keep twins of them and no
//! converter sits between such twins.
//!
//! - [`entity`]: who is governed — keys, teams and customers;
//! - [`limit`]: the windows and budget periods limits are counted in, with the one
//!   implementation of when a window or period starts, which epoch it is, and when it resets;
//! - [`calendar`]: the UTC civil-date arithmetic behind monthly periods;
//! - [`usage`]: what one request used, as the data plane reports it;
//! - [`usage_bytes`]: usage records as the bytes they travel and wait in;
//! - [`money`]: integer nano-dollars (money is never a float).
//!
//! Pure data and arithmetic: no I/O, no clock reads, no allocation on the hot-path calls
//! (epochs, window starts), so the request path can use it freely.

pub mod calendar;
pub mod entity;
pub mod limit;
pub mod money;
pub mod usage;
pub mod usage_bytes;
pub mod varint;

pub use entity::{EntityKind, EntityRef};
pub use limit::{BudgetPeriod, LimitKind, Window};
pub use money::NanoUsd;
pub use usage::{BudgetGenerations, CacheHit, CacheKind, TokenUsage, UsageRecord, UsageRef};
pub use usage_bytes::UsageBytes;
