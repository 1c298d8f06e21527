//! ringgate's data plane: one shard per core, each a monoio runtime on io_uring with its own
//! listener, upstream pools and buffers. Nothing on the request path takes a lock, talks to
//! another shard or blocks. The request path itself is listed stage by stage in
//! [`pipeline`]. This crate knows nothing of tokio, the store or the coordinator; the binary
//! hands it a [`snapshot::Snapshot`] and a [`runtime::ShardPlan`].

pub mod admission;
pub mod balance;
pub mod body;
pub mod clock;
pub mod conn;
pub mod dialect;
pub mod error;
pub mod exchange;
pub mod extract;
pub mod failover;
pub mod governance;
pub mod health;
pub mod http;
pub mod io;
pub mod outbound;
pub mod pipeline;
pub mod pool;
pub mod relay;
pub mod route;
pub mod runtime;
pub mod shard;
pub mod snapshot;
pub mod stats;
pub mod tls;
