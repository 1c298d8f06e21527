//! Getting a response from somewhere: the ordered targets of a request (the model it named,
//! then the configured fallbacks for that model, then any the client listed in
//! `x-ringgate-fallbacks`), and for each target its circuit breaker, its admission gate, its
//! API keys and its retries.
//!
//! Per target, in order: a circuit that is open skips the target; a full gate sheds the
//! request to the next target; a key is chosen by weight among those not cooling down. A
//! response of 429 or 401/403 cools that key down (for `Retry-After` when given) and the
//! request moves to another key of the same provider at once; with no key left a 429 moves
//! on to the next target and a 401/403 is the answer. Connect failures, timeouts, resets and
//! 408/5xx/529 responses count against the provider's health and are retried with
//! exponential backoff and full jitter up to `max_retries`, then the next target is tried.
//! A stream whose first event is an error counts as such a failure. Once a response byte has
//! been sent to the client nothing is retried. When every target fails, the client gets the
//! primary target's first failure — the provider's own response when there was one.
//! Everything is bounded by the request's deadline.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::balance::{backoff, AUTH_FAILURE_COOLDOWN, RATE_LIMIT_COOLDOWN};
use crate::conn::{BodyLocation, ClientConn};
use crate::dialect::{Conversion, Inbound};
use crate::error::GatewayError;
use crate::exchange::{exchange, read_watching, Failure, WaitError};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::RequestHead;
use crate::http::upstream::{InFraming, ResponseHead};
use crate::io::Stream;
use crate::outbound;
use crate::relay::{header_value, keep_response as collect_kept, relay_response, Relay};
use crate::route::Target;
use crate::shard::Shard;
use crate::snapshot::{Provider, Snapshot};

/// Largest upstream error body kept to answer with later.
const MAX_KEPT_ERROR_BODY: usize = 256 * 1024;

/// A target that did not produce a response.
enum Failed {
    /// The gateway's own error.
    Gateway(GatewayError),
    /// The provider's response, rendered for the client (status, headers, body).
    Upstream { status: u16, response: Vec<u8> },
}

enum TargetError {
    Failed(Failed),
    ClientGone,
}

impl From<GatewayError> for TargetError {
    fn from(e: GatewayError) -> Self {
        Self::Failed(Failed::Gateway(e))
    }
}

/// What is fixed across all attempts of one request.
pub struct Ask<'a> {
    pub head: &'a RequestHead,
    pub body: &'a BodyLocation,
    /// The API the client called.
    pub inbound: Inbound,
    /// The request in OpenAI chat form when the client spoke another API.
    pub chat_body: Option<Vec<u8>>,
    pub stream: bool,
    /// The client asked for stream usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Governed: read token usage from the response.
    pub capture_usage: bool,
    /// Governed stream whose client did not ask for usage: the gateway asks the provider for
    /// it and keeps it out of the client's stream.
    pub inject_usage: bool,
    /// The model name as the client wrote it.
    pub requested: &'a str,
    /// Where that name's string literal sits in the body.
    pub model_span: Range<usize>,
    pub deadline: Instant,
}

/// A response that reached the client.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub keep_alive: bool,
    pub status: u16,
    /// The target that answered (`None`: a kept failure was sent).
    pub target: Option<usize>,
    pub usage: Option<vocab::TokenUsage>,
}

/// Tries `targets` in order. `Ok` once a response was sent; `Err` when nothing was sent yet
/// and the caller should answer with the error.
pub async fn serve(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    ask: &Ask<'_>,
    targets: &[Target<'_>],
) -> Result<Served, Failure> {
    let mut primary_failure: Option<Failed> = None;
    for (index, target) in targets.iter().enumerate() {
        if index > 0 {
            let slot = snapshot.providers[target.provider].slot;
            shard.stats.providers[slot].fallbacks.incr();
            tracing::debug!(provider = %snapshot.providers[target.provider].name, model = target.model, "falling back");
        }
        // Whether anything but this target's first attempt could still answer, or already
        // failed: then an error inside a 200 stream must be caught before relaying it.
        let alternatives = index + 1 < targets.len() || index > 0;
        match try_target(shard, snapshot, conn, ask, target, alternatives).await {
            Ok(mut served) => {
                served.target = Some(index);
                return Ok(served);
            }
            Err(TargetError::ClientGone) => return Err(Failure::ClientGone),
            Err(TargetError::Failed(failed)) => {
                if primary_failure.is_none() {
                    primary_failure = Some(failed);
                }
            }
        }
        if Instant::now() >= ask.deadline {
            break;
        }
    }
    match primary_failure {
        Some(Failed::Upstream { status, response }) => {
            shard.stats.record_status(status);
            conn.out.clear();
            conn.out.extend_from_slice(&response);
            Ok(Served {
                keep_alive: conn.flush_out().await && ask.head.keep_alive,
                status,
                target: None,
                usage: None,
            })
        }
        Some(Failed::Gateway(e)) => Err(Failure::Respond(e)),
        None => Err(Failure::Respond(GatewayError::DeadlineExceeded)),
    }
}

/// How an upstream status is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Relay it: success, or a client error another attempt would repeat.
    Final,
    /// This key is rate limited or refused: cool it down, try another key.
    KeyRefused { auth: bool },
    /// The provider failed: counts against its health; retry or fall back.
    Retryable,
}

