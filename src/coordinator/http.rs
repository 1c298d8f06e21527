//! The coordinator's outgoing HTTP/1.1 (hyper on tokio): one connection's handshake, shared
//! by the trace exporter and the model catalog's fetches.

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// An HTTP/1.1 client connection over `io`, driven by a task of its own until `sender`
/// drops.
pub async fn handshake<IO, B>(io: IO) -> Result<SendRequest<B>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}
