//! Phase 6, resolve: the model the client named becomes the targets to try, in order — the
//! provider and upstream model it resolves to (or, for a balanced alias, its members in the
//! order the balancing strategy picks), then the configured fallbacks for that model, then
//! any the client listed in `x-ringgate-fallbacks`. A key that may not use the model is a
//! 403 here; targets it may not use are left out. The request's deadline is set from the
//! primary provider's total timeout (or the client's shorter `x-ringgate-timeout-ms`).
//! Files and batches name no model: their target is a provider ([`resolve_provider`]).
//! Reads `ask`, `caller`; adds `targets`, `deadline`.

use std::time::Duration;

use crate::dialect::{Inbound, Wire};
use crate::error::GatewayError;
use crate::governance::request;
use crate::path::context::{Phase, RequestCtx, Scope};
use crate::path::outcome::Stop;
use crate::route::{ProviderId, Target};
use crate::snapshot::{Balance, Snapshot};
use crate::state::health::BreakerState;
use crate::state::Shard;

pub fn resolve<'s>(scope: Scope<'s>, req: &mut RequestCtx<'s>) -> Result<(), Stop> {
    req.times.enter(Phase::Resolve);
    if matches!(req.endpoint, Inbound::Direct(api) if !api.names_model()) {
        return resolve_provider(scope.snapshot, req);
    }
    let Scope {
        shard, snapshot, ..
    } = scope;
    let requested = req.ask.requested;
    let primary = snapshot
        .models
        .resolve(requested)
        .ok_or_else(|| GatewayError::ModelNotFound(requested.to_owned()))?;
    let key = req.caller.key();
    let allowed = |t: &Target<'_>| {
        key.is_none_or(|k| {
            request::allows(k, &snapshot.providers[t.provider].name, t.model, requested)
        })
    };
    if !allowed(&primary) {
        return Err(GatewayError::ModelNotAllowed(requested.to_owned()).into());
    }
    let mut targets = match snapshot.models.group(requested) {
        Some(members) => order(shard, snapshot, members.filter(&allowed).collect()),
        None => vec![primary.clone()],
    };
    let configured = snapshot.fallbacks.get(requested).into_iter().flatten();
    let listed = req
        .ask
        .listed_fallbacks
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty());
    for name in configured.map(String::as_str).chain(listed) {
        match snapshot.models.resolve(name) {
            Some(t) if !targets.contains(&t) && allowed(&t) => targets.push(t),
            Some(_) => {}
            None => tracing::debug!(model = name, "fallback names no configured model; skipped"),
        }
    }
    set_deadline(snapshot, req, primary.provider);
    req.targets = targets;
    Ok(())
}

/// The request's deadline from `provider`'s total timeout (or the client's shorter one).
fn set_deadline(snapshot: &Snapshot, req: &mut RequestCtx<'_>, provider: ProviderId) {
    let timeouts = &snapshot.providers[provider].timeouts;
    let total = req.ask.timeout_ms.map_or(timeouts.total, |ms| {
        Duration::from_millis(ms).min(timeouts.max_total)
    });
    req.deadline = req.times.request_start() + total;
}

/// Files and batches name no model: their one target is the provider `x-ringgate-provider`
/// names, else the default provider, else the only OpenAI-style one (a file lives at one
/// provider, so there are no fallbacks). A batch file uploaded with a key restricted to
/// some models may call only those.
fn resolve_provider(snapshot: &Snapshot, req: &mut RequestCtx<'_>) -> Result<(), Stop> {
    let provider = match req.ask.named_provider {
        Some(name) => snapshot.models.provider_id(name.trim()).ok_or_else(|| {
            GatewayError::InvalidRequest(format!(
                "x-ringgate-provider names `{name}`, which is not a configured provider"
            ))
        })?,
        None => snapshot
            .models
            .default_provider()
            .or_else(|| only_openai_style(snapshot))
            .ok_or_else(|| {
                GatewayError::InvalidRequest(
                    "name the provider of files and batches with the x-ringgate-provider header"
                        .into(),
                )
            })?,
    };
    if let Some(key) = req.caller.key() {
        let name = &snapshot.providers[provider].name;
        if !request::allows_provider(key, name) {
            return Err(GatewayError::ModelNotAllowed(format!("{name}/*")).into());
        }
        let batch_models = req.ask.direct.iter().flat_map(|d| &d.batch_models);
        if let Some(refused) = batch_models
            .into_iter()
            .find(|m| !request::allows(key, name, m, m))
        {
            return Err(GatewayError::ModelNotAllowed(refused.clone()).into());
        }
    }
    set_deadline(snapshot, req, provider);
    req.targets = vec![Target {
        provider,
        model: "",
    }];
    Ok(())
}

/// The one provider speaking OpenAI's wire, when there is exactly one.
fn only_openai_style(snapshot: &Snapshot) -> Option<ProviderId> {
    let mut openai_style = snapshot
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.wire, Wire::OpenAi | Wire::Azure));
    match (openai_style.next(), openai_style.next()) {
        (Some((id, _)), None) => Some(id),
        _ => None,
    }
}

/// Orders the members of a balanced alias: the first is picked by the snapshot's strategy,
/// the rest follow as fallbacks. Members whose circuit is open go last.
fn order<'a>(shard: &Shard, snapshot: &Snapshot, mut members: Vec<Target<'a>>) -> Vec<Target<'a>> {
    if members.len() < 2 {
        return members;
    }
    let health = |t: &Target<'_>| &shard.providers[snapshot.providers[t.provider].slot].health;
    let open = |t: &Target<'_>| matches!(health(t).state(), BreakerState::Open { .. });
    match snapshot.balance {
        Balance::Random => {
            let first = shard.rng.below(members.len() as u64) as usize;
            members.swap(0, first);
            members[1..].sort_by_key(|t| open(t));
        }
        Balance::Latency => {
            // Weight 1/(latency + 1 ms): a member never measured weighs as a fast one, so
            // it gets explored.
            let weight = |t: &Target<'_>| {
                if open(t) {
                    0
                } else {
                    1_000_000_000 / (health(t).ewma_latency_us() as u64 + 1000)
                }
            };
            let total: u64 = members.iter().map(weight).sum();
            if total > 0 {
                let mut point = shard.rng.below(total);
                let mut first = 0;
                for (i, t) in members.iter().enumerate() {
                    let w = weight(t);
                    if point < w {
                        first = i;
                        break;
                    }
                    point -= w;
                }
                members.swap(0, first);
            }
            members[1..].sort_by_key(|t| (open(t), health(t).ewma_latency_us() as u64));
        }
    }
    members
}
