//! The floor of a proxy hop on ringgate's runtime: what relaying bytes between a client and an
//! upstream costs on one shard's io_uring ring, with no HTTP at all. It listens and runs its
//! ring exactly as a shard does (`shards::runtime`), opens one upstream connection per client
//! connection, and copies each direction with a read and a write per piece — the four ring
//! operations per request a shard also makes. Anything an HTTP proxy on this runtime spends
//! beyond this is its own code; nothing on this runtime can spend less over loopback TCP
//! (docs/perf.md, "The floor"). `perf/ab.sh` runs it as the side `floor`.
//!
//! Usage: floor-proxy LISTEN UPSTREAM (e.g. 127.0.0.1:18203 127.0.0.1:18201); pin it with
//! taskset. It serves until killed.

use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A piece read at once: a shard's read buffer size.
const PIECE: usize = 4096;

fn main() {
    let (listener, upstream) = floor_proxy::listener_and_upstream("floor-proxy");
    let mut rt = shards::runtime::uring_runtime(4096, 0).expect("an io_uring runtime");
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            monoio::spawn(relay(client, upstream));
        }
    });
}

/// Relays one client connection over its own upstream connection until either side closes.
async fn relay(client: TcpStream, upstream: SocketAddr) {
    let Ok(provider) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = provider.set_nodelay(true);
    let (client_in, client_out) = client.into_split();
    let (provider_in, provider_out) = provider.into_split();
    monoio::spawn(copy(provider_in, client_out));
    copy(client_in, provider_out).await;
}

/// Copies `from` to `to` piece by piece until `from` ends or either fails; then shuts `to`.
async fn copy(mut from: impl AsyncReadRent, mut to: impl AsyncWriteRent) {
    let mut buf = Vec::with_capacity(PIECE);
    loop {
        let (read, filled) = from.read(buf).await;
        buf = filled;
        if !matches!(read, Ok(n) if n > 0) {
            break;
        }
        let (written, sent) = to.write_all(buf).await;
        buf = sent;
        if written.is_err() {
            break;
        }
        buf.clear();
    }
    let _ = to.shutdown().await;
}
