//! What a provider's `base_url` points at: a running mock-llm, or a port that refuses.

use std::net::SocketAddr;

use super::process::{mock_bin, ready_addr, Process, TempDir, BUILD_HINT};

/// A port on 127.0.0.1 that refuses connections for as long as this value lives: its socket
/// is bound but never listens, so nothing else can take the port meanwhile (a port that was
/// merely free a moment ago could be given to another test's listener).
pub struct RefusedPort(socket2::Socket);

impl RefusedPort {
    pub fn new() -> RefusedPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("create socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        RefusedPort(socket)
    }

    pub fn port(&self) -> u16 {
        self.0
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("bound address")
            .port()
    }
}

/// A running mock-llm, killed on drop.
pub struct MockLlm {
    process: Process,
    pub addr: SocketAddr,
}

impl MockLlm {
    /// Starts `mock-llm --listen 127.0.0.1:0` plus `args`.
    pub fn start(args: &[&str]) -> MockLlm {
        let args = [&["--listen", "127.0.0.1:0"], args].concat();
        let (process, ready) = Process::start(
            "mock-llm",
            &mock_bin(),
            &args,
            TempDir::new("ringgate-mock"),
            &format!(" (a mock-llm older than its sources? {BUILD_HINT})"),
            |_| {},
        );
        MockLlm {
            addr: ready_addr(&ready, "listen"),
            process,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, for a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}
