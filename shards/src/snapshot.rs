//! The validated, immutable configuration a shard serves from: limits, providers and the
//! model table. The binary builds it from the YAML file; shards read it through an `Arc`
//! loaded once per connection, so nothing on the request path locks.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio_rustls::TlsConnector;
use rustls_pki_types::ServerName;

use crate::catalog::Catalog;
use crate::dialect::Wire;
use crate::names::NameMap;
use crate::route::ModelTable;

/// Client-side limits, each answered with its own error when crossed.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// From the first byte of a request until its head is complete.
    pub header_read_timeout: Duration,
    /// From the end of the head until the body is complete.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// How often a waiting or streaming request checks that its client is still there.
    pub disconnect_check_interval: Duration,
}

/// Upstream timeouts of one provider.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    /// From the request written until the response head arrives.
    pub first_byte: Duration,
    /// Longest silence between two pieces of a response body.
    pub idle: Duration,
    /// Deadline for a whole request, retries and fallbacks included.
    pub total: Duration,
    /// Upper bound for a client's `x-ringgate-timeout-ms` override.
    pub max_total: Duration,
}

/// Retries of one target: exponential backoff with full jitter, bounded by the deadline.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

/// When a provider's circuit opens, and how it closes again.
#[derive(Debug, Clone)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u32,
    /// Error ratio (0..=1) over the recent window that opens the circuit.
    pub error_ratio: f64,
    /// Requests in the window before the ratio counts.
    pub min_requests: u32,
    /// How long the circuit stays open before probing.
    pub open_for: Duration,
    /// Probe requests let through while half-open.
    pub half_open_probes: u32,
}

/// Per-shard admission of requests to one provider.
#[derive(Debug, Clone)]
pub struct Backpressure {
    /// Requests in flight per shard; 0 = unlimited.
    pub max_in_flight: usize,
    /// Requests that may wait for a slot per shard.
    pub max_queue: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
}

/// One API key of a provider.
#[derive(Clone)]
pub struct ApiKey {
    /// The complete credentials header line. Never logged.
    pub header_line: Vec<u8>,
    pub weight: u32,
    /// Models this key may serve; empty = all.
    pub models: Vec<String>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("header_line", &"<redacted>")
            .field("weight", &self.weight)
            .field("models", &self.models)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Idle keep-alive connections kept per shard for this provider.
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

/// Most providers a node can know over its lifetime (per-shard state is allocated for each).
pub const MAX_PROVIDERS: usize = 256;

/// AWS credentials and region for Bedrock's SigV4 signing.
#[derive(Clone)]
pub struct AwsAuth {
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

/// One upstream provider, resolved and ready to dial.
#[derive(Clone)]
pub struct Provider {
    pub name: String,
    /// Index of this provider's per-shard state (pools, health, counters). Stable for a name
    /// across configuration reloads, below [`MAX_PROVIDERS`].
    pub slot: usize,
    /// The API family it speaks.
    pub wire: Wire,
    /// It serves OpenAI's Responses API itself (OpenAI proper), so `/v1/responses` passes
    /// through instead of being translated to chat.
    pub responses_passthrough: bool,
    /// Azure: the `api-version` query parameter.
    pub api_version: Option<String>,
    /// Bedrock: request signing.
    pub aws: Option<AwsAuth>,
    pub addrs: Vec<SocketAddr>,
    /// Set for https upstreams.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The same rustls configuration (roots, `ca_file`), for the coordinator's catalog
    /// fetches, which run on tokio rather than monoio.
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// `host[:port]` for the Host header.
    pub host_header: String,
    /// Path prefix of the base URL without a trailing slash, e.g. `/v1`.
    pub base_path: String,
    /// Header lines sent on every request (not credentials: those are in `keys`).
    pub fixed_headers: Vec<u8>,
    /// API keys, chosen per request by weight among those not cooling down. Empty: none sent.
    pub keys: Vec<ApiKey>,
    pub timeouts: Timeouts,
    pub pool: PoolSettings,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    pub backpressure: Backpressure,
    /// The configured `models` list: the only models it serves, and its catalog. Empty: any
    /// name passes through, and the coordinator asks the provider for its catalog.
    pub models: Vec<String>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("slot", &self.slot)
            .field("wire", &self.wire)
            .field("responses_passthrough", &self.responses_passthrough)
            .field("api_version", &self.api_version)
            .field("aws", &self.aws.as_ref().map(|a| &a.region))
            .field("addrs", &self.addrs)
            .field("tls", &self.tls.is_some())
            .field("host_header", &self.host_header)
            .field("base_path", &self.base_path)
            .field(
                "fixed_headers",
                &String::from_utf8_lossy(&self.fixed_headers),
            )
            .field("keys", &self.keys)
            .field("timeouts", &self.timeouts)
            .field("pool", &self.pool)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("backpressure", &self.backpressure)
            .field("models", &self.models)
            .finish()
    }
}

#[derive(Debug)]
pub struct Snapshot {
    pub limits: Limits,
    pub providers: Vec<Provider>,
    pub models: ModelTable,
    /// The configured aliases, listed on `/v1/models` after the catalog's models.
    pub aliases: Vec<String>,
    /// Per requested model name: the models to try, in order, when it fails.
    pub fallbacks: NameMap<Vec<String>>,
    /// How a request for a balanced alias picks its first target.
    pub balance: Balance,
    /// Which answers the response cache keeps; `None` when the node has no cache.
    pub cache: Option<crate::cache::policy::CachePolicy>,
}

/// Choosing among equivalent targets (an alias with several members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Uniformly at random; the others follow in listed order.
    #[default]
    Random,
    /// Weighted by the inverse of each provider's latency average on this shard (members
    /// with an open circuit last); the others follow, fastest first.
    Latency,
}

