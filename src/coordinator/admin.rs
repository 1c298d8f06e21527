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

mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use store::{ConfigKind, Store};
use vocab::{BudgetPeriod, EntityKind, EntityRef, NanoUsd};

use wire::{
    parse_body, parse_empty_body, CustomerBody, KeyBody, KeyView, ProviderCreateBody,
    ProviderUpdateBody, ProviderView, TeamBody,
};

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

/// The entity collections under `/admin/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Customers,
    Teams,
    Keys,
    Providers,
}

/// A parsed admin path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource<'a> {
    /// `/admin/{collection}`
    List(Collection),
    /// `/admin/{collection}/{id}`
    Item(Collection, &'a str),
    /// `/admin/usage/{kind}/{id}`
    Usage(&'a str, &'a str),
    /// `/admin/budgets/{kind}/{id}/reset`
    BudgetReset(&'a str, &'a str),
    /// `/admin/request-logs`
    RequestLogs,
}

impl<'a> Resource<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix("/admin/")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        let collection = |s: &str| {
            Some(match s {
                "customers" => Collection::Customers,
                "teams" => Collection::Teams,
                "keys" => Collection::Keys,
                "providers" => Collection::Providers,
                _ => return None,
            })
        };
        Some(match segs.as_slice() {
            ["request-logs"] => Resource::RequestLogs,
            ["usage", kind, id] => Resource::Usage(kind, id),
            ["budgets", kind, id, "reset"] => Resource::BudgetReset(kind, id),
            [c] => Resource::List(collection(c)?),
            [c, id] => Resource::Item(collection(c)?, id),
            _ => return None,
        })
    }

    fn allowed(self) -> &'static str {
        match self {
            Resource::List(_) => "GET, POST",
            Resource::Item(..) => "GET, PUT, DELETE",
            Resource::Usage(..) | Resource::RequestLogs => "GET",
            Resource::BudgetReset(..) => "POST",
        }
    }

    fn allows(self, method: &Method) -> bool {
        self.allowed().split(", ").any(|m| m == method.as_str())
    }
}

type Reply = (StatusCode, Value);

async fn dispatch(
    method: &Method,
    resource: Resource<'_>,
    query: Option<&str>,
    body: &[u8],
    state: &AdminState,
) -> Result<Reply, ApiError> {
    let store = &state.store;
    match (resource, method) {
        (Resource::List(c), &Method::GET) => list(store, c).await,
        (Resource::List(c), &Method::POST) => create(store, c, body).await,
        (Resource::Item(c, id), &Method::GET) => get(store, c, id).await,
        (Resource::Item(c, id), &Method::PUT) => update(store, c, id, body).await,
        (Resource::Item(c, id), &Method::DELETE) => delete(store, c, id).await,
        (Resource::Usage(kind, id), _) => usage(store, entity(kind, id)?).await,
        (Resource::BudgetReset(kind, id), _) => {
            parse_empty_body(body)?;
            reset_budget(store, entity(kind, id)?).await
        }
        (Resource::RequestLogs, _) => request_logs(store, query).await,
        // `route` only dispatches methods the resource allows.
        _ => Err(ApiError::internal()),
    }
}

fn ok(v: impl serde::Serialize) -> Result<Reply, ApiError> {
    Ok((StatusCode::OK, to_json(v)?))
}

fn created(v: impl serde::Serialize) -> Result<Reply, ApiError> {
    Ok((StatusCode::CREATED, to_json(v)?))
}

fn to_json(v: impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        tracing::error!(error = %e, "admin: serializing a response failed");
        ApiError::internal()
    })
}

fn list_of<T: serde::Serialize>(items: Vec<T>) -> Result<Reply, ApiError> {
    ok(json!({ "object": "list", "data": to_json(items)? }))
}

fn not_found(kind: &'static str, id: &str) -> ApiError {
    ApiError::from(store::Error::NotFound {
        kind,
        id: id.to_owned(),
    })
}

async fn list(store: &Store, c: Collection) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => list_of(store.list_customers().await?),
        Collection::Teams => list_of(store.list_teams().await?),
        Collection::Keys => list_of(store.list_keys().await?.iter().map(KeyView::from).collect()),
        Collection::Providers => list_of(
            store
                .list_providers()
                .await?
                .iter()
                .map(ProviderView::from)
                .collect(),
        ),
    }
}

