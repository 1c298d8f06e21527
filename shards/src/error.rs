//! The gateway's one error type. Each variant knows its HTTP status, its OpenAI error `type`
//! and `code`, who caused it (client, upstream, the gateway itself) and what failover does
//! after it ([`GatewayError::retry`]); [`GatewayError::write_body`] renders it once, in
//! OpenAI's error shape. [`Retry::of_status`] is the same policy for a provider's HTTP
//! status: together they are the one place that decides what is retried.
//!
//! Hot-path cost: none unless a request fails; rendering writes straight into the output buffer.

use std::fmt::Write as _;

/// What failover does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing else could do better: this is the answer.
    Never,
    /// The provider failed: it counts against the provider's health, and the same target
    /// is tried again after a backoff (up to its retry limit), then the next target.
    Backoff,
    /// This key was refused (429, or 401/403 when `auth`): cool it down and try another key
    /// of the same provider at once; with none left, move on (429) or answer (401/403).
    OtherKey { auth: bool },
    /// This target cannot serve the request now: the next target, at once.
    NextTarget,
}

impl Retry {
    /// The policy for a provider's response status.
    pub fn of_status(status: u16) -> Self {
        match status {
            429 => Self::OtherKey { auth: false },
            401 | 403 => Self::OtherKey { auth: true },
            408 | 500 | 502 | 503 | 504 | 529 => Self::Backoff,
            _ => Self::Never,
        }
    }
}

