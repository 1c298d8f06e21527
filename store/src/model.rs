//! The governance data model: customers, teams, virtual keys, providers,
//! usage, request logs and config-change events.

use serde::{Deserialize, Serialize};
use vocab::{BudgetPeriod, CacheKind, EntityRef, NanoUsd, UsageRecord, UsageRef};

/// A spending cap per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Maximum spend per period.
    pub limit_nanos: NanoUsd,
    /// When the spend counter starts over.
    pub period: BudgetPeriod,
}

/// Request and token rate limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Requests per hour.
    pub rph: Option<u64>,
    /// Requests per day.
    pub rpd: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Tokens per hour.
    pub tph: Option<u64>,
    /// Tokens per day.
    pub tpd: Option<u64>,
}

/// A customer (the top of the governance hierarchy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// UUID text.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Optional budget.
    pub budget: Option<Budget>,
    /// Rate limits.
    pub limits: Limits,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last update.
    pub updated_at: i64,
}

/// Fields a caller sets when creating or updating (full replace) a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerInput {
    /// Display name.
    pub name: String,
    /// Optional budget.
    pub budget: Option<Budget>,
    /// Rate limits.
    #[serde(default)]
    pub limits: Limits,
}

/// A team, optionally belonging to a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// UUID text.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Owning customer.
    pub customer_id: Option<String>,
    /// Optional budget.
    pub budget: Option<Budget>,
    /// Rate limits.
    pub limits: Limits,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last update.
    pub updated_at: i64,
}

/// Fields a caller sets when creating or updating (full replace) a team.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamInput {
    /// Display name.
    pub name: String,
    /// Owning customer (must exist).
    pub customer_id: Option<String>,
    /// Optional budget.
    pub budget: Option<Budget>,
    /// Rate limits.
    #[serde(default)]
    pub limits: Limits,
}

/// A virtual key. Only the SHA-256 of the secret key is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualKey {
    /// UUID text.
    pub id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 hex of the secret key.
    pub key_hash: String,
    /// First 8 characters of the secret key, for display.
    pub key_prefix: String,
    /// Owning team.
    pub team_id: Option<String>,
    /// Providers this key may use; empty = all.
    pub allowed_providers: Vec<String>,
    /// Models this key may use; empty = all.
    pub allowed_models: Vec<String>,
    /// Optional budget.
    pub budget: Option<Budget>,
    /// Rate limits.
    pub limits: Limits,
    /// Unix seconds after which the key is rejected.
    pub expires_at: Option<i64>,
    /// Disabled keys are rejected.
    pub active: bool,
    /// How long the response cache keeps this key's answers, seconds: `Some(0)` never
    /// caches them (even where the configuration would), `None` follows the configuration.
    #[serde(default)]
    pub cache_ttl_secs: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last update.
    pub updated_at: i64,
}

impl VirtualKey {
    /// Active and not expired at `now_unix`.
    pub fn is_usable(&self, now_unix: i64) -> bool {
        self.active && self.expires_at.is_none_or(|t| now_unix < t)
    }
}

/// Fields a caller sets when creating or updating (full replace) a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInput {
    /// Display name.
    pub name: String,
    /// Owning team (must exist).
    pub team_id: Option<String>,
    /// Providers this key may use; empty = all.
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    /// Models this key may use; empty = all.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Optional budget.
    pub budget: Option<Budget>,
    /// Rate limits.
    #[serde(default)]
    pub limits: Limits,
    /// Unix seconds after which the key is rejected.
    pub expires_at: Option<i64>,
    /// Disabled keys are rejected.
    pub active: bool,
    /// How long the response cache keeps this key's answers, seconds: `Some(0)` never
    /// caches them (even where the configuration would), `None` follows the configuration.
    #[serde(default)]
    pub cache_ttl_secs: Option<i64>,
}

impl Default for KeyInput {
    fn default() -> Self {
        Self {
            name: String::new(),
            team_id: None,
            allowed_providers: Vec::new(),
            allowed_models: Vec::new(),
            budget: None,
            limits: Limits::default(),
            expires_at: None,
            active: true,
            cache_ttl_secs: None,
        }
    }
}

/// A freshly created key and its secret, which is shown once and never stored.
#[derive(Clone)]
pub struct CreatedKey {
    /// The stored record.
    pub key: VirtualKey,
    /// The secret key (`rg-…`) to hand to the user.
    pub secret: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An upstream LLM provider. `secret` is held decrypted in memory and
/// encrypted at rest; it is never serialized and is redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Provider {
    /// Primary key.
    pub name: String,
    /// Provider kind (`openai`, `anthropic`, …).
    pub kind: String,
    /// Upstream base URL.
    pub base_url: String,
    /// Opaque JSON configuration text.
    pub config_json: String,
    /// Decrypted API secret.
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// Unix seconds of the last update.
    pub updated_at: i64,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("config_json", &self.config_json)
            .field(
                "secret",
                &self.secret.as_deref().map(crate::secrets::redact),
            )
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Fields a caller sets when creating or updating (full replace, including
/// the secret) a provider.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProviderInput {
    /// Provider kind.
    pub kind: String,
    /// Upstream base URL.
    pub base_url: String,
    /// Opaque JSON configuration text.
    pub config_json: String,
    /// Plaintext API secret; encrypted before it is stored.
    pub secret: Option<String>,
}

impl std::fmt::Debug for ProviderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderInput")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("config_json", &self.config_json)
            .field(
                "secret",
                &self.secret.as_deref().map(crate::secrets::redact),
            )
            .finish()
    }
}

