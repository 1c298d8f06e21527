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
//! 5. **failover** — targets are tried in order (the model, its fallbacks), each behind its
//!    circuit breaker and admission gate, with key rotation and retries ([`crate::failover`]);
//!    for each attempt a pooled connection carries the request and the response head is
//!    awaited under the first-byte timeout while the client is watched for a disconnect
//!    ([`crate::exchange`]).
//! 6. **relay** — the response is copied to the client as it arrives, one write per upstream
//!    read; a stream that breaks ends with an error event ([`crate::relay`]).
//! 7. **release** — a connection whose response was read whole goes back to the pool.

use std::time::{Duration, Instant};

use crate::conn::{BodyLocation, ClientConn};
use crate::error::GatewayError;
use crate::exchange::Failure;
use crate::extract::extract_fields;
use crate::failover::{self, Ask};
use crate::http::request::{Method, RequestHead};
use crate::http::response::{push_error_response, push_json_response};
use crate::http::upstream::{push_upstream_request_head, UpstreamHead};
use crate::shard::Shard;
use crate::snapshot::{Provider, Snapshot};

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
        Ok(json) => {
            shard.stats.record_status(200);
            push_json_response(&mut conn.out, 200, json, keep_alive);
        }
        Err(err) => {
            shard.stats.record_status(err.status());
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
        Err(Failure::ClientGone) => {
            shard.stats.client_gone.incr();
            false
        }
        Err(Failure::Respond(err)) => {
            if err.source() == crate::error::ErrorSource::Client {
                tracing::info!(peer = %conn.peer, status = err.status(), error = %err, "bad request");
            } else {
                tracing::warn!(peer = %conn.peer, status = err.status(), error = %err, "request failed");
            }
            shard.stats.record_status(err.status());
            conn.out.clear();
            push_error_response(&mut conn.out, &err, head.keep_alive);
            conn.flush_out().await && head.keep_alive
        }
    }
}

/// The value of a client request header, if present.
fn client_header<'b>(conn: &'b ClientConn, name: &str) -> Option<&'b [u8]> {
    conn.spans
        .iter()
        .find(|h| conn.inbuf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| &conn.inbuf[h.value.clone()])
}

/// Stages 2–4, then the failover loop. An `Err` means nothing has reached the client yet.
async fn forward(
    shard: &Shard,
    snapshot: &Snapshot,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: &BodyLocation,
    endpoint: Endpoint,
) -> Result<bool, Failure> {
    let body_bytes = match body {
        BodyLocation::InBuf(r) => &conn.inbuf[r.clone()],
        BodyLocation::Decoded => &conn.decoded_body[..],
    };
    let fields = extract_fields(body_bytes)?;
    let model_span = fields.model_span.clone();
    // Owned, because the client buffers are borrowed mutably by every attempt below.
    let requested = fields.model.into_owned();
    let per_request_fallbacks = client_header(conn, "x-ringgate-fallbacks")
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let timeout_override = client_header(conn, "x-ringgate-timeout-ms")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());

    let primary = snapshot
        .models
        .resolve(&requested)
        .ok_or_else(|| GatewayError::ModelNotFound(requested.clone()))?;
    let mut targets = vec![primary.clone()];
    let configured = snapshot.fallbacks.get(&requested).into_iter().flatten();
    let listed = per_request_fallbacks
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty());
    for name in configured.map(String::as_str).chain(listed) {
        match snapshot.models.resolve(name) {
            Some(t) if !targets.contains(&t) => targets.push(t),
            Some(_) => {}
            None => tracing::debug!(model = name, "fallback names no configured model; skipped"),
        }
    }

    let timeouts = &snapshot.providers[primary.provider].timeouts;
    let total = timeout_override.map_or(timeouts.total, |ms| {
        Duration::from_millis(ms).min(timeouts.max_total)
    });
    let ask = Ask {
        head,
        body,
        endpoint,
        requested: &requested,
        model_span,
        deadline: Instant::now() + total,
    };
    failover::serve(shard, snapshot, conn, &ask, &targets).await
}

/// Writes the upstream request for one attempt into `conn.out`: the client's bytes with the
/// model spliced when its name changes, the provider's headers and the chosen key's line.
pub fn build_upstream_request(
    conn: &mut ClientConn,
    ask: &Ask<'_>,
    provider: &Provider,
    key_line: Option<&[u8]>,
    model: &str,
) {
    let body = match ask.body {
        BodyLocation::InBuf(r) => &conn.inbuf[r.clone()],
        BodyLocation::Decoded => &conn.decoded_body[..],
    };
    let target_path = &conn.inbuf[ask.head.target.clone()];
    let query = memchr::memchr(b'?', target_path).map_or(&b""[..], |q| &target_path[q..]);
    let upstream_head = UpstreamHead {
        host: &provider.host_header,
        fixed_headers: &provider.fixed_headers,
        key_line: key_line.unwrap_or_default(),
    };
    let out = &mut conn.out;
    out.clear();
    let path = [
        provider.base_path.as_bytes(),
        ask.endpoint.upstream_suffix(),
        query,
    ];
    if model == ask.requested {
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
        let literal = serde_json::to_string(model).unwrap_or_default();
        let span = ask.model_span.clone();
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
