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

pub fn authenticate(
    scope: Scope<'_>,
    conn: &ClientConn,
    req: &mut RequestCtx<'_>,
) -> Result<(), Stop> {
    let Some(gov) = scope.shard.gov.as_deref() else {
        return Ok(());
    };
    req.times.enter(Phase::Authenticate);
    // A guard, not an `Arc` clone: no atomic write on a cache line every shard shares.
    let snapshot = gov.snapshot.load();
    // Wall-clock time matters only to governance (key expiry, limit windows).
    let now = clock::unix_now();
    req.caller.now_unix = now;
    // Set before the key is judged, so that a refused request is still logged.
    let snapshot = req.caller.snapshot.insert(snapshot);
    req.caller.key_hash = request::authenticate(
        snapshot,
        request::presented_key(&conn.inbuf, &conn.spans),
        gov.node_credential.as_ref(),
        now,
    )?;
    Ok(())
}
