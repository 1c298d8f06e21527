//! The configuration file's shape: serde structs with `deny_unknown_fields` and defaults
//! from named `default_*` functions (reused by the `Default` impls). Nothing here is
//! validated; [`super::snapshot`] and [`super::plan`] check values when they build what the
//! node runs.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::presets::ProviderKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// 0: one shard per core the process may run on.
    #[serde(default)]
    pub shards: usize,
    #[serde(default = "default_true")]
    pub pin_cores: bool,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    pub tls: Option<TlsConfig>,
    pub default_provider: Option<String>,
    /// Extra model names: one `provider/model`, or a list of equivalent ones to balance.
    #[serde(default)]
    pub aliases: BTreeMap<String, AliasConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Per model name (as clients write it): models to try in order when it fails.
    #[serde(default)]
    pub fallbacks: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// Virtual keys, limits, budgets and the admin API; off when absent.
    pub governance: Option<GovernanceConfig>,
    /// Logs, metrics and traces.
    #[serde(default)]
    pub observability: super::ObservabilityConfig,
    /// Fetching the providers' model catalogs.
    #[serde(default)]
    pub catalog: super::CatalogConfig,
    /// The response cache; the node has none when absent.
    pub cache: Option<super::CacheConfig>,
    pub providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AliasConfig {
    One(String),
    Balanced(Vec<String>),
}

impl AliasConfig {
    pub(super) fn members(&self) -> Vec<&str> {
        match self {
            Self::One(m) => vec![m.as_str()],
            Self::Balanced(list) => list.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// How a balanced alias picks its first target: `random` or `latency`.
    #[serde(default)]
    pub balance: BalanceName,
}

#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub enum BalanceName {
    #[default]
    Random,
    Latency,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// `ringgate.db` / `sqlite://PATH` (embedded SQLite) or `postgres://…` (clusters).
    #[serde(default = "default_database")]
    pub database: String,
    /// Refuse requests that present no virtual key.
    #[serde(default)]
    pub require_virtual_key: bool,
    /// `env.NAME`: enables the admin API on the control port.
    pub admin_token: Option<String>,
    /// `env.NAME`: 32 bytes, base64, for encrypting provider secrets in the store.
    pub secret_key: Option<String>,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_lease_wait_ms")]
    pub lease_wait_ms: u64,
    /// Which requests are written to the request log: `all`, `errors` or `none`.
    #[serde(default)]
    pub request_logs: RequestLogs,
    /// PostgreSQL only: the schema that holds ringgate's tables (created if missing), so
    /// that several fleets can share one database. Default: the server's `search_path`.
    pub database_schema: Option<String>,
    /// Removed (limits are always fleet-wide on PostgreSQL); kept only to name the change
    /// when an old config still sets it.
    pub cluster_leases: Option<serde_yaml::Value>,
    /// Request logs older than this many days are deleted (by the fleet's leader); 0 keeps
    /// them forever.
    #[serde(default = "default_request_log_retention_days")]
    pub request_log_retention_days: u64,
    /// Where usage waits on local disk until the store has it (one directory per node).
    /// Default: beside an SQLite database (`ringgate.db.spool`); with PostgreSQL,
    /// `ringgate-spool` in the system's temporary directory.
    pub spool_dir: Option<String>,
    /// How this node takes part in a fleet (PostgreSQL only).
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Price overrides and additions, USD per million tokens as decimal strings.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::pricing::PriceConfig>,
    /// Output tokens a request without `max_tokens` is estimated at when the catalog does not
    /// know its model's maximum output.
    #[serde(default = "default_max_output_tokens")]
    pub default_max_output_tokens: u64,
}

/// A node of a fleet: how it names itself and how it treats its peers and the database.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique per node; default: the host name and a random suffix (new on every start).
    pub node_id: Option<String>,
    /// Where peers and operators reach this node's control port; default: its bound address.
    pub advertise_address: Option<String>,
    /// A label shown in the fleet listing (e.g. `eu-west-1`).
    #[serde(default)]
    pub region: String,
    /// A node whose heartbeat is older than this is dead; its shares go back to the fleet.
    #[serde(default = "default_node_ttl_ms")]
    pub node_ttl_ms: u64,
    /// How often the node proves it is alive (and reaps dead peers when it leads).
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A limit this node has not used for this long gives its unused share back.
    #[serde(default = "default_share_idle_ms")]
    pub share_idle_ms: u64,
    /// Longest wait for one lease statement; a slower database counts as unavailable.
    #[serde(default = "default_lease_timeout_ms")]
    pub lease_timeout_ms: u64,
    /// Rate limits (requests, tokens) when the database cannot be reached and this node's
    /// shares are spent: `fail_closed` refuses, `fail_open` admits on this node's word.
    /// Budgets always fail closed.
    #[serde(default)]
    pub on_store_unavailable: StoreUnavailable,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            advertise_address: None,
            region: String::new(),
            node_ttl_ms: default_node_ttl_ms(),
            heartbeat_ms: default_heartbeat_ms(),
            share_idle_ms: default_share_idle_ms(),
            lease_timeout_ms: default_lease_timeout_ms(),
            on_store_unavailable: StoreUnavailable::default(),
        }
    }
}