impl Snapshot {
    pub fn new(
        limits: Limits,
        providers: Vec<Provider>,
        models: ModelTable,
        aliases: Vec<String>,
        fallbacks: NameMap<Vec<String>>,
        balance: Balance,
    ) -> Self {
        Self {
            limits,
            providers,
            models,
            aliases,
            fallbacks,
            balance,
            cache: None,
        }
    }

    /// The snapshot with a response-cache policy.
    pub fn with_cache(self, cache: Option<crate::cache::policy::CachePolicy>) -> Self {
        Self { cache, ..self }
    }
}

/// Node-wide state the shards read: whether to report ready, whether the node is draining,
/// the latest configuration snapshot (replaced when providers change at run time; each
/// shard picks it up within [`SNAPSHOT_POLL`]) and the model catalog (replaced by the
/// coordinator when it learns a provider's models; loaded per models request). Written
/// rarely, so the cache lines stay shared.
#[derive(Debug)]
pub struct NodeState {
    ready: AtomicBool,
    draining: AtomicBool,
    /// False while the coordinator cannot reach its store (told on `/ready`).
    store_available: AtomicBool,
    pub snapshot: arc_swap::ArcSwap<Snapshot>,
    pub catalog: arc_swap::ArcSwap<Catalog>,
}

/// How often a shard looks for a new configuration snapshot.
pub const SNAPSHOT_POLL: std::time::Duration = std::time::Duration::from_millis(25);

impl NodeState {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            store_available: AtomicBool::new(true),
            snapshot: arc_swap::ArcSwap::new(snapshot),
            catalog: arc_swap::ArcSwap::default(),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_store_available(&self, available: bool) {
        self.store_available.store(available, Ordering::Relaxed);
    }

    pub fn store_available(&self) -> bool {
        self.store_available.load(Ordering::Relaxed)
    }

    /// Starts a graceful stop: not ready, no new connections, no new keep-alive requests.
    pub fn start_draining(&self) {
        self.set_ready(false);
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
