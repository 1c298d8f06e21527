//! What one request used, as the data plane reports it: token counts read from the
//! provider's response, and the [`UsageRecord`] a shard sends the coordinator after each
//! governed request. The coordinator folds records into the store's usage counters (per
//! entity and budget period) and request log rows.

use serde::{Deserialize, Serialize};

use crate::entity::EntityKind;
use crate::money::NanoUsd;

/// Tokens of one response, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
    /// Prompt tokens served from the provider's cache (part of `prompt`, priced lower).
    pub cached: u64,
}

/// How the cache answered a request (absent: it did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// The same request (after normalisation) was answered before.
    Exact,
    /// A request close enough in meaning was answered before.
    Semantic,
}

impl CacheKind {
    /// The text form (`exact`, `semantic`), as serialized and as the request log stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Exact => "exact",
            CacheKind::Semantic => "semantic",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exact" => Some(CacheKind::Exact),
            "semantic" => Some(CacheKind::Semantic),
            _ => None,
        }
    }
}

/// A request the cache answered: which cache, and what the provider would have been paid —
/// the tokens and cost of the answer when it was first made. The request itself used (and
/// is charged) nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHit {
    pub kind: CacheKind,
    /// Tokens not sent to a provider.
    pub saved: TokenUsage,
    /// Cost not paid.
    pub saved_cost: NanoUsd,
}

/// One governed request, owned. Shards and the coordinator pass records as bytes
/// ([`crate::usage_bytes`]) and read them as [`UsageRef`]s; this owned form is what older
/// versions wrote to the usage spool as JSON (fields added later have defaults, so that such
/// a spool still reads) and what tests build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The gateway's id of the request, unique across nodes and restarts (the request log's
    /// id).
    #[serde(default)]
    pub id: String,
    /// The client's own `x-request-id`, when it sent one (the response echoes it).
    #[serde(default)]
    pub client_request_id: Option<String>,
    /// Unix milliseconds.
    pub ts_ms: u64,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    pub provider: String,
    pub model: String,
    /// HTTP status returned to the client (499: the client went away).
    pub status: u16,
    pub usage: TokenUsage,
    pub cost: NanoUsd,
    pub latency_us: u64,
    pub stream: bool,
    /// `usage` was counted by the gateway (the provider reported none, or the client left
    /// before it could), not reported by the provider.
    pub estimated: bool,
    /// Time spent inside the gateway (total minus time waiting on the provider).
    #[serde(default)]
    pub overhead_us: u64,
    /// The error code of a failed request (as in its OpenAI-shaped error body).
    #[serde(default)]
    pub error_code: Option<String>,
    /// The request was admitted by its limits: its usage counts, and it spent a request of
    /// each request limit. False for a request refused before it reached a provider (bad
    /// model, spent limit), which is only logged.
    #[serde(default = "admitted_by_default")]
    pub admitted: bool,
    /// Set when the response cache answered the request (then `usage` and `cost` are zero).
    #[serde(default)]
    pub cache: Option<CacheHit>,
    /// The budget generations the request was admitted under ([`UsageRef::budget_generations`]).
    #[serde(default)]
    pub budget_generations: BudgetGenerations,
}

/// Per owner — key, team, customer — the budget generation (resets before it) the request
/// was admitted under; `None` where the owner had no budget. A reset zeroes a period's spend
/// and starts a new generation: spend charged under an earlier one is not counted against
/// the fresh budget (it was admitted before the reset, however late its usage is written).
pub type BudgetGenerations = [Option<u64>; 3];

fn admitted_by_default() -> bool {
    true
}

impl UsageRecord {
    /// The record, borrowed.
    pub fn view(&self) -> UsageRef<'_> {
        UsageRef {
            id: &self.id,
            client_request_id: self.client_request_id.as_deref(),
            ts_ms: self.ts_ms,
            key_id: self.key_id.as_deref(),
            team_id: self.team_id.as_deref(),
            customer_id: self.customer_id.as_deref(),
            provider: &self.provider,
            model: &self.model,
            status: self.status,
            usage: self.usage,
            cost: self.cost,
            latency_us: self.latency_us,
            stream: self.stream,
            estimated: self.estimated,
            overhead_us: self.overhead_us,
            error_code: self.error_code.as_deref(),
            admitted: self.admitted,
            cache: self.cache,
            budget_generations: self.budget_generations,
        }
    }
}

