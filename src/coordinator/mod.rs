//! The per-node coordinator: one thread running tokio, owning everything slow or blocking so
//! the shards never wait on it — the store, governance (virtual keys, leases, usage flushes),
//! trace export ([`traces`]), the model catalog ([`catalog`]), and the control port: `GET /metrics`, `GET /health` and the
//! admin API under `/admin/`.
//!
//! Start order: [`start`] opens the store and publishes the first governance snapshot before
//! it returns, so shards never serve a request without it; the node's view (shard counters)
//! is attached once the shards run.

pub mod admin;
mod apply;
pub mod cache_desk;
pub mod catalog;
mod control;
pub mod fleet;
pub mod flusher;
pub mod governance;
mod housekeeping;
mod http;
pub mod leases;
pub mod metrics;
mod single_node;
mod spool;
pub mod traces;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use shards::governance::{GovEvent, Governance, ToFlusher};
use shards::runtime::IoDriver;
use shards::snapshot::NodeState;
use shards::stats::ShardStats;

use governance::{GovRuntime, GovSettings};

/// What the coordinator reads from the rest of the node.
pub struct NodeView {
    pub shards: Vec<Arc<ShardStats>>,
    pub node: Arc<NodeState>,
    /// The io driver the shards run on.
    pub io_driver: IoDriver,
    /// Keys, limits and budgets, when governance is on.
    pub gov: Option<Arc<shards::governance::Governance>>,
    /// The response cache, when the node has one.
    pub cache: Option<Arc<shards::cache::NodeCache>>,
}

/// Governance to run, when it is on.
pub struct GovStart {
    pub gov: Arc<Governance>,
    pub events: crossbeam_channel::Receiver<GovEvent>,
    /// The shards' usage batches, for the store writer.
    pub usage: flusher::UsageReceiver,
    pub database: store::DatabaseConfig,
    pub secrets: Option<store::SecretBox>,
    pub settings: GovSettings,
    /// Enables the admin API.
    pub admin_token: Option<String>,
    pub shards: usize,
    /// Rebuilds the data plane's snapshot when providers change through the admin API.
    pub providers: governance::ProviderReload,
    /// The response cache shares its answers through the fleet's database (when the node
    /// is one of a fleet).
    pub cache_fleet: bool,
}

/// What to start the coordinator with.
pub struct Start {
    /// The control port's address.
    pub control_listen: SocketAddr,
    /// Governance to run, when it is on.
    pub gov: Option<GovStart>,
    /// See [`ControlState::metrics_token`].
    pub metrics_token: Option<String>,
    /// Traces to export, when they are on.
    pub traces: Option<traces::TraceExport>,
    /// The CPUs the coordinator's threads run on (those the pinned shards leave), or `None`
    /// to float over the process's mask.
    pub cpus: Option<Vec<usize>>,
    /// The model catalog to keep.
    pub catalog: catalog::CatalogStart,
    /// The response cache's desk, when the node's cache needs one (a fleet's shared tier,
    /// or the semantic cache).
    pub cache_desk: Option<cache_desk::DeskStart>,
}

/// State shared by the control port's handlers.
pub struct ControlState {
    pub view: OnceLock<NodeView>,
    pub admin: Option<admin::AdminState>,
    /// This node's membership, on a PostgreSQL store.
    pub fleet: Option<Arc<fleet::Fleet>>,
    /// Tokens and spend by key, when governance is on.
    pub usage: Option<Arc<metrics::usage::UsageMetrics>>,
    /// `/metrics` and `/latency` require `Authorization: Bearer` with this token.
    pub metrics_token: Option<String>,
    /// The trace exporter's counts, when traces are on.
    pub traces: Option<Arc<traces::TraceMetrics>>,
    /// Catalog fetches and sizes.
    pub catalog: Arc<catalog::metrics::CatalogMetrics>,
}

