//! Phase 7, admit: a governed request with a key takes one request, its token estimate and
//! a budget slot from this shard's leases of every limit of its key, team and customer
//! ([`crate::governance::admit`]); a limit that is spent is a 429 (with `Retry-After` and
//! `x-ratelimit-*` headers), a spent budget a 402; while the shard's usage records wait for
//! a coordinator far behind, it is shed with 503 `usage_backlog` (and not recorded). Reads
//! `caller`, `ask`, `targets`; adds `admission`, an RAII ticket that gives back what it holds
//! unless the settle phase charges it.
//!
//! The token estimate bounds what the request can use: its prompt plus its output cap — the
//! client's `max_tokens`, else the most its model may produce (the catalog's `max_output`,
//! else `governance.default_max_output_tokens`). The prompt is first bounded from the body's
//! bytes without a tokenizer ([`tokens::prompt_tokens_at_most`]); only when the coordinator
//! answers that what is left of a limit cannot hold that bound is it counted with its
//! model's tokenizer, so that a request near its limit is judged on its exact count. Only
//! for keys with a token limit, and requests with a prompt: a relayed API (audio, images,
//! files…) holds no tokens here and is charged what its response reports.

use vocab::LimitKind;

use crate::error::GatewayError;
use crate::governance::admit::{self, Charge, TokenEstimate};
use crate::governance::{Governance, KeyPolicy};
use crate::path::conn::ClientConn;
use crate::path::context::{Phase, RequestCtx, Scope};
use crate::path::outcome::Stop;

/// What admitting a request takes: the shard's governance and the caller's key.
#[derive(Clone, Copy)]
pub struct Admitter<'s> {
    gov: &'s Governance,
    key: &'s KeyPolicy,
}

/// The admitter of a request that has anything to admit (governance on, a key presented);
/// `None` for every other request, which then builds no admission future at all: each
/// awaited phase copies its future's whole size, needed or not (docs/perf.md).
pub fn admitter<'s>(scope: Scope<'s>, req: &RequestCtx<'s>) -> Option<Admitter<'s>> {
    Some(Admitter {
        gov: scope.shard.gov.as_deref()?,
        key: req.caller.key()?,
    })
}

pub async fn admit<'s>(
    scope: Scope<'s>,
    Admitter { gov, key }: Admitter<'s>,
    conn: &ClientConn,
    req: &mut RequestCtx<'s>,
) -> Result<(), Stop> {
    req.times.enter(Phase::Admit);
    shed_when_backlogged(scope)?;
    let counts_tokens = req.endpoint.has_prompt()
        && key
            .limits
            .iter()
            .any(|l| matches!(l.kind, LimitKind::Tokens(_)));
    let exact = || {
        token_estimate(scope, req, |req| {
            req.prompt_tokens(conn, req.targets[0].model)
        })
    };
    let estimate = if counts_tokens {
        TokenEstimate {
            at_most: token_estimate(scope, req, |req| req.prompt_tokens_at_most(conn)),
            exact: &exact,
        }
    } else {
        TokenEstimate::NONE
    };
    // The key is borrowed, not cloned: an `Arc` clone would write a cache line every shard
    // serving this key shares.
    let shard = scope.shard.index;
    let now = req.caller.now_unix;
    let admission = admit::admit(gov, shard, key, estimate, now, Charge::Everything)
        .await
        .map_err(|refused| unverifiable(scope, refused))?;
    req.admission = Some(admission);
    Ok(())
}

/// An answer from the response cache takes a request of each of the key's request limits
/// when the configuration counts hits (`cache.hits_count_requests`), and nothing else: it
/// uses no tokens and costs nothing, so a spent token limit or budget does not refuse it.
pub async fn admit_hit<'s>(scope: Scope<'s>, req: &mut RequestCtx<'s>) -> Result<(), Stop> {
    let counts = scope
        .snapshot
        .cache
        .as_ref()
        .is_some_and(|p| p.hits_count_requests);
    let (Some(Admitter { gov, key }), true) = (admitter(scope, req), counts) else {
        return Ok(());
    };
    req.times.enter(Phase::Admit);
    shed_when_backlogged(scope)?;
    let shard = scope.shard.index;
    let now = req.caller.now_unix;
    let estimate = TokenEstimate::NONE;
    let admission = admit::admit(gov, shard, key, estimate, now, Charge::RequestsOnly)
        .await
        .map_err(|refused| unverifiable(scope, refused))?;
    req.admission = Some(admission);
    Ok(())
}

/// Refuses a request while this shard's usage records wait for a coordinator far behind
/// ([`crate::governance::batcher::UsageBatcher::SHED_AT`]): limits stay exact under overload.
fn shed_when_backlogged(scope: Scope<'_>) -> Result<(), GatewayError> {
    if scope.shard.usage.backlogged() {
        return Err(GatewayError::UsageBacklog);
    }
    Ok(())
}

/// A limit that ran out while the store cannot be reached is not known to be spent: the
/// refusal says so (503, retry shortly) instead of claiming the limit was reached.
fn unverifiable(scope: Scope<'_>, refused: GatewayError) -> GatewayError {
    if scope.shard.node.store_available() {
        return refused;
    }
    match refused {
        GatewayError::RateLimited { limit, entity, .. } => {
            GatewayError::LimitsUnavailable { limit, entity }
        }
        GatewayError::BudgetExceeded { entity } => GatewayError::LimitsUnavailable {
            limit: "budget",
            entity,
        },
        other => other,
    }
}

/// The most tokens the request can use on its first target: `prompt` plus output cap.
fn token_estimate(
    scope: Scope<'_>,
    req: &RequestCtx<'_>,
    prompt: impl FnOnce(&RequestCtx<'_>) -> u64,
) -> u64 {
    let (Some(target), Some(gov)) = (req.targets.first(), req.caller.snapshot) else {
        return 0;
    };
    let provider = &scope.snapshot.providers[target.provider].name;
    let cap = req
        .ask
        .max_tokens
        .unwrap_or_else(|| gov.prices.max_output(provider, target.model));
    prompt(req).saturating_add(cap)
}
