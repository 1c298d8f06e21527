//! Starting a node's shards: one OS thread per shard, pinned to a core the process may run
//! on, each running a monoio runtime (io_uring, or epoll as the logged fallback) with its own
//! SO_REUSEPORT listener on the shared address. The listeners are bound here, before the
//! threads start, so a bad address fails the start and port 0 resolves to one port for all.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cpus::{allowed_cpus, shard_count};
use crate::snapshot::{NodeState, Snapshot};
use crate::state::stats::ShardStats;
use crate::state::{ReadyBodies, Shard};

/// Which io driver shards should run on (`runtime.driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    IoUring,
    Epoll,
}

/// The io driver shards run on, once [`DriverChoice`] met the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    IoUring,
    Epoll,
}

impl IoDriver {
    /// The name in `/ready` and in the `ringgate_io_driver` metric.
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriver::IoUring => "io_uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub listen: SocketAddr,
    /// 0: one per CPU the process may run on, at most its cgroup CPU quota (`crate::cpus`).
    pub shards: usize,
    pub pin_cores: bool,
    pub driver: DriverChoice,
    pub ring_entries: u32,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Governance shared with the coordinator; `None` when off.
    pub gov: Option<Arc<crate::governance::Governance>>,
    /// The coordinator's span queue; `None` when traces are off.
    pub traces: Option<crate::trace::TraceSink>,
    /// The node's response cache; `None` when the configuration has none.
    pub cache: Option<Arc<crate::cache::NodeCache>>,
    /// Gives the calling thread's freed memory back to the system; a shard calls it once it
    /// has gone quiet after work (this crate knows no allocator; the binary's does).
    pub release_memory: Option<fn()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "runtime.driver is io_uring, but io_uring is not available: {reason}. In a container, \
         run with a seccomp profile that allows io_uring_setup, io_uring_enter and \
         io_uring_register (Docker's default profile blocks them; see docs/deployment.md); on \
         the host, /proc/sys/kernel/io_uring_disabled must be 0 and the kernel 5.12 or newer. \
         Or set runtime.driver: auto to run on epoll"
    )]
    NoIoUring { reason: String },
    #[error("shard {index} failed to start: {detail}")]
    Shard { index: usize, detail: String },
}

/// A running node's shards.
pub struct Running {
    pub local_addr: SocketAddr,
    pub driver: IoDriver,
    pub handles: Vec<JoinHandle<()>>,
    /// Each shard's counters, for metrics and for draining.
    pub stats: Vec<Arc<ShardStats>>,
}

impl Running {
    /// Requests in flight on every shard now.
    pub fn in_flight(&self) -> u64 {
        self.stats.iter().map(|s| s.in_flight.get()).sum()
    }

    /// Graceful stop: the node turns not-ready and stops accepting; in-flight requests and
    /// streams run to their end until `grace` has passed. Returns the requests still in
    /// flight when it gave up (0 on a clean drain).
    pub fn drain(self, node: &NodeState, grace: std::time::Duration) -> u64 {
        node.start_draining();
        let deadline = std::time::Instant::now() + grace;
        // Each shard stops when its requests are done (docs/routing.md, "Graceful shutdown").
        while !self.handles.iter().all(JoinHandle::is_finished)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let left = self.in_flight();
        if self.handles.iter().all(JoinHandle::is_finished) {
            for h in self.handles {
                let _ = h.join();
            }
        }
        left
    }
}