/// A running coordinator.
pub struct Coordinator {
    pub control_addr: SocketAddr,
    state: Arc<ControlState>,
    /// The shards' governance, whose store-writer queue takes the flush request at shutdown
    /// (behind the shards' usage).
    flush: Option<Arc<Governance>>,
    /// Fleet: the runtime and desk to give shares back with when the node leaves.
    leave: Option<(tokio::runtime::Handle, Arc<leases::LeaseDesk>)>,
    /// SQLite: this node's exclusive claim on the database file.
    _sqlite: Option<single_node::SqliteClaim>,
}

impl Coordinator {
    /// Gives the control port the shards' counters (after they started).
    pub fn attach(&self, view: NodeView) {
        let _ = self.state.view.set(view);
    }

    /// Writes pending usage and logs to the store now; waits up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(gov) = &self.flush else {
            return true;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        gov.usage.send_timeout(ToFlusher::Now(tx), timeout) && rx.recv_timeout(timeout).is_ok()
    }

    /// Fleet: gives back every unused share and leaves the fleet (after the shards drained
    /// and usage was flushed); waits up to `timeout`.
    pub fn leave_fleet(&self, timeout: Duration) -> bool {
        let (Some(fleet), Some((runtime, desk))) = (&self.state.fleet, &self.leave) else {
            return true;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (fleet, desk) = (fleet.clone(), desk.clone());
        runtime.spawn(async move {
            fleet.leave(&desk).await;
            let _ = tx.send(());
        });
        rx.recv_timeout(timeout).is_ok()
    }
}

