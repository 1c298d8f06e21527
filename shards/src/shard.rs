//! One shard: the state a core's thread owns (its snapshot handle, upstream pool, per-provider
//! health, key cooldowns and admission gates, counters) and its accept loop. Everything
//! here is `!Send` on purpose; shards share nothing but the read-only snapshot, the node's
//! flags, and their own counter blocks, which only they write.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};
use monoio_rustls::TlsAcceptor;

use crate::admission::Gate;
use crate::balance::{KeyStates, Rng};
use crate::conn::{self, BufferPool};
use crate::governance::usage::UsageBatcher;
use crate::governance::Governance;
use crate::health::Health;
use crate::io::Stream;
use crate::pool::Pool;
use crate::snapshot::{NodeState, Snapshot, MAX_PROVIDERS, SNAPSHOT_POLL};
use crate::stats::ShardStats;

/// How often idle upstream connections past their timeout are closed.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a shard sends its pending usage records to the coordinator.
const USAGE_INTERVAL: Duration = Duration::from_millis(50);
/// How long a draining shard keeps serving requests on open keep-alive connections.
const DRAIN_LINGER: Duration = Duration::from_secs(1);
/// How often a shard looks at the node's draining flag.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// This shard's view of one provider's condition.
#[derive(Debug, Default)]
pub struct ProviderRuntime {
    pub health: Health,
    pub keys: KeyStates,
    pub gate: Gate,
}

pub struct Shard {
    pub index: usize,
    /// The snapshot requests are served from. An `Rc` around the shared `Arc` so taking it per
    /// request is a non-atomic increment on this core's memory, not an atomic one on a cache
    /// line every shard touches.
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Snapshot>>>,
    pub node: Arc<NodeState>,
    pub pool: Pool,
    /// Indexed by [`crate::snapshot::Provider::slot`].
    pub providers: Vec<ProviderRuntime>,
    pub rng: Rng,
    pub stats: Arc<ShardStats>,
    /// Virtual keys, limits and budgets; `None` when governance is off.
    pub gov: Option<Arc<Governance>>,
    /// Usage records on their way to the coordinator.
    pub usage: UsageBatcher,
    /// Spare buffers lent to requests.
    pub buffers: BufferPool,
}

impl Shard {
    pub fn new(
        index: usize,
        snapshot: Arc<Snapshot>,
        node: Arc<NodeState>,
        stats: Arc<ShardStats>,
        gov: Option<Arc<Governance>>,
    ) -> Self {
        let pool = Pool::new(MAX_PROVIDERS);
        let providers = (0..MAX_PROVIDERS)
            .map(|_| ProviderRuntime::default())
            .collect();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = clock ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            index,
            current: RefCell::new(Rc::new(snapshot)),
            node,
            pool,
            providers,
            rng: Rng::new(seed ^ std::process::id() as u64),
            stats,
            gov,
            usage: UsageBatcher::default(),
            buffers: BufferPool::default(),
        }
    }

    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        self.current.borrow().clone()
    }
}

/// Accepts connections until the node drains, then waits for this shard's requests to end.
pub async fn run(shard: Rc<Shard>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    monoio::spawn(sweep_pool(shard.clone()));
    monoio::spawn(follow_snapshot(shard.clone()));
    if shard.gov.is_some() {
        monoio::spawn(send_usage(shard.clone()));
    }
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            () = wait_for_drain(&shard) => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                monoio::spawn(serve_client(shard.clone(), tcp, peer, tls.clone()));
            }
            Err(e) => {
                // Usually EMFILE/ENFILE: back off instead of spinning on the error.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracing::info!(
        shard = shard.index,
        in_flight = shard.stats.in_flight.get(),
        "shard stopped accepting"
    );
    // Requests in flight run to their end. Keep-alive clients may send one more request on a
    // connection they already hold; it is served (with `connection: close`) while the drain
    // lingers, so a request racing the shutdown is answered instead of reset.
    let started = std::time::Instant::now();
    while shard.stats.in_flight.get() > 0
        || shard.stats.connections.get() > 0 && started.elapsed() < DRAIN_LINGER
    {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    if let Some(gov) = &shard.gov {
        shard.usage.flush(&gov.events);
    }
}

async fn wait_for_drain(shard: &Shard) {
    while !shard.node.is_draining() {
        monoio::time::sleep(DRAIN_POLL).await;
    }
}

async fn serve_client(
    shard: Rc<Shard>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let stream = match tls {
        None => Stream::plain(tcp),
        Some(acceptor) => {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            match monoio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Stream::server_tls(tls, fd),
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    shard.stats.connections.incr();
    conn::serve(shard.clone(), stream, peer).await;
    shard.stats.connections.decr();
}

/// Sends pending usage to the coordinator every `USAGE_INTERVAL`.
async fn send_usage(shard: Rc<Shard>) {
    let Some(gov) = shard.gov.clone() else {
        return;
    };
    loop {
        monoio::time::sleep(USAGE_INTERVAL).await;
        let dropped = shard.usage.flush(&gov.events);
        shard.stats.usage_dropped.add(dropped as u64);
    }
}

/// Adopts the node's latest configuration snapshot. Requests already running keep the one
/// they started with.
async fn follow_snapshot(shard: Rc<Shard>) {
    loop {
        monoio::time::sleep(SNAPSHOT_POLL).await;
        let latest = shard.node.snapshot.load_full();
        let changed = !Arc::ptr_eq(&**shard.current.borrow(), &latest);
        if changed {
            *shard.current.borrow_mut() = Rc::new(latest);
        }
    }
}

async fn sweep_pool(shard: Rc<Shard>) {
    loop {
        monoio::time::sleep(POOL_SWEEP_INTERVAL).await;
        let snapshot = shard.snapshot();
        shard.pool.sweep(&snapshot.providers);
    }
}