fn verdict(status: u16) -> Verdict {
    match status {
        429 => Verdict::KeyRefused { auth: false },
        401 | 403 => Verdict::KeyRefused { auth: true },
        408 | 500 | 502 | 503 | 504 | 529 => Verdict::Retryable,
        _ => Verdict::Final,
    }
}

async fn try_target(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    ask: &Ask<'_>,
    target: &Target<'_>,
    alternatives: bool,
) -> Result<Served, TargetError> {
    let provider = &snapshot.providers[target.provider];
    let runtime = &shard.providers[provider.slot];
    let stats = &shard.stats.providers[provider.slot];
    let policy = &provider.retry;
    if !runtime.health.admit(Instant::now(), &provider.breaker) {
        return Err(GatewayError::CircuitOpen {
            provider: provider.name.clone(),
        }
        .into());
    }
    let _permit = runtime
        .gate
        .acquire(&provider.backpressure)
        .await
        .map_err(|_| {
            stats.shed.incr();
            GatewayError::Overloaded {
                provider: provider.name.clone(),
            }
        })?;
    let mut tried_keys: u64 = 0;
    let mut retries: u32 = 0;
    let mut first_failure: Option<Failed> = None;
    loop {
        let now = Instant::now();
        let Ok(key) = runtime
            .keys
            .pick(&provider.keys, target.model, tried_keys, now, &shard.rng)
        else {
            return Err(TargetError::Failed(first_failure.unwrap_or(
                Failed::Gateway(GatewayError::NoKeyAvailable {
                    provider: provider.name.clone(),
                }),
            )));
        };
        let budget = ask.deadline.saturating_duration_since(now);
        if budget.is_zero() {
            return Err(TargetError::Failed(
                first_failure.unwrap_or(Failed::Gateway(GatewayError::DeadlineExceeded)),
            ));
        }
        let key_line = key.map(|k| &provider.keys[k].header_line[..]);
        let built = match outbound::build(conn, ask, provider, key_line, target.model) {
            Ok(built) => built,
            // This provider cannot express the request; another target may.
            Err(e) => {
                return Err(TargetError::Failed(
                    first_failure.unwrap_or(Failed::Gateway(e)),
                ))
            }
        };
        let attempt = Attempt {
            provider_id: target.provider,
            started: now,
            conversion: Conversion {
                wire: provider.wire,
                inbound: ask.inbound,
                passthrough: built.passthrough,
                model: ask.requested,
                created: crate::clock::unix_now(),
                stream: ask.stream,
                include_usage: ask.include_usage || ask.inject_usage,
                capture_usage: ask.capture_usage,
                strip_usage: ask.inject_usage,
                embed_base64: built.embed_base64,
            },
        };
        stats.attempts.incr();
        let failure = match exchange(shard, provider, conn, &snapshot.limits, budget).await {
            Err(Failure::ClientGone) => return Err(TargetError::ClientGone),
            Err(Failure::Respond(e)) => Failed::Gateway(e),
            Ok((upstream, head)) => match verdict(head.status) {
                Verdict::KeyRefused { auth } => {
                    let key_index = key.unwrap_or(0);
                    let cooldown = if auth {
                        AUTH_FAILURE_COOLDOWN
                    } else {
                        retry_after(conn).unwrap_or(RATE_LIMIT_COOLDOWN)
                    };
                    if key.is_some() {
                        runtime.keys.cool_down(key_index, Instant::now() + cooldown);
                        tried_keys |= 1 << (key_index % 64);
                    }
                    let another_key = key.is_some()
                        && runtime
                            .keys
                            .pick(
                                &provider.keys,
                                target.model,
                                tried_keys,
                                Instant::now(),
                                &shard.rng,
                            )
                            .is_ok();
                    if auth && !another_key {
                        // Credentials are wrong everywhere on this provider: that is the answer.
                        return finish(shard, snapshot, conn, ask, &attempt, upstream, &head).await;
                    }
                    let failed =
                        keep_response(shard, snapshot, conn, ask, &attempt, upstream, &head).await;
                    if first_failure.is_none() {
                        first_failure = Some(failed);
                    }
                    if another_key {
                        continue;
                    }
                    return Err(TargetError::Failed(
                        first_failure.take().expect("set above"),
                    ));
                }
                Verdict::Retryable => {
                    keep_response(shard, snapshot, conn, ask, &attempt, upstream, &head).await
                }
                Verdict::Final => {
                    let watch_first_event = alternatives || retries > 0 || policy.max_retries > 0;
                    if watch_first_event && head.status == 200 && head.event_stream {
                        match first_event_is_error(conn, upstream, &head, provider, ask).await {
                            Ok(upstream) => {
                                return finish(
                                    shard, snapshot, conn, ask, &attempt, upstream, &head,
                                )
                                .await
                            }
                            Err(TargetError::ClientGone) => return Err(TargetError::ClientGone),
                            Err(TargetError::Failed(f)) => f,
                        }
                    } else {
                        return finish(shard, snapshot, conn, ask, &attempt, upstream, &head).await;
                    }
                }
            },
        };
        // The provider failed this attempt.
        stats.failures.incr();
        if runtime
            .health
            .record_failure(now.elapsed(), Instant::now(), &provider.breaker)
        {
            stats.circuit_opens.incr();
            tracing::warn!(provider = %provider.name, "circuit opened");
        }
        publish_health(shard, provider.slot);
        if let Failed::Gateway(e) = &failure {
            tracing::info!(provider = %provider.name, error = %e, "attempt failed");
        }
        if first_failure.is_none() {
            first_failure = Some(failure);
        }
        let give_up = |first_failure: Option<Failed>| {
            TargetError::Failed(first_failure.expect("a failure was recorded"))
        };
        if retries >= policy.max_retries {
            return Err(give_up(first_failure));
        }
        let delay = backoff(retries, policy.initial_delay, policy.max_delay, &shard.rng);
        if Instant::now() + delay >= ask.deadline {
            return Err(give_up(first_failure));
        }
        retries += 1;
        stats.retries.incr();
        monoio::time::sleep(delay).await;
        if !runtime.health.admit(Instant::now(), &provider.breaker) {
            return Err(give_up(first_failure));
        }
    }
}

