//! This node as a member of its fleet (PostgreSQL store; docs/cluster.md): it registers and
//! beats, gives back what it holds of limits it no longer uses, leads when it holds the
//! leader's lock (reaping dead nodes so their shares come back, purging old counters), and
//! leases its shares of limits for the lease desk without ever blocking it.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shards::snapshot::NodeState;
use store::cluster::{Leadership, NodeInfo, NodeRecord};
use store::leases::ShareAsk;
use store::Store;
use vocab::LimitKind;

use super::leases::{unix_now, ClusterLeases, LeaseDesk, ShareAnswer, ShareRequest, Unused};
use crate::config::ClusterPlan;

/// Upper bounds (ms) of the lease-call latency histogram.
pub const LEASE_BUCKETS_MS: [f64; 9] = [0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0];

/// What /metrics and /ready say about the fleet.
#[derive(Default)]
pub struct FleetStats {
    pub nodes_alive: AtomicU64,
    pub leader: AtomicBool,
    pub lease_calls: AtomicU64,
    pub lease_errors: AtomicU64,
    /// Cumulative per bucket of [`LEASE_BUCKETS_MS`], then +Inf.
    pub lease_latency: [AtomicU64; LEASE_BUCKETS_MS.len() + 1],
    pub lease_latency_sum_us: AtomicU64,
    pub shares_held: AtomicU64,
    pub nodes_reaped: AtomicU64,
}