/// One governed request, its texts borrowed: from what a shard's request holds when the shard
/// writes its record, from a batch's bytes when the coordinator reads it. The fields are
/// [`UsageRecord`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRef<'a> {
    pub id: &'a str,
    pub client_request_id: Option<&'a str>,
    pub ts_ms: u64,
    pub key_id: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub provider: &'a str,
    pub model: &'a str,
    pub status: u16,
    pub usage: TokenUsage,
    pub cost: NanoUsd,
    pub latency_us: u64,
    pub stream: bool,
    pub estimated: bool,
    pub overhead_us: u64,
    pub error_code: Option<&'a str>,
    pub admitted: bool,
    pub cache: Option<CacheHit>,
    pub budget_generations: BudgetGenerations,
}

impl<'a> UsageRef<'a> {
    /// The entities the request is charged to: its key, the key's team and the team's
    /// customer, those that exist.
    pub fn owners(&self) -> impl Iterator<Item = (EntityKind, &'a str)> {
        [
            (EntityKind::Key, self.key_id),
            (EntityKind::Team, self.team_id),
            (EntityKind::Customer, self.customer_id),
        ]
        .into_iter()
        .filter_map(|(kind, id)| Some((kind, id?)))
    }

    /// The budget generation the request was admitted under for the owner of `kind`.
    pub fn budget_generation(&self, kind: EntityKind) -> Option<u64> {
        self.budget_generations[owner_index(kind)]
    }

    /// An owned copy.
    pub fn to_record(&self) -> UsageRecord {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        UsageRecord {
            id: self.id.to_owned(),
            client_request_id: owned(self.client_request_id),
            ts_ms: self.ts_ms,
            key_id: owned(self.key_id),
            team_id: owned(self.team_id),
            customer_id: owned(self.customer_id),
            provider: self.provider.to_owned(),
            model: self.model.to_owned(),
            status: self.status,
            usage: self.usage,
            cost: self.cost,
            latency_us: self.latency_us,
            stream: self.stream,
            estimated: self.estimated,
            overhead_us: self.overhead_us,
            error_code: owned(self.error_code),
            admitted: self.admitted,
            cache: self.cache,
            budget_generations: self.budget_generations,
        }
    }
}

/// An owner's place in [`BudgetGenerations`].
pub fn owner_index(kind: EntityKind) -> usize {
    match kind {
        EntityKind::Key => 0,
        EntityKind::Team => 1,
        EntityKind::Customer => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_those_present() {
        let record = UsageRecord {
            id: "r".into(),
            client_request_id: None,
            ts_ms: 0,
            key_id: Some("k".into()),
            team_id: None,
            customer_id: Some("c".into()),
            provider: "p".into(),
            model: "m".into(),
            status: 200,
            usage: TokenUsage::default(),
            cost: NanoUsd::ZERO,
            latency_us: 0,
            stream: false,
            estimated: false,
            overhead_us: 0,
            error_code: None,
            admitted: true,
            cache: None,
            budget_generations: [Some(2), None, Some(0)],
        };
        let owners: Vec<_> = record.view().owners().collect();
        assert_eq!(record.view().to_record(), record);
        assert_eq!(
            owners,
            [(EntityKind::Key, "k"), (EntityKind::Customer, "c")]
        );
        let generations: Vec<_> = owners
            .iter()
            .map(|&(kind, _)| record.view().budget_generation(kind))
            .collect();
        assert_eq!(generations, [Some(2), Some(0)]);
    }

    #[test]
    fn cache_kinds_text_round_trips() {
        for kind in [CacheKind::Exact, CacheKind::Semantic] {
            assert_eq!(CacheKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CacheKind::parse("any"), None);
        assert_eq!(CacheKind::parse("Exact"), None);
    }
}
