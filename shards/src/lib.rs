//! ringgate's data plane: one shard per core, each a monoio runtime on io_uring with its own
//! listener, upstream pools and buffers. Nothing on the request path takes a lock, talks to
//! another shard or blocks. The request path is listed phase by phase in one place: the
//! `path` module's doc comment (and docs/architecture.md). This crate knows nothing of tokio,
//! the store or the coordinator; the binary hands it a [`snapshot::Snapshot`] and a
//! [`runtime::ShardPlan`].
//!
//! Layout: `path/` holds the request path (one module per phase), `state/` what a shard
//! owns, and the leaf modules below the vocabulary both use. Only what the binary and the
//! benches use is public.

pub mod cache;
pub mod catalog;
pub mod clock;
pub mod cpus;
pub mod dialect;
pub mod direct;
pub mod error;
pub mod governance;
pub mod http;
mod io;
pub mod names;
mod path;
mod poll_clock;
pub mod quiet;
pub mod route;
pub mod runtime;
pub mod snapshot;
mod state;
mod timer;
pub mod tls;
pub mod trace;

pub use state::{histogram, series, stats};

/// Hot-path pieces that the criterion benches in `benches/` measure; not an API.
#[doc(hidden)]
pub mod bench {
    pub use crate::cache::replay::{replay, Asked};
    pub use crate::path::fields::{extract_fields, Spliced};
    pub use crate::state::balance::{backoff, KeyStates, Rng};
    pub use crate::state::health::Health;
}