impl FleetStats {
    fn lease_call(&self, took: Duration, ok: bool) {
        self.lease_calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.lease_errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = took.as_secs_f64() * 1000.0;
        let first = LEASE_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LEASE_BUCKETS_MS.len());
        for bucket in &self.lease_latency[first..] {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.lease_latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// This node in its fleet.
pub struct Fleet {
    store: Store,
    /// Told whether the store answers (`/ready` says so).
    node: Arc<NodeState>,
    pub plan: ClusterPlan,
    record: NodeRecord,
    pub stats: FleetStats,
    /// Set when the node leaves: its heartbeats stop.
    leaving: AtomicBool,
    /// Held by each heartbeat round, and by the node leaving.
    round: tokio::sync::Mutex<()>,
    runtime: tokio::runtime::Handle,
}

impl Fleet {
    pub fn new(
        store: Store,
        plan: ClusterPlan,
        address: String,
        shards: usize,
        node: Arc<NodeState>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let record = NodeRecord {
            node_id: plan.node_id.clone(),
            address: plan.advertise_address.clone().unwrap_or(address),
            region: plan.region.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            shards: shards as u64,
            started_at: store::now_unix(),
            ttl_ms: plan.node_ttl.as_millis() as u64,
            draining: false,
            leader: false,
        };
        let stats = FleetStats {
            nodes_alive: AtomicU64::new(1),
            ..FleetStats::default()
        };
        Self {
            store,
            node,
            plan,
            record,
            stats,
            leaving: AtomicBool::new(false),
            round: tokio::sync::Mutex::new(()),
            runtime,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.record.node_id
    }

    /// Whether this node held the leader's lock at its last heartbeat.
    pub fn is_leader(&self) -> bool {
        self.stats.leader.load(Ordering::Relaxed)
    }

    /// Registers the node (before it serves: its leases are then attributed to a member).
    pub async fn join(&self) -> store::Result<()> {
        self.store.heartbeat(&self.record, false).await.map(|_| ())
    }

    /// Beats, leads when it can, and gives back idle shares, every heartbeat, for as long as
    /// the node runs.
    pub async fn run(self: Arc<Self>, desk: Arc<LeaseDesk>) {
        let mut tick = tokio::time::interval(self.plan.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leadership: Option<Leadership> = None;
        let mut connected_since: Option<Instant> = None;
        loop {
            tick.tick().await;
            // Held through the round: a node that leaves waits for it, so no beat of this
            // round can register the node again after it left.
            let _round = self.round.lock().await;
            if self.leaving.load(Ordering::Relaxed) {
                return;
            }
            let connected = self.beat(&desk).await;
            connected_since = connected.then(|| connected_since.unwrap_or_else(Instant::now));
            if self.lead(&mut leadership).await {
                // After an outage, peers need a ttl to beat again before any is taken for
                // dead: reaping earlier would hand back shares of live nodes.
                if connected_since.is_some_and(|t| t.elapsed() >= self.plan.node_ttl) {
                    self.reap().await;
                }
            }
            self.give_back(desk.collect_unused(self.plan.share_idle, unix_now()))
                .await;
            if let Ok(Ok(held)) = self.timed(self.store.shares_held(self.node_id())).await {
                self.stats.shares_held.store(held, Ordering::Relaxed);
            }
        }
    }

    /// A database call bounded by the lease timeout (a few of them for slower jobs).
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T, tokio::time::error::Elapsed> {
        tokio::time::timeout(self.plan.lease_timeout * 4, call).await
    }

    /// Whether the store answers, for metrics and `/ready`.
    fn store_answers(&self, ok: bool) {
        self.node.set_store_available(ok);
    }

    /// One heartbeat; whether the store took it.
    async fn beat(&self, desk: &LeaseDesk) -> bool {
        let record = NodeRecord {
            leader: self.is_leader(),
            ..self.record.clone()
        };
        let beat = self.timed(self.store.heartbeat(&record, true)).await;
        let connected = matches!(beat, Ok(Ok(_)));
        self.store_answers(connected);
        match beat {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::warn!(
                    node = self.node_id(),
                    "this node was taken for dead and its shares were handed back; starting over"
                );
                desk.forfeit_all(unix_now());
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat failed"),
            Err(_) => tracing::warn!("heartbeat timed out"),
        }
        if let Ok(Ok(nodes)) = self.timed(self.store.list_nodes()).await {
            let alive = nodes.iter().filter(|n| n.alive).count().max(1) as u64;
            if self.stats.nodes_alive.swap(alive, Ordering::Relaxed) != alive {
                desk.share_among(alive);
            }
        }
        connected
    }

    /// Whether this node leads now (taking the lock when it is free).
    async fn lead(&self, leadership: &mut Option<Leadership>) -> bool {
        if leadership.is_none() {
            *leadership = self
                .timed(self.store.leadership())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let leading = match leadership.as_mut() {
            Some(l) => match self.timed(l.try_lead()).await {
                Ok(Ok(leading)) => leading,
                _ => {
                    *leadership = None;
                    false
                }
            },
            None => false,
        };
        if leading != self.stats.leader.swap(leading, Ordering::Relaxed) {
            tracing::info!(node = self.node_id(), leading, "fleet leadership changed");
        }
        leading
    }

    async fn reap(&self) {
        match self.timed(self.store.reap_dead_nodes()).await {
            Ok(Ok(reaped)) if !reaped.is_empty() => {
                self.stats
                    .nodes_reaped
                    .fetch_add(reaped.len() as u64, Ordering::Relaxed);
                tracing::warn!(nodes = ?reaped, "dead nodes removed; their shares are back in the fleet");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "reaping dead nodes failed"),
            _ => {}
        }
    }

    /// Gives unused units back to the fleet's counters. One that fails stays held by this
    /// node in the database: it comes back when the node leaves, dies or the window ends.
    pub async fn give_back(&self, unused: Vec<Unused>) {
        for u in unused {
            let name = counter_name(u.limit.kind, u.generation);
            let call = self.store.return_share(
                self.node_id(),
                &u.limit.entity,
                &name,
                u.window_start,
                u.units,
            );
            if !matches!(self.timed(call).await, Ok(Ok(()))) {
                tracing::warn!(entity = %u.limit.entity.id, limit = %name, units = u.units, "giving back an unused share failed");
            }
        }
    }

    /// The node stops (after its shards drained and its usage was flushed): everything it
    /// holds unused goes back, then it leaves the fleet.
    pub async fn leave(&self, desk: &LeaseDesk) {
        self.leaving.store(true, Ordering::Relaxed);
        let _round = self.round.lock().await;
        self.give_back(desk.collect_unused(Duration::ZERO, unix_now()))
            .await;
        match self.timed(self.store.leave_fleet(self.node_id())).await {
            Ok(Ok(())) => tracing::info!(node = self.node_id(), "left the fleet"),
            _ => tracing::warn!(
                node = self.node_id(),
                "could not leave the fleet cleanly; a survivor will reap this node"
            ),
        }
    }
}

impl Fleet {
    /// The fleet as the database lists it (the admin API's `GET /admin/cluster`).
    pub async fn nodes(&self) -> store::Result<Vec<NodeInfo>> {
        self.store.list_nodes().await
    }

    /// The `ringgate_cluster_*` families of `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        let s = &self.stats;
        let node = &self.record.node_id;
        let gauges: [(&str, &str, u64); 5] = [
            ("ringgate_cluster_nodes_alive", "Nodes of the fleet whose heartbeat is within their ttl, as this node last saw", s.nodes_alive.load(Ordering::Relaxed)),
            ("ringgate_cluster_leader", "1 when this node holds the fleet's leader lock", u64::from(s.leader.load(Ordering::Relaxed))),
            ("ringgate_cluster_store_available", "1 when the last database call (lease, heartbeat) answered in time", u64::from(self.node.store_available())),
            ("ringgate_cluster_shares_held", "Units of fleet-wide limits this node holds in the database (leased, not given back nor settled)", s.shares_held.load(Ordering::Relaxed)),
            ("ringgate_cluster_nodes_reaped_total", "Dead nodes this node removed as leader, handing their shares back", s.nodes_reaped.load(Ordering::Relaxed)),
        ];
        for (name, help, value) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{node}\"}} {value}"
            );
        }
        let _ = writeln!(out, "# HELP ringgate_cluster_lease_calls_total Share requests to the database\n# TYPE ringgate_cluster_lease_calls_total counter\nringgate_cluster_lease_calls_total {}", s.lease_calls.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP ringgate_cluster_lease_errors_total Share requests that failed or timed out\n# TYPE ringgate_cluster_lease_errors_total counter\nringgate_cluster_lease_errors_total {}", s.lease_errors.load(Ordering::Relaxed));
        let name = "ringgate_cluster_lease_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time of one share request to the database\n# TYPE {name} histogram"
        );
        for (i, bucket) in LEASE_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                bucket / 1000.0,
                s.lease_latency[i].load(Ordering::Relaxed)
            );
        }
        let count = s.lease_latency[LEASE_BUCKETS_MS.len()].load(Ordering::Relaxed);
        let sum = s.lease_latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
    }
}

