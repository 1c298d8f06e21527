//! A models listing in the client's API: OpenAI's `{"object":"list","data":[…]}` with one
//! `{"id","object":"model","created","owned_by"}` per model, or Anthropic's
//! `{"data":[{"type":"model","id","display_name","created_at"}],"has_more","first_id","last_id"}`.
//! Entries with a known list price carry `pricing` in USD per million tokens.

use serde_json::{json, Value};
use vocab::calendar::{civil_from_days, DAY};

use super::{Listed, Pricing};

/// The API a listing is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
}

/// The whole listing. The gateway answers every model in one page (`has_more: false`), so
/// the SDKs' pagers stop after it.
pub fn list(shape: Shape, models: &[Listed<'_>]) -> Vec<u8> {
    let data: Vec<Value> = models.iter().map(|m| entry(shape, m)).collect();
    let body = match shape {
        Shape::OpenAi => json!({"object": "list", "data": data}),
        Shape::Anthropic => json!({
            "data": data,
            "has_more": false,
            "first_id": models.first().map(|m| &m.id),
            "last_id": models.last().map(|m| &m.id),
        }),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One model, as `GET /v1/models/{id}` answers it.
pub fn one(shape: Shape, model: &Listed<'_>) -> Vec<u8> {
    serde_json::to_vec(&entry(shape, model)).unwrap_or_default()
}

fn entry(shape: Shape, m: &Listed<'_>) -> Value {
    let mut v = match shape {
        Shape::OpenAi => json!({
            "id": m.id,
            "object": "model",
            "created": m.created,
            "owned_by": m.owned_by,
        }),
        Shape::Anthropic => json!({
            "type": "model",
            "id": m.id,
            "display_name": m.display_name,
            "created_at": rfc3339(m.created),
        }),
    };
    if let (Some(p), Some(map)) = (m.pricing, v.as_object_mut()) {
        map.insert("pricing".into(), pricing(p));
    }
    v
}

/// Decimal dollars for display only: the gateway counts money in integer nano-dollars, and
/// a per-million price has at most nine decimals, which an `f64` prints exactly.
#[allow(clippy::cast_precision_loss)]
fn pricing(p: Pricing) -> Value {
    let usd = |n: vocab::NanoUsd| n.nanos() as f64 / 1e9;
    json!({
        "input_per_million_tokens": usd(p.input_per_mtok),
        "output_per_million_tokens": usd(p.output_per_mtok),
        "currency": "USD",
    })
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (what Anthropic's `created_at` holds).
fn rfc3339(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(0);
    let (y, mo, d) = civil_from_days(secs.div_euclid(DAY));
    let t = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_729_555_200), "2024-10-22T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
