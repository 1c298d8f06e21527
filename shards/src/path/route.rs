//! Phase 3, route: the method and path pick a local answer (`/health`, `/ready`, the models
//! routes (`path/models.rs`), or a 404/405) or the API the client called. Local answers are
//! written here; an API request goes on through the rest of the path.

use crate::dialect::Inbound;
use crate::direct::{DirectApi, WrongMethod};
use crate::error::GatewayError;
use crate::http::request::Method;
use crate::http::response::push_json_response;
use crate::path::conn::ClientConn;
use crate::path::context::{RequestCtx, Scope};
use crate::path::models::ModelsRequest;
use crate::path::respond;

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    /// Answered by the gateway itself.
    Local(Local),
    /// Proxied: the client speaks this API.
    Api(Inbound),
}

/// The gateway's own answers.
#[derive(Debug)]
pub enum Local {
    Health,
    Ready,
    Models(ModelsRequest),
    Refused(GatewayError),
}

/// The route of a request by its path and method.
pub fn route(conn: &ClientConn, req: &RequestCtx<'_>) -> Route {
    let head = &req.head;
    let path = head.path(&conn.inbuf);
    let local = match path {
        b"/health" => Some(Local::Health),
        b"/ready" => Some(Local::Ready),
        _ => ModelsRequest::at(path).map(Local::Models),
    };
    let method = || String::from_utf8_lossy(&conn.inbuf[head.method_text.clone()]).into_owned();
    let path_text = || String::from_utf8_lossy(path).into_owned();
    let wrong_method = || {
        Route::Local(Local::Refused(GatewayError::MethodNotAllowed {
            method: method(),
            path: path_text(),
        }))
    };
    match (local, head.method) {
        (Some(local), Method::Get) => Route::Local(local),
        (Some(_), _) => wrong_method(),
        (None, method_kind) => match api(method_kind, path) {
            Some(Ok(inbound)) => Route::Api(inbound),
            Some(Err(WrongMethod)) => wrong_method(),
            None => Route::Local(Local::Refused(GatewayError::UnknownRoute {
                method: method(),
                path: path_text(),
            })),
        },
    }
}

/// The client API served at `path` for `method`, if any.
fn api(method: Method, path: &[u8]) -> Option<Result<Inbound, WrongMethod>> {
    let post_only = |inbound| {
        Some(match method {
            Method::Post => Ok(inbound),
            _ => Err(WrongMethod),
        })
    };
    match path {
        b"/v1/chat/completions" => post_only(Inbound::Chat),
        b"/v1/completions" => post_only(Inbound::Completions),
        b"/v1/embeddings" => post_only(Inbound::Embeddings),
        b"/v1/responses" => post_only(Inbound::Responses),
        b"/anthropic/v1/messages" => post_only(Inbound::AnthropicMessages),
        b"/anthropic/v1/messages/count_tokens" => post_only(Inbound::AnthropicCountTokens),
        _ => DirectApi::route(method, path).map(|api| api.map(Inbound::Direct)),
    }
}

/// Writes a local answer. Returns whether the connection may carry another request.
pub async fn answer(
    scope: Scope<'_>,
    conn: &mut ClientConn,
    req: &RequestCtx<'_>,
    local: Local,
) -> bool {
    let keep_alive = req.head.keep_alive;
    let listing;
    let (status, json) = match local {
        Local::Health => (200, &br#"{"status":"ok"}"#[..]),
        Local::Ready if scope.shard.node.is_ready() => {
            let bodies = &scope.shard.ready_bodies;
            match scope.shard.node.store_available() {
                true => (200, &bodies.ok[..]),
                false => (200, &bodies.store_unavailable[..]),
            }
        }
        Local::Ready => (503, &br#"{"status":"not ready"}"#[..]),
        Local::Models(models) => match models.answer(scope, conn) {
            Ok(body) => {
                listing = body;
                (200, &listing[..])
            }
            Err(err) => return refuse(scope, conn, &err, models.inbound(), keep_alive).await,
        },
        Local::Refused(err) => return refuse(scope, conn, &err, Inbound::Chat, keep_alive).await,
    };
    if status == 200 {
        scope.shard.stats.record_status(200);
    }
    let lines = conn.tracker.head_lines();
    push_json_response(&mut conn.out, status, json, keep_alive, &lines);
    conn.flush_out().await && keep_alive
}

async fn refuse(
    scope: Scope<'_>,
    conn: &mut ClientConn,
    err: &GatewayError,
    inbound: Inbound,
    keep_alive: bool,
) -> bool {
    scope.shard.stats.record_status(err.status());
    tracing::debug!(peer = %conn.peer, request_id = conn.tracker.echoed_id(), error = %err, "refused locally");
    respond::error(conn, err, inbound, keep_alive).await && keep_alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apis_by_path() {
        let post = |path| api(Method::Post, path);
        assert_eq!(post(b"/v1/chat/completions"), Some(Ok(Inbound::Chat)));
        assert_eq!(
            post(b"/anthropic/v1/messages"),
            Some(Ok(Inbound::AnthropicMessages))
        );
        assert_eq!(
            post(b"/anthropic/v1/messages/count_tokens"),
            Some(Ok(Inbound::AnthropicCountTokens))
        );
        assert_eq!(post(b"/v1/responses"), Some(Ok(Inbound::Responses)));
        assert_eq!(
            post(b"/v1/audio/speech"),
            Some(Ok(Inbound::Direct(DirectApi::Speech)))
        );
        assert_eq!(
            api(Method::Get, b"/v1/files/file-1/content"),
            Some(Ok(Inbound::Direct(DirectApi::Files)))
        );
        assert_eq!(
            api(Method::Get, b"/v1/chat/completions"),
            Some(Err(WrongMethod))
        );
        assert_eq!(post(b"/v1/chat/completions/"), None);
        assert_eq!(post(b"/"), None);
    }
}