async fn get(store: &Store, c: Collection, id: &str) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => match store.get_customer(id).await? {
            Some(v) => ok(v),
            None => Err(not_found("customer", id)),
        },
        Collection::Teams => match store.get_team(id).await? {
            Some(v) => ok(v),
            None => Err(not_found("team", id)),
        },
        Collection::Keys => match store.get_key(id).await? {
            Some(v) => ok(KeyView::from(&v)),
            None => Err(not_found("key", id)),
        },
        Collection::Providers => match store.get_provider(id).await? {
            Some(v) => ok(ProviderView::from(&v)),
            None => Err(not_found("provider", id)),
        },
    }
}

async fn create(store: &Store, c: Collection, body: &[u8]) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => {
            let input = parse_body::<CustomerBody>(body)?.into_input()?;
            created(store.create_customer(&input).await?)
        }
        Collection::Teams => {
            let input = parse_body::<TeamBody>(body)?.into_input()?;
            let team = store
                .create_team(&input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("customer_id"))?;
            created(team)
        }
        Collection::Keys => {
            let input = parse_body::<KeyBody>(body)?.into_input()?;
            let made = store
                .create_key(&input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("team_id"))?;
            created(json!({ "key": to_json(KeyView::from(&made.key))?, "secret": made.secret }))
        }
        Collection::Providers => {
            let (name, input) = parse_body::<ProviderCreateBody>(body)?.into_input()?;
            created(ProviderView::from(
                &store.create_provider(&name, &input).await?,
            ))
        }
    }
}

async fn update(store: &Store, c: Collection, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    match c {
        Collection::Customers => {
            let input = parse_body::<CustomerBody>(body)?.into_input()?;
            ok(store.update_customer(id, &input).await?)
        }
        Collection::Teams => {
            let input = parse_body::<TeamBody>(body)?.into_input()?;
            let team = store
                .update_team(id, &input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("customer_id"))?;
            ok(team)
        }
        Collection::Keys => {
            let input = parse_body::<KeyBody>(body)?.into_input()?;
            let key = store
                .update_key(id, &input)
                .await
                .map_err(|e| ApiError::from(e).reference_param("team_id"))?;
            ok(KeyView::from(&key))
        }
        Collection::Providers => {
            let parsed = parse_body::<ProviderUpdateBody>(body)?;
            // An omitted `secret` keeps the stored one (it cannot be read back, so a
            // full replace would silently drop it); `null` clears it.
            let keep = match parsed.secret {
                Some(_) => None,
                None => Some(
                    store
                        .get_provider(id)
                        .await?
                        .ok_or_else(|| not_found("provider", id))?
                        .secret,
                ),
            };
            let input = parsed.into_input(keep)?;
            ok(ProviderView::from(
                &store.update_provider(id, &input).await?,
            ))
        }
    }
}

async fn delete(store: &Store, c: Collection, id: &str) -> Result<Reply, ApiError> {
    let object = match c {
        Collection::Customers => {
            store.delete_customer(id).await?;
            "customer"
        }
        Collection::Teams => {
            store.delete_team(id).await?;
            "team"
        }
        Collection::Keys => {
            store.delete_key(id).await?;
            "key"
        }
        Collection::Providers => {
            store.delete_provider(id).await?;
            "provider"
        }
    };
    ok(json!({ "id": id, "object": object, "deleted": true }))
}

fn entity(kind: &str, id: &str) -> Result<EntityRef, ApiError> {
    let kind = EntityKind::parse(kind).ok_or_else(|| {
        ApiError::invalid(
            format!("unknown entity kind {kind:?} (expected key, team or customer)"),
            Some("kind".into()),
            "invalid_value",
        )
    })?;
    Ok(EntityRef {
        kind,
        id: id.to_owned(),
    })
}

