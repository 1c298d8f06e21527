//! One target's attempts: its circuit **breaker** (skip while open), its admission **gate**
//! (shed to the next target when full), then attempts until one answers — each with an API
//! **key** chosen by weight among those not cooling down, and the request **built**,
//! **exchanged**, and judged by its **verdict** ([`Retry`]): a key refused (429, 401/403)
//! cools down and another key is tried at once; a provider failure (connect errors,
//! timeouts, resets, 408/5xx/529, an error as a stream's first event) counts against the
//! provider's health and is retried after a **backoff** with full jitter, up to
//! `max_retries`; anything else is the answer and is relayed.

use crate::poll_clock;
use crate::state::stats::Held;
use std::time::{Duration, Instant};

use crate::dialect::{Conversion, Inbound};
use crate::direct::Metered;
use crate::error::{GatewayError, Retry};
use crate::io::Stream;
use crate::path::attempt::{build, exchange, first_event};
use crate::path::conn::ClientConn;
use crate::path::context::{Phase, RequestCtx, Scope, Served};
use crate::path::outcome::Stop;
use crate::path::relay::{self, Relay};
use crate::route::Target;
use crate::snapshot::Provider;
use crate::state::balance::{backoff, AUTH_FAILURE_COOLDOWN, RATE_LIMIT_COOLDOWN};

/// Largest upstream error body kept to answer with later.
const MAX_KEPT_ERROR_BODY: usize = 256 * 1024;

/// The state of one target's attempts.
struct Tries<'s> {
    scope: Scope<'s>,
    /// The target's index in the request's targets, and the target.
    index: usize,
    target: &'s Target<'s>,
    provider: &'s Provider,
    /// Keys refused so far (bit `i % 64` for key `i`).
    tried_keys: u64,
    /// After a refused key: another may still be tried.
    another_key: bool,
    retries: u32,
    /// The first failure, which is what the client gets if nothing answers.
    first_failure: Option<Stop>,
    /// Another attempt or target could still answer, so a 200 stream's first event is
    /// checked before it is relayed.
    alternatives: bool,
}

/// Tries the target at `index` of the request's targets.
pub async fn try_target<'s>(
    scope: Scope<'s>,
    conn: &mut ClientConn,
    req: &'s RequestCtx<'s>,
    index: usize,
) -> Result<Served, Stop> {
    let target = &req.targets[index];
    let provider = &scope.snapshot.providers[target.provider];
    let runtime = &scope.shard.providers[provider.slot];
    let now = poll_clock::now();
    if !runtime.health.admit(now, &provider.breaker) {
        return Err(GatewayError::CircuitOpen {
            provider: provider.name.clone(),
        }
        .into());
    }
    let stats = &scope.shard.stats.providers[provider.slot];
    // A free slot is taken at once, and `now` is still the attempt's start; after a wait in
    // line the clock is read again.
    let (_permit, mut started) = match runtime.gate.try_acquire(&provider.backpressure) {
        Some(permit) => (permit, now),
        None => {
            let _queued = Held::new(&stats.queued);
            let permit = runtime
                .gate
                .wait_for_slot(&provider.backpressure)
                .await
                .map_err(|_| {
                    stats.shed.incr();
                    GatewayError::Overloaded {
                        provider: provider.name.clone(),
                    }
                })?;
            (permit, poll_clock::now())
        }
    };
    let _active = Held::new(&stats.active);
    let mut tries = Tries {
        scope,
        index,
        target,
        provider,
        tried_keys: 0,
        another_key: false,
        retries: 0,
        first_failure: None,
        alternatives: req.targets.len() > 1 || provider.retry.max_retries > 0,
    };
    loop {
        let failure = match tries.attempt(conn, req, started).await {
            Ok(served) => return Ok(served),
            Err(Stop::ClientGone) => return Err(Stop::ClientGone),
            Err(failure) => failure,
        };
        let retry = failure.retry();
        if retry == Retry::Backoff {
            tries.provider_failed(&failure, started);
        }
        tries.first_failure.get_or_insert(failure);
        let again = match retry {
            Retry::OtherKey { .. } => tries.another_key,
            Retry::Backoff => tries.back_off(req.deadline).await,
            Retry::NextTarget | Retry::Never => false,
        };
        if !again {
            return Err(tries.first_failure.take().expect("a failure was recorded"));
        }
        started = poll_clock::now();
    }
}

