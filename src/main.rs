//! `ringgate`: the binary. Parses the command line and configuration, starts the shards, and
//! waits for a stop signal. Everything on the request path lives in the `shards` crate.

mod config;
mod coordinator;
mod memory;
mod presets;
mod pricing;
mod ready_file;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shards::snapshot::NodeState;

/// Capacity of the shards' event queue to the lease desk (lease refills and debts; usage
/// batches go to the store writer's own queue, `shards::governance::USAGE_QUEUE`). Its slots
/// are allocated and written when it is made, so it is sized for bursts, not for a stalled
/// coordinator (65,536 slots were 2.6 MB of every governed node's memory): a shard whose debt
/// finds it full keeps it and sends it later, and a refused refill is asked again.
const EVENT_QUEUE: usize = 4096;

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "An io_uring, thread-per-core LLM gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Number of shards (overrides `shards` in the config; 0 = one per allowed CPU, at most
        /// the cgroup CPU quota).
        #[arg(long)]
        shards: Option<usize>,
        /// Do not pin shards to cores.
        #[arg(long)]
        no_pin: bool,
        /// Listen address (overrides `listen` in the config).
        #[arg(long)]
        listen: Option<String>,
        /// Once ready, write the bound addresses as JSON to this file
        /// (`{"data":"IP:PORT","control":"IP:PORT","pid":N}`; removed on drain).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Validate a configuration file and exit.
    CheckConfig { config: PathBuf },
}

