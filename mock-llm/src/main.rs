//! `mock-llm`: an OpenAI-compatible mock provider used as the upstream behind
//! ringgate in integration tests and load benchmarks.
//!
//! This module only parses the command line, builds the tokio runtime and
//! hands over to [`server::run`]. Replies are deterministic (`"echo: "` plus
//! the last user message) so tests can assert on them, and every response can
//! be delayed, failed or broken on the wire via CLI defaults or per-request
//! `x-mock-*` headers (see [`faults`]).

mod conn;
mod faults;
mod openai;
mod server;
mod stream;

use std::time::Duration;

use clap::Parser;

// The mock must never be the bottleneck of a benchmark; mimalloc is markedly
// faster than glibc malloc for the many small per-request allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OpenAI-compatible mock LLM provider.
#[derive(Debug, Parser)]
#[command(name = "mock-llm", version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the bound address is
    /// printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: String,
    /// Tokio worker threads (default: number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Delay before every response head, in milliseconds
    /// (per request: `x-mock-latency-ms`).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Number of content events a streamed reply is split into
    /// (per request: `x-mock-stream-chunks`).
    #[arg(long, default_value_t = 8)]
    stream_chunks: usize,
    /// Pause between streamed events, in milliseconds
    /// (per request: `x-mock-stream-interval-ms`).
    #[arg(long, default_value_t = 0)]
    stream_interval_ms: u64,
    /// Probability in [0, 1] that a request fails with `--fail-status`.
    #[arg(long, default_value_t = 0.0, value_parser = faults::parse_rate)]
    fail_rate: f64,
    /// Status used by `--fail-rate` failures (400-599).
    #[arg(long, default_value_t = 500, value_parser = faults::parse_status)]
    fail_status: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 request.
    #[arg(long)]
    require_key: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workers = match cli.workers {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let config = server::Config {
        defaults: faults::Defaults {
            latency: Duration::from_millis(cli.latency_ms),
            stream_chunks: cli.stream_chunks,
            stream_interval: Duration::from_millis(cli.stream_interval_ms),
        },
        fail_rate: cli.fail_rate,
        fail_status: cli.fail_status,
        auth: cli.require_key.map(|key| format!("Bearer {key}")),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let result = runtime.block_on(server::run(&cli.listen, config));
    // Connections that are still open (e.g. `x-mock-fail: hang`) must not
    // delay exit after a signal.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}
