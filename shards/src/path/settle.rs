//! Phase 10, settle: a governed request's usage and cost are charged to what its admission
//! holds, and what its usage record will say is kept ([`Charge`]; the record is written to
//! the coordinator once the response is, by [`crate::path::observe`], with its texts
//! borrowed from the request: [`Charge::record`]). Reads: `caller`, `ask`, `targets`, `admission`, `served`.
//! Ungoverned requests skip it; those refused before the attempt phase (bad key, bad body,
//! unknown model, spent limit) are charged nothing and get a record only for the request log.
//!
//! What is charged, so that no use of a provider goes uncounted: the usage the provider
//! reported, when it did; otherwise what the gateway counts itself (marked estimated) — the
//! prompt, plus the output it read before the response ended, broke or the client left.
//! A request the client abandoned after it was sent upstream is charged its prompt at least.
//! A provider's failure response (4xx/5xx) is charged no tokens.
//! A relayed API (audio, images…) is charged the tokens its response reports, if any, plus
//! its units at the model's unit prices: the seconds or images the response reports, the
//! characters of a speech request. It is never charged a prompt the gateway counted.

use vocab::{CacheHit, NanoUsd, TokenUsage, UsageRef};

use crate::governance::admit::Admission;
use crate::governance::prices::Prices;
use crate::governance::{Governance, KeyPolicy};

use crate::clock;
use crate::error::GatewayError;
use crate::path::conn::ClientConn;
use crate::path::context::{Phase, RequestCtx, Scope};
use crate::path::observe::Outcome;
use crate::path::outcome::Stop;

/// `stop`: why proxying stopped short, when it did (else `req.served` holds the answer).
/// Returns what the request's usage record will say of its charge. A governed request
/// refused before the attempt phase is charged nothing and its record says it was not
/// admitted, so that it is only logged.
pub fn settle(
    scope: Scope<'_>,
    conn: &ClientConn,
    req: &mut RequestCtx<'_>,
    stop: Option<&Stop>,
) -> Option<Charge> {
    let gov = scope.shard.gov.as_deref()?;
    if matches!(stop, Some(Stop::Error(GatewayError::UsageBacklog))) {
        // Shed because records already wait: its own record (a log row) would only add to
        // them. The access log has it.
        return None;
    }
    let admission = req.admission.take();
    let req = &*req;
    let prices = &req.caller.snapshot?.prices;
    Some(match &req.cache.hit {
        Some((entry, kind)) => Charge {
            // A hit costs nothing; a request-only admission stays counted as it drops.
            admitted: admission.is_some(),
            cache: Some(CacheHit {
                kind: *kind,
                saved: entry.usage,
                saved_cost: req.cache.saved_cost,
            }),
            ..Charge::nothing()
        },
        None => charge(scope, conn, req, stop, (gov, prices, admission)),
    })
}

/// What a governed request was charged, for its usage record.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    ts_ms: u64,
    usage: TokenUsage,
    cost: NanoUsd,
    estimated: bool,
    admitted: bool,
    cache: Option<CacheHit>,
}

impl Charge {
    fn nothing() -> Self {
        Self {
            ts_ms: clock::unix_now() * 1000,
            usage: TokenUsage::default(),
            cost: NanoUsd::ZERO,
            estimated: false,
            admitted: false,
            cache: None,
        }
    }

