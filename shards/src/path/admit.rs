//! Phase 7, admit: a governed request with a key takes one request, its token estimate and
//! a budget slot from this shard's leases of every limit of its key, team and customer
//! ([`crate::governance::admit`]); a limit that is spent is a 429 (with `Retry-After` and
//! `x-ratelimit-*` headers), a spent budget a 402. Reads `caller`, `ask`; adds `admission`,
//! an RAII ticket that gives back what it holds unless the settle phase charges it.

use crate::governance::admit;
use crate::path::context::{Phase, RequestCtx, Scope};
use crate::path::outcome::Stop;

pub async fn admit(scope: Scope<'_>, req: &mut RequestCtx<'_>) -> Result<(), Stop> {
    let (Some(gov), Some(key)) = (scope.shard.gov.as_deref(), &req.caller.key) else {
        return Ok(());
    };
    req.times.enter(Phase::Admit);
    let admission = admit::admit(
        gov,
        scope.shard.index,
        key,
        req.ask.token_estimate,
        req.caller.now_unix,
    )
    .await?;
    req.admission = Some(admission);
    Ok(())
}
