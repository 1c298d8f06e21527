//! The request path of one shard, in order (each stage reads the request and adds to what
//! the next one sees):
//!
//! 1. **route** — method and path pick a local answer (`/health`, `/ready`, `/v1/models`), the
//!    client's API (OpenAI chat, completions, embeddings, Responses; Anthropic Messages), or a
//!    404/405.
//! 2. **extract** — `model` and `stream` are read from the body without building a tree
//!    ([`crate::extract`]); malformed JSON is a 400 here.
//! 3. **resolve** — the model names a provider and the upstream model ([`crate::route`]);
//!    unknown models are a 404.
//! 4. **upstream request** — the client's bytes are forwarded with the model spliced in when
//!    its name changes, the provider's credentials added and gateway-owned headers removed;
//!    for a provider of another API family the request is converted ([`crate::outbound`],
//!    [`crate::dialect`]).
//! 5. **failover** — targets are tried in order (the model, its fallbacks), each behind its
//!    circuit breaker and admission gate, with key rotation and retries ([`crate::failover`]);
//!    for each attempt a pooled connection carries the request and the response head is
//!    awaited under the first-byte timeout while the client is watched for a disconnect
//!    ([`crate::exchange`]).
//! 6. **relay** — the response is copied to the client as it arrives, one write per upstream
//!    read, converted piece by piece when the APIs differ; a stream that breaks ends with an
//!    error event ([`crate::relay`]).
//! 7. **release** — a connection whose response was read whole goes back to the pool.

use std::time::{Duration, Instant};

use vocab::{NanoUsd, UsageRecord};

use crate::balance;
use crate::clock;
use crate::conn::{BodyLocation, ClientConn};
use crate::dialect::Inbound;
use crate::error::GatewayError;
use crate::exchange::Failure;
use crate::extract::extract_fields;
use crate::failover::{self, Ask};
use crate::governance::admit::{self, Refusal};
use crate::governance::request;
use crate::http::request::{find_header, Method, RequestHead};
use crate::http::response::{push_error_response, push_json_response};
use crate::route::Target;
use crate::shard::Shard;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Ready,
    Models,
    Api(Inbound),
    Unknown,
}

fn route(path: &[u8]) -> Route {
    match path {
        b"/health" => Route::Health,
        b"/ready" => Route::Ready,
        b"/v1/models" => Route::Models,
        b"/v1/chat/completions" => Route::Api(Inbound::Chat),
        b"/v1/completions" => Route::Api(Inbound::Completions),
        b"/v1/embeddings" => Route::Api(Inbound::Embeddings),
        b"/v1/responses" => Route::Api(Inbound::Responses),
        b"/anthropic/v1/messages" => Route::Api(Inbound::AnthropicMessages),
        _ => Route::Unknown,
    }
}

