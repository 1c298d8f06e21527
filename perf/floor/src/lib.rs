//! What the two floors share: their command line (LISTEN UPSTREAM) and a listener bound as a
//! shard binds its own (`shards::runtime::bind_listener`: SO_REUSEPORT, `TCP_NODELAY`,
//! backlog 4096, non-blocking).

use std::net::{SocketAddr, TcpListener};

/// The listener on LISTEN and the address of UPSTREAM; exits with a usage line when either
/// argument is missing.
pub fn listener_and_upstream(program: &str) -> (TcpListener, SocketAddr) {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: {program} LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN is host:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is host:port");
    let listener = shards::runtime::bind_listener(listen, true).expect("listen");
    (listener, upstream)
}