/// One attempt at one target: what its response needs.
struct Attempt<'a> {
    provider_id: usize,
    started: Instant,
    conversion: Conversion<'a>,
}

impl Attempt<'_> {
    /// How this attempt's response is relayed.
    fn relay<'r>(
        &'r self,
        snapshot: &'r Snapshot,
        ask: &Ask<'_>,
        head: &'r ResponseHead,
    ) -> Relay<'r> {
        Relay {
            head,
            provider: &snapshot.providers[self.provider_id],
            limits: &snapshot.limits,
            keep_alive: ask.head.keep_alive,
            conversion: &self.conversion,
        }
    }
}

/// Relays a response that will be the answer, and returns the connection to the pool.
async fn finish(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    ask: &Ask<'_>,
    attempt: &Attempt<'_>,
    upstream: Stream,
    head: &ResponseHead,
) -> Result<Served, TargetError> {
    let provider_id = attempt.provider_id;
    let provider = &snapshot.providers[provider_id];
    let runtime = &shard.providers[provider.slot];
    runtime.health.record_success(attempt.started.elapsed());
    publish_health(shard, provider.slot);
    shard.stats.record_status(head.status);
    let outcome = relay_response(conn, upstream, &attempt.relay(snapshot, ask, head)).await;
    if let Some(upstream) = outcome.reusable_upstream {
        shard.pool.checkin(provider, upstream);
    }
    Ok(Served {
        keep_alive: outcome.client_ok,
        status: head.status,
        target: None,
        usage: outcome.usage,
    })
}

