//! One export: a JSON body POSTed to the collector over a fresh HTTP/1.1 connection (an
//! export happens once per interval, so a kept-alive connection would save little and need
//! reconnect logic). Bounded by [`EXPORT_TIMEOUT`], connecting included.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Request, Uri};

/// The longest one export may take before its batch is given up.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// POSTs `body` to `endpoint` (an `http://` URL, checked by the config) with `headers`.
pub async fn post(endpoint: &Uri, headers: &HeaderMap, body: Vec<u8>) -> Result<(), String> {
    tokio::time::timeout(EXPORT_TIMEOUT, send(endpoint, headers, body))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {EXPORT_TIMEOUT:?}")))
}

async fn send(endpoint: &Uri, headers: &HeaderMap, body: Vec<u8>) -> Result<(), String> {
    let host = endpoint.host().unwrap_or_default();
    let port = endpoint.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut sender = crate::coordinator::http::handshake(tcp).await?;
    let mut request = Request::post(endpoint.path_and_query().map_or("/", |p| p.as_str()))
        .header(HOST, endpoint.authority().map_or(host, |a| a.as_str()))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    request.headers_mut().extend(headers.clone());
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    // Read to the end: a collector's partial-success details are not acted on.
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}