/// Logs to stderr, as text or JSON lines. `RUST_LOG` overrides the default filter, which
/// leaves the access log (target `access`) off unless the config turns it on.
fn init_logging(format: config::LogFormat, access_log: bool) {
    let default = if access_log {
        "info"
    } else {
        "info,access=off"
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        config::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> anyhow::Result<()> {
    memory::configure();
    match Cli::parse().command {
        Command::CheckConfig { config } => {
            init_logging(config::LogFormat::Text, false);
            let cfg = config::load(&config)?;
            cfg.snapshot()?;
            cfg.shard_plan()?;
            cfg.control_listen()?;
            cfg.observability.plan()?;
            cfg.catalog.plan()?;
            if let Some(g) = &cfg.governance {
                g.plan()?;
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Serve {
            config,
            shards,
            no_pin,
            listen,
            ready_file,
        } => serve(&config, shards, no_pin, listen, ready_file.as_deref()),
    }
}

fn serve(
    path: &Path,
    shards: Option<usize>,
    no_pin: bool,
    listen: Option<String>,
    ready_file: Option<&Path>,
) -> anyhow::Result<()> {
    let mut cfg = config::load(path)?;
    let observability = cfg.observability.plan()?;
    init_logging(observability.log_format, observability.access_log);
    if let Some(n) = shards {
        cfg.shards = n;
    }
    if no_pin {
        cfg.pin_cores = false;
    }
    if let Some(addr) = listen {
        cfg.listen = addr;
    }
    let mut slots = config::Slots::default();
    let snapshot = Arc::new(cfg.snapshot_with(&[], &mut slots)?);
    let mut plan = cfg.shard_plan()?;
    let control_listen = cfg.control_listen()?;
    let catalog_plan = cfg.catalog.plan()?;
    let governance = cfg
        .governance
        .as_ref()
        .map(config::GovernanceConfig::plan)
        .transpose()?;
    // The catalog shows the prices governance charges; without governance, the shipped ones.
    let catalog_prices = match &governance {
        Some(g) => g.prices.clone(),
        None => pricing::catalog(&Default::default(), 0).map_err(anyhow::Error::msg)?,
    };
    // The response cache: a memory tier per node, and a desk on the coordinator's side for a
    // fleet's shared tier in its database and for the semantic cache.
    let in_fleet = governance.as_ref().is_some_and(|g| g.cluster.is_some());
    let listening = Arc::new(std::sync::OnceLock::new());
    let node_credential = store::keys::generate_key();
    let (node_cache, cache_desk) = match &cfg.cache {
        Some(c) => {
            let (cache, desk) = cache_plan(c, in_fleet, &cfg, &listening, &node_credential)?;
            (Some(cache), desk)
        }
        None => (None, None),
    };
    plan.cache = node_cache;
    // Block the stop signals before any thread exists so that only this thread, waiting in
    // sigwait below, receives them.
    let signals = stop_signals();
    let node = Arc::new(NodeState::new(snapshot.clone()));
    let grace_ms = cfg.shutdown.grace_period_ms;
    let config_for_reload = Arc::new(cfg);
    // Resolved here, once, because the coordinator sizes per-shard state before shards start.
    plan.shards = shards::cpus::shard_count(plan.shards);
    let shard_count = plan.shards;
    let gov_start = governance.map(|g| {
        let (events_tx, events_rx) = crossbeam_channel::bounded(EVENT_QUEUE);
        let (usage_tx, usage_rx) = crossbeam_channel::bounded(shards::governance::USAGE_QUEUE);
        let usage_wake = Arc::new(tokio::sync::Notify::new());
        let wake = usage_wake.clone();
        let gov = Arc::new(shards::governance::Governance {
            snapshot: arc_swap::ArcSwap::from_pointee(shards::governance::GovSnapshot::default()),
            events: events_tx,
            usage: shards::governance::UsageQueue {
                messages: usage_tx,
                wake: Box::new(move || wake.notify_one()),
            },
            lease_wait: g.lease_wait,
            node_credential: Some(shards::governance::request::credential_hash(
                node_credential.as_bytes(),
            )),
        });
        plan.gov = Some(gov.clone());
        coordinator::GovStart {
            gov,
            events: events_rx,
            usage: coordinator::flusher::UsageReceiver {
                messages: usage_rx,
                wake: usage_wake,
            },
            database: g.database,
            secrets: g.secrets,
            settings: coordinator::governance::GovSettings {
                require_key: g.require_key,
                prices: g.prices,
                flush_interval: g.flush_interval,
                request_logs: g.request_logs,
                cluster: g.cluster,
                spool_dir: g.spool_dir,
                request_log_retention: g.request_log_retention,
                usage_labels: coordinator::metrics::usage::Labelling {
                    keys: observability.key_labels,
                    max_keys: observability.max_key_labels,
                },
            },
            admin_token: g.admin_token,
            shards: shard_count,
            providers: coordinator::governance::ProviderReload {
                config: config_for_reload.clone(),
                slots: std::sync::Mutex::new(std::mem::take(&mut slots)),
                node: node.clone(),
                last: std::sync::Mutex::new(None),
            },
            cache_fleet: config_for_reload.cache.as_ref().is_some_and(|c| c.fleet),
        }
    });
    let traces = observability.traces.clone().map(|settings| {
        let (spans_tx, spans_rx) = crossbeam_channel::bounded(coordinator::traces::QUEUE);
        plan.traces = Some(shards::trace::TraceSink {
            spans: spans_tx,
            sample_ratio: settings.sample_ratio,
        });
        coordinator::traces::TraceExport {
            spans: spans_rx,
            settings,
        }
    });
    let coordinator = coordinator::start(coordinator::Start {
        control_listen,
        gov: gov_start,
        metrics_token: observability.metrics_token.clone(),
        traces,
        cpus: plan
            .pin_cores
            .then(|| shards::cpus::coordinator_cpus(&shards::cpus::allowed_cpus(), shard_count))
            .flatten(),
        catalog: coordinator::catalog::CatalogStart {
            node: node.clone(),
            plan: catalog_plan,
            prices: catalog_prices,
            metrics: Default::default(),
        },
        cache_desk,
    })?;
    tracing::info!(control_addr = %coordinator.control_addr, "control port listening on {}", coordinator.control_addr);
    // The coordinator may have added providers from the store to the snapshot.
    let snapshot = node.snapshot.load_full();
    let running =
        shards::runtime::start(&plan, snapshot, node.clone()).context("starting shards")?;
    coordinator.attach(coordinator::NodeView {
        shards: running.stats.clone(),
        node: node.clone(),
        io_driver: running.driver,
        gov: plan.gov.clone(),
        cache: plan.cache.clone(),
    });
    let _ = listening.set(coordinator::cache_desk::embedder::loopback(
        running.local_addr,
    ));
    node.set_ready(true);
    tracing::info!(addr = %running.local_addr, shards = running.handles.len(), "ringgate listening on {}", running.local_addr);
    if let Some(file) = ready_file {
        ready_file::write(file, running.local_addr, coordinator.control_addr)
            .with_context(|| format!("writing the ready file {}", file.display()))?;
    }
    let signal = wait_for(&signals);
    if let Some(file) = ready_file {
        // The node is no longer ready: a waiter must not take the file for a live node.
        let _ = std::fs::remove_file(file);
    }
    let grace = std::time::Duration::from_millis(grace_ms);
    tracing::info!(
        signal,
        in_flight = running.in_flight(),
        grace_ms,
        "draining"
    );
    let left = running.drain(&node, grace);
    if left > 0 {
        tracing::warn!(
            in_flight = left,
            "grace period over; stopping with requests in flight"
        );
    } else {
        tracing::info!("drained; exiting");
    }
    if !coordinator.flush(std::time::Duration::from_secs(5)) {
        tracing::warn!("usage flush did not finish before exit");
    }
    if !coordinator.leave_fleet(std::time::Duration::from_secs(5)) {
        tracing::warn!("leaving the fleet did not finish before exit");
    }
    Ok(())
}

/// The node's cache, and its desk when the cache needs one: to share answers through a
/// fleet's database, or to match requests by meaning (asking the node's own API for
/// embeddings).
fn cache_plan(
    c: &config::CacheConfig,
    in_fleet: bool,
    cfg: &config::Config,
    listening: &Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    credential: &str,
) -> anyhow::Result<(
    Arc<shards::cache::NodeCache>,
    Option<coordinator::cache_desk::DeskStart>,
)> {
    let fleet = c.fleet && in_fleet;
    if !fleet && c.semantic.is_none() {
        let cache = shards::cache::NodeCache::new(c.max_bytes, None, false);
        return Ok((Arc::new(cache), None));
    }
    let semantic = match &c.semantic {
        Some(s) => Some(coordinator::cache_desk::SemanticStart {
            embedder: coordinator::cache_desk::embedder::EmbedderPlan {
                listen: listening.clone(),
                tls: cfg
                    .tls
                    .as_ref()
                    .map(|t| shards::tls::own_listener_client_config(&t.cert_file))
                    .transpose()?,
                credential: credential.to_owned(),
                model: s.embedding_model.clone(),
                dimensions: s.dimensions,
            },
            max_entries: s.max_entries,
        }),
        None => None,
    };
    let (asks_tx, asks) = crossbeam_channel::bounded(coordinator::cache_desk::QUEUE);
    let link = shards::cache::desk::DeskLink { asks: asks_tx };
    let cache = Arc::new(shards::cache::NodeCache::new(
        c.max_bytes,
        Some(link),
        fleet,
    ));
    let desk = coordinator::cache_desk::DeskStart {
        asks,
        cache: cache.clone(),
        semantic,
    };
    Ok((cache, Some(desk)))
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a stack-allocated sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised sigset_t; sigwait writes the signal number into `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