/// A shard's listener: SO_REUSEPORT (one per shard on the same address), `TCP_NODELAY`,
/// backlog 4096. Public for `perf/floor`, which must listen exactly as a shard does.
pub fn bind_listener(
    addr: SocketAddr,
    nonblocking: bool,
) -> Result<std::net::TcpListener, StartError> {
    let err = |source| StartError::Listen { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_tcp_nodelay(true).map_err(err)?;
    socket.set_nonblocking(nonblocking).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    Ok(socket.into())
}

/// An io_uring runtime with cooperative task running: completions are processed when the
/// shard next enters the kernel (it does on every loop turn) instead of by inter-processor
/// interrupts that stop the shard mid-request. Measured on loopback, IPI-driven task work
/// cost a sixth of a shard's time (docs/perf.md). Kernels before 5.19 lack the flag; then
/// the plain ring is used. Public for `perf/floor`, which must run the same ring.
pub fn uring_runtime(
    entries: u32,
    index: usize,
) -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>> {
    let mut flags = io_uring::IoUring::builder();
    flags.setup_coop_taskrun();
    match RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(entries)
        .uring_builder(flags)
        .enable_timer()
        .build()
    {
        Ok(rt) => Ok(rt),
        Err(e) => {
            tracing::info!(shard = index, error = %e, "io_uring without COOP_TASKRUN");
            RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(entries)
                .enable_timer()
                .build()
        }
    }
}

fn resolve_driver(choice: DriverChoice) -> Result<IoDriver, StartError> {
    if choice == DriverChoice::Epoll {
        return Ok(IoDriver::Epoll);
    }
    if monoio::utils::detect_uring() {
        return Ok(IoDriver::IoUring);
    }
    let reason = uring_unavailable_reason();
    if choice == DriverChoice::IoUring {
        return Err(StartError::NoIoUring { reason });
    }
    tracing::warn!(
        %reason,
        "io_uring is not available (kernel, seccomp or io_uring_disabled); shards fall back to \
         epoll. In a container, a seccomp profile that allows io_uring_setup, io_uring_enter \
         and io_uring_register keeps io_uring (docs/deployment.md)"
    );
    Ok(IoDriver::Epoll)
}

/// Why monoio's probe said no, for the log and the start error: the error of creating a ring
/// (EPERM under a seccomp profile or `io_uring_disabled`, ENOSYS on old kernels and gVisor),
/// or else the kernel's ring lacks an operation monoio uses.
fn uring_unavailable_reason() -> String {
    match io_uring::IoUring::new(2) {
        Err(e) => format!("io_uring_setup failed: {e}"),
        Ok(_) => "the kernel's io_uring lacks operations monoio needs, or \
                  MONOIO_FORCE_LEGACY_DRIVER is set"
            .to_owned(),
    }
}

/// The bodies of `/ready` while the node takes traffic, made once per node: which driver
/// serves and how many shards, so a probe or a person can tell a node that fell back to epoll;
/// and, while the store cannot be reached (a fleet's database outage, during which the node
/// keeps serving on the shares it holds), `"store":"unavailable"`.
/// Written by hand so that `status` stays the first field (a JSON map would sort it last).
fn ready_bodies(driver: IoDriver, shards: usize) -> ReadyBodies {
    let body = |extra: &str| -> Arc<[u8]> {
        format!(
            r#"{{"status":"ready","io_driver":"{}","shards":{shards}{extra}}}"#,
            driver.as_str()
        )
        .into_bytes()
        .into()
    };
    ReadyBodies {
        ok: body(""),
        store_unavailable: body(r#","store":"unavailable""#),
    }
}

/// Binds the listeners and starts every shard; returns once all of them accept connections.
pub fn start(
    plan: &ShardPlan,
    snapshot: Arc<Snapshot>,
    node: Arc<NodeState>,
) -> Result<Running, StartError> {
    let driver = resolve_driver(plan.driver)?;
    let cpus = allowed_cpus();
    let count = shard_count(plan.shards);
    let nonblocking = driver == IoDriver::Epoll;
    let first = bind_listener(plan.listen, nonblocking)?;
    let local_addr = first.local_addr().map_err(|source| StartError::Listen {
        addr: plan.listen,
        source,
    })?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(bind_listener(local_addr, nonblocking)?);
    }
    tracing::info!(shards = count, driver = ?driver, pinned = plan.pin_cores, %local_addr, "starting shards");

    let ready = ready_bodies(driver, count);
    let (started_tx, started_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let mut handles = Vec::with_capacity(count);
    let stats: Vec<Arc<ShardStats>> = (0..count)
        .map(|_| Arc::new(ShardStats::new(crate::snapshot::MAX_PROVIDERS)))
        .collect();
    for (index, listener) in listeners.into_iter().enumerate() {
        let shard_stats = stats[index].clone();
        let gov = plan.gov.clone();
        let traces = plan.traces.clone();
        let cache = plan.cache.clone();
        let release_memory = plan.release_memory;
        let core = plan.pin_cores.then(|| cpus[index % cpus.len()]);
        let snapshot = snapshot.clone();
        let node = node.clone();
        let tls = plan.tls.clone();
        let ready = ready.clone();
        let started = started_tx.clone();
        let entries = plan.ring_entries;
        let handle = std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    if let Err(e) = crate::cpus::pin_current_thread(&[core]) {
                        tracing::warn!(shard = index, core, error = ?e, "could not pin shard to its core");
                    }
                }
                let report_build_error = started.clone();
                let body = async move {
                    let listener = match monoio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = started.send((index, Err(e.to_string())));
                            return;
                        }
                    };
                    let _ = started.send((index, Ok(())));
                    let shard = std::rc::Rc::new(Shard::new(
                        index,
                        snapshot,
                        node,
                        shard_stats,
                        crate::state::ShardLinks {
                            gov,
                            traces,
                            cache,
                            release_memory,
                        },
                        ready,
                    ));
                    crate::path::accept::run(shard, listener, tls.map(monoio_rustls::TlsAcceptor::from)).await;
                };
                let built = match driver {
                    IoDriver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(body)),
                    IoDriver::IoUring => {
                        uring_runtime(entries, index).map(|mut rt| rt.block_on(body))
                    }
                };
                if let Err(e) = built {
                    let _ = report_build_error.send((index, Err(format!("cannot build its runtime: {e}"))));
                }
            })
            .map_err(|e| StartError::Shard {
                index,
                detail: e.to_string(),
            })?;
        handles.push(handle);
    }
    drop(started_tx);
    for _ in 0..count {
        match started_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((index, Err(detail))) => return Err(StartError::Shard { index, detail }),
            Err(_) => {
                return Err(StartError::Shard {
                    index: usize::MAX,
                    detail: "a shard thread exited during start (see the log)".into(),
                })
            }
        }
    }
    Ok(Running {
        local_addr,
        driver,
        handles,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_body_keeps_status_first() {
        let bodies = ready_bodies(IoDriver::IoUring, 4);
        assert_eq!(
            &bodies.ok[..],
            br#"{"status":"ready","io_driver":"io_uring","shards":4}"#
        );
        assert_eq!(
            &bodies.store_unavailable[..],
            br#"{"status":"ready","io_driver":"io_uring","shards":4,"store":"unavailable"}"#
        );
        let epoll: serde_json::Value =
            serde_json::from_slice(&ready_bodies(IoDriver::Epoll, 1).ok).unwrap();
        assert_eq!(epoll["io_driver"], "epoll");
    }

    #[test]
    fn epoll_is_taken_without_probing() {
        assert_eq!(
            resolve_driver(DriverChoice::Epoll).unwrap(),
            IoDriver::Epoll
        );
    }

    #[test]
    fn refusal_says_how_to_fix_it() {
        let text = StartError::NoIoUring {
            reason: "io_uring_setup failed: Operation not permitted (os error 1)".into(),
        }
        .to_string();
        for needle in [
            "Operation not permitted",
            "seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register",
            "docs/deployment.md",
            "runtime.driver: auto",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
    }
}