/// Serves one request. Returns whether the connection may carry another.
pub async fn handle(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: &BodyLocation,
) -> bool {
    let keep_alive = head.keep_alive;
    let path = head.path(&conn.inbuf);
    let route = route(path);
    let answer = match (route, head.method) {
        (Route::Health, Method::Get) => Ok(&br#"{"status":"ok"}"#[..]),
        (Route::Ready, Method::Get) if shard.node.is_ready() => Ok(&br#"{"status":"ready"}"#[..]),
        (Route::Ready, Method::Get) => {
            push_json_response(&mut conn.out, 503, br#"{"status":"not ready"}"#, keep_alive);
            return conn.flush_out().await && keep_alive;
        }
        (Route::Models, Method::Get) => match models_allowed(shard, conn) {
            Ok(()) => Ok(&snapshot.models_body[..]),
            Err(e) => Err(e),
        },
        (Route::Api(endpoint), Method::Post) => {
            return proxy(shard, snapshot, conn, head, body, endpoint).await
        }
        (Route::Unknown, _) => Err(GatewayError::UnknownRoute {
            method: String::from_utf8_lossy(&conn.inbuf[head.method_text.clone()]).into_owned(),
            path: String::from_utf8_lossy(path).into_owned(),
        }),
        _ => Err(GatewayError::MethodNotAllowed {
            method: String::from_utf8_lossy(&conn.inbuf[head.method_text.clone()]).into_owned(),
            path: String::from_utf8_lossy(path).into_owned(),
        }),
    };
    match answer {
        Ok(json) => {
            shard.stats.record_status(200);
            push_json_response(&mut conn.out, 200, json, keep_alive);
        }
        Err(err) => {
            shard.stats.record_status(err.status());
            tracing::debug!(peer = %conn.peer, error = %err, "no such route");
            push_error_response(&mut conn.out, &err, keep_alive);
        }
    }
    conn.flush_out().await && keep_alive
}

async fn proxy(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: &BodyLocation,
    inbound: Inbound,
) -> bool {
    match forward(shard, snapshot, conn, head, body, inbound).await {
        Ok(keep_alive) => keep_alive && head.keep_alive,
        Err(Failure::ClientGone) => {
            shard.stats.client_gone.incr();
            false
        }
        Err(Failure::Respond(err)) => {
            if err.source() == crate::error::ErrorSource::Client {
                tracing::info!(peer = %conn.peer, status = err.status(), error = %err, "bad request");
            } else {
                tracing::warn!(peer = %conn.peer, status = err.status(), error = %err, "request failed");
            }
            shard.stats.record_status(err.status());
            conn.out.clear();
            if inbound == Inbound::AnthropicMessages {
                let mut openai = Vec::with_capacity(192);
                err.write_body(&mut openai);
                let body = translate::inbound::anthropic::error_from_openai(err.status(), &openai);
                push_json_response(&mut conn.out, err.status(), &body, head.keep_alive);
            } else {
                push_error_response(&mut conn.out, &err, head.keep_alive);
            }
            conn.flush_out().await && head.keep_alive
        }
    }
}

/// `/v1/models` needs a valid key when keys are required.
fn models_allowed(shard: &Shard, conn: &ClientConn) -> Result<(), GatewayError> {
    let Some(gov) = shard.gov.as_deref() else {
        return Ok(());
    };
    let snap = gov.snapshot.load();
    request::authenticate(
        &snap,
        request::presented_key(&conn.inbuf, &conn.spans),
        clock::unix_now(),
    )
    .map(|_| ())
}

/// The value of a client request header, if present.
fn client_header<'b>(conn: &'b ClientConn, name: &str) -> Option<&'b [u8]> {
    find_header(&conn.inbuf, &conn.spans, name)
}

/// Stages 2–4, then the failover loop. An `Err` means nothing has reached the client yet.
async fn forward(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: &BodyLocation,
    inbound: Inbound,
) -> Result<bool, Failure> {
    let body_bytes = match body {
        BodyLocation::InBuf(r) => &conn.inbuf[r.clone()],
        BodyLocation::Decoded => &conn.decoded_body[..],
    };
    let started = Instant::now();
    let gov = shard.gov.as_deref();
    // Wall-clock time matters only to governance (key expiry, limit windows).
    let now = if gov.is_some() { clock::unix_now() } else { 0 };
    // Governance first: who is asking (401/403 before anything else is read).
    let gov_snapshot = gov.map(|g| g.snapshot.load());
    let key = match &gov_snapshot {
        Some(snap) => {
            request::authenticate(snap, request::presented_key(&conn.inbuf, &conn.spans), now)?
        }
        None => None,
    };
    let fields = extract_fields(body_bytes)?;
    let model_span = fields.model_span.clone();
    let mut stream = fields.stream;
    let has_stream_options = fields.has_stream_options;
    let token_estimate = request::token_estimate(body_bytes.len(), fields.max_tokens);
    // Owned, because the client buffers are borrowed mutably by every attempt below.
    let requested = fields.model.into_owned();
    // A client that does not speak OpenAI chat is served through its chat form.
    let chat_body = match inbound {
        Inbound::AnthropicMessages => {
            Some(translate::inbound::anthropic::request_to_chat(body_bytes))
        }
        Inbound::Responses => Some(translate::inbound::responses::request_to_chat(body_bytes)),
        _ => None,
    }
    .transpose()
    .map_err(|e| GatewayError::InvalidRequest(e.message().to_owned()))?
    .map(|(chat, s, _)| {
        stream = s;
        chat
    });
    // Only a body that sets `stream_options` (or a converted one) needs a second look.
    let include_usage = (has_stream_options || chat_body.is_some())
        && translate::openai::peek_request(chat_body.as_deref().unwrap_or(body_bytes))
            .is_ok_and(|info| info.include_usage);
    let per_request_fallbacks = client_header(conn, "x-ringgate-fallbacks")
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let timeout_override = client_header(conn, "x-ringgate-timeout-ms")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());

    let primary = snapshot
        .models
        .resolve(&requested)
        .ok_or_else(|| GatewayError::ModelNotFound(requested.clone()))?;
    let allowed = |t: &Target<'_>| {
        key.as_ref().is_none_or(|k| {
            request::allows(k, &snapshot.providers[t.provider].name, t.model, &requested)
        })
    };
    if !allowed(&primary) {
        return Err(GatewayError::ModelNotAllowed(requested.clone()).into());
    }
    let mut targets = match snapshot.models.group(&requested) {
        Some(members) => balance::order(shard, snapshot, members.filter(&allowed).collect()),
        None => vec![primary.clone()],
    };
    let configured = snapshot.fallbacks.get(&requested).into_iter().flatten();
    let listed = per_request_fallbacks
        .iter()
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

    let timeouts = &snapshot.providers[primary.provider].timeouts;
    let total = timeout_override.map_or(timeouts.total, |ms| {
        Duration::from_millis(ms).min(timeouts.max_total)
    });
    // Limits and budgets of the key, its team and its customer.
    let admission = match (gov, &key) {
        (Some(gov), Some(key)) => Some(
            admit::admit(gov, shard.index, key, token_estimate, now)
                .await
                .map_err(|refusal| match refusal {
                    Refusal::RateLimited {
                        limit,
                        value,
                        entity,
                        resets_in,
                    } => GatewayError::RateLimited {
                        limit,
                        value,
                        entity,
                        resets_in,
                    },
                    Refusal::BudgetExceeded { entity } => GatewayError::BudgetExceeded { entity },
                })?,
        ),
        _ => None,
    };
    let governed = gov.is_some();
    let ask = Ask {
        head,
        body,
        inbound,
        chat_body,
        stream,
        include_usage,
        capture_usage: governed,
        inject_usage: governed
            && stream
            && !include_usage
            && !has_stream_options
            && matches!(inbound, Inbound::Chat | Inbound::Completions),
        requested: &requested,
        model_span,
        deadline: started + total,
    };
    let result = failover::serve(shard, snapshot, conn, &ask, &targets).await;
    if let Some(gov) = gov {
        let served = result.as_ref().ok();
        let target = served
            .and_then(|s| s.target)
            .map_or(&primary, |i| &targets[i]);
        let provider = &snapshot.providers[target.provider].name;
        let usage = served.and_then(|s| s.usage);
        let cost = match (usage, &gov_snapshot) {
            (Some(u), Some(snap)) => snap
                .prices
                .lookup(provider, target.model)
                .map_or(NanoUsd::ZERO, |p| p.cost(u.prompt, u.completion, u.cached)),
            _ => NanoUsd::ZERO,
        };
        if let (Some(admission), Some(_)) = (admission, served) {
            admission.settle(usage, cost, gov);
        }
        let status = match &result {
            Ok(s) => s.status,
            Err(Failure::Respond(e)) => e.status(),
            Err(Failure::ClientGone) => 499,
        };
        let record = UsageRecord {
            ts_ms: clock::unix_now() * 1000,
            key_id: key.as_ref().map(|k| k.id.clone()),
            team_id: key.as_ref().and_then(|k| k.team_id.clone()),
            customer_id: key.as_ref().and_then(|k| k.customer_id.clone()),
            provider: provider.clone(),
            model: target.model.to_owned(),
            status,
            usage: usage.unwrap_or_default(),
            cost,
            latency_us: started.elapsed().as_micros() as u64,
            stream,
        };
        let dropped = shard.usage.push(record, &gov.events);
        shard.stats.usage_dropped.add(dropped as u64);
    }
    result.map(|s| s.keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"/v1/chat/completions"), Route::Api(Inbound::Chat));
        assert_eq!(
            route(b"/anthropic/v1/messages"),
            Route::Api(Inbound::AnthropicMessages)
        );
        assert_eq!(route(b"/v1/responses"), Route::Api(Inbound::Responses));
        assert_eq!(route(b"/v1/models"), Route::Models);
        assert_eq!(route(b"/v1/chat/completions/"), Route::Unknown);
        assert_eq!(route(b"/"), Route::Unknown);
    }
}
