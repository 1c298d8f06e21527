//! Phase 1, accept: the shard's SO_REUSEPORT listener accepts connections until the node
//! drains; each connection (after its TLS handshake, when configured) is served by its own
//! task through the request path ([`crate::path::serve_connection`]). A draining shard
//! stops accepting, lets requests in flight end, and serves what keep-alive clients send
//! for a short linger so that a request racing the shutdown is answered, not reset.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};
use monoio_rustls::TlsAcceptor;

use crate::io::Stream;
use crate::path::busy;
use crate::path::conn::ClientConn;
use crate::poll_clock::ClockedPolls;
use crate::state::{upkeep, Shard};

/// Longest a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a draining shard keeps serving requests on open keep-alive connections.
const DRAIN_LINGER: Duration = Duration::from_secs(1);
/// How often a shard looks at the node's draining flag.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Accepts connections until the node drains, then waits for this shard's requests to end.
pub async fn run(shard: Rc<Shard>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    upkeep::spawn(&shard);
    let mut accepted_count: u64 = 0;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            () = wait_for_drain(&shard) => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let client = Client {
                    shard: shard.clone(),
                    tcp,
                    peer,
                    tls: tls.clone(),
                    accepted: Instant::now(),
                };
                accepted_count += 1;
                if accepted_count % busy::SAMPLE == 0 {
                    let meter = Rc::new(busy::BusyMeter::default());
                    monoio::spawn(ClockedPolls::new(busy::Busy::new(
                        serve_client(client, Some(meter.clone())),
                        meter,
                    )));
                } else {
                    monoio::spawn(ClockedPolls::new(serve_client(client, None)));
                }
            }
            Err(e) => {
                // Usually EMFILE/ENFILE: back off instead of spinning on the error.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                crate::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracing::info!(
        shard = shard.index,
        in_flight = shard.stats.in_flight.get(),
        "shard stopped accepting"
    );
    // Requests in flight run to their end. Keep-alive clients may send one more request on a
    // connection they already hold; it is served (with `connection: close`) while the drain
    // lingers, so a request racing the shutdown is answered instead of reset.
    let started = Instant::now();
    while shard.stats.in_flight.get() > 0
        || shard.stats.connections.get() > 0 && started.elapsed() < DRAIN_LINGER
    {
        crate::timer::sleep(DRAIN_POLL).await;
    }
    if let Some(gov) = &shard.gov {
        // What the shard still holds goes to the store writer; a queue full at this moment
        // (the store behind) is waited on while the drain may linger.
        let started = Instant::now();
        loop {
            let dropped = shard.usage.flush(gov);
            shard.stats.usage_dropped.add(dropped as u64);
            if shard.usage.is_empty() || started.elapsed() >= DRAIN_LINGER {
                break;
            }
            crate::timer::sleep(DRAIN_POLL).await;
        }
    }
}

async fn wait_for_drain(shard: &Shard) {
    while !shard.node.is_draining() {
        crate::timer::tick(DRAIN_POLL).await;
    }
}

/// An accepted connection, before its task runs.
struct Client {
    shard: Rc<Shard>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    accepted: Instant,
}

/// Serves one connection; `busy` when it is one whose running time is measured.
async fn serve_client(client: Client, busy: Option<Rc<busy::BusyMeter>>) {
    let Client {
        shard,
        tcp,
        peer,
        tls,
        accepted,
    } = client;
    let stream = match tls {
        None => Stream::plain(tcp),
        Some(acceptor) => {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            // Boxed: the handshake's future is ~2 KB, which every connection's task would
            // otherwise carry for its whole life (crate::timer).
            let handshake = Box::pin(acceptor.accept(tcp));
            match crate::timer::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
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
    shard.stats.connections.incr();
    let mut conn = ClientConn::new(stream, peer);
    conn.busy = busy;
    crate::path::serve_connection(&shard, &mut conn, accepted).await;
    conn.stream.shutdown().await;
    shard.stats.connections.decr();
}
