//! The admin API: JSON CRUD over the store's governance entities (customers, teams, virtual
//! keys, providers), usage and budget resets, and recent request logs, served under
//! `/admin/` on the control port.
//!
//! Every request must carry `Authorization: Bearer <admin token>` (compared in constant
//! time). Errors use OpenAI's shape, `{"error":{"message","type","param","code"}}`. Request
//! bodies are limited to [`MAX_BODY_BYTES`] and parsed strictly: unknown fields are
//! rejected with a message naming them. Secrets never leave in full: a virtual key's secret
//! is returned once, by the `POST /admin/keys` that creates it, and provider API keys are
//! write-only (shown redacted).
//!
//! The store emits a config-change notification for every create/update/delete itself
//! (PostgreSQL `NOTIFY`, so other nodes hear it too); after every successful mutation this
//! module additionally wakes [`AdminState::changed`] so this node's shards reload at once.
//! The reference is docs/admin-api.md; docs/openapi.yaml describes the same endpoints.
//!
//! This file authenticates and reads the request; [`routes`] maps paths to handlers —
//! [`entities`] (CRUD) and [`usage`] (usage, budget resets, request logs) — which answer
//! through [`reply`] (replies and errors) and parse and show bodies through [`wire`].

mod entities;
mod reply;
mod routes;
mod usage;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use serde_json::Value;
use store::Store;

use reply::ApiError;
use routes::{dispatch, Resource};

/// Largest accepted request body (1 MiB); larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// `GET /admin/request-logs` without `limit`.
pub const DEFAULT_LOG_LIMIT: u32 = 100;
/// Larger `limit`s are clamped to this.
pub const MAX_LOG_LIMIT: u32 = 1000;

/// What the admin API needs from the coordinator.
pub struct AdminState {
    /// The governance store.
    pub store: Store,
    /// Bearer token required on every admin request (compared in constant time). An empty
    /// token disables the admin API: every request gets 401.
    pub admin_token: String,
    /// Woken after every successful mutation so the shards pick up the change.
    pub changed: Arc<tokio::sync::Notify>,
    /// This node's membership (PostgreSQL store), for `GET /admin/cluster`.
    pub fleet: Option<Arc<crate::coordinator::fleet::Fleet>>,
}

/// Handles any request whose path starts with `/admin/`.
///
/// The token is checked before the body is read; the body is then collected up to
/// [`MAX_BODY_BYTES`] (413 beyond) and passed to [`route`].
pub async fn handle(req: Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    if !authorized(auth.as_deref(), &state.admin_token) {
        return respond(&path, ApiError::unauthorized().reply());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return respond(&path, ApiError::too_large().reply());
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return respond(&path, ApiError::too_large().reply());
        }
        Err(e) => {
            tracing::debug!(error = %e, "admin: reading request body failed");
            let err = ApiError::invalid("could not read the request body", None, "invalid_body");
            return respond(&path, err.reply());
        }
    };
    let reply = route(
        &method,
        &path,
        query.as_deref(),
        auth.as_deref(),
        body,
        state,
    )
    .await;
    respond(&path, reply)
}

/// Turns a `(status, JSON)` reply into a response (with `Allow` on 405).
fn respond(path: &str, (status, body): (StatusCode, Value)) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(allow) = allowed_methods(path) {
            headers.insert(header::ALLOW, header::HeaderValue::from_static(allow));
        }
    }
    resp
}

/// The methods `path` accepts (the `Allow` header), or `None` for an unknown path.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    Resource::parse(path).map(|r| r.allowed())
}

/// The admin API proper: authenticates, routes and answers one request whose body has
/// already been read. `auth` is the raw `Authorization` header value.
pub async fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    auth: Option<&[u8]>,
    body: Bytes,
    state: &AdminState,
) -> (StatusCode, Value) {
    if !authorized(auth, &state.admin_token) {
        return ApiError::unauthorized().reply();
    }
    let Some(resource) = Resource::parse(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("no admin endpoint {path}"),
        )
        .reply();
    };
    if !resource.allows(method) {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!(
                "{method} is not allowed on {path} (allowed: {})",
                resource.allowed()
            ),
        )
        .reply();
    }
    let mutation = *method != Method::GET;
    match dispatch(method, resource, query, &body, state).await {
        Ok(reply) => {
            if mutation {
                tracing::info!(%method, path, status = reply.0.as_u16(), "admin change");
                state.changed.notify_one();
            }
            reply
        }
        Err(e) => e.reply(),
    }
}

/// Whether the `Authorization` header carries the admin token (`Bearer`, any case).
pub(super) fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    let Some(header) = header else {
        return false;
    };
    let Some(presented) = bearer(header) else {
        return false;
    };
    constant_time_eq(presented, token.as_bytes())
}

/// The credentials of a `Bearer` authorization header value.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if header.len() < SCHEME.len() || !header[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let creds = header[SCHEME.len()..].trim_ascii();
    (!creds.is_empty()).then_some(creds)
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
