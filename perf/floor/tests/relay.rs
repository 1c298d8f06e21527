//! Both floors relay bytes both ways, over the real binaries and real sockets, and pass a
//! close on: what `perf/ab.sh` relies on when it measures them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free now (the listener is dropped before the floor binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects until the floor listens (it binds at start), for at most 10 s.
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("the floor never listened: {e}"),
        }
    }
}

#[test]
fn the_runtime_floor_relays_bytes_both_ways_and_passes_a_close_on() {
    relays_and_closes(env!("CARGO_BIN_EXE_floor-proxy"), "");
}

#[test]
fn the_bare_ring_floor_relays_bytes_both_ways_and_passes_a_close_on() {
    relays_and_closes(env!("CARGO_BIN_EXE_floor-uring"), "");
}

#[test]
fn the_bare_ring_floor_relays_the_same_without_its_features() {
    relays_and_closes(env!("CARGO_BIN_EXE_floor-uring"), "defer,fixed,multishot");
}

fn relays_and_closes(binary: &str, without: &str) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    // The upstream answers each piece with the piece upper-cased, until the floor closes.
    let echo = std::thread::spawn(move || {
        let (mut conn, _) = upstream.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut seen = 0;
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                return seen;
            }
            seen += n;
            conn.write_all(&buf[..n].to_ascii_uppercase()).unwrap();
        }
    });
    let port = free_port();
    let _floor = Killed(
        Command::new(binary)
            .env("FLOOR_URING_WITHOUT", without)
            .args([
                format!("127.0.0.1:{port}"),
                format!("127.0.0.1:{upstream_port}"),
            ])
            .spawn()
            .unwrap(),
    );
    let mut client = connect(port);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let pieces = ["hello", "a second piece, longer than the first"];
    for piece in pieces {
        client.write_all(piece.as_bytes()).unwrap();
        let mut back = vec![0u8; piece.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, piece.to_ascii_uppercase().as_bytes());
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let sent: usize = pieces.iter().map(|p| p.len()).sum();
    assert_eq!(
        echo.join().unwrap(),
        sent,
        "the upstream saw every byte, then the close"
    );
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "the client's side ends when the upstream's does"
    );
}