impl Tries<'_> {
    /// One attempt: key, build, exchange, verdict. `Ok` once the response was relayed.
    async fn attempt(
        &mut self,
        conn: &mut ClientConn,
        req: &RequestCtx<'_>,
        started: Instant,
    ) -> Result<Served, Stop> {
        let Scope {
            shard, snapshot, ..
        } = self.scope;
        let provider = self.provider;
        let runtime = &shard.providers[provider.slot];
        let key = runtime
            .keys
            .pick(
                &provider.keys,
                self.target.model,
                self.tried_keys,
                started,
                &shard.rng,
            )
            .map_err(|_| GatewayError::NoKeyAvailable {
                provider: provider.name.clone(),
            })?;
        let budget = req.deadline.saturating_duration_since(started);
        if budget.is_zero() {
            return Err(GatewayError::DeadlineExceeded.into());
        }
        let key_line = key.map(|k| &provider.keys[k].header_line[..]);
        let built = build::build(conn, req, provider, key_line, self.target.model)?;
        // A Responses answer a provider gives natively has no chat form to keep.
        let keep_answer = crate::path::cache::keep_limit(snapshot, req)
            .filter(|_| !(built.passthrough && req.endpoint == Inbound::Responses));
        let conversion = Conversion {
            wire: provider.wire,
            inbound: req.endpoint,
            passthrough: built.passthrough,
            model: req.ask.requested,
            stream: req.ask.stream,
            include_usage: req.ask.include_usage || req.ask.inject_usage,
            // A kept answer records what it cost, which each hit saves.
            capture_usage: (req.governed()
                || conn.tracker.trace.sampled()
                || keep_answer.is_some())
                && req.endpoint.has_prompt(),
            describe_outcome: conn.tracker.trace.sampled(),
            family: tokens::Family::of_model(self.target.model),
            strip_usage: req.ask.inject_usage,
            embed_base64: built.embed_base64,
            meter_units: req.governed()
                && matches!(req.endpoint, Inbound::Direct(api) if api.metered() == Metered::Response),
            transcript_text: req.ask.transcript_as_text(),
            keep_answer,
        };
        shard.stats.providers[provider.slot].attempts.incr();
        let (upstream, head) =
            exchange::exchange(shard, provider, conn, &snapshot.limits, (started, budget)).await?;
        let relay = Relay {
            head: &head,
            provider,
            limits: &snapshot.limits,
            keep_alive: req.head.keep_alive,
            conversion: &conversion,
        };
        match Retry::of_status(head.status) {
            Retry::OtherKey { auth } => {
                self.refuse_key(conn, key, auth);
                if auth && !self.another_key {
                    // Credentials are wrong everywhere on this provider: that is the answer.
                    return self.answer(conn, req, upstream, &relay, started).await;
                }
                Err(self.keep(conn, upstream, &relay).await)
            }
            Retry::Backoff => Err(self.keep(conn, upstream, &relay).await),
            Retry::NextTarget | Retry::Never => {
                let watch = self.alternatives || self.retries > 0;
                let upstream = if watch && head.status == 200 && head.event_stream {
                    first_event::check(conn, upstream, &head, provider, req.deadline).await?
                } else {
                    upstream
                };
                self.answer(conn, req, upstream, &relay, started).await
            }
        }
    }

    /// Cools a refused key down (for `Retry-After` when given) and notes whether another
    /// key of the provider may still be tried.
    fn refuse_key(&mut self, conn: &ClientConn, key: Option<usize>, auth: bool) {
        let Some(key) = key else {
            self.another_key = false;
            return;
        };
        let shard = self.scope.shard;
        let keys = &shard.providers[self.provider.slot].keys;
        let cooldown = if auth {
            AUTH_FAILURE_COOLDOWN
        } else {
            retry_after(conn).unwrap_or(RATE_LIMIT_COOLDOWN)
        };
        keys.cool_down(key, poll_clock::now() + cooldown);
        self.tried_keys |= 1 << (key % 64);
        self.another_key = keys
            .pick(
                &self.provider.keys,
                self.target.model,
                self.tried_keys,
                poll_clock::now(),
                &shard.rng,
            )
            .is_ok();
    }

    /// Relays the response that is the answer; its connection goes back to the pool.
    async fn answer(
        &self,
        conn: &mut ClientConn,
        req: &RequestCtx<'_>,
        upstream: Stream,
        relay: &Relay<'_>,
        started: Instant,
    ) -> Result<Served, Stop> {
        let shard = self.scope.shard;
        let runtime = &shard.providers[self.provider.slot];
        runtime.health.record_success(poll_clock::elapsed(started));
        self.publish_health();
        shard.stats.record_status(relay.head.status);
        req.times.enter(Phase::Relay);
        let outcome = relay::relay_response(conn, upstream, relay).await;
        if let Some(upstream) = outcome.reusable_upstream {
            shard.pool.checkin(self.provider, upstream);
        }
        Ok(Served {
            keep_alive: outcome.client_ok,
            status: relay.head.status,
            target: Some(self.index),
            tally: outcome.tally,
            answer: outcome.answer,
        })
    }

    /// Reads and keeps a failed attempt's response; the connection goes back to the pool.
    async fn keep(&self, conn: &mut ClientConn, upstream: Stream, relay: &Relay<'_>) -> Stop {
        let (response, reusable) =
            relay::keep_response(conn, upstream, relay, MAX_KEPT_ERROR_BODY).await;
        if let Some(upstream) = reusable {
            self.scope.shard.pool.checkin(self.provider, upstream);
        }
        Stop::Kept {
            status: relay.head.status,
            response,
        }
    }

    /// Counts a failed attempt against the provider's health (and maybe opens its circuit).
    fn provider_failed(&self, failure: &Stop, started: Instant) {
        let shard = self.scope.shard;
        let provider = self.provider;
        let stats = &shard.stats.providers[provider.slot];
        stats.failures.incr();
        let health = &shard.providers[provider.slot].health;
        if health.record_failure(
            poll_clock::elapsed(started),
            poll_clock::now(),
            &provider.breaker,
        ) {
            stats.circuit_opens.incr();
            tracing::warn!(provider = %provider.name, "circuit opened");
        }
        self.publish_health();
        if let Stop::Error(e) = failure {
            tracing::info!(provider = %provider.name, error = %e, "attempt failed");
        }
    }

    /// Waits before the next attempt. False when no retry is left, the deadline would pass,
    /// or the circuit opened meanwhile.
    async fn back_off(&mut self, deadline: Instant) -> bool {
        let shard = self.scope.shard;
        let policy = &self.provider.retry;
        if self.retries >= policy.max_retries {
            return false;
        }
        let delay = backoff(
            self.retries,
            policy.initial_delay,
            policy.max_delay,
            &shard.rng,
        );
        if poll_clock::now() + delay >= deadline {
            return false;
        }
        self.retries += 1;
        shard.stats.providers[self.provider.slot].retries.incr();
        crate::timer::sleep(delay).await;
        shard.providers[self.provider.slot]
            .health
            .admit(poll_clock::now(), &self.provider.breaker)
    }

    /// Copies the provider's breaker state and latency average into the shard's counters.
    fn publish_health(&self) {
        let slot = self.provider.slot;
        let shard = self.scope.shard;
        let health = &shard.providers[slot].health;
        let stats = &shard.stats.providers[slot];
        stats.breaker_state.store(
            health.state().as_gauge(),
            std::sync::atomic::Ordering::Relaxed,
        );
        stats.ewma_latency_us.set(health.ewma_latency_us() as u64);
    }
}

/// `Retry-After` in seconds, when the upstream sent one.
fn retry_after(conn: &ClientConn) -> Option<Duration> {
    conn.response_header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(3600)))
}