    /// The request's usage record, its texts borrowed from the request: its ids, its key's,
    /// and the provider and model that answered ([`billed`]).
    pub fn record<'r>(
        &self,
        scope: Scope<'r>,
        conn: &'r ClientConn,
        req: &'r RequestCtx<'_>,
        outcome: Outcome,
        (latency_us, overhead_us): (u64, u64),
    ) -> UsageRef<'r> {
        let key = req.caller.key();
        let (provider, model) = billed(scope, req);
        UsageRef {
            id: conn.tracker.id.as_str(),
            client_request_id: conn.tracker.client_id.as_deref(),
            ts_ms: self.ts_ms,
            key_id: key.map(|k| k.id.as_str()),
            team_id: key.and_then(|k| k.team_id.as_deref()),
            customer_id: key.and_then(|k| k.customer_id.as_deref()),
            provider,
            model,
            status: outcome.status,
            usage: self.usage,
            cost: self.cost,
            latency_us,
            stream: req.ask.stream,
            estimated: self.estimated,
            overhead_us,
            error_code: outcome.error_code,
            admitted: self.admitted,
            cache: self.cache,
            budget_generations: key.map_or([None; 3], KeyPolicy::budget_generations),
        }
    }
}

/// The provider and model a request is charged to: those of the cached answer that served
/// it, else of the target that answered (or was to be tried first); no provider and the
/// model asked for when there was none.
fn billed<'r>(scope: Scope<'r>, req: &'r RequestCtx<'_>) -> (&'r str, &'r str) {
    if let Some((entry, _)) = &req.cache.hit {
        return (&entry.provider, &entry.model);
    }
    match req.answering_target() {
        Some(t) => (&scope.snapshot.providers[t.provider].name, t.model),
        None => ("", req.ask.requested),
    }
}

/// Charges a request that went to a provider (or was refused before): see the module docs.
fn charge(
    scope: Scope<'_>,
    conn: &ClientConn,
    req: &RequestCtx<'_>,
    stop: Option<&Stop>,
    (gov, prices, admission): (&Governance, &Prices, Option<Admission>),
) -> Charge {
    let admitted = req.times.reached(Phase::Attempt);
    if admitted {
        req.times.enter(Phase::Settle);
    }
    let served = req.served.as_ref();
    let (provider, model) = billed(scope, req);
    // The provider worked on it: a success relayed (whole or in part), or a request sent
    // upstream whose client left before the answer (a client can only be found gone once
    // its request was sent).
    let worked = served.is_some_and(|s| (200..300).contains(&s.status))
        || matches!(stop, Some(Stop::ClientGone));
    let (reported, output_tokens) =
        served.map_or((None, 0), |s| (s.tally.usage, s.tally.output_tokens));
    let (usage, estimated) = match reported {
        Some(reported) => (Some(reported), false),
        None if worked && req.endpoint.has_prompt() => {
            let counted = TokenUsage {
                prompt: req.prompt_tokens(conn, model),
                completion: output_tokens,
                cached: 0,
            };
            (Some(counted), true)
        }
        None => (None, false),
    };
    let token_cost = usage.map_or(NanoUsd::ZERO, |u| {
        prices
            .lookup(provider, model)
            .map_or(NanoUsd::ZERO, |p| p.cost(u.prompt, u.completion, u.cached))
    });
    // Only relayed APIs have unit prices: chat never looks them up.
    let unit_cost = req
        .ask
        .direct
        .as_deref()
        .filter(|_| worked)
        .and_then(|direct| {
            let unit_prices = prices.lookup_units(provider, model)?;
            let units = served.map_or_else(Default::default, |s| s.tally.units);
            Some(unit_prices.cost(units, direct.characters, direct.image_tier.as_deref()))
        });
    let cost = unit_cost.map_or(token_cost, |c| token_cost.saturating_add(c));
    // Charged: a response reached the client (the provider's answer, or a kept failure of
    // it), or the provider worked for a client that left. Otherwise dropping the admission
    // gives back what it held.
    let charged = worked || matches!(stop, None | Some(Stop::Kept { .. }));
    if let (Some(admission), true) = (admission, charged) {
        // A failure response used no tokens: what was held for them comes back.
        admission.settle(usage.unwrap_or_default(), cost, gov, &scope.shard.usage);
    }
    if estimated {
        scope.shard.stats.usage_estimated.incr();
    }
    Charge {
        usage: usage.unwrap_or_default(),
        cost,
        estimated,
        admitted,
        ..Charge::nothing()
    }
}
