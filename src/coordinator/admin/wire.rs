//! The admin API's request and response bodies.
//!
//! Requests are parsed into local types that reject unknown fields (at every level) and
//! are then validated and converted to the store's inputs; responses are views of the
//! store's records that leave out what must not leave: a key's hash and a provider's
//! secret (shown redacted).

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};
use store::{
    Budget, CustomerInput, KeyInput, Limits, Provider, ProviderInput, TeamInput, VirtualKey,
};
use vocab::{BudgetPeriod, NanoUsd};

use super::ApiError;

/// Longest accepted display name.
const MAX_NAME_CHARS: usize = 200;
/// Longest accepted provider name.
const MAX_PROVIDER_NAME_CHARS: usize = 64;
/// Longest accepted cache TTL of a key: a year, in seconds.
const MAX_CACHE_TTL_SECS: i64 = 31_536_000;

/// Parses a JSON body strictly; errors name the offending field (`limits.rpm: …`).
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if !body.trim_ascii().starts_with(b"{") {
        return Err(ApiError::invalid(
            "the request body must be a JSON object",
            None,
            "invalid_body",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // Syntax errors have no meaningful path (`?`); serde's message has the position.
        if path == "." || inner.is_syntax() || inner.is_eof() || path.contains('?') {
            ApiError::invalid(format!("invalid body: {inner}"), None, "invalid_body")
        } else {
            ApiError::invalid(format!("{path}: {inner}"), Some(path), "invalid_body")
        }
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("invalid body: {e}"), None, "invalid_body"))?;
    Ok(value)
}

/// Accepts an empty body or `{}` (for actions such as a budget reset).
pub(super) fn parse_empty_body(body: &[u8]) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    if body.trim_ascii().is_empty() {
        return Ok(());
    }
    parse_body::<Empty>(body).map(|_| ())
}

fn invalid_value(param: &str, message: String) -> ApiError {
    ApiError::invalid(message, Some(param.to_owned()), "invalid_value")
}

fn check_name(param: &str, name: &str, max: usize) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(invalid_value(param, format!("{param} must not be empty")));
    }
    if name.chars().count() > max {
        return Err(invalid_value(
            param,
            format!("{param} is longer than {max} characters"),
        ));
    }
    Ok(())
}

fn check_list(param: &str, items: &[String]) -> Result<(), ApiError> {
    if items.iter().any(|s| s.trim().is_empty()) {
        return Err(invalid_value(
            param,
            format!("{param} must not contain empty names"),
        ));
    }
    Ok(())
}

/// A budget in a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetBody {
    limit_nanos: u64,
    period: BudgetPeriod,
}

impl From<BudgetBody> for Budget {
    fn from(b: BudgetBody) -> Self {
        Budget {
            limit_nanos: NanoUsd::from_nanos(b.limit_nanos),
            period: b.period,
        }
    }
}

/// Rate limits in a request; omitted or `null` = unlimited.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct LimitsBody {
    rpm: Option<u64>,
    rph: Option<u64>,
    rpd: Option<u64>,
    tpm: Option<u64>,
    tph: Option<u64>,
    tpd: Option<u64>,
}

impl From<LimitsBody> for Limits {
    fn from(l: LimitsBody) -> Self {
        Limits {
            rpm: l.rpm,
            rph: l.rph,
            rpd: l.rpd,
            tpm: l.tpm,
            tph: l.tph,
            tpd: l.tpd,
        }
    }
}

/// `POST /admin/customers`, `PUT /admin/customers/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CustomerBody {
    name: String,
    #[serde(default)]
    budget: Option<BudgetBody>,
    #[serde(default)]
    limits: LimitsBody,
}

impl CustomerBody {
    pub(super) fn into_input(self) -> Result<CustomerInput, ApiError> {
        check_name("name", &self.name, MAX_NAME_CHARS)?;
        Ok(CustomerInput {
            name: self.name,
            budget: self.budget.map(Into::into),
            limits: self.limits.into(),
        })
    }
}

/// `POST /admin/teams`, `PUT /admin/teams/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamBody {
    name: String,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    budget: Option<BudgetBody>,
    #[serde(default)]
    limits: LimitsBody,
}

impl TeamBody {
    pub(super) fn into_input(self) -> Result<TeamInput, ApiError> {
        check_name("name", &self.name, MAX_NAME_CHARS)?;
        Ok(TeamInput {
            name: self.name,
            customer_id: self.customer_id,
            budget: self.budget.map(Into::into),
            limits: self.limits.into(),
        })
    }
}

fn yes() -> bool {
    true
}

/// `POST /admin/keys`, `PUT /admin/keys/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyBody {
    name: String,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    allowed_providers: Vec<String>,
    #[serde(default)]
    allowed_models: Vec<String>,
    #[serde(default)]
    budget: Option<BudgetBody>,
    #[serde(default)]
    limits: LimitsBody,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    cache_ttl_secs: Option<i64>,
}

