//! [`LogRow`]: a request log borrowed from where it already is — a usage record on its way to
//! the store, a stored [`RequestLog`], a segment's bytes — so that writing a batch's logs
//! copies no string (the flusher once cloned six of them per logged request) and a search
//! decodes rows without allocating.

use vocab::{CacheKind, NanoUsd, UsageRef};

use crate::model::RequestLog;

/// One request's log, borrowed: the fields of [`RequestLog`], with texts as `&str` and money
/// as nano-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRow<'a> {
    pub id: &'a str,
    pub client_request_id: Option<&'a str>,
    pub ts_ms: i64,
    pub key_id: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub provider: &'a str,
    pub model: &'a str,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_nanos: u64,
    pub latency_us: u64,
    pub overhead_us: u64,
    pub stream: bool,
    pub error_code: Option<&'a str>,
    pub usage_estimated: bool,
    pub cache: Option<CacheKind>,
    pub saved_tokens: Option<u64>,
    pub saved_cost_nanos: Option<u64>,
}

impl<'a> LogRow<'a> {
    /// The log of the request `record` tells of, under `id`. Cached tokens are not kept (they
    /// are part of the prompt tokens); a cache hit's saved tokens are its prompt and
    /// completion tokens.
    pub fn of(id: &'a str, record: &UsageRef<'a>) -> Self {
        Self {
            id,
            client_request_id: record.client_request_id,
            ts_ms: i64::try_from(record.ts_ms).unwrap_or(i64::MAX),
            key_id: record.key_id,
            team_id: record.team_id,
            customer_id: record.customer_id,
            provider: record.provider,
            model: record.model,
            status: record.status,
            prompt_tokens: record.usage.prompt,
            completion_tokens: record.usage.completion,
            cost_nanos: record.cost.nanos(),
            latency_us: record.latency_us,
            overhead_us: record.overhead_us,
            stream: record.stream,
            error_code: record.error_code,
            usage_estimated: record.estimated,
            cache: record.cache.map(|hit| hit.kind),
            saved_tokens: record
                .cache
                .map(|hit| hit.saved.prompt.saturating_add(hit.saved.completion)),
            saved_cost_nanos: record.cache.map(|hit| hit.saved_cost.nanos()),
        }
    }

    /// `log`, borrowed.
    pub fn of_log(log: &'a RequestLog) -> Self {
        Self {
            id: &log.id,
            client_request_id: log.client_request_id.as_deref(),
            ts_ms: log.ts_ms,
            key_id: log.key_id.as_deref(),
            team_id: log.team_id.as_deref(),
            customer_id: log.customer_id.as_deref(),
            provider: &log.provider,
            model: &log.model,
            status: log.status,
            prompt_tokens: log.prompt_tokens,
            completion_tokens: log.completion_tokens,
            cost_nanos: log.cost_nanos.nanos(),
            latency_us: log.latency_us,
            overhead_us: log.overhead_us,
            stream: log.stream,
            error_code: log.error_code.as_deref(),
            usage_estimated: log.usage_estimated,
            cache: log.cache,
            saved_tokens: log.saved_tokens,
            saved_cost_nanos: log.saved_cost_nanos.map(NanoUsd::nanos),
        }
    }

    /// An owned copy.
    pub fn to_log(self) -> RequestLog {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        RequestLog {
            id: self.id.to_owned(),
            client_request_id: owned(self.client_request_id),
            ts_ms: self.ts_ms,
            key_id: owned(self.key_id),
            team_id: owned(self.team_id),
            customer_id: owned(self.customer_id),
            provider: self.provider.to_owned(),
            model: self.model.to_owned(),
            status: self.status,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_nanos: NanoUsd::from_nanos(self.cost_nanos),
            latency_us: self.latency_us,
            overhead_us: self.overhead_us,
            stream: self.stream,
            error_code: owned(self.error_code),
            usage_estimated: self.usage_estimated,
            cache: self.cache,
            saved_tokens: self.saved_tokens,
            saved_cost_nanos: self.saved_cost_nanos.map(NanoUsd::from_nanos),
        }
    }
}
