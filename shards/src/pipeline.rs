//! The request path of one shard, in order (each stage reads the request and adds to what
//! the next one sees):
//!
//! 1. **route** — method and path pick a local answer (`/health`, `/ready`, `/v1/models`), an
//!    API endpoint, or a 404/405.
//! 2. **extract** — `model` and `stream` are read from the body without building a tree
//!    ([`crate::extract`]); malformed JSON is a 400 here.
//! 3. **resolve** — the model names a provider and the upstream model ([`crate::route`]);
//!    unknown models are a 404.
//! 4. **upstream request** — the client's bytes are forwarded with the model spliced in when
//!    its name changes, the provider's credentials added and gateway-owned headers removed.
//! 5. **exchange** — a pooled connection carries the request; the response head is awaited
//!    under the first-byte timeout while the client is watched for a disconnect
//!    ([`crate::exchange`]).
//! 6. **relay** — the response is copied to the client as it arrives, one write per upstream
//!    read; a stream that breaks ends with an error event ([`crate::relay`]).
//! 7. **release** — a connection whose response was read whole goes back to the pool.

use crate::conn::{BodyLocation, ClientConn};
use crate::error::GatewayError;
use crate::exchange::{exchange, Failure};
use crate::extract::extract_fields;
use crate::http::request::{Method, RequestHead};
use crate::http::response::{push_error_response, push_json_response};
use crate::http::upstream::{push_upstream_request_head, UpstreamHead};
use crate::relay::relay_response;
use crate::shard::Shard;
use crate::snapshot::Snapshot;

/// The OpenAI API endpoints the gateway proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The path below the provider's base URL.
    pub fn upstream_suffix(self) -> &'static [u8] {
        match self {
            Self::ChatCompletions => b"/chat/completions",
            Self::Completions => b"/completions",
            Self::Embeddings => b"/embeddings",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Ready,
    Models,
    Api(Endpoint),
    Unknown,
}

fn route(path: &[u8]) -> Route {
    match path {
        b"/health" => Route::Health,
        b"/ready" => Route::Ready,
        b"/v1/models" => Route::Models,
        b"/v1/chat/completions" => Route::Api(Endpoint::ChatCompletions),
        b"/v1/completions" => Route::Api(Endpoint::Completions),
        b"/v1/embeddings" => Route::Api(Endpoint::Embeddings),
        _ => Route::Unknown,
    }
}

/// Serves one request. Returns whether the connection may carry another.
pub async fn handle(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: &BodyLocation,
) -> bool {
    let keep_alive = head.keep_alive;
    let path = head.path(&conn.inbuf);
    let route = route(path);
    let answer = match (route, head.method) {
        (Route::Health, Method::Get) => Ok(&br#"{"status":"ok"}"#[..]),
        (Route::Ready, Method::Get) if shard.node.is_ready() => Ok(&br#"{"status":"ready"}"#[..]),
        (Route::Ready, Method::Get) => {
            push_json_response(&mut conn.out, 503, br#"{"status":"not ready"}"#, keep_alive);
            return conn.flush_out().await && keep_alive;
        }
        (Route::Models, Method::Get) => Ok(&snapshot.models_body[..]),
        (Route::Api(endpoint), Method::Post) => {
            return proxy(shard, snapshot, conn, head, body, endpoint).await
        }
        (Route::Unknown, _) => Err(GatewayError::UnknownRoute {
            method: String::from_utf8_lossy(&conn.inbuf[head.method_text.clone()]).into_owned(),
            path: String::from_utf8_lossy(path).into_owned(),
        }),
        _ => Err(GatewayError::MethodNotAllowed {
            method: String::from_utf8_lossy(&conn.inbuf[head.method_text.clone()]).into_owned(),
            path: String::from_utf8_lossy(path).into_owned(),
        }),
    };
    match answer {
        Ok(json) => push_json_response(&mut conn.out, 200, json, keep_alive),
        Err(err) => {
            tracing::debug!(peer = %conn.peer, error = %err, "no such route");
            push_error_response(&mut conn.out, &err, keep_alive);
        }
    }
    conn.flush_out().await && keep_alive
}

async fn proxy(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: &BodyLocation,
    endpoint: Endpoint,
) -> bool {
    match forward(shard, snapshot, conn, head, body, endpoint).await {
        Ok(keep_alive) => keep_alive && head.keep_alive,
        Err(Failure::ClientGone) => false,
        Err(Failure::Respond(err)) => {
            if err.source() == crate::error::ErrorSource::Client {
                tracing::info!(peer = %conn.peer, status = err.status(), error = %err, "bad request");
            } else {
                tracing::warn!(peer = %conn.peer, status = err.status(), error = %err, "upstream failure");
            }
            conn.out.clear();
            push_error_response(&mut conn.out, &err, head.keep_alive);
            conn.flush_out().await && head.keep_alive
        }
    }
}

/// Stages 2–7. An `Err` means nothing has reached the client yet.
async fn forward(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: &BodyLocation,
    endpoint: Endpoint,
) -> Result<bool, Failure> {
    let body = match body {
        BodyLocation::InBuf(r) => &conn.inbuf[r.clone()],
        BodyLocation::Decoded => &conn.decoded_body[..],
    };
    let fields = extract_fields(body)?;
    let target = snapshot
        .models
        .resolve(&fields.model)
        .ok_or_else(|| GatewayError::ModelNotFound(fields.model.to_string()))?;
    let provider_id = target.provider;
    let provider = &snapshot.providers[provider_id];

    let target_path = &conn.inbuf[head.target.clone()];
    let query = memchr::memchr(b'?', target_path).map_or(&b""[..], |q| &target_path[q..]);
    let upstream_head = UpstreamHead {
        host: &provider.host_header,
        fixed_headers: &provider.fixed_headers,
    };
    let out = &mut conn.out;
    out.clear();
    let path = [
        provider.base_path.as_bytes(),
        endpoint.upstream_suffix(),
        query,
    ];
    if target.model == fields.model {
        push_upstream_request_head(
            out,
            b"POST",
            &path,
            &upstream_head,
            &conn.inbuf,
            &conn.spans,
            Some(body.len()),
        );
        out.extend_from_slice(body);
    } else {
        let literal = serde_json::to_string(target.model).unwrap_or_default();
        let span = fields.model_span.clone();
        let len = body.len() - span.len() + literal.len();
        push_upstream_request_head(
            out,
            b"POST",
            &path,
            &upstream_head,
            &conn.inbuf,
            &conn.spans,
            Some(len),
        );
        out.extend_from_slice(&body[..span.start]);
        out.extend_from_slice(literal.as_bytes());
        out.extend_from_slice(&body[span.end..]);
    }

    let limits = &snapshot.limits;
    let (upstream, response) = exchange(shard, provider_id, provider, conn, limits).await?;
    let outcome =
        relay_response(conn, upstream, &response, provider, limits, head.keep_alive).await;
    if let Some(upstream) = outcome.reusable_upstream {
        shard.pool.checkin(provider_id, provider, upstream);
    }
    Ok(outcome.client_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"/v1/chat/completions"),
            Route::Api(Endpoint::ChatCompletions)
        );
        assert_eq!(route(b"/v1/models"), Route::Models);
        assert_eq!(route(b"/v1/chat/completions/"), Route::Unknown);
        assert_eq!(route(b"/"), Route::Unknown);
    }
}
