//! The control port's HTTP server (hyper on the coordinator's tokio runtime). Separate from
//! the data port so that scrapes and admin calls never compete with traffic, and so it can be
//! bound to loopback or a private network only.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::{admin, metrics, ControlState};

pub async fn serve(listener: tokio::net::TcpListener, state: Arc<ControlState>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<ControlState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path().starts_with("/admin/") {
        if let Some(admin) = &state.admin {
            return Ok(admin::handle(req, admin).await);
        }
    }
    let path = req.uri().path();
    let scrape = matches!(path, "/metrics" | "/latency");
    let (status, content_type, body) = match (req.method(), path) {
        _ if scrape && !may_scrape(&req, state.metrics_token.as_deref()) => (
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"{"error":{"message":"this endpoint requires `Authorization: Bearer <observability.metrics_token>`","type":"invalid_request_error","param":null,"code":"invalid_metrics_token"}}"#.to_owned(),
        ),
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state
                .view
                .get()
                .map(|view| {
                    metrics::render(
                        view,
                        state.fleet.as_deref(),
                        state.usage.as_deref(),
                        state.traces.as_deref(),
                        &state.catalog,
                    )
                })
                .unwrap_or_default(),
        ),
        (&Method::GET, "/latency") => (
            StatusCode::OK,
            "application/json",
            state
                .view
                .get()
                .map(|view| {
                    metrics::latency::quantiles(&metrics::latency::merge(&view.shards)).to_string()
                })
                .unwrap_or_default(),
        ),
        (&Method::GET, "/health") => (StatusCode::OK, "application/json", r#"{"status":"ok"}"#.to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":{"message":"no such control endpoint","type":"invalid_request_error","param":null,"code":"unknown_url"}}"#.to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(resp)
}

/// Whether a scrape may read the metrics: always without a token, else with it.
fn may_scrape(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    admin::authorized(header, token)
}
