//! # The request path of one shard
//!
//! Every request runs these phases in this order. Each is a module of its own and a small
//! function over the request's typed context ([`context::RequestCtx`]): it reads what the
//! phases before it added, adds its own part, and marks itself reached in
//! [`context::Phases`].
//!
//! 1. **accept** ([`accept`]) — the shard's SO_REUSEPORT listener accepts a connection (and a
//!    TLS handshake when configured); the connection's buffers are its own
//!    ([`conn::ClientConn`]). Adds: the accept time.
//! 2. **read** ([`read`]) — the request head and body, under the size limits and read
//!    timeouts; bad framing is a 4xx and a close. Adds: `head`, `body`.
//! 3. **route** ([`route`]) — method and path pick a local answer (`/health`, `/ready`,
//!    the models routes, [`models`]) or the client's API (OpenAI chat, completions, embeddings, Responses;
//!    Anthropic Messages and token counts; the relayed APIs of [`crate::direct`]: audio,
//!    images, moderations, files, batches), or a 404/405. Adds: `endpoint`.
//! 4. **authenticate** ([`authenticate`]) — when governance is on: the virtual key presented,
//!    found by its hash in the governance snapshot (401/403 before anything else is read).
//!    Adds: `caller`.
//! 5. **extract** ([`extract`]) — `model`, `stream` and the output cap read from the body
//!    without building a tree (malformed JSON is a 400); a non-chat client API converted to
//!    its chat form; the `x-ringgate-*` request headers. Adds: `ask`.
//! 6. **resolve** ([`resolve`]) — the model names a provider and upstream model (404 when
//!    unknown, 403 when the key may not use it); balanced peers and fallbacks follow it; the
//!    deadline is set. Adds: `targets`, `deadline`.
//!    **cache** ([`cache`]) — when the node has a response cache: whether this request's
//!    answer is cached, its key, and a lookup (the node's memory, then the fleet's shared
//!    tier); a hit is answered here, after taking only a request of the key's request
//!    limits, and the phases below are skipped (settle and observe still run). Adds: `cache`.
//! 7. **admit** ([`admit`]) — the key's, team's and customer's request and token limits and
//!    budgets, taken from this shard's leases (429/402 when spent). Adds: `admission`.
//!    A token count for a provider without that endpoint is answered here, counted
//!    locally ([`count_tokens`]).
//! 8. **attempt** ([`attempt`]) — targets in order; per target its **breaker** (skip while
//!    open), its admission **gate**, an API **key** by weight, then per attempt: **build**
//!    the upstream request, **exchange** it on a pooled connection for the response head
//!    (the client is watched for a disconnect), the **verdict** on the status (answer, other
//!    key, retry, next target) and the **backoff** before a retry. Adds: the answer chosen.
//! 9. **relay** ([`relay`]) — the response copied to the client as it arrives, one write per
//!    upstream read, converted piece by piece when the APIs differ; a broken stream ends with
//!    an error event; a fully read upstream connection goes back to the pool. Adds: `served`
//!    (status, usage, and the whole answer when the cache keeps it; kept by
//!    [`cache::keep`] once it ended well).
//! 10. **settle** ([`settle`]) — when governed: the real usage and cost charged to the
//!     admission, and the request's usage record made (also for a refused request, which
//!     is only logged).
//! 11. **observe** ([`observe`]) — once the response is written: the latency histograms of
//!     the provider and model, refusal counters, the access log line, the usage record, with
//!     its timings, queued for the coordinator, and a sampled request's span.
//!
//! Every response carries `x-request-id` ([`tracker`]), and the connection's tracker keeps
//! the request's timings (time waiting on the provider, first byte written) for phase 11.
//! When traces are on, a routed API request's trace context is decided before phase 4
//! ([`trace`]): it rides in the tracker, goes upstream with every attempt (build), and
//! phase 11 records the span of a sampled request.
//!
//! A phase that fails returns a [`outcome::Stop`]; [`respond`] answers it in the client's API
//! (or closes, when the client is gone). Nothing reaches the client before the attempt
//! phase relays; so every earlier failure is still a clean error response.

pub(crate) mod accept;
mod admit;
mod attempt;
mod authenticate;
pub(crate) mod busy;
mod cache;
pub(crate) mod conn;
pub(crate) mod context;
mod count_tokens;
mod direct_fields;
mod extract;
pub(crate) mod fields;
mod keepalive;
mod models;
mod observe;
mod outcome;
mod read;
mod relay;
mod resolve;
mod respond;
mod route;
mod settle;
pub(crate) mod trace;
pub(crate) mod tracker;

use std::time::Instant;

use crate::state::stats::Held;
use crate::state::Shard;
use conn::ClientConn;
use context::{Phases, RequestCtx, Scope, Served};
use outcome::Stop;
use route::Route;
use tracker::Tracker;

