//! The semantic cache's embeddings, asked of this node's own API: `POST /v1/embeddings` on
//! the node's listener, over loopback, with the node's own credential. So the embedding
//! model is any model the node serves — routed, balanced, retried, failed over and logged
//! like every request — and no provider's wire is spoken twice. Connections are kept and
//! reused (one request at a time each, as HTTP/1.1 allows).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use serde::Deserialize;

use crate::coordinator::http::handshake;

/// Largest embeddings answer read (a 3072-dimension vector in JSON is ~70 KB).
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Idle connections kept for the next embeddings.
const IDLE: usize = 16;

/// How to reach the node's own API.
pub struct EmbedderPlan {
    /// The listener's address, known once the shards are listening.
    pub listen: Arc<OnceLock<SocketAddr>>,
    /// The listener's TLS certificate is trusted (pinned) when it speaks TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The node's own credential (see `shards::governance::Governance::node_credential`).
    pub credential: String,
    pub model: String,
    pub dimensions: Option<u32>,
}

pub struct Embedder {
    plan: EmbedderPlan,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
}

impl Embedder {
    pub fn new(plan: EmbedderPlan) -> Self {
        Self {
            plan,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The embedding of `text`.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let mut body = serde_json::json!({
            "model": self.plan.model,
            "input": text,
            "encoding_format": "float",
        });
        if let Some(d) = self.plan.dimensions {
            body["dimensions"] = d.into();
        }
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
        let mut sender = self.connection().await?;
        let request = Request::post("/v1/embeddings")
            .header(hyper::header::HOST, "localhost")
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.plan.credential),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("embeddings request failed: {e}"))?;
        let status = response.status().as_u16();
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the embeddings answer: {e}"))?
            .to_bytes();
        self.give_back(sender);
        if status != 200 {
            let excerpt = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
            return Err(format!(
                "the embeddings request answered {status}: {excerpt}"
            ));
        }
        let answer: Answer = serde_json::from_slice(&answer)
            .map_err(|e| format!("the embeddings answer cannot be read: {e}"))?;
        answer
            .data
            .into_iter()
            .next()
            .map(|item| item.embedding)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| "the embeddings answer holds no vector".into())
    }

    /// An idle connection that is still open, or a new one.
    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => return self.connect().await,
            }
        }
    }

    fn give_back(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let addr = *self
            .plan
            .listen
            .get()
            .ok_or("the node is not listening yet")?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to the node's own listener {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.plan.tls {
            Some(config) => {
                let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with the node's own listener: {e}"))?;
                handshake(tls).await
            }
            None => handshake(tcp).await,
        }
    }
}

/// The address the node's own requests go to: the listener's, with an unspecified address
/// (all interfaces) replaced by the loopback one of its family.
pub fn loopback(listening: SocketAddr) -> SocketAddr {
    let mut addr = listening;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listener_is_reached_on_loopback() {
        let at = |s: &str| loopback(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(at("[::]:8080"), "[::1]:8080");
        assert_eq!(at("10.1.2.3:80"), "10.1.2.3:80");
    }
}