/// The shared counter's name of a limit: its kind, and the budget's reset count after a reset.
pub fn counter_name(kind: LimitKind, generation: u64) -> String {
    match generation {
        0 => kind.name().to_owned(),
        g => format!("{}#{g}", kind.name()),
    }
}

impl ClusterLeases for Arc<Fleet> {
    fn acquire(&self, ask: ShareRequest, done: ShareAnswer) {
        let fleet = self.clone();
        self.runtime.spawn(async move {
            let name = counter_name(ask.limit.kind, ask.generation);
            let started = Instant::now();
            let share = ShareAsk {
                node_id: fleet.node_id(),
                entity: &ask.limit.entity,
                limit_name: &name,
                window_start: ask.window_start,
                limit_value: ask.limit.value,
                // The version the snapshot in force holds (a stale node cannot raise a limit).
                config_version: super::watch::WATCH.version.load(Ordering::Relaxed),
                need: ask.need,
                want: ask.want,
                spread: 2 * fleet.stats.nodes_alive.load(Ordering::Relaxed).max(1),
            };
            let call = fleet.store.acquire_share(&share);
            tokio::pin!(call);
            let (granted, timed_out) =
                match tokio::time::timeout(fleet.plan.lease_timeout, &mut call).await {
                    Ok(Ok(units)) => (Some(units), false),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, entity = %ask.limit.entity.id, limit = %name, "lease failed");
                        (None, false)
                    }
                    Err(_) => {
                        tracing::warn!(entity = %ask.limit.entity.id, limit = %name, "lease timed out");
                        (None, true)
                    }
                };
            fleet.stats.lease_call(started.elapsed(), granted.is_some());
            fleet.store_answers(granted.is_some());
            done(granted);
            // The database may still grant a request the node stopped waiting for: units the
            // node would hold without knowing, unreachable to every node until this one left.
            // The request runs to its end here, and a late grant goes straight back.
            if timed_out {
                if let Ok(units @ 1..) = call.await {
                    fleet
                        .give_back(vec![Unused {
                            limit: ask.limit.clone(),
                            generation: ask.generation,
                            window_start: ask.window_start,
                            units,
                        }])
                        .await;
                }
            }
        });
    }

    fn fail_open(&self) -> bool {
        self.plan.fail_open
    }

    fn nodes(&self) -> u64 {
        self.stats.nodes_alive.load(Ordering::Relaxed)
    }
}
