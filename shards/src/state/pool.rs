//! Per-shard keep-alive pools of upstream connections, one list per provider, and dialing
//! new ones (TCP, then TLS for https providers). The pool belongs to one shard's thread, so
//! it is a `RefCell`, not a lock. Checkout is LIFO: the most recently used connection is the
//! least likely to have been closed by the provider. Connections idle past the provider's
//! idle timeout are dropped at checkout and by a periodic sweep.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::error::GatewayError;
use crate::io::Stream;
use crate::snapshot::Provider;
use crate::state::stats::ShardStats;

struct Idle {
    conn: Stream,
    since: Instant,
}

/// A connection checked out for one request; `reused` says whether it came from the pool
/// (a failure before the first response byte on a reused connection is worth one redial).
pub struct Leased {
    pub conn: Stream,
    pub reused: bool,
}

/// Idle connections per provider slot; their number and the connections opened are kept in
/// the shard's counters for `/metrics`.
pub struct Pool {
    idle: RefCell<Vec<Vec<Idle>>>,
    stats: Arc<ShardStats>,
}

impl Pool {
    pub fn new(providers: usize, stats: Arc<ShardStats>) -> Self {
        Self {
            idle: RefCell::new((0..providers).map(|_| Vec::new()).collect()),
            stats,
        }
    }

    fn counted(&self, slot: usize, list: &[Idle]) {
        if let Some(s) = self.stats.providers.get(slot) {
            s.idle_connections.set(list.len() as u64);
        }
    }

    fn take_idle(&self, slot: usize, idle_timeout: Duration) -> Option<Stream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(slot)?;
        let now = Instant::now();
        let mut found = None;
        while let Some(entry) = list.pop() {
            if now.duration_since(entry.since) < idle_timeout {
                found = Some(entry.conn);
                break;
            }
        }
        self.counted(slot, list);
        found
    }

    /// A pooled connection to `provider`, or a new one.
    pub async fn checkout(&self, provider: &Provider) -> Result<Leased, GatewayError> {
        if let Some(conn) = self.take_idle(provider.slot, provider.pool.idle_timeout) {
            return Ok(Leased { conn, reused: true });
        }
        let conn = dial(provider).await?;
        if let Some(s) = self.stats.providers.get(provider.slot) {
            s.connections_opened.incr();
        }
        Ok(Leased {
            conn,
            reused: false,
        })
    }

    /// Returns a connection whose last response was read completely.
    pub fn checkin(&self, provider: &Provider, conn: Stream) {
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(provider.slot) {
            if list.len() < provider.pool.max_idle {
                list.push(Idle {
                    conn,
                    since: Instant::now(),
                });
                self.counted(provider.slot, list);
            }
        }
    }

    /// Drops connections idle for longer than their provider allows.
    pub fn sweep(&self, providers: &[Provider]) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        for p in providers {
            if let Some(list) = idle.get_mut(p.slot) {
                list.retain(|e| now.duration_since(e.since) < p.pool.idle_timeout);
                self.counted(p.slot, list);
            }
        }
    }
}

/// Opens a new connection to a provider within its connect timeout, trying each address.
pub async fn dial(provider: &Provider) -> Result<Stream, GatewayError> {
    let connect_err = |detail: String| GatewayError::UpstreamConnect {
        provider: provider.name.clone(),
        detail,
    };
    let mut last = String::from("no address");
    for addr in &provider.addrs {
        let tcp =
            match monoio::time::timeout(provider.timeouts.connect, TcpStream::connect_addr(*addr))
                .await
            {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    last = e.to_string();
                    continue;
                }
                Err(_) => {
                    return Err(GatewayError::UpstreamTimeout {
                        provider: provider.name.clone(),
                        phase: "connect",
                    })
                }
            };
        let _ = tcp.set_nodelay(true);
        let Some((connector, server_name)) = &provider.tls else {
            return Ok(Stream::plain(tcp));
        };
        let fd = tcp.as_raw_fd();
        let handshake = connector.connect(server_name.clone(), tcp);
        return match monoio::time::timeout(provider.timeouts.connect, handshake).await {
            Ok(Ok(tls)) => Ok(Stream::client_tls(tls, fd)),
            Ok(Err(e)) => Err(connect_err(format!("TLS handshake failed: {e}"))),
            Err(_) => Err(GatewayError::UpstreamTimeout {
                provider: provider.name.clone(),
                phase: "TLS handshake",
            }),
        };
    }
    Err(connect_err(last))
}
