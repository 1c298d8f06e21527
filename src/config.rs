//! The YAML configuration: parsed with serde (`deny_unknown_fields`, defaults from named
//! `default_*` functions), then validated and converted into the shards' runtime
//! [`Snapshot`] and [`ShardPlan`], whose invariants hold by construction. Errors name the
//! field at fault. Every field is documented in docs/configuration.md.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::presets::ProviderKind;
use serde::Deserialize;
use shards::route::ModelTable;
use shards::runtime::{DriverChoice, ShardPlan};
use shards::snapshot::{
    ApiKey, AwsAuth, Backpressure, BreakerPolicy, Limits, PoolSettings, Provider, RetryPolicy,
    Snapshot, Timeouts,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: field `{field}`: {message}")]
    Parse {
        path: String,
        field: String,
        message: String,
    },
    #[error("field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

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
    pub providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AliasConfig {
    One(String),
    Balanced(Vec<String>),
}

impl AliasConfig {
    fn members(&self) -> Vec<&str> {
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
    pub request_logs: RequestLogsName,
    /// Experimental: lease each node's share of every limit from PostgreSQL, so limits hold
    /// across nodes. Off: every node enforces each limit on its own.
    #[serde(default)]
    pub cluster_leases: bool,
    /// Price overrides and additions, USD per million tokens as decimal strings.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::pricing::PriceConfig>,
}

#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub enum RequestLogsName {
    #[default]
    All,
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

/// Governance as the node runs it.
pub struct GovernancePlan {
    pub database: store::DatabaseConfig,
    pub require_key: bool,
    pub admin_token: Option<String>,
    pub secrets: Option<store::SecretBox>,
    pub flush_interval: Duration,
    pub lease_wait: Duration,
    pub prices: shards::governance::Prices,
    pub request_logs: crate::coordinator::governance::RequestLogs,
    pub cluster_leases: bool,
}

impl GovernanceConfig {
    pub fn plan(&self) -> Result<GovernancePlan, ConfigError> {
        let admin_token = match &self.admin_token {
            Some(v) => Some(env_reference("governance.admin_token", v)?),
            None => None,
        };
        if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "governance.admin_token",
                "must be at least 16 characters",
            ));
        }
        let secrets = match &self.secret_key {
            Some(v) => Some(
                store::SecretBox::from_base64(&env_reference("governance.secret_key", v)?)
                    .map_err(|e| invalid("governance.secret_key", e.to_string()))?,
            ),
            None => None,
        };
        if self.cluster_leases && !self.database.starts_with("postgres") {
            return Err(invalid(
                "governance.cluster_leases",
                "needs a postgres:// database",
            ));
        }
        if self.flush_interval_ms == 0 {
            return Err(invalid(
                "governance.flush_interval_ms",
                "must be greater than 0",
            ));
        }
        Ok(GovernancePlan {
            database: store::DatabaseConfig::from_url(&self.database),
            require_key: self.require_virtual_key,
            admin_token,
            secrets,
            flush_interval: ms(self.flush_interval_ms),
            lease_wait: ms(self.lease_wait_ms),
            cluster_leases: self.cluster_leases,
            request_logs: match self.request_logs {
                RequestLogsName::All => crate::coordinator::governance::RequestLogs::All,
                RequestLogsName::Errors => crate::coordinator::governance::RequestLogs::Errors,
                RequestLogsName::None => crate::coordinator::governance::RequestLogs::None,
            },
            prices: crate::pricing::catalog(&self.prices)
                .map_err(|e| invalid("governance.prices", e))?,
        })
    }
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

/// Stable per-shard state slots for provider names (see `shards::snapshot::Provider::slot`).
#[derive(Debug, Default)]
pub struct Slots(std::collections::HashMap<String, usize>);

impl Slots {
    fn of(&mut self, name: &str) -> Result<usize, ConfigError> {
        let next = self.0.len();
        let slot = *self.0.entry(name.to_owned()).or_insert(next);
        if slot >= shards::snapshot::MAX_PROVIDERS {
            return Err(invalid(
                format!("providers.{name}"),
                format!(
                    "a node can know at most {} providers",
                    shards::snapshot::MAX_PROVIDERS
                ),
            ));
        }
        Ok(slot)
    }
}

