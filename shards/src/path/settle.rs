//! Phase 10, settle: a governed request's real usage and cost are charged to what its
//! admission holds, and one usage record goes to the coordinator (batched per shard).
//! Reads: `caller`, `ask`, `targets`, `admission`, `served`. Ungoverned requests, and those
//! refused before the attempt phase (bad key, bad body, unknown model, spent limit), skip it.

use vocab::{NanoUsd, UsageRecord};

use crate::clock;
use crate::path::context::{Phase, RequestCtx, Scope};
use crate::path::outcome::Stop;

/// `stop`: why proxying stopped short, when it did (else `req.served` holds the answer).
pub fn settle(scope: Scope<'_>, req: &mut RequestCtx<'_>, stop: Option<&Stop>) {
    let (Some(gov), Some(gov_snapshot)) = (scope.shard.gov.as_deref(), &req.caller.snapshot) else {
        return;
    };
    if req.times.started(Phase::Attempt).is_none() {
        return;
    }
    req.times.enter(Phase::Settle);
    let served = req.served.as_ref();
    let target = served
        .and_then(|s| s.target)
        .and_then(|i| req.targets.get(i))
        .or(req.targets.first());
    let provider = target.map_or("", |t| &scope.snapshot.providers[t.provider].name[..]);
    let model = target.map_or(req.ask.requested, |t| t.model);
    let usage = served.and_then(|s| s.usage);
    let cost = usage.map_or(NanoUsd::ZERO, |u| {
        gov_snapshot
            .prices
            .lookup(provider, model)
            .map_or(NanoUsd::ZERO, |p| p.cost(u.prompt, u.completion, u.cached))
    });
    // A response reached the client (the provider's answer, or a kept failure of it):
    // the admission is charged; otherwise dropping it gives back what it held.
    let answered = matches!(stop, None | Some(Stop::Kept { .. }));
    if let (Some(admission), true) = (req.admission.take(), answered) {
        admission.settle(usage, cost, gov);
    }
    let key = req.caller.key.as_deref();
    let status = match (stop, served) {
        (Some(stop), _) => stop.status(),
        (None, served) => served.map_or(0, |s| s.status),
    };
    let record = UsageRecord {
        ts_ms: clock::unix_now() * 1000,
        key_id: key.map(|k| k.id.clone()),
        team_id: key.and_then(|k| k.team_id.clone()),
        customer_id: key.and_then(|k| k.customer_id.clone()),
        provider: provider.to_owned(),
        model: model.to_owned(),
        status,
        usage: usage.unwrap_or_default(),
        cost,
        latency_us: req.times.request_start().elapsed().as_micros() as u64,
        stream: req.ask.stream,
    };
    let dropped = scope.shard.usage.push(record, &gov.events);
    scope.shard.stats.usage_dropped.add(dropped as u64);
}