/// Binds the control port, starts the coordinator thread, and (with governance) waits until
/// the store is open and the first snapshot is published.
pub fn start(start: Start) -> anyhow::Result<Coordinator> {
    let Start {
        control_listen: listen,
        gov,
        metrics_token,
        traces,
        cpus,
        catalog,
        cache_desk,
    } = start;
    let trace_metrics = traces
        .as_ref()
        .map(|_| Arc::new(traces::TraceMetrics::default()));
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on control address {listen}: {e}"))?;
    listener.set_nonblocking(true)?;
    let control_addr = listener.local_addr()?;
    let pin = move || {
        if let Some(cpus) = &cpus {
            if let Err(e) = shards::cpus::pin_current_thread(cpus) {
                tracing::warn!(?cpus, error = ?e, "could not pin a coordinator thread");
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // The blocking pool runs SQLite's calls, on its one connection behind a mutex (and a
        // PostgreSQL host name's lookup): a second thread would only wait for the first, and
        // each thread that runs SQLite grows an allocator heap of its own — the pool kept 4–7
        // threads, each holding SQLite's working set (docs/perf.md).
        .max_blocking_threads(1)
        // The blocking pool (store writes) keeps off the shards' cores too.
        .on_thread_start(pin.clone())
        .build()?;
    let mut sqlite = None;
    let mut cache_fleet = None;
    let (state, gov_runtime, events) = match gov {
        None => (
            Arc::new(ControlState {
                view: OnceLock::new(),
                admin: None,
                fleet: None,
                usage: None,
                metrics_token,
                traces: trace_metrics.clone(),
                catalog: catalog.metrics.clone(),
            }),
            None,
            None,
        ),
        Some(g) => {
            if let store::DatabaseConfig::Sqlite { path } = &g.database {
                sqlite = Some(single_node::claim(path)?);
            }
            let store = runtime
                .block_on(store::Store::open(g.database.clone(), g.secrets))
                .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))?;
            let fleet = match &g.settings.cluster {
                Some(plan) => {
                    let fleet = Arc::new(fleet::Fleet::new(
                        store.clone(),
                        plan.clone(),
                        control_addr.to_string(),
                        g.shards,
                        g.providers.node.clone(),
                        runtime.handle().clone(),
                    ));
                    runtime
                        .block_on(fleet.join())
                        .map_err(|e| anyhow::anyhow!("cannot join the fleet: {e}"))?;
                    tracing::info!(node = fleet.node_id(), "joined the fleet");
                    Some(fleet)
                }
                None => None,
            };
            cache_fleet =
                fleet
                    .as_ref()
                    .filter(|_| g.cache_fleet)
                    .map(|fleet| cache_desk::FleetTier {
                        store: store.clone(),
                        node_id: fleet.node_id().to_owned(),
                    });
            let spool = spool::Spool::open(
                &g.settings.spool_dir,
                fleet.as_ref().map(|f| f.node_id().to_owned()),
            )?;
            let rt = Arc::new(GovRuntime::new(
                g.gov,
                store.clone(),
                g.settings,
                g.shards,
                g.providers,
                fleet.clone(),
            ));
            runtime
                .block_on(rt.reload())
                .map_err(|e| anyhow::anyhow!("cannot load governance from the store: {e}"))?;
            let admin = g.admin_token.map(|token| admin::AdminState {
                store,
                admin_token: token,
                changed: rt.changed.clone(),
                fleet: fleet.clone(),
            });
            (
                Arc::new(ControlState {
                    view: OnceLock::new(),
                    admin,
                    fleet,
                    usage: Some(rt.usage_metrics.clone()),
                    metrics_token,
                    traces: trace_metrics.clone(),
                    catalog: catalog.metrics.clone(),
                }),
                Some(rt),
                Some((g.events, g.usage, spool)),
            )
        }
    };
    // After governance loaded the stored providers into the snapshot, before any shard runs.
    catalog.publish_configured();
    let thread_state = state.clone();
    let exporter = traces.zip(trace_metrics).map(|(export, metrics)| {
        let resource = traces::otlp::Resource {
            service_name: export.settings.service_name.clone(),
            host_name: crate::config::host_name(),
            instance_id: state.fleet.as_ref().map(|f| f.node_id().to_owned()),
        };
        traces::run(export, resource, metrics)
    });
    let flush = gov_runtime.as_ref().map(|rt| rt.gov.clone());
    let leave = gov_runtime
        .as_ref()
        .filter(|_| state.fleet.is_some())
        .map(|rt| (runtime.handle().clone(), rt.desk.clone()));
    std::thread::Builder::new()
        .name("coordinator".into())
        .spawn(move || {
            // The lease desk, started from here, inherits this thread's mask.
            pin();
            runtime.block_on(async move {
                if let Some(start) = cache_desk {
                    let handle = tokio::runtime::Handle::current();
                    std::thread::Builder::new()
                        .name("cache-desk".into())
                        .spawn(move || cache_desk::run(start, cache_fleet, &handle))
                        .expect("spawn cache desk");
                }
                if let (Some(rt), Some((events, usage, spool))) = (gov_runtime, events) {
                    let desk = rt.clone();
                    std::thread::Builder::new()
                        .name("lease-desk".into())
                        .spawn(move || desk.run_desk(&events))
                        .expect("spawn lease desk");
                    let flusher = flusher::Flusher::new(spool, &rt);
                    tokio::spawn(rt.clone().flush_loop(usage, flusher));
                    if let Some(fleet) = rt.fleet.clone() {
                        tokio::spawn(fleet.run(rt.desk.clone()));
                    }
                    tokio::spawn(housekeeping::run(
                        rt.store.clone(),
                        rt.fleet.clone(),
                        rt.settings.request_log_retention,
                    ));
                    tokio::spawn(rt.watch_changes());
                }
                if let Some(exporter) = exporter {
                    tokio::spawn(exporter);
                }
                tokio::spawn(catalog.run());
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => control::serve(listener, thread_state).await,
                    Err(e) => tracing::error!(error = %e, "control listener failed"),
                }
            });
        })?;
    Ok(Coordinator {
        control_addr,
        state,
        flush,
        leave,
        _sqlite: sqlite,
    })
}