/// Who caused an error: decides the logging level and the error's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("We could not parse the JSON body of your request: {0}")]
    MalformedJson(String),
    #[error("Invalid request: {0}")]
    InvalidRequest(String),
    /// The request cannot be expressed in one provider's API (another target's may).
    #[error("Invalid request: provider `{provider}`: {detail}")]
    ProviderCannotServe { provider: String, detail: String },
    #[error("you must provide a model parameter")]
    MissingModel,
    #[error("The model `{0}` does not exist or is not configured on this gateway")]
    ModelNotFound(String),
    #[error("Request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("Request headers are larger than the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("Request was not received in time")]
    RequestTimeout,
    #[error("Invalid URL ({method} {path})")]
    UnknownRoute { method: String, path: String },
    #[error("Method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("Could not connect to provider `{provider}`: {detail}")]
    UpstreamConnect { provider: String, detail: String },
    #[error("Provider `{provider}` closed or reset the connection: {detail}")]
    UpstreamReset { provider: String, detail: String },
    #[error("Provider `{provider}` did not answer in time ({phase})")]
    UpstreamTimeout {
        provider: String,
        phase: &'static str,
    },
    #[error("Provider `{provider}` sent an invalid HTTP response: {detail}")]
    UpstreamProtocol { provider: String, detail: String },
    #[error("Provider `{provider}` reported an error in its stream: {detail}")]
    UpstreamStreamError { provider: String, detail: String },
    #[error("The stream from provider `{provider}` broke before it ended: {detail}")]
    UpstreamBroken { provider: String, detail: String },
    #[error("Provider `{provider}` is at capacity on this gateway; retry later")]
    Overloaded { provider: String },
    #[error("Provider `{provider}` is failing and temporarily cut off (circuit open)")]
    CircuitOpen { provider: String },
    #[error(
        "Every API key of provider `{provider}` that may serve this model was tried and refused"
    )]
    NoKeyAvailable { provider: String },
    #[error("The request's deadline passed before a provider answered")]
    DeadlineExceeded,
    #[error(
        "Missing virtual key: send it as `Authorization: Bearer <key>` or `x-ringgate-key: <key>`"
    )]
    MissingKey,
    #[error("Invalid virtual key")]
    InvalidKey,
    #[error("This virtual key is {0}")]
    KeyNotUsable(&'static str),
    #[error("This virtual key may not use model `{0}`")]
    ModelNotAllowed(String),
    #[error("Rate limit reached for {entity} ({limit}: {value}); retry in {resets_in} s")]
    RateLimited {
        limit: &'static str,
        value: u64,
        entity: &'static str,
        resets_in: u64,
    },
    #[error("The {entity}'s budget is spent")]
    BudgetExceeded { entity: &'static str },
    /// A limit ran out on this node while the store that holds the fleet's share of it could
    /// not be reached, or no more of it was granted within `lease_wait`: not known to be
    /// spent, not granted either (fail closed).
    #[error(
        "The {entity}'s {limit} cannot be checked right now (the gateway's store did not answer in time); retry shortly"
    )]
    LimitsUnavailable {
        limit: &'static str,
        entity: &'static str,
    },
    /// This shard's usage records wait for a coordinator that fell far behind: a request
    /// admitted now could be served with usage no limit or budget would count (shed, not
    /// served uncounted).
    #[error("This gateway node is behind recording usage; retry shortly")]
    UsageBacklog,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedJson(_)
            | Self::InvalidRequest(_)
            | Self::ProviderCannotServe { .. }
            | Self::MissingModel => 400,
            Self::ModelNotFound(_) | Self::UnknownRoute { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::RequestTimeout => 408,
            Self::BodyTooLarge { .. } => 413,
            Self::HeadersTooLarge { .. } => 431,
            Self::UpstreamConnect { .. }
            | Self::UpstreamReset { .. }
            | Self::UpstreamProtocol { .. }
            | Self::UpstreamStreamError { .. }
            | Self::UpstreamBroken { .. } => 502,
            Self::Overloaded { .. }
            | Self::CircuitOpen { .. }
            | Self::NoKeyAvailable { .. }
            | Self::LimitsUnavailable { .. }
            | Self::UsageBacklog => 503,
            Self::UpstreamTimeout { .. } | Self::DeadlineExceeded => 504,
            Self::MissingKey | Self::InvalidKey => 401,
            Self::KeyNotUsable(_) | Self::ModelNotAllowed(_) => 403,
            Self::RateLimited { .. } => 429,
            Self::BudgetExceeded { .. } => 402,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::MissingKey | Self::InvalidKey => return "authentication_error",
            Self::KeyNotUsable(_) | Self::ModelNotAllowed(_) => return "permission_error",
            Self::RateLimited { .. } => return "rate_limit_error",
            Self::BudgetExceeded { .. } => return "insufficient_quota",
            _ => {}
        }
        match self.source() {
            ErrorSource::Client => "invalid_request_error",
            ErrorSource::Upstream | ErrorSource::Gateway => "api_error",
        }
    }

    /// OpenAI's `error.code`, machine-readable.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "invalid_json",
            Self::InvalidRequest(_) | Self::ProviderCannotServe { .. } => "invalid_request",
            Self::MissingModel => "missing_required_parameter",
            Self::ModelNotFound(_) => "model_not_found",
            Self::BodyTooLarge { .. } => "request_too_large",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::UnknownRoute { .. } => "unknown_url",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::UpstreamConnect { .. } => "upstream_connect_failed",
            Self::UpstreamReset { .. } => "upstream_reset",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamProtocol { .. } => "upstream_protocol_error",
            Self::UpstreamStreamError { .. } => "upstream_stream_error",
            Self::UpstreamBroken { .. } => "upstream_stream_broken",
            Self::Overloaded { .. } => "overloaded",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::NoKeyAvailable { .. } => "no_key_available",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::MissingKey => "missing_api_key",
            Self::InvalidKey => "invalid_api_key",
            Self::KeyNotUsable(_) => "key_not_usable",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::LimitsUnavailable { .. } => "limits_unavailable",
            Self::UsageBacklog => "usage_backlog",
        }
    }

    /// OpenAI's `error.param`: the request field at fault, when there is one.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::MissingModel | Self::ModelNotFound(_) | Self::ModelNotAllowed(_) => Some("model"),
            _ => None,
        }
    }

    pub fn source(&self) -> ErrorSource {
        match self {
            Self::UpstreamConnect { .. }
            | Self::UpstreamReset { .. }
            | Self::UpstreamTimeout { .. }
            | Self::UpstreamProtocol { .. }
            | Self::UpstreamStreamError { .. }
            | Self::UpstreamBroken { .. } => ErrorSource::Upstream,
            Self::Overloaded { .. }
            | Self::CircuitOpen { .. }
            | Self::NoKeyAvailable { .. }
            | Self::DeadlineExceeded
            | Self::LimitsUnavailable { .. }
            | Self::UsageBacklog => ErrorSource::Gateway,
            _ => ErrorSource::Client,
        }
    }

    /// What failover does after this error (see [`Retry`]).
    pub fn retry(&self) -> Retry {
        match self.source() {
            ErrorSource::Upstream => Retry::Backoff,
            _ => match self {
                Self::ProviderCannotServe { .. }
                | Self::Overloaded { .. }
                | Self::CircuitOpen { .. }
                | Self::NoKeyAvailable { .. } => Retry::NextTarget,
                _ => Retry::Never,
            },
        }
    }

    /// Seconds a client should wait before retrying, sent as `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { resets_in, .. } => Some(*resets_in),
            Self::Overloaded { .. }
            | Self::CircuitOpen { .. }
            | Self::NoKeyAvailable { .. }
            | Self::LimitsUnavailable { .. }
            | Self::UsageBacklog => Some(1),
            _ => None,
        }
    }

    /// Appends the `x-ratelimit-*` header lines of a rate-limit refusal.
    pub fn push_rate_limit_headers(&self, out: &mut Vec<u8>) {
        if let Self::RateLimited {
            limit,
            value,
            resets_in,
            ..
        } = self
        {
            let unit = if limit.starts_with('t') {
                "tokens"
            } else {
                "requests"
            };
            let _ = write!(
                VecWriter(out),
                "x-ratelimit-limit-{unit}: {value}\r\nx-ratelimit-remaining-{unit}: 0\r\nx-ratelimit-reset-{unit}: {resets_in}s\r\n"
            );
        }
    }

    /// Appends `{"error":{"message","type","param","code"}}` to `out`.
    pub fn write_body(&self, out: &mut Vec<u8>) {
        let mut message = String::new();
        let _ = write!(message, "{self}");
        write_error_json(out, &message, self.error_type(), self.param(), self.code());
    }
}

