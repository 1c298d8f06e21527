//! `mock-llm`: a mock LLM provider used as the upstream behind ringgate in
//! integration tests and load benchmarks. It speaks the OpenAI API and, on
//! their own paths, the native Azure OpenAI, Anthropic Messages, Gemini and
//! Bedrock Converse APIs (see [`server`] for the routes).
//!
//! This module only parses the command line, builds the tokio runtime and
//! hands over to [`server::run`]. Replies are deterministic (`"echo: "` plus
//! the last user message, or a tool call; see [`reply`]; audio, images, moderations,
//! files and batches by the rules in [`openai`]'s submodules) so tests can assert
//! on them, and every response can be delayed, failed or broken on the wire
//! via CLI defaults or per-request `x-mock-*` headers (see [`faults`]).
//!
//! Started with `--listen 127.0.0.1:0`, the mock picks a free port. Programs that start it
//! pass `--ready-file PATH` and read `{"listen":"IP:PORT","pid":N}` from PATH once it exists
//! (written beside it and renamed into place, so it is never seen half written), the same
//! mechanism as `ringgate serve --ready-file`: no parsing of the human-readable line
//! `mock-llm listening on IP:PORT` that also goes to stdout.

mod anthropic;
mod azure;
mod bedrock;
mod catalog;
mod conn;
mod faults;
mod gemini;
mod openai;
mod reply;
mod server;
mod stream;
mod trace_echo;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

// The mock must never be the bottleneck of a benchmark; mimalloc is markedly
// faster than glibc malloc for the many small per-request allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Mock LLM provider (OpenAI, Azure OpenAI, Anthropic, Gemini, Bedrock).
#[derive(Debug, Parser)]
#[command(name = "mock-llm", version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the bound address is
    /// printed on stdout and written to `--ready-file`).
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: String,
    /// Once listening, write `{"listen":"IP:PORT","pid":N}` to this file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
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
    /// Require this API key, sent the way each dialect's provider expects:
    /// `Authorization: Bearer KEY` (OpenAI), `api-key` (Azure), `x-api-key`
    /// or a bearer token (Anthropic), `x-goog-api-key` or `?key=` (Gemini),
    /// or as the SigV4 access key id (Bedrock).
    #[arg(long)]
    require_key: Option<String>,
    /// OpenAI dialect: requests carrying this bearer key always get 429 with
    /// `Retry-After: 30`, as from a key whose quota is spent.
    #[arg(long)]
    rate_limited_key: Option<String>,
    /// OpenAI dialect: never report token usage, in plain responses or streams (per request:
    /// `x-mock-usage: off|on`).
    #[arg(long)]
    no_usage: bool,
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
            usage: !cli.no_usage,
        },
        fail_rate: cli.fail_rate,
        fail_status: cli.fail_status,
        key: cli.require_key,
        rate_limited_key: cli.rate_limited_key,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let result = runtime.block_on(server::run(&cli.listen, cli.ready_file.as_deref(), config));
    // Connections that are still open (e.g. `x-mock-fail: hang`) must not
    // delay exit after a signal.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}
