//! Shared harness for ringgate's Rust integration tests.
//!
//! Each test starts its own `mock-llm` and `ringgate` processes (killed on drop)
//! and talks to the gateway with a tiny blocking HTTP/1.1 client over
//! `std::net::TcpStream`, so the tests can send exactly the bytes they mean to
//! (half a request head, a lying Content-Length, a dropped socket, ...).
//!
//! Configurations are data: a `serde_json::Value` (see [`basic_config`] and [`merged`])
//! written out as YAML. Both binaries listen on port 0 and are started with
//! `--ready-file`; the harness waits for that file and reads the ports from it (the Python
//! harness in tests/python/conftest.py does the same), so no test races another for a port.
//!
//! Binaries: ringgate is `CARGO_BIN_EXE_ringgate`; mock-llm is expected next to
//! it in the same target dir (`cargo build --workspace --bins` builds it; `cargo test`
//! alone does not), and either can be overridden with `RINGGATE_BIN` / `MOCK_BIN`.
//! `bash scripts/test.sh` builds both and runs every test.
//!
//! On a panic the processes' logs are printed when their handles drop; set
//! `RINGGATE_KEEP_LOGS=1` to keep the temp dirs around.
//!
//! Layout: [`process`] spawns the binaries (and owns their temp dirs and logs); [`upstream`]
//! has what a provider's `base_url` points at (a mock-llm, a refused port); [`config`] builds
//! configurations; [`gateway`] runs and inspects ringgate; [`http`] is the HTTP/1.1 client;
//! [`chat`] makes chat requests and reads their streams; [`wait`] waits for a condition;
//! [`fleet`] runs several nodes on one database. Everything but [`fleet`] is re-exported here, so a
//! test needs only `use common::*`.
#![allow(dead_code)]

pub mod fleet;

mod chat;
mod config;
mod gateway;
mod http;
mod process;
mod upstream;
mod wait;

// Each test binary uses a different part of the harness (as with `dead_code` above).
#[allow(unused_imports)]
pub use self::{chat::*, config::*, gateway::*, http::*, process::*, upstream::*, wait::*};
