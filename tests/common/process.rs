//! Spawning the binaries under test: where they are, the temp dirs that hold their logs and
//! ready files, and the [`Process`] handle that waits for them to be ready and kills them on
//! drop.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::poll_until;

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
pub const BUILD_HINT: &str = "build both binaries with `cargo build --workspace --bins`, \
     or run the whole suite with `bash scripts/test.sh`";

/// Path of the ringgate binary under test.
pub fn ringgate_bin() -> PathBuf {
    let path = std::env::var_os("RINGGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ringgate")));
    assert!(
        path.is_file(),
        "ringgate binary not found at {}; {BUILD_HINT}",
        path.display()
    );
    path
}

/// Path of mock-llm: a sibling of the ringgate binary in the same target dir.
pub fn mock_bin() -> PathBuf {
    let path = std::env::var_os("MOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let ringgate = PathBuf::from(env!("CARGO_BIN_EXE_ringgate"));
            ringgate.with_file_name(format!("mock-llm{}", std::env::consts::EXE_SUFFIX))
        });
    assert!(
        path.is_file(),
        "mock-llm binary not found at {} (cargo test does not build other packages' \
         binaries); {BUILD_HINT}, or set MOCK_BIN",
        path.display()
    );
    path
}

/// A fresh temporary directory, removed on drop unless RINGGATE_KEEP_LOGS is set.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RINGGATE_KEEP_LOGS").is_some() {
            eprintln!("[harness] kept {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn read_tail(path: &Path, limit: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(limit);
            let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
            if text.is_empty() {
                "<empty>".to_string()
            } else if start > 0 {
                format!("...<snip>...\n{text}")
            } else {
                text
            }
        }
        Err(e) => format!("<could not read {}: {e}>", path.display()),
    }
}

/// A process of ours with stdout and stderr in one log file and a `--ready-file` in `dir`,
/// killed on drop (its log printed when a test panics).
pub(super) struct Process {
    name: &'static str,
    pub(super) child: Child,
    log_path: PathBuf,
    /// Holds the log and the ready file; removed after the process is gone.
    _dir: TempDir,
}

impl Process {
    /// Runs `bin ARGS --ready-file DIR/ready.json` and waits for that file, which the
    /// binary writes (atomically) once it listens; returns the process and the file's JSON.
    /// `context` is added to the panic message when it never gets ready; `setup` may change
    /// the command before it runs (e.g. confine the process).
    pub(super) fn start(
        name: &'static str,
        bin: &Path,
        args: &[&str],
        dir: TempDir,
        context: &str,
        setup: impl FnOnce(&mut Command),
    ) -> (Process, Value) {
        let log_path = dir.path().join(format!("{name}.log"));
        let ready_path = dir.path().join("ready.json");
        let log = File::create(&log_path).expect("create log file");
        let mut command = Command::new(bin);
        setup(&mut command);
        let child = command
            .args(args)
            .arg("--ready-file")
            .arg(&ready_path)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}; {BUILD_HINT}", bin.display()));
        let mut process = Process {
            name,
            child,
            log_path,
            _dir: dir,
        };
        let ready = poll_until(STARTUP_TIMEOUT, || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{name} exited ({status}) before it was ready{context}");
            }
            let text = fs::read_to_string(&ready_path).ok()?;
            Some(serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{name} wrote a ready file that is not JSON ({e}): {text}")
            }))
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} did not write {} within {STARTUP_TIMEOUT:?}{context}",
                ready_path.display()
            )
        });
        (process, ready)
    }

    pub(super) fn log(&self) -> String {
        read_tail(&self.log_path, 8000)
    }

    /// Waits up to `timeout` for the process to exit; its exit code.
    pub(super) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        poll_until(timeout, || self.child.try_wait().ok().flatten())
            .and_then(|status| status.code())
    }
}

impl Drop for Process {
    /// SIGTERM, a short grace period, then SIGKILL.
    fn drop(&mut self) {
        if let (Ok(None), Ok(pid)) = (
            self.child.try_wait(),
            libc::pid_t::try_from(self.child.id()),
        ) {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            if self.wait_exit(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// An address from a ready file's `key`.
pub(super) fn ready_addr(ready: &Value, key: &str) -> SocketAddr {
    ready[key]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("ready file without an address in `{key}`: {ready}"))
}