/// Copies a provider's breaker state and latency average into the shard's counters.
fn publish_health(shard: &Shard, slot: usize) {
    let health = &shard.providers[slot].health;
    let stats = &shard.stats.providers[slot];
    stats.breaker_state.store(
        health.state().as_gauge(),
        std::sync::atomic::Ordering::Relaxed,
    );
    stats.ewma_latency_us.set(health.ewma_latency_us() as u64);
}

/// Reads and keeps a failed attempt's response; the connection goes back to the pool.
async fn keep_response(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    ask: &Ask<'_>,
    attempt: &Attempt<'_>,
    upstream: Stream,
    head: &ResponseHead,
) -> Failed {
    let provider_id = attempt.provider_id;
    let provider = &snapshot.providers[provider_id];
    let relay = attempt.relay(snapshot, ask, head);
    let (response, reusable) = collect_kept(conn, upstream, &relay, MAX_KEPT_ERROR_BODY).await;
    if let Some(upstream) = reusable {
        shard.pool.checkin(provider, upstream);
    }
    Failed::Upstream {
        status: head.status,
        response,
    }
}

/// `Retry-After` in seconds, when the upstream sent one.
fn retry_after(conn: &ClientConn) -> Option<Duration> {
    header_value(conn, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(3600)))
}

/// Reads an event stream until its first event is complete. A first event that is an
/// error (`data: {"error": …}`), or a stream that ends before its first event, is a failed
/// attempt; otherwise the connection is returned with the bytes kept in `upbuf` for the relay.
async fn first_event_is_error(
    conn: &mut ClientConn,
    mut upstream: Stream,
    head: &ResponseHead,
    provider: &Provider,
    ask: &Ask<'_>,
) -> Result<Stream, TargetError> {
    let client_fd = conn.stream.raw_fd();
    let broken = |detail: String| {
        TargetError::Failed(Failed::Gateway(GatewayError::UpstreamStreamError {
            provider: provider.name.clone(),
            detail,
        }))
    };
    loop {
        conn.payload.clear();
        let raw = &conn.upbuf[head.head_len..];
        match head.framing {
            InFraming::Chunked => {
                ChunkedDecoder::new()
                    .decode(raw, &mut conn.payload)
                    .map_err(|e| broken(e.to_string()))?;
            }
            _ => conn.payload.extend_from_slice(raw),
        }
        let end = memchr::memmem::find(&conn.payload, b"\n\n")
            .or_else(|| memchr::memmem::find(&conn.payload, b"\r\n\r\n"));
        if let Some(end) = end {
            return match event_error(&conn.payload[..end]) {
                Some(detail) => Err(broken(detail)),
                None => Ok(upstream),
            };
        }
        let budget = ask.deadline.saturating_duration_since(Instant::now());
        let wait = provider.timeouts.first_byte.min(budget);
        let check = Duration::from_millis(500);
        match read_watching(&mut upstream, &mut conn.upbuf, client_fd, wait, check).await {
            Ok(n) if n > 0 => {}
            Ok(_) => return Err(broken("stream ended before its first event".into())),
            Err(WaitError::ClientGone) => return Err(TargetError::ClientGone),
            Err(WaitError::Timeout) => return Err(broken("no first event in time".into())),
            Err(WaitError::Io(e)) => return Err(broken(e.to_string())),
        }
    }
}

/// The error message of an SSE event whose data is an `{"error": …}` object.
fn event_error(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let value: serde_json::Value = serde_json::from_str(&data).ok()?;
    let error = value.get("error")?;
    Some(
        error
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| error.to_string(), str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(200), Verdict::Final);
        assert_eq!(verdict(400), Verdict::Final);
        assert_eq!(verdict(404), Verdict::Final);
        assert_eq!(verdict(429), Verdict::KeyRefused { auth: false });
        assert_eq!(verdict(401), Verdict::KeyRefused { auth: true });
        assert_eq!(verdict(503), Verdict::Retryable);
        assert_eq!(verdict(529), Verdict::Retryable);
    }

    #[test]
    fn error_events_are_recognised() {
        assert_eq!(
            event_error(b"data: {\"error\":{\"message\":\"overloaded\"}}").as_deref(),
            Some("overloaded")
        );
        assert_eq!(event_error(b"event: x\ndata: {\"choices\":[]}"), None);
        assert_eq!(event_error(b"data: [DONE]"), None);
    }
}