/// Serves requests on one client connection until it closes (phases 2–10, repeated).
pub(crate) async fn serve_connection(shard: &Shard, conn: &mut ClientConn, accepted: Instant) {
    loop {
        let snapshot = shard.snapshot();
        let mut times = Phases::new(accepted);
        let read = read::request(conn, &snapshot.limits, &mut times).await;
        conn.tracker = Tracker::new(shard.ids.next(), crate::poll_clock::now());
        conn.tracker.busy_at_read = conn.busy.as_ref().map(|meter| meter.now());
        let (head, body, used) = match read {
            Ok(request) => request,
            Err(Stop::Error(err)) => {
                tracing::warn!(peer = %conn.peer, request_id = conn.tracker.echoed_id(), status = err.status(), error = %err, "rejected request");
                respond::error(conn, &err, crate::dialect::Inbound::Chat, false).await;
                break;
            }
            Err(_) => break,
        };
        conn.tracker.client_id = tracker::client_id(conn.request_header("x-request-id"));
        conn.tracker.report_overhead = conn
            .request_header("x-ringgate-overhead")
            .is_some_and(|v| v == b"1" || v.eq_ignore_ascii_case(b"true"));
        // Taken once the request is read, and before the request, which borrows from it.
        let gov = shard.gov_snapshot();
        let names = std::cell::OnceCell::new();
        let mut req = RequestCtx::new(times, head, body, &names);
        // A draining node answers what it has read, then closes the connection.
        req.head.keep_alive &= !shard.node.is_draining();
        let in_flight = Held::new(&shard.stats.in_flight);
        conn.lend_buffers(&shard.buffers);
        let scope = Scope {
            shard,
            snapshot: &snapshot,
            gov: gov.as_deref().map(|gov| &**gov),
        };
        // Boxed: the request's future is large (the whole path), and an idle keep-alive
        // connection should not carry its space while it waits for the next request.
        let keep_alive = Box::pin(handle(scope, conn, &mut req)).await;
        conn.return_buffers(&shard.buffers);
        drop(in_flight);
        if !keep_alive || !req.head.keep_alive {
            break;
        }
        conn.consume(used);
    }
}

/// Phases 3–10 for one request that was read. Returns whether the connection may carry
/// another.
async fn handle<'s>(scope: Scope<'s>, conn: &mut ClientConn, req: &mut RequestCtx<'s>) -> bool {
    match route::route(conn, req) {
        Route::Local(answer) => route::answer(scope, conn, req, answer).await,
        Route::Api(endpoint) => {
            req.endpoint = endpoint;
            trace::begin(scope.shard, conn);
            let stop = match proxy(scope, conn, req).await {
                Ok(mut served) => {
                    cache::keep(scope, conn, req, &mut served);
                    req.served = Some(served);
                    None
                }
                Err(stop) => Some(stop),
            };
            let charge = settle::settle(scope, conn, req, stop.as_ref());
            let outcome = observe::Outcome::of(stop.as_ref(), req.served.as_ref());
            let keep_alive = finish(scope, conn, req, stop).await;
            observe::observe(scope, conn, req, outcome, charge);
            keep_alive
        }
    }
}

/// Phases 4–9: `Ok` once a response reached the client; `Err` while nothing has.
async fn proxy<'s>(
    scope: Scope<'s>,
    conn: &mut ClientConn,
    req: &mut RequestCtx<'s>,
) -> Result<Served, Stop> {
    authenticate::authenticate(scope, conn, req)?;
    extract::extract(conn, req)?;
    resolve::resolve(scope, req)?;
    // A phase with nothing to do here is not called: an awaited call copies its future's
    // whole size (hundreds of bytes) before its first poll, even one that returns at once.
    if let Some(tiers) = cache::tiers(scope) {
        if let Some(replayed) = cache::look_up(scope, tiers, conn, req).await? {
            admit::admit_hit(scope, req).await?;
            let served = cache::render_hit(scope, conn, req, replayed);
            return send_answered(conn, served).await;
        }
    }
    if let Some(admitter) = admit::admitter(scope, req) {
        admit::admit(scope, admitter, conn, req).await?;
    }
    if let Some(served) = count_tokens::answer_locally(scope, conn, req)? {
        return send_answered(conn, served).await;
    }
    attempt::attempt(scope, conn, req).await
}

/// Sends an answer a phase wrote to `conn.out` itself (a cache hit, a local token count).
async fn send_answered(conn: &mut ClientConn, served: Served) -> Result<Served, Stop> {
    if conn.flush_out().await {
        Ok(served)
    } else {
        Err(Stop::ClientGone)
    }
}

/// Answers a request whose proxying stopped short (`stop`), and decides whether the
/// connection stays open.
async fn finish(
    scope: Scope<'_>,
    conn: &mut ClientConn,
    req: &RequestCtx<'_>,
    stop: Option<Stop>,
) -> bool {
    let keep_alive = req.head.keep_alive;
    let Some(stop) = stop else {
        return req.served.as_ref().is_some_and(|s| s.keep_alive) && keep_alive;
    };
    match stop {
        Stop::ClientGone => {
            scope.shard.stats.client_gone.incr();
            false
        }
        Stop::Kept { status, response } => {
            scope.shard.stats.record_status(status);
            conn.out.clear();
            conn.out.extend_from_slice(&response);
            conn.flush_out().await && keep_alive
        }
        Stop::Error(err) => {
            if err.source() == crate::error::ErrorSource::Client {
                tracing::info!(peer = %conn.peer, request_id = conn.tracker.echoed_id(), status = err.status(), error = %err, "bad request");
            } else {
                tracing::warn!(peer = %conn.peer, request_id = conn.tracker.echoed_id(), status = err.status(), error = %err, "request failed");
            }
            scope.shard.stats.record_status(err.status());
            respond::error(conn, &err, req.endpoint, keep_alive).await && keep_alive
        }
    }
}
