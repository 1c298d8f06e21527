//! One shard: the state a core's thread owns (its snapshot handle, upstream pool) and its
//! accept loop. Everything here is `!Send` on purpose; shards share nothing but the
//! read-only snapshot and the node's ready flag.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};
use monoio_rustls::TlsAcceptor;

use crate::conn;
use crate::io::Stream;
use crate::pool::Pool;
use crate::snapshot::{NodeState, Snapshot};

/// How often idle upstream connections past their timeout are closed.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Shard {
    pub index: usize,
    /// The snapshot requests are served from. An `Rc` around the shared `Arc` so taking it per
    /// request is a non-atomic increment on this core's memory.
    current: RefCell<Rc<Arc<Snapshot>>>,
    pub node: Arc<NodeState>,
    pub pool: Pool,
}

impl Shard {
    pub fn new(index: usize, snapshot: Arc<Snapshot>, node: Arc<NodeState>) -> Self {
        let pool = Pool::new(snapshot.providers.len());
        Self {
            index,
            current: RefCell::new(Rc::new(snapshot)),
            node,
            pool,
        }
    }

    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        self.current.borrow().clone()
    }
}

/// Accepts connections on this shard's listener forever.
pub async fn run(shard: Rc<Shard>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    monoio::spawn(sweep_pool(shard.clone()));
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                monoio::spawn(serve_client(shard.clone(), tcp, peer, tls.clone()));
            }
            Err(e) => {
                // Usually EMFILE/ENFILE: back off instead of spinning on the error.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_client(
    shard: Rc<Shard>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let stream = match tls {
        None => Stream::plain(tcp),
        Some(acceptor) => {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            match monoio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Stream::server_tls(tls, fd),
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    conn::serve(shard, stream, peer).await;
}

async fn sweep_pool(shard: Rc<Shard>) {
    loop {
        monoio::time::sleep(POOL_SWEEP_INTERVAL).await;
        let snapshot = shard.snapshot();
        shard.pool.sweep(&snapshot.providers);
    }
}
