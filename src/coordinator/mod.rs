//! The per-node coordinator: one thread running tokio, owning everything slow or blocking so
//! the shards never wait on it. Today it serves the control port — `GET /metrics` (Prometheus
//! text, read from the shards' counter blocks) and `GET /health`. The store, the admin API,
//! quota leases and cluster sync join it here.

mod control;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use shards::snapshot::{NodeState, Snapshot};
use shards::stats::ShardStats;

/// What the coordinator reads from the rest of the node.
pub struct NodeView {
    pub snapshot: Arc<Snapshot>,
    pub shards: Vec<Arc<ShardStats>>,
    pub node: Arc<NodeState>,
}

/// Binds the control port and starts the coordinator thread. Returns the bound address.
pub fn start(listen: SocketAddr, view: NodeView) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on control address {listen}: {e}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let view = Arc::new(view);
    std::thread::Builder::new()
        .name("coordinator".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "coordinator runtime failed to start");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => control::serve(listener, view).await,
                    Err(e) => tracing::error!(error = %e, "control listener failed"),
                }
            });
        })?;
    Ok(addr)
}
