//! One provider's catalog, fetched over HTTP/1.1 (hyper on tokio; rustls through
//! tokio-rustls with the provider's own TLS configuration — the roots and `ca_file` its
//! requests use). Pages are read in turn on one kept-alive connection; the whole fetch is
//! bounded by the configured timeout.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use shards::catalog::CatalogModel;
use shards::dialect::Wire;
use shards::snapshot::Provider;

use super::protocol::{self, ANTHROPIC_VERSION, MAX_PAGES};
use crate::coordinator::http::handshake;

/// Largest catalog page read (OpenRouter's, the largest known, is about 1 MiB).
const MAX_PAGE_BYTES: usize = 16 << 20;

/// How one fetch ended.
#[derive(Debug, PartialEq)]
pub enum Fetched {
    Models(Vec<CatalogModel>),
    /// The provider has no catalog to list (Azure without deployment listing).
    Unsupported,
    Failed(String),
}

/// Fetches `provider`'s whole catalog within `timeout`.
pub async fn catalog(provider: &Provider, timeout: Duration) -> Fetched {
    match tokio::time::timeout(timeout, pages(provider)).await {
        Ok(fetched) => fetched,
        Err(_) => Fetched::Failed(format!("no complete catalog within {timeout:?}")),
    }
}

async fn pages(p: &Provider) -> Fetched {
    let mut sender = match connect(p).await {
        Ok(sender) => sender,
        Err(e) => return Fetched::Failed(e),
    };
    let headers = headers(p);
    let mut models = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let Some(path) = protocol::page_path(
            p.wire,
            &p.base_path,
            p.api_version.as_deref(),
            cursor.as_deref(),
        ) else {
            return Fetched::Unsupported;
        };
        let (status, body) = match get(&mut sender, p, &path, &headers).await {
            Ok(answer) => answer,
            Err(e) => return Fetched::Failed(e),
        };
        if protocol::unsupported(p.wire, status) {
            return Fetched::Unsupported;
        }
        if !(200..300).contains(&status) {
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Fetched::Failed(format!("{path} answered {status}: {excerpt}"));
        }
        let page = match protocol::parse_page(p.wire, &body) {
            Ok(page) => page,
            Err(e) => return Fetched::Failed(e),
        };
        models.extend(page.models);
        match page.next {
            Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
            _ => return Fetched::Models(models),
        }
    }
    Fetched::Failed(format!("more than {MAX_PAGES} catalog pages"))
}

/// The provider's credentials and fixed headers, as on its API requests, plus the API
/// version Anthropic requires on every request.
fn headers(p: &Provider) -> Vec<(String, String)> {
    let lines = p.keys.first().map(|k| &k.header_line[..]).into_iter();
    let mut out: Vec<(String, String)> = lines
        .chain([&p.fixed_headers[..]])
        .flat_map(|block| block.split(|b| *b == b'\n'))
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?.trim_end();
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    let has = |out: &[(String, String)], name: &str| {
        out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if p.wire == Wire::Anthropic && !has(&out, "anthropic-version") {
        out.push(("anthropic-version".into(), ANTHROPIC_VERSION.into()));
    }
    out
}

async fn connect(p: &Provider) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tcp = dial(&p.addrs).await?;
    let sender = match (&p.tls, &p.tls_config) {
        (Some((_, server_name)), Some(config)) => {
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            handshake(tls).await?
        }
        _ => handshake(tcp).await?,
    };
    Ok(sender)
}

async fn dial(addrs: &[SocketAddr]) -> Result<tokio::net::TcpStream, String> {
    let mut last = "the provider's host did not resolve at start".to_owned();
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    p: &Provider,
    path: &str,
    headers: &[(String, String)],
) -> Result<(u16, Bytes), String> {
    let mut request = Request::get(path).header(hyper::header::HOST, &p.host_header);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("{path}: reading the body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(yaml: &str) -> Provider {
        let config = crate::config::parse(yaml, "test").unwrap();
        config.snapshot().unwrap().providers.remove(0)
    }

    #[test]
    fn anthropic_requests_carry_an_api_version_once() {
        let p = provider(
            "providers:\n  an:\n    kind: anthropic\n    base_url: http://127.0.0.1:9/v1\n    headers: {x-team: blue}\n",
        );
        assert_eq!(
            headers(&p),
            [
                ("x-team".to_owned(), "blue".to_owned()),
                ("anthropic-version".to_owned(), ANTHROPIC_VERSION.to_owned())
            ]
        );
        let pinned = provider(
            "providers:\n  an:\n    kind: anthropic\n    base_url: http://127.0.0.1:9/v1\n    headers: {anthropic-version: 2099-01-01}\n",
        );
        assert_eq!(
            headers(&pinned),
            [("anthropic-version".to_owned(), "2099-01-01".to_owned())]
        );
    }
}