/// An additive usage increment for one entity and budget period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDelta {
    /// Whose usage.
    pub entity: EntityRef,
    /// Start of the entity's budget period ([`BudgetPeriod::start`]); 0 for `never` or no
    /// budget.
    pub period_start: i64,
    /// Spend.
    pub spent_nanos: NanoUsd,
    /// Request count.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// The entity's budget generation (resets before) its requests were admitted under;
    /// `None` when unknown (it had no budget): the spend counts whatever resets came since.
    #[serde(default)]
    pub budget_generation: Option<u64>,
}

impl UsageDelta {
    /// Nothing yet for `entity` in the period starting at `period_start`, for requests
    /// admitted under `budget_generation`.
    pub fn new(entity: EntityRef, period_start: i64, budget_generation: Option<u64>) -> Self {
        Self {
            entity,
            period_start,
            spent_nanos: NanoUsd::ZERO,
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            budget_generation,
        }
    }

    /// Adds one request's usage. Counts saturate: a delta never wraps around.
    pub fn add(&mut self, record: &UsageRef<'_>) {
        self.spent_nanos = self.spent_nanos.saturating_add(record.cost);
        self.requests = self.requests.saturating_add(1);
        self.prompt_tokens = self.prompt_tokens.saturating_add(record.usage.prompt);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(record.usage.completion);
    }
}

/// Accumulated usage of one entity in one budget period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Whose usage.
    pub entity: EntityRef,
    /// Period start, unix seconds.
    pub period_start: i64,
    /// Spend since the period started (or since the last reset).
    pub spent_nanos: NanoUsd,
    /// Requests in the period.
    pub requests: u64,
    /// Prompt tokens in the period.
    pub prompt_tokens: u64,
    /// Completion tokens in the period.
    pub completion_tokens: u64,
    /// When the budget was last reset in this period.
    pub reset_at: Option<i64>,
}

/// One proxied request, for the request log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLog {
    /// Unique id: the gateway's request id (32 hex characters).
    pub id: String,
    /// The `x-request-id` the client sent, if any (not unique: clients choose it).
    #[serde(default)]
    pub client_request_id: Option<String>,
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// Virtual key used.
    pub key_id: Option<String>,
    /// Team of the key.
    pub team_id: Option<String>,
    /// Customer of the team.
    pub customer_id: Option<String>,
    /// Upstream provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost.
    pub cost_nanos: NanoUsd,
    /// End-to-end latency, microseconds.
    pub latency_us: u64,
    /// Gateway overhead, microseconds.
    pub overhead_us: u64,
    /// Streaming response.
    pub stream: bool,
    /// Error code, if the request failed.
    pub error_code: Option<String>,
    /// The token counts were counted by the gateway, not reported by the provider.
    pub usage_estimated: bool,
    /// Which cache answered the request, if one did (then the tokens and cost above are 0:
    /// no provider was paid).
    #[serde(default)]
    pub cache: Option<CacheKind>,
    /// A cache hit's saved tokens: prompt + completion of the answer when it was first made.
    #[serde(default)]
    pub saved_tokens: Option<u64>,
    /// A cache hit's saved cost: what the answer cost when it was first made.
    #[serde(default)]
    pub saved_cost_nanos: Option<NanoUsd>,
}

impl RequestLog {
    /// The log of the request `record` tells of, under `id` ([`crate::LogRow::of`]).
    pub fn new(id: String, record: &UsageRecord) -> Self {
        crate::LogRow::of(&id, &record.view()).to_log()
    }
}

/// Which configuration entity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigKind {
    /// A customer.
    Customer,
    /// A team.
    Team,
    /// A virtual key.
    Key,
    /// A provider.
    Provider,
}

impl ConfigKind {
    /// The text form used in notification payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Customer => "customer",
            ConfigKind::Team => "team",
            ConfigKind::Key => "key",
            ConfigKind::Provider => "provider",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "customer" => ConfigKind::Customer,
            "team" => ConfigKind::Team,
            "key" => ConfigKind::Key,
            "provider" => ConfigKind::Provider,
            _ => return None,
        })
    }
}

/// A configuration change event: entity `id` of `kind` was created,
/// updated or deleted. Receivers re-read the entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Entity kind.
    pub kind: ConfigKind,
    /// Entity id (provider name for providers).
    pub id: String,
}

impl ConfigChange {
    /// The notification payload without a version: `kind:id` (what nodes before config
    /// versions sent). Stored notifications carry `kind:id@v<version>`.
    pub fn payload(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }

    /// Parses a `kind:id` or `kind:id@v<version>` payload, dropping the version.
    pub fn parse_payload(payload: &str) -> Option<Self> {
        Self::parse_versioned_payload(payload).map(|(change, _)| change)
    }

    /// Parses a `kind:id@v<version>` payload; the version is `None` in the older `kind:id`
    /// form (a node without config versions). Nodes that only know `kind:id` read the
    /// version as part of the id and still reload.
    pub fn parse_versioned_payload(payload: &str) -> Option<(Self, Option<u64>)> {
        let (kind, rest) = payload.split_once(':')?;
        let (id, version) = match rest.rsplit_once("@v") {
            Some((id, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                (id, v.parse().ok())
            }
            _ => (rest, None),
        };
        Some((
            Self {
                kind: ConfigKind::parse(kind)?,
                id: id.to_owned(),
            },
            version,
        ))
    }
}

/// Current state of a lease counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCounter {
    /// Units handed out in the window.
    pub used: u64,
    /// The limit most recently supplied for the window.
    pub limit_value: u64,
}