async fn usage(store: &Store, entity: EntityRef) -> Result<Reply, ApiError> {
    let now = store::now_unix();
    let budget = store.entity_budget(&entity).await?;
    let period = budget.map_or(BudgetPeriod::Never, |b| b.period);
    let period_start = period.start(now);
    let usage = store.usage(&entity, period_start).await?;
    let (spent, requests, prompt, completion, reset_at) =
        usage.map_or((NanoUsd::ZERO, 0, 0, 0, None), |u| {
            (
                u.spent_nanos,
                u.requests,
                u.prompt_tokens,
                u.completion_tokens,
                u.reset_at,
            )
        });
    let remaining = budget.map(|b| b.limit_nanos.saturating_sub(spent));
    ok(json!({
        "entity": entity,
        "budget": budget,
        "period_start": period_start,
        "spent_nanos": spent,
        "spent_usd": spent.to_string(),
        "remaining_nanos": remaining,
        "remaining_usd": remaining.map(|r| r.to_string()),
        "limit_usd": budget.map(|b| b.limit_nanos.to_string()),
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reset_at": reset_at,
    }))
}

async fn reset_budget(store: &Store, entity: EntityRef) -> Result<Reply, ApiError> {
    let now = store::now_unix();
    let before = store.reset_budget(&entity, now).await?;
    // The store does not announce resets; tell every node to re-read the entity (and so
    // its spend) the way it does after an edit.
    let kind = match entity.kind {
        EntityKind::Key => ConfigKind::Key,
        EntityKind::Team => ConfigKind::Team,
        EntityKind::Customer => ConfigKind::Customer,
    };
    if let Err(e) = store.notify_config_changed(kind, &entity.id).await {
        tracing::warn!(error = %e, id = %entity.id, "admin: announcing a budget reset failed");
    }
    ok(json!({
        "reset": true,
        "entity": entity,
        "reset_at": now,
        "spent_before_nanos": before,
        "spent_before_usd": before.to_string(),
    }))
}

async fn request_logs(store: &Store, query: Option<&str>) -> Result<Reply, ApiError> {
    let mut limit = DEFAULT_LOG_LIMIT;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "limit" {
            limit = parse_limit(v)?;
        }
    }
    list_of(store.recent_request_logs(limit).await?)
}

/// A positive `limit`, clamped to [`MAX_LOG_LIMIT`].
fn parse_limit(v: &str) -> Result<u32, ApiError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => {
            Ok(u32::try_from(n.min(u64::from(MAX_LOG_LIMIT))).unwrap_or(MAX_LOG_LIMIT))
        }
        _ => Err(ApiError::invalid(
            format!(
                "limit must be a positive integer (at most {MAX_LOG_LIMIT} is used), got {v:?}"
            ),
            Some("limit".into()),
            "invalid_value",
        )),
    }
}

/// Whether the `Authorization` header carries the admin token (`Bearer`, any case).
fn authorized(header: Option<&[u8]>, token: &str) -> bool {
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

/// An error answered in OpenAI's shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
    param: Option<String>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
        }
    }

    fn invalid(message: impl Into<String>, param: Option<String>, code: &'static str) -> Self {
        Self {
            param,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                message,
            )
        }
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_admin_token",
            "missing or invalid admin token (send Authorization: Bearer <admin token>)",
        )
    }

    fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            "internal error (see the gateway's log)",
        )
    }

    /// Names `param` on an invalid-reference error (the store cannot tell which field).
    fn reference_param(mut self, param: &str) -> Self {
        if self.code == "invalid_reference" {
            self.param = Some(param.to_owned());
        }
        self
    }

    fn reply(self) -> Reply {
        (
            self.status,
            json!({ "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
        )
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        use store::Error as E;
        match e {
            E::NotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "not_found",
                e.to_string(),
            ),
            E::Conflict(_) => Self::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "conflict",
                e.to_string(),
            ),
            E::InUse { .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "in_use",
                format!("{e}: delete or detach its children first"),
            ),
            E::InvalidReference(_) => Self::invalid(e.to_string(), None, "invalid_reference"),
            E::OutOfRange(field) => Self::invalid(
                format!("{field} is too large (at most {})", i64::MAX),
                Some(field.to_owned()),
                "invalid_value",
            ),
            E::NoSecretKey => {
                tracing::error!(error = %e, "admin: provider secret needs a secret key");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "secret_key_missing",
                    e.to_string(),
                )
            }
            other => {
                tracing::error!(error = %other, "admin: store error");
                Self::internal()
            }
        }
    }
}
