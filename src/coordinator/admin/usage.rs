//! Admin handlers for money and history: an entity's usage in its current budget period,
//! budget resets (announced to every node), and the request-log search.

use serde_json::json;
use store::{ConfigKind, LogQuery, Store};
use vocab::{BudgetPeriod, EntityKind, EntityRef, NanoUsd};

use super::reply::{ok, to_json, ApiError, Reply};
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

/// The query parameters of `GET /admin/request-logs`.
const LOG_PARAMS: &str = "key_id, team_id, customer_id, provider, model, status, error_code, \
    cache, request_id, since, until, limit, cursor";

/// `GET /admin/request-logs`: one page of the request logs the query parameters select,
/// newest first, with `next_cursor` when more follow. Names and values are
/// percent-decoded (`+` is a space); an unknown, repeated, empty or malformed parameter is a
/// 400 naming it.
pub(super) async fn request_logs(store: &Store, query: Option<&str>) -> Result<Reply, ApiError> {
    let mut q = LogQuery {
        limit: DEFAULT_LOG_LIMIT,
        ..LogQuery::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode(raw_name).ok_or_else(|| {
            bad_param(
                raw_name,
                format!("query parameter name {raw_name:?} is not valid percent-encoded UTF-8"),
            )
        })?;
        let v = form_decode(raw_value).ok_or_else(|| {
            bad_param(
                &name,
                format!("{name}: {raw_value:?} is not valid percent-encoded UTF-8"),
            )
        })?;
        if seen.contains(&name) {
            return Err(bad_param(&name, format!("{name} is given more than once")));
        }
        match name.as_str() {
            "limit" => q.limit = parse_limit(&v)?,
            "key_id" => q.key_id = Some(non_empty(&name, v)?),
            "team_id" => q.team_id = Some(non_empty(&name, v)?),
            "customer_id" => q.customer_id = Some(non_empty(&name, v)?),
            "provider" => q.provider = Some(non_empty(&name, v)?),
            "model" => q.model = Some(non_empty(&name, v)?),
            "error_code" => q.error_code = Some(non_empty(&name, v)?),
            "request_id" => q.request_id = Some(non_empty(&name, v)?),
            "status" => {
                q.status = Some(
                    v.parse()
                        .map_err(|e| bad_param(&name, format!("status: {e}, got {v:?}")))?,
                );
            }
            "cache" => {
                q.cache = Some(
                    v.parse()
                        .map_err(|e| bad_param(&name, format!("cache: {e}, got {v:?}")))?,
                );
            }
            "since" => q.since_ms = Some(parse_instant(&name, &v)?),
            "until" => q.until_ms = Some(parse_instant(&name, &v)?),
            "cursor" => {
                q.cursor = Some(
                    v.parse()
                        .map_err(|e| bad_param(&name, format!("cursor: {e}, got {v:?}")))?,
                );
            }
            _ => {
                return Err(bad_param(
                    &name,
                    format!("unknown query parameter {name:?} (expected one of {LOG_PARAMS})"),
                ))
            }
        }
        seen.push(name);
    }
    let page = store.query_request_logs(&q).await?;
    ok(json!({
        "object": "list",
        "data": to_json(page.data)?,
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    }))
}

/// A 400 `invalid_value` naming the query parameter `name`.
fn bad_param(name: &str, message: String) -> ApiError {
    ApiError::invalid(message, Some(name.to_owned()), "invalid_value")
}

fn non_empty(name: &str, v: String) -> Result<String, ApiError> {
    if v.is_empty() {
        Err(bad_param(name, format!("{name} must not be empty")))
    } else {
        Ok(v)
    }
}

/// Decodes one component of an `application/x-www-form-urlencoded` query: `%XX` is a byte,
/// `+` a space. `None` if an escape is malformed or the bytes are not UTF-8.
pub(super) fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let digit = |c: u8| char::from(c).to_digit(16);
                out.push(u8::try_from(digit(hex[0])? * 16 + digit(hex[1])?).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `since` / `until`: Unix milliseconds, or an RFC 3339 date-time.
fn parse_instant(name: &str, v: &str) -> Result<i64, ApiError> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let parsed = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<i64>().ok()
    } else {
        rfc3339_ms(v)
    };
    parsed.ok_or_else(|| {
        bad_param(
            name,
            format!(
                "{name} must be Unix milliseconds (e.g. 1767225600000) or an RFC 3339 date-time \
                 (e.g. 2026-01-01T00:00:00Z), got {v:?}"
            ),
        )
    })
}

/// Unix milliseconds of an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`,
/// with `t`, `z` or a space (for `T`) also accepted and second 60 (a leap second) read as the
/// next second's start. A fraction finer than a millisecond rounds up: `ts_ms >= x` and
/// `ts_ms < x` then hold for exactly the integer milliseconds they would for the exact `x`.
pub(super) fn rfc3339_ms(s: &str) -> Option<i64> {
    use vocab::calendar::{civil_from_days, days_from_civil, DAY};
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let d = b.get(from..from + len)?;
        d.iter().try_fold(0i64, |acc, c| {
            Some(acc * 10 + i64::from(char::from(*c).to_digit(10)?))
        })
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    let seps = at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":");
    if !seps {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut i = 19;
    let (mut ms, mut finer) = (0, false);
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = &b[start..i];
        if digits.is_empty() {
            return None;
        }
        for k in 0..3 {
            ms = ms * 10 + digits.get(k).map_or(0, |c| i64::from(c - b'0'));
        }
        finer = digits.iter().skip(3).any(|&c| c != b'0');
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let (mo, d) = (u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    if !(1..=12).contains(&mo) || d == 0 || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if civil_from_days(days) != (y, mo, d) {
        return None; // e.g. February 30th
    }
    let secs = days * DAY + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1000 + ms + i64::from(finer))
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