/// Appends an OpenAI-shaped error object; shared by local errors and stream error events.
pub fn write_error_json(
    out: &mut Vec<u8>,
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: &str,
) {
    out.extend_from_slice(b"{\"error\":{\"message\":");
    push_json_string(out, message);
    out.extend_from_slice(b",\"type\":");
    push_json_string(out, error_type);
    out.extend_from_slice(b",\"param\":");
    match param {
        Some(p) => push_json_string(out, p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"code\":");
    push_json_string(out, code);
    out.extend_from_slice(b"}}");
}

/// `fmt::Write` into a byte buffer.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is correct for every input; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(e: &GatewayError) -> serde_json::Value {
        let mut out = Vec::new();
        e.write_body(&mut out);
        serde_json::from_slice(&out).expect("valid json")
    }

    #[test]
    fn renders_openai_shape() {
        let v = render(&GatewayError::ModelNotFound("x/\"y".into()));
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("x/\"y"));
    }

    #[test]
    fn upstream_errors_are_api_errors_with_gateway_statuses() {
        let e = GatewayError::UpstreamTimeout {
            provider: "p".into(),
            phase: "first byte",
        };
        assert_eq!(e.status(), 504);
        assert_eq!(render(&e)["error"]["type"], "api_error");
        assert_eq!(render(&e)["error"]["param"], serde_json::Value::Null);
        assert_eq!(e.retry(), Retry::Backoff);
    }

    #[test]
    fn a_shed_request_is_told_to_retry_shortly() {
        let e = GatewayError::UsageBacklog;
        assert_eq!(e.status(), 503);
        assert_eq!(e.retry_after(), Some(1));
        assert_eq!(e.retry(), Retry::Never, "another target would not help");
        let v = render(&e);
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["error"]["code"], "usage_backlog");
        assert!(crate::state::stats::REFUSALS.contains(&e.code()));
    }

    #[test]
    fn retry_policy() {
        assert_eq!(Retry::of_status(200), Retry::Never);
        assert_eq!(Retry::of_status(400), Retry::Never);
        assert_eq!(Retry::of_status(404), Retry::Never);
        assert_eq!(Retry::of_status(429), Retry::OtherKey { auth: false });
        assert_eq!(Retry::of_status(401), Retry::OtherKey { auth: true });
        assert_eq!(Retry::of_status(503), Retry::Backoff);
        assert_eq!(Retry::of_status(529), Retry::Backoff);
        let cannot = GatewayError::ProviderCannotServe {
            provider: "p".into(),
            detail: "no".into(),
        };
        assert_eq!(cannot.retry(), Retry::NextTarget);
        assert_eq!(cannot.status(), 400);
        assert_eq!(GatewayError::DeadlineExceeded.retry(), Retry::Never);
        assert_eq!(GatewayError::MissingModel.retry(), Retry::Never);
    }
}
