//! Per-shard keep-alive pools of upstream connections, one list per provider, and dialing
//! new ones (TCP, then TLS for https providers). The pool belongs to one shard's thread, so
//! it is a `RefCell`, not a lock. Checkout is LIFO: the most recently used connection is the
//! least likely to have been closed by the provider. Connections idle past the provider's
//! idle timeout are dropped at checkout and by a periodic sweep.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use monoio::net::TcpStream;

use crate::error::GatewayError;
use crate::io::Stream;
use crate::snapshot::Provider;
use crate::state::stats::ShardStats;

struct Idle {
    conn: Stream,
    since: Instant,
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

    /// The most recently pooled connection to `provider` that has been idle for less than
    /// its idle timeout at `now` (the caller's instant: a check against seconds needs no
    /// clock read of its own); older ones on the way are dropped.
    pub fn take_idle(&self, provider: &Provider, now: Instant) -> Option<Stream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(provider.slot)?;
        let mut found = None;
        while let Some(entry) = list.pop() {
            if now.saturating_duration_since(entry.since) < provider.pool.idle_timeout {
                found = Some(entry.conn);
                break;
            }
        }
        self.counted(provider.slot, list);
        found
    }

    /// A new connection to `provider`, when [`Pool::take_idle`] had none.
    pub async fn open(&self, provider: &Provider) -> Result<Stream, GatewayError> {
        let conn = dial(provider).await?;
        if let Some(s) = self.stats.providers.get(provider.slot) {
            s.connections_opened.incr();
        }
        Ok(conn)
    }

    /// Returns a connection whose last response was read completely.
    pub fn checkin(&self, provider: &Provider, conn: Stream) {
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(provider.slot) {
            if list.len() < provider.pool.max_idle {
                list.push(Idle {
                    conn,
                    since: crate::poll_clock::now(),
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
            match crate::timer::timeout(provider.timeouts.connect, TcpStream::connect_addr(*addr))
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
        // Boxed: the handshake's ~2 KB future would otherwise be part of every request's
        // future, which is built on the stack and copied at each level (crate::timer).
        let handshake = Box::pin(connector.connect(server_name.clone(), tcp));
        return match crate::timer::timeout(provider.timeouts.connect, handshake).await {
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