/// What rate limits do while the database is unreachable.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreUnavailable {
    #[default]
    FailClosed,
    FailOpen,
}

fn default_node_ttl_ms() -> u64 {
    10_000
}
fn default_heartbeat_ms() -> u64 {
    2_000
}
fn default_share_idle_ms() -> u64 {
    2_000
}
fn default_lease_timeout_ms() -> u64 {
    250
}

/// Which requests get a row in the request log (read by the coordinator's flusher).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RequestLogs {
    #[default]
    All,
    /// Responses with status ≥ 400 only.
    Errors,
    None,
}

fn default_database() -> String {
    "ringgate.db".into()
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_lease_wait_ms() -> u64 {
    50
}
fn default_request_log_retention_days() -> u64 {
    30
}
fn default_max_output_tokens() -> u64 {
    4096
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Address of the control port (metrics, admin API).
    #[serde(default = "default_control_listen")]
    pub listen: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: default_control_listen(),
        }
    }
}

fn default_control_listen() -> String {
    "127.0.0.1:9090".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    #[serde(default = "default_grace_period_ms")]
    pub grace_period_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period_ms: default_grace_period_ms(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DriverName {
    #[default]
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub driver: DriverName,
    #[serde(default = "default_ring_entries")]
    pub ring_entries: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            driver: DriverName::default(),
            ring_entries: default_ring_entries(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    #[serde(default = "default_disconnect_check_ms")]
    pub disconnect_check_interval_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: default_max_header_bytes(),
            max_body_bytes: default_max_body_bytes(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            body_read_timeout_ms: default_body_read_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            disconnect_check_interval_ms: default_disconnect_check_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// `env.NAME`.
    pub key: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default = "default_initial_delay_ms")]
    pub initial_delay_ms: u64,
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_delay_ms: default_initial_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "default_error_ratio")]
    pub error_ratio: f64,
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    #[serde(default = "default_open_ms")]
    pub open_ms: u64,
    #[serde(default = "default_half_open_probes")]
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive_failures(),
            error_ratio: default_error_ratio(),
            min_requests: default_min_requests(),
            open_ms: default_open_ms(),
            half_open_probes: default_half_open_probes(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackpressureConfig {
    /// Per shard; 0 = unlimited.
    #[serde(default)]
    pub max_in_flight: usize,
    #[serde(default)]
    pub max_queue: usize,
    #[serde(default)]
    pub queue_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The API family and defaults (docs/providers.md).
    #[serde(default)]
    pub kind: ProviderKind,
    /// Required unless the kind has a default.
    pub base_url: Option<String>,
    /// Azure: the `api-version` query parameter.
    pub api_version: Option<String>,
    /// Bedrock: AWS region, and credentials as `env.NAME` references.
    pub region: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
    /// `env.NAME`: sent as `Authorization: Bearer <value of NAME>`.
    pub api_key: Option<String>,
    /// Several keys, chosen by weight; instead of `api_key`.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub backpressure: BackpressureConfig,
    #[serde(default = "default_total_timeout_ms")]
    pub total_timeout_ms: u64,
    #[serde(default = "default_max_total_timeout_ms")]
    pub max_total_timeout_ms: u64,
    /// Extra headers on every request; values may be `env.NAME`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub models: Vec<String>,
    /// PEM file of extra CA certificates to trust for this provider.
    pub ca_file: Option<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "default_stream_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    #[serde(default = "default_pool_idle_timeout_ms")]
    pub pool_idle_timeout_ms: u64,
    /// The API key of a provider defined through the admin API (kept encrypted in the store,
    /// never in a file); used when neither `api_key` nor `keys` is set.
    #[serde(skip)]
    pub stored_secret: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_true() -> bool {
    true
}
fn default_ring_entries() -> u32 {
    4096
}
fn default_max_header_bytes() -> usize {
    32 * 1024
}
fn default_max_body_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_body_read_timeout_ms() -> u64 {
    60_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_disconnect_check_ms() -> u64 {
    500
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_first_byte_timeout_ms() -> u64 {
    300_000
}
fn default_stream_idle_timeout_ms() -> u64 {
    120_000
}
fn default_pool_max_idle() -> usize {
    256
}
fn default_pool_idle_timeout_ms() -> u64 {
    30_000
}
fn default_grace_period_ms() -> u64 {
    30_000
}
fn default_weight() -> u32 {
    1
}
fn default_max_retries() -> u32 {
    2
}
fn default_initial_delay_ms() -> u64 {
    100
}
fn default_max_delay_ms() -> u64 {
    2_000
}
fn default_consecutive_failures() -> u32 {
    5
}
fn default_error_ratio() -> f64 {
    0.5
}
fn default_min_requests() -> u32 {
    20
}
fn default_open_ms() -> u64 {
    10_000
}
fn default_half_open_probes() -> u32 {
    1
}
fn default_total_timeout_ms() -> u64 {
    600_000
}
fn default_max_total_timeout_ms() -> u64 {
    3_600_000
}
