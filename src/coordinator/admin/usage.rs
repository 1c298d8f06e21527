//! Admin handlers for money and history: an entity's usage in its current budget period,
//! budget resets (announced to every node), and the most recent request logs.

use serde_json::json;
use store::{ConfigKind, Store};
use vocab::{BudgetPeriod, EntityKind, EntityRef, NanoUsd};

use super::reply::{list_of, ok, ApiError, Reply};
use super::{DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT};

pub(super) fn entity(kind: &str, id: &str) -> Result<EntityRef, ApiError> {
    let kind = EntityKind::parse(kind).ok_or_else(|| {
        ApiError::invalid(
            format!("unknown entity kind {kind:?} (expected key, team or customer)"),
            Some("kind".into()),
            "invalid_value",
        )
    })?;
    Ok(EntityRef {
        kind,
        id: id.to_owned(),
    })
}

pub(super) async fn usage(store: &Store, entity: EntityRef) -> Result<Reply, ApiError> {
    let now = store::now_unix();
    let budget = store.entity_budget(&entity).await?;
    let period = budget.map_or(BudgetPeriod::Never, |b| b.period);
    let period_start = period.start(now);
    let usage = store.usage(&entity, period_start).await?;
    let (spent, requests, prompt, completion, reset_at) =
        usage.map_or((NanoUsd::ZERO, 0, 0, 0, None), |u| {
            (
                u.spent_nanos,
                u.requests,
                u.prompt_tokens,
                u.completion_tokens,
                u.reset_at,
            )
        });
    let remaining = budget.map(|b| b.limit_nanos.saturating_sub(spent));
    ok(json!({
        "entity": entity,
        "budget": budget,
        "period_start": period_start,
        "spent_nanos": spent,
        "spent_usd": spent.to_string(),
        "remaining_nanos": remaining,
        "remaining_usd": remaining.map(|r| r.to_string()),
        "limit_usd": budget.map(|b| b.limit_nanos.to_string()),
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reset_at": reset_at,
    }))
}

pub(super) async fn reset_budget(store: &Store, entity: EntityRef) -> Result<Reply, ApiError> {
    let now = store::now_unix();
    let before = store.reset_budget(&entity, now).await?;
    // The store does not announce resets; tell every node to re-read the entity (and so
    // its spend) the way it does after an edit.
    let kind = match entity.kind {
        EntityKind::Key => ConfigKind::Key,
        EntityKind::Team => ConfigKind::Team,
        EntityKind::Customer => ConfigKind::Customer,
    };
    if let Err(e) = store.notify_config_changed(kind, &entity.id).await {
        tracing::warn!(error = %e, id = %entity.id, "admin: announcing a budget reset failed");
    }
    ok(json!({
        "reset": true,
        "entity": entity,
        "reset_at": now,
        "spent_before_nanos": before,
        "spent_before_usd": before.to_string(),
    }))
}

pub(super) async fn request_logs(store: &Store, query: Option<&str>) -> Result<Reply, ApiError> {
    let mut limit = DEFAULT_LOG_LIMIT;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "limit" {
            limit = parse_limit(v)?;
        }
    }
    let mut q = Store::request_log_query();
    q.limit = limit;
    list_of(store.query_request_logs(&q).await?.data)
}

/// A positive `limit`, clamped to [`MAX_LOG_LIMIT`].
fn parse_limit(v: &str) -> Result<u32, ApiError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => {
            Ok(u32::try_from(n.min(u64::from(MAX_LOG_LIMIT))).unwrap_or(MAX_LOG_LIMIT))
        }
        _ => Err(ApiError::invalid(
            format!(
                "limit must be a positive integer (at most {MAX_LOG_LIMIT} is used), got {v:?}"
            ),
            Some("limit".into()),
            "invalid_value",
        )),
    }
}
