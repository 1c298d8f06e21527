//! Phase 8, attempt: getting a response from somewhere. Targets are tried in the order the
//! resolve phase set; per target ([`target`]) its circuit breaker, its admission gate, its
//! API keys and its retries; per attempt the steps [`build`], [`exchange`], the verdict on
//! the status ([`crate::error::Retry`]), [`first_event`] for streams that may still fail
//! over, and the backoff before a retry. The attempt that answers hands its response to
//! the relay phase ([`crate::path::relay`]).
//!
//! Once a response byte has been sent to the client nothing is retried. When every target
//! fails, the client gets the primary target's first failure — the provider's own response
//! when there was one. Everything is bounded by the request's deadline.

mod build;
mod exchange;
mod first_event;
mod target;

use crate::error::GatewayError;
use crate::path::conn::ClientConn;
use crate::path::context::{Phase, RequestCtx, Scope, Served};
use crate::path::outcome::Stop;

/// Tries the request's targets in order. `Ok` once a response was sent; `Err` when nothing
/// was sent yet and the driver should answer with the primary target's failure.
pub async fn attempt(
    scope: Scope<'_>,
    conn: &mut ClientConn,
    req: &RequestCtx<'_>,
) -> Result<Served, Stop> {
    req.times.enter(Phase::Attempt);
    let mut primary_failure: Option<Stop> = None;
    for (index, t) in req.targets.iter().enumerate() {
        if index > 0 {
            let provider = &scope.snapshot.providers[t.provider];
            scope.shard.stats.providers[provider.slot].fallbacks.incr();
            tracing::debug!(request_id = conn.tracker.echoed_id(), provider = %provider.name, model = t.model, "falling back");
        }
        match target::try_target(scope, conn, req, index).await {
            Ok(served) => return Ok(served),
            Err(Stop::ClientGone) => return Err(Stop::ClientGone),
            Err(failed) => {
                primary_failure.get_or_insert(failed);
            }
        }
        if req.deadline <= crate::poll_clock::now() {
            break;
        }
    }
    Err(primary_failure.unwrap_or(Stop::Error(GatewayError::DeadlineExceeded)))
}