/// A provider defined through the admin API, as configuration: `kind` and `base_url` from the
/// record, everything else from its `config_json` (the same fields as in the YAML file).
pub fn stored_provider(p: &store::Provider) -> Result<ProviderConfig, ConfigError> {
    let field = format!("providers.{} (admin API)", p.name);
    let mut value: serde_json::Value = serde_json::from_str(if p.config_json.trim().is_empty() {
        "{}"
    } else {
        &p.config_json
    })
    .map_err(|e| invalid(&field, format!("config_json: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid(&field, "config_json must be a JSON object"))?;
    object.insert("kind".into(), serde_json::Value::String(p.kind.clone()));
    object.insert(
        "base_url".into(),
        serde_json::Value::String(p.base_url.clone()),
    );
    let mut config: ProviderConfig =
        serde_json::from_value(value).map_err(|e| invalid(&field, e.to_string()))?;
    config.stored_secret = p.secret.clone();
    Ok(config)
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

/// Reads and parses a config file; errors carry the path of the offending field.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
        path: origin.into(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Resolves an `env.NAME` reference. Secrets may only come from the environment, so a
/// literal never sits in a file that gets committed or logged.
fn env_reference(field: &str, value: &str) -> Result<String, ConfigError> {
    let name = value
        .strip_prefix("env.")
        .ok_or_else(|| invalid(field, "must be an environment reference `env.NAME`"))?;
    std::env::var(name)
        .map_err(|_| invalid(field, format!("environment variable {name} is not set")))
}

/// Header values may be literal or `env.NAME`.
fn header_value(field: &str, value: &str) -> Result<String, ConfigError> {
    if value.starts_with("env.") {
        env_reference(field, value)
    } else {
        Ok(value.to_owned())
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Parts of a provider base URL.
#[derive(Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_base_url(url: &str) -> Result<BaseUrl, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| "invalid port")?,
            None if after.is_empty() => default_port,
            None => return Err("invalid host".into()),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| "invalid port")?),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if path.contains(['?', '#']) {
        return Err("must not contain a query or fragment".into());
    }
    Ok(BaseUrl {
        https,
        host,
        port,
        path: path.trim_end_matches('/').to_owned(),
    })
}

fn build_provider(name: &str, p: &ProviderConfig, slot: usize) -> Result<Provider, ConfigError> {
    let field = |f: &str| format!("providers.{name}.{f}");
    let base_url = match &p.base_url {
        Some(url) => url.clone(),
        None => p
            .kind
            .default_base_url(p.region.as_deref())
            .ok_or_else(|| {
                invalid(
                    field("base_url"),
                    format!("is required for kind {:?}", p.kind),
                )
            })?,
    };
    let url = parse_base_url(&base_url).map_err(|m| invalid(field("base_url"), m))?;
    let aws = aws_auth(name, p)?;
    let api_version = match (p.kind, &p.api_version) {
        (ProviderKind::Azure, None) => {
            return Err(invalid(field("api_version"), "is required for kind azure"))
        }
        (ProviderKind::Azure, Some(v)) => Some(v.clone()),
        (_, Some(_)) => return Err(invalid(field("api_version"), "only applies to kind azure")),
        (_, None) => None,
    };
    let addrs: Vec<SocketAddr> = match (url.host.as_str(), url.port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(provider = name, host = %url.host, error = %e, "cannot resolve provider host; its requests will fail until restart");
            Vec::new()
        }
    };
    let tls = if url.https {
        let config = shards::tls::client_config(p.ca_file.as_deref())
            .map_err(|e| invalid(field("ca_file"), e.to_string()))?;
        let server_name = rustls_pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| invalid(field("base_url"), e.to_string()))?;
        Some((monoio_rustls::TlsConnector::from(config), server_name))
    } else {
        if p.ca_file.is_some() {
            return Err(invalid(field("ca_file"), "only applies to https base URLs"));
        }
        None
    };
    let default_port = if url.https { 443 } else { 80 };
    let host_header = if url.port == default_port {
        bracket_v6(&url.host)
    } else {
        format!("{}:{}", bracket_v6(&url.host), url.port)
    };
    let mut fixed_headers = String::new();
    let keys = build_keys(name, p)?;
    for (h, v) in &p.headers {
        let value = header_value(&field(&format!("headers.{h}")), v)?;
        if !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || value.contains(['\r', '\n'])
        {
            return Err(invalid(
                field(&format!("headers.{h}")),
                "invalid header name or value",
            ));
        }
        fixed_headers.push_str(&format!("{h}: {value}\r\n"));
    }
    if p.pool_max_idle > 100_000 {
        return Err(invalid(field("pool_max_idle"), "must be at most 100000"));
    }
    if !(0.0..=1.0).contains(&p.breaker.error_ratio) || p.breaker.error_ratio == 0.0 {
        return Err(invalid(field("breaker.error_ratio"), "must be in (0, 1]"));
    }
    if p.breaker.consecutive_failures == 0 || p.breaker.half_open_probes == 0 {
        return Err(invalid(
            field("breaker"),
            "consecutive_failures and half_open_probes must be at least 1",
        ));
    }
    if p.backpressure.max_in_flight > 0
        && p.backpressure.max_queue > 0
        && p.backpressure.queue_timeout_ms == 0
    {
        return Err(invalid(
            field("backpressure.queue_timeout_ms"),
            "must be set when max_queue > 0",
        ));
    }
    if p.retry.initial_delay_ms > p.retry.max_delay_ms {
        return Err(invalid(
            field("retry.initial_delay_ms"),
            "must not exceed retry.max_delay_ms",
        ));
    }
    for (f, v) in [
        ("connect_timeout_ms", p.connect_timeout_ms),
        ("first_byte_timeout_ms", p.first_byte_timeout_ms),
        ("idle_timeout_ms", p.idle_timeout_ms),
        ("total_timeout_ms", p.total_timeout_ms),
        ("max_total_timeout_ms", p.max_total_timeout_ms),
    ] {
        if v == 0 {
            return Err(invalid(field(f), "must be greater than 0"));
        }
    }
    Ok(Provider {
        name: name.to_owned(),
        slot,
        wire: p.kind.wire(),
        responses_passthrough: p.kind.serves_responses(),
        api_version,
        aws,
        addrs,
        tls,
        host_header,
        base_path: url.path,
        fixed_headers: fixed_headers.into_bytes(),
        keys,
        timeouts: Timeouts {
            connect: ms(p.connect_timeout_ms),
            first_byte: ms(p.first_byte_timeout_ms),
            idle: ms(p.idle_timeout_ms),
            total: ms(p.total_timeout_ms),
            max_total: ms(p.max_total_timeout_ms),
        },
        pool: PoolSettings {
            max_idle: p.pool_max_idle,
            idle_timeout: ms(p.pool_idle_timeout_ms),
        },
        retry: RetryPolicy {
            max_retries: p.retry.max_retries,
            initial_delay: ms(p.retry.initial_delay_ms),
            max_delay: ms(p.retry.max_delay_ms),
        },
        breaker: BreakerPolicy {
            consecutive_failures: p.breaker.consecutive_failures,
            error_ratio: p.breaker.error_ratio,
            min_requests: p.breaker.min_requests,
            open_for: ms(p.breaker.open_ms),
            half_open_probes: p.breaker.half_open_probes,
        },
        backpressure: Backpressure {
            max_in_flight: p.backpressure.max_in_flight,
            max_queue: p.backpressure.max_queue,
            queue_timeout: ms(p.backpressure.queue_timeout_ms),
        },
        models: p.models.clone(),
    })
}

/// The provider's API keys: `api_key` (one key) or `keys` (several, weighted).
/// Bedrock's signing credentials; required for kind bedrock and refused elsewhere.
fn aws_auth(name: &str, p: &ProviderConfig) -> Result<Option<AwsAuth>, ConfigError> {
    let field = |f: &str| format!("providers.{name}.{f}");
    if p.kind != ProviderKind::Bedrock {
        if p.region.is_some() || p.aws_access_key_id.is_some() || p.aws_secret_access_key.is_some()
        {
            return Err(invalid(
                field("region"),
                "AWS settings only apply to kind bedrock",
            ));
        }
        return Ok(None);
    }
    if p.api_key.is_some() || !p.keys.is_empty() {
        return Err(invalid(
            field("api_key"),
            "bedrock signs requests with AWS credentials, not API keys",
        ));
    }
    let required = |f: &str, v: &Option<String>| -> Result<String, ConfigError> {
        let v = v
            .as_ref()
            .ok_or_else(|| invalid(field(f), "is required for kind bedrock"))?;
        env_reference(&field(f), v)
    };
    Ok(Some(AwsAuth {
        region: p
            .region
            .clone()
            .ok_or_else(|| invalid(field("region"), "is required for kind bedrock"))?,
        access_key: required("aws_access_key_id", &p.aws_access_key_id)?,
        secret_key: required("aws_secret_access_key", &p.aws_secret_access_key)?,
        session_token: match &p.aws_session_token {
            Some(v) => Some(env_reference(&field("aws_session_token"), v)?),
            None => None,
        },
    }))
}

fn build_keys(name: &str, p: &ProviderConfig) -> Result<Vec<ApiKey>, ConfigError> {
    let line = |key: String| p.kind.key_line(&key);
    match (&p.api_key, p.keys.is_empty()) {
        (Some(_), false) => Err(invalid(
            format!("providers.{name}.keys"),
            "set either api_key or keys, not both",
        )),
        (Some(key), true) => Ok(vec![ApiKey {
            header_line: line(env_reference(&format!("providers.{name}.api_key"), key)?),
            weight: 1,
            models: Vec::new(),
        }]),
        (None, true) if p.stored_secret.is_some() => Ok(vec![ApiKey {
            header_line: line(p.stored_secret.clone().unwrap_or_default()),
            weight: 1,
            models: Vec::new(),
        }]),
        (None, _) => p
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let field = format!("providers.{name}.keys[{i}]");
                if k.weight == 0 {
                    return Err(invalid(format!("{field}.weight"), "must be at least 1"));
                }
                Ok(ApiKey {
                    header_line: line(env_reference(&format!("{field}.key"), &k.key)?),
                    weight: k.weight,
                    models: k.models.clone(),
                })
            })
            .collect(),
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl Config {
    /// Validates the configuration and builds what the shards serve from.
    pub fn snapshot(&self) -> Result<Snapshot, ConfigError> {
        self.snapshot_with(&[], &mut Slots::default())
    }

    /// The snapshot with `stored` providers (from the admin API) added to the file's; a stored
    /// provider cannot replace one defined in the file.
    pub fn snapshot_with(
        &self,
        stored: &[(String, ProviderConfig)],
        slots: &mut Slots,
    ) -> Result<Snapshot, ConfigError> {
        if self.providers.is_empty() {
            return Err(invalid("providers", "at least one provider is required"));
        }
        let l = &self.limits;
        if l.max_header_bytes < 1024 {
            return Err(invalid("limits.max_header_bytes", "must be at least 1024"));
        }
        for (f, v) in [
            ("limits.header_read_timeout_ms", l.header_read_timeout_ms),
            ("limits.body_read_timeout_ms", l.body_read_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            (
                "limits.disconnect_check_interval_ms",
                l.disconnect_check_interval_ms,
            ),
        ] {
            if v == 0 {
                return Err(invalid(f, "must be greater than 0"));
            }
        }
        let mut providers = Vec::with_capacity(self.providers.len());
        for (name, p) in &self.providers {
            if name.is_empty() || name.contains('/') {
                return Err(invalid(
                    format!("providers.{name}"),
                    "a provider name must be non-empty and contain no `/`",
                ));
            }
            providers.push(build_provider(name, p, slots.of(name)?)?);
        }
        for (name, p) in stored {
            if self.providers.contains_key(name) || name.is_empty() || name.contains('/') {
                tracing::warn!(provider = %name, "a provider from the admin API may not replace one from the config file; skipped");
                continue;
            }
            match build_provider(name, p, slots.of(name)?) {
                Ok(provider) => providers.push(provider),
                Err(e) => {
                    tracing::warn!(provider = %name, error = %e, "provider from the admin API skipped")
                }
            }
        }
        let id_of = |name: &str| providers.iter().position(|p| p.name == name);
        let default = match &self.default_provider {
            Some(name) => Some(id_of(name).ok_or_else(|| {
                invalid("default_provider", format!("no provider named `{name}`"))
            })?),
            None => None,
        };
        let mut table = ModelTable::new(default);
        for (id, p) in providers.iter().enumerate() {
            table.add_provider(&p.name, id, &p.models);
        }
        for (alias, config) in &self.aliases {
            let field = format!("aliases.{alias}");
            let members = config.members();
            if members.is_empty() {
                return Err(invalid(&field, "must name at least one `provider/model`"));
            }
            let mut resolved = Vec::with_capacity(members.len());
            for target in members {
                let (provider, model) = target
                    .split_once('/')
                    .filter(|(_, m)| !m.is_empty())
                    .ok_or_else(|| {
                        invalid(&field, format!("`{target}` must name `provider/model`"))
                    })?;
                let id = id_of(provider)
                    .ok_or_else(|| invalid(&field, format!("no provider named `{provider}`")))?;
                resolved.push((id, model.to_owned()));
            }
            if resolved.len() == 1 {
                table.add_alias(alias, resolved[0].0, &resolved[0].1);
            } else {
                table.add_group(alias, resolved);
            }
        }
        let limits = Limits {
            max_header_bytes: l.max_header_bytes,
            max_body_bytes: l.max_body_bytes,
            header_read_timeout: ms(l.header_read_timeout_ms),
            body_read_timeout: ms(l.body_read_timeout_ms),
            idle_timeout: ms(l.idle_timeout_ms),
            disconnect_check_interval: ms(l.disconnect_check_interval_ms),
        };
        let mut fallbacks = std::collections::HashMap::new();
        for (model, list) in &self.fallbacks {
            if table.resolve(model).is_none() {
                return Err(invalid(
                    format!("fallbacks.{model}"),
                    "names no configured model",
                ));
            }
            for (i, fallback) in list.iter().enumerate() {
                if table.resolve(fallback).is_none() {
                    return Err(invalid(
                        format!("fallbacks.{model}[{i}]"),
                        format!("`{fallback}` names no configured model"),
                    ));
                }
            }
            fallbacks.insert(model.clone(), list.clone());
        }
        let aliases: Vec<String> = self.aliases.keys().cloned().collect();
        let balance = match self.routing.balance {
            BalanceName::Random => shards::snapshot::Balance::Random,
            BalanceName::Latency => shards::snapshot::Balance::Latency,
        };
        Ok(Snapshot::new(
            limits, providers, table, &aliases, fallbacks, balance,
        ))
    }

    pub fn control_listen(&self) -> Result<SocketAddr, ConfigError> {
        self.control.listen.parse().map_err(|_| {
            invalid(
                "control.listen",
                format!("`{}` is not an ip:port address", self.control.listen),
            )
        })
    }

    pub fn shard_plan(&self) -> Result<ShardPlan, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{}` is not an ip:port address", self.listen),
            )
        })?;
        let tls = match &self.tls {
            Some(t) => Some(
                shards::tls::server_config(&t.cert_file, &t.key_file)
                    .map_err(|e| invalid("tls", e.to_string()))?,
            ),
            None => None,
        };
        if !(64..=32768).contains(&self.runtime.ring_entries)
            || !self.runtime.ring_entries.is_power_of_two()
        {
            return Err(invalid(
                "runtime.ring_entries",
                "must be a power of two between 64 and 32768",
            ));
        }
        Ok(ShardPlan {
            listen,
            shards: self.shards,
            pin_cores: self.pin_cores,
            driver: match self.runtime.driver {
                DriverName::Auto => DriverChoice::Auto,
                DriverName::IoUring => DriverChoice::IoUring,
                DriverName::Epoll => DriverChoice::Epoll,
            },
            ring_entries: self.runtime.ring_entries,
            tls,
            gov: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "providers:\n  mock:\n    base_url: http://127.0.0.1:9/v1\n    models: [m]\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL, "t").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.pin_cores);
        let s = c.snapshot().unwrap();
        assert_eq!(s.providers[0].base_path, "/v1");
        assert_eq!(s.providers[0].host_header, "127.0.0.1:9");
        assert!(c.shard_plan().unwrap().tls.is_none());
    }

    #[test]
    fn unknown_field_is_named() {
        let text = "providers:\n  mock:\n    base_ur: http://x/v1\n";
        let e = parse(text, "t").unwrap_err().to_string();
        assert!(e.contains("providers.mock"), "{e}");
        assert!(e.contains("base_ur"), "{e}");
    }

    #[test]
    fn bad_references_are_named() {
        let c = parse(&format!("default_provider: nope\n{MINIMAL}"), "t").unwrap();
        assert!(c
            .snapshot()
            .unwrap_err()
            .to_string()
            .contains("default_provider"));
        let c = parse(&format!("aliases: {{fast: other/m}}\n{MINIMAL}"), "t").unwrap();
        assert!(c
            .snapshot()
            .unwrap_err()
            .to_string()
            .contains("aliases.fast"));
        let text = "providers:\n  p:\n    base_url: http://127.0.0.1/v1\n    api_key: sk-literal\n";
        let e = parse(text, "t")
            .unwrap()
            .snapshot()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("providers.p.api_key") && !e.contains("sk-literal"),
            "{e}"
        );
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://api.openai.com/v1/").unwrap(),
            BaseUrl {
                https: true,
                host: "api.openai.com".into(),
                port: 443,
                path: "/v1".into()
            }
        );
        assert_eq!(parse_base_url("http://[::1]:8001").unwrap().host, "::1");
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("http://:80/v1").is_err());
        assert!(parse_base_url("http://h:99999/").is_err());
    }
}