impl KeyBody {
    pub(super) fn into_input(self) -> Result<KeyInput, ApiError> {
        check_name("name", &self.name, MAX_NAME_CHARS)?;
        check_list("allowed_providers", &self.allowed_providers)?;
        check_list("allowed_models", &self.allowed_models)?;
        if let Some(ttl) = self.cache_ttl_secs {
            if !(0..=MAX_CACHE_TTL_SECS).contains(&ttl) {
                return Err(invalid_value(
                    "cache_ttl_secs",
                    format!(
                        "cache_ttl_secs must be 0 (never cache) to {MAX_CACHE_TTL_SECS} seconds, \
                         or null to follow the configuration, got {ttl}"
                    ),
                ));
            }
        }
        Ok(KeyInput {
            name: self.name,
            team_id: self.team_id,
            allowed_providers: self.allowed_providers,
            allowed_models: self.allowed_models,
            budget: self.budget.map(Into::into),
            limits: self.limits.into(),
            expires_at: self.expires_at,
            active: self.active,
            cache_ttl_secs: self.cache_ttl_secs,
        })
    }
}

/// Provider configuration: a JSON object (stored as its text) or a string holding JSON.
fn config_text(config: Option<serde_json::Value>) -> Result<String, ApiError> {
    match config {
        None | Some(serde_json::Value::Null) => Ok("{}".to_owned()),
        Some(serde_json::Value::String(text)) => {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(_) => Ok(text),
                Err(e) => Err(invalid_value(
                    "config_json",
                    format!("config_json is not valid JSON: {e}"),
                )),
            }
        }
        Some(v) => Ok(v.to_string()),
    }
}

fn check_provider_fields(kind: &str, base_url: &str) -> Result<(), ApiError> {
    let kind_ok = !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !kind_ok {
        return Err(invalid_value(
            "kind",
            format!("kind {kind:?} must be a provider kind such as openai or anthropic"),
        ));
    }
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(invalid_value(
            "base_url",
            format!("base_url {base_url:?} must be an http:// or https:// URL"),
        ));
    }
    Ok(())
}

fn check_secret(secret: Option<&str>) -> Result<(), ApiError> {
    if secret.is_some_and(|s| s.trim().is_empty()) {
        return Err(invalid_value(
            "secret",
            "secret must not be empty (use null for none)".to_owned(),
        ));
    }
    Ok(())
}

/// `POST /admin/providers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderCreateBody {
    name: String,
    kind: String,
    base_url: String,
    #[serde(default)]
    config_json: Option<serde_json::Value>,
    #[serde(default)]
    secret: Option<String>,
}

impl ProviderCreateBody {
    pub(super) fn into_input(self) -> Result<(String, ProviderInput), ApiError> {
        check_name("name", &self.name, MAX_PROVIDER_NAME_CHARS)?;
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid_value(
                "name",
                format!(
                    "provider name {:?} may only contain letters, digits, '-', '_' and '.'",
                    self.name
                ),
            ));
        }
        check_provider_fields(&self.kind, &self.base_url)?;
        check_secret(self.secret.as_deref())?;
        let input = ProviderInput {
            kind: self.kind,
            base_url: self.base_url,
            config_json: config_text(self.config_json)?,
            secret: self.secret,
        };
        Ok((self.name, input))
    }
}

/// Distinguishes an omitted field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `PUT /admin/providers/{name}`. An omitted `secret` keeps the stored one; `null` clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderUpdateBody {
    kind: String,
    base_url: String,
    #[serde(default)]
    config_json: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    pub(super) secret: Option<Option<String>>,
}

impl ProviderUpdateBody {
    /// `keep` is the stored secret, used when the body omits `secret`.
    pub(super) fn into_input(
        self,
        keep: Option<Option<String>>,
    ) -> Result<ProviderInput, ApiError> {
        check_provider_fields(&self.kind, &self.base_url)?;
        let secret = match self.secret {
            Some(given) => {
                check_secret(given.as_deref())?;
                given
            }
            None => keep.flatten(),
        };
        Ok(ProviderInput {
            kind: self.kind,
            base_url: self.base_url,
            config_json: config_text(self.config_json)?,
            secret,
        })
    }
}

/// A virtual key as the admin API shows it: everything but the hash.
#[derive(Debug, Serialize)]
pub(super) struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    key_prefix: &'a str,
    team_id: Option<&'a str>,
    allowed_providers: &'a [String],
    allowed_models: &'a [String],
    budget: Option<Budget>,
    limits: Limits,
    expires_at: Option<i64>,
    active: bool,
    cache_ttl_secs: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl<'a> From<&'a VirtualKey> for KeyView<'a> {
    fn from(k: &'a VirtualKey) -> Self {
        KeyView {
            id: &k.id,
            name: &k.name,
            key_prefix: &k.key_prefix,
            team_id: k.team_id.as_deref(),
            allowed_providers: &k.allowed_providers,
            allowed_models: &k.allowed_models,
            budget: k.budget,
            limits: k.limits,
            expires_at: k.expires_at,
            active: k.active,
            cache_ttl_secs: k.cache_ttl_secs,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

/// A provider as the admin API shows it: the secret redacted (`sk-…abcd`) or null.
#[derive(Debug, Serialize)]
pub(super) struct ProviderView<'a> {
    name: &'a str,
    kind: &'a str,
    base_url: &'a str,
    config_json: &'a str,
    secret: Option<String>,
    updated_at: i64,
}

impl<'a> From<&'a Provider> for ProviderView<'a> {
    fn from(p: &'a Provider) -> Self {
        ProviderView {
            name: &p.name,
            kind: &p.kind,
            base_url: &p.base_url,
            config_json: &p.config_json,
            secret: p.secret.as_deref().map(store::redact),
            updated_at: p.updated_at,
        }
    }
}
