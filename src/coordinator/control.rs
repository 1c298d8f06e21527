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
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state
                .view
                .get()
                .map(|view| metrics::render(view, state.fleet.as_deref()))
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
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(resp)
}
