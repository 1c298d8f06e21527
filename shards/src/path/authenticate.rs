//! Phase 4, authenticate: when governance is on, the virtual key the request presents is
//! found by its hash in the governance snapshot and checked (active, not expired). A missing
//! key where keys are required is a 401, an unknown one a 401, an unusable one a 403 — all
//! before anything of the body is read. Adds `caller`.
//!
//! Hot-path cost when governance is on: one SHA-256 and one hash lookup (later phases look
//! the key up again by its hash, a few nanoseconds each, rather than share an `Arc` of it);
//! otherwise nothing.

use crate::clock;
use crate::governance::request;
use crate::path::conn::ClientConn;
use crate::path::context::{Phase, RequestCtx, Scope};
use crate::path::outcome::Stop;

pub fn authenticate<'s>(
    scope: Scope<'s>,
    conn: &ClientConn,
    req: &mut RequestCtx<'s>,
) -> Result<(), Stop> {
    let (Some(gov), Some(snapshot)) = (scope.shard.gov.as_deref(), scope.gov) else {
        return Ok(());
    };
    req.times.enter(Phase::Authenticate);
    // Wall-clock time matters only to governance (key expiry, limit windows).
    let now = clock::unix_now();
    req.caller.now_unix = now;
    // Set before the key is judged, so that a refused request is still logged.
    req.caller.snapshot = Some(snapshot);
    req.caller.key_hash = request::authenticate(
        snapshot,
        request::presented_key(&conn.inbuf, &conn.spans),
        gov.node_credential.as_ref(),
        now,
    )?;
    Ok(())
}
