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
#![allow(dead_code)]

pub mod fleet;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
pub const BUILD_HINT: &str = "build both binaries with `cargo build --workspace --bins`, \
     or run the whole suite with `bash scripts/test.sh`";

// ---------------------------------------------------------------- waiting

/// Calls `probe` every 10 ms until it returns `Some`, for at most `timeout`: the one way
/// these tests wait for a condition (a port, a file, a metric, a row) instead of sleeping.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- binaries & dirs

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
struct Process {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
    /// Holds the log and the ready file; removed after the process is gone.
    _dir: TempDir,
}

impl Process {
    /// Runs `bin ARGS --ready-file DIR/ready.json` and waits for that file, which the
    /// binary writes (atomically) once it listens; returns the process and the file's JSON.
    /// `context` is added to the panic message when it never gets ready; `setup` may change
    /// the command before it runs (e.g. confine the process).
    fn start(
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

    fn log(&self) -> String {
        read_tail(&self.log_path, 8000)
    }

    /// Waits up to `timeout` for the process to exit; its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
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
fn ready_addr(ready: &Value, key: &str) -> SocketAddr {
    ready[key]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("ready file without an address in `{key}`: {ready}"))
}

// ---------------------------------------------------------------- mock-llm

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

// ---------------------------------------------------------------- configuration

/// The standard test config: two shards, one `mock` provider serving `gpt-4o-mini` and
/// `text-embedding-3-small`, alias `fast`, bare model names to `mock`.
pub fn basic_config(mock_base_url: &str) -> Value {
    json!({
        "shards": 2,
        "default_provider": "mock",
        "aliases": {"fast": "mock/gpt-4o-mini"},
        "providers": {
            "mock": {
                "base_url": mock_base_url,
                "models": ["gpt-4o-mini", "text-embedding-3-small"],
            },
        },
    })
}

/// `base` with `patch` laid over it: maps merge key by key, anything else replaces.
pub fn merged(mut base: Value, patch: Value) -> Value {
    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(base), Value::Object(patch)) => {
                for (key, value) in patch {
                    match base.get_mut(&key) {
                        Some(slot) => merge(slot, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (base, patch) => *base = patch,
        }
    }
    merge(&mut base, patch);
    base
}

/// Writes `config` as a YAML file for ringgate; returns the YAML.
pub fn write_config(path: &Path, config: &Value) -> String {
    let yaml = serde_yaml::to_string(config).expect("a config serializes to YAML");
    fs::write(path, &yaml).expect("write config");
    yaml
}

// ---------------------------------------------------------------- gateway

/// A running `ringgate serve`, killed on drop.
pub struct Gateway {
    process: Process,
    pub addr: SocketAddr,
    /// The control port (metrics, admin API).
    pub control: SocketAddr,
}

impl Gateway {
    /// Runs `ringgate serve` on `config` and waits until it is ready. Unless the config says
    /// otherwise, both ports are 0 (the ports it got come from its ready file) and shards are
    /// not pinned (tests share cores with each other).
    pub fn start(config: Value) -> Gateway {
        Gateway::start_with(config, |_| {})
    }

    /// [`Gateway::start`], with `setup` applied to the command before it runs.
    pub fn start_with(config: Value, setup: impl FnOnce(&mut Command)) -> Gateway {
        let config = merged(
            json!({
                "listen": "127.0.0.1:0",
                "control": {"listen": "127.0.0.1:0"},
                "pin_cores": false,
            }),
            config,
        );
        let dir = TempDir::new("ringgate-gw");
        // Every governed node spools usage in its own directory (the default is shared).
        let config = match config.get("governance") {
            Some(g) if g.get("spool_dir").is_none() => merged(
                config,
                json!({"governance": {"spool_dir": dir.path().join("spool")}}),
            ),
            _ => config,
        };
        let config_path = dir.path().join("ringgate.yaml");
        let context = format!(
            "\n----- config -----\n{}",
            write_config(&config_path, &config)
        );
        let config_arg = config_path.display().to_string();
        let (process, ready) = Process::start(
            "ringgate",
            &ringgate_bin(),
            &["serve", "--config", &config_arg],
            dir,
            &context,
            setup,
        );
        Gateway {
            addr: ready_addr(&ready, "data"),
            control: ready_addr(&ready, "control"),
            process,
        }
    }

    /// The gateway's log (stderr and stdout), up to its last 8000 bytes.
    pub fn stderr(&self) -> String {
        self.process.log()
    }

    /// The Prometheus text from the control port's `/metrics`.
    pub fn metrics(&self) -> String {
        let (status, _, body) = http_request(
            self.control,
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .expect("metrics request");
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body).into_owned()
    }

    /// The sum of every sample of metric family `name` (all shards, all labels).
    pub fn metric_sum(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Resident set size of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// Sends SIGTERM (graceful drain) without waiting.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.process.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.process.wait_exit(timeout)
    }

    /// One request on a fresh connection; panics on I/O errors.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut conn = HttpConn::connect(self.addr, DEFAULT_TIMEOUT).expect("connect to gateway");
        conn.send(raw).expect("send request");
        conn.read_response().expect("read response")
    }

    pub fn post_json(&self, path: &str, body: &str, extra_headers: &[(&str, &str)]) -> Response {
        self.request(&build_request(
            "POST",
            path,
            extra_headers,
            Some(body.as_bytes()),
            true,
        ))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(&build_request("GET", path, &[], None, true))
    }
}

// ---------------------------------------------------------------- HTTP/1.1 client

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Response headers in arrival order, names as sent.
pub type Headers = Vec<(String, String)>;

/// A parsed response. `complete` is false when the connection ended before the
/// framing said the body was over (truncated Content-Length or chunked body).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub complete: bool,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {}",
                self.status,
                self.text()
            )
        })
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Build a request head (+ body). Adds Host, and Content-Length when a body
/// is given; `close` adds `Connection: close`.
pub fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    close: bool,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            out.push_str("Content-Type: application/json\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// A `POST /v1/chat/completions` request carrying `body` (usually [`chat_body`]). The tests
/// that drive the wire themselves send this one request over and over, differing only in
/// `headers` (an authorization, the mock's `x-mock-*` controls) and `close`.
pub fn chat_request(body: &str, headers: &[(&str, &str)], close: bool) -> Vec<u8> {
    build_request(
        "POST",
        "/v1/chat/completions",
        headers,
        Some(body.as_bytes()),
        close,
    )
}

/// One client connection; responses are read in order, so several requests
/// can share it (keep-alive).
pub struct HttpConn {
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<HttpConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream().set_read_timeout(Some(timeout))
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(raw)?;
        stream.flush()
    }

    /// Status line and headers (skipping any 1xx interim responses).
    pub fn read_head(&mut self) -> io::Result<(u16, Headers)> {
        loop {
            let line = self.head_line("before status line")?;
            let mut parts = line.trim_end().splitn(3, ' ');
            let version = parts.next().unwrap_or_default();
            if !version.starts_with("HTTP/1.") {
                return Err(invalid(format!("bad status line {line:?}")));
            }
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let h = self.head_line("inside headers")?;
                let h = h.trim_end_matches(['\r', '\n']);
                if h.is_empty() {
                    break;
                }
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| invalid(format!("bad header line {h:?}")))?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            return Ok((status, headers));
        }
    }

    /// The next line of a response head; the connection closing first is an `UnexpectedEof`
    /// saying where (`before status line`, `inside headers`).
    fn head_line(&mut self, at: &str) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed {at}"),
            ));
        }
        Ok(line)
    }

    /// Read whatever body bytes arrive next (up to `max`), without any framing:
    /// for peeking into a stream. Ok(0) means EOF.
    pub fn read_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; max];
        let n = self.reader.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Read a body framed by `headers` (for a response to a non-HEAD request).
    /// Returns (body, complete).
    pub fn read_body(
        &mut self,
        status: u16,
        headers: &[(String, String)],
    ) -> io::Result<(Vec<u8>, bool)> {
        if status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok((Vec::new(), true));
        }
        let chunked = header(headers, "transfer-encoding").is_some_and(|te| {
            te.to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked")
        });
        if chunked {
            return self.read_chunked();
        }
        if let Some(len) = header(headers, "content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
            let mut body = Vec::with_capacity(len.min(1 << 20));
            (&mut self.reader).take(len as u64).read_to_end(&mut body)?;
            let complete = body.len() == len;
            return Ok((body, complete));
        }
        // Neither: the body runs to EOF.
        let mut body = Vec::new();
        match self.reader.read_to_end(&mut body) {
            Ok(_) => Ok((body, true)),
            Err(e) if is_disconnect(&e) => Ok((body, false)),
            Err(e) => Err(e),
        }
    }

    fn read_chunked(&mut self) -> io::Result<(Vec<u8>, bool)> {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            match self.reader.read_line(&mut size_line) {
                Ok(0) => return Ok((body, false)),
                Ok(_) => {}
                Err(e) if is_disconnect(&e) => return Ok((body, false)),
                Err(e) => return Err(e),
            }
            if !size_line.ends_with('\n') {
                return Ok((body, false));
            }
            let size_str = size_line
                .trim_end()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| invalid(format!("bad chunk size line {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the final empty line.
                loop {
                    let mut t = String::new();
                    match self.reader.read_line(&mut t) {
                        Ok(0) => return Ok((body, false)),
                        Ok(_) if t.trim_end_matches(['\r', '\n']).is_empty() => {
                            return Ok((body, true))
                        }
                        Ok(_) => {}
                        Err(e) if is_disconnect(&e) => return Ok((body, false)),
                        Err(e) => return Err(e),
                    }
                }
            }
            let start = body.len();
            match (&mut self.reader).take(size as u64).read_to_end(&mut body) {
                Ok(_) if body.len() - start == size => {}
                Ok(_) => return Ok((body, false)),
                Err(e) if is_disconnect(&e) => return Ok((body, false)),
                Err(e) => return Err(e),
            }
            let mut crlf = [0u8; 2];
            match self.reader.read_exact(&mut crlf) {
                Ok(()) if &crlf == b"\r\n" => {}
                Ok(()) => return Err(invalid(format!("chunk not followed by CRLF: {crlf:?}"))),
                Err(e) if is_disconnect(&e) => return Ok((body, false)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Status, headers and the whole body of the next response.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let (status, headers) = self.read_head()?;
        let (body, complete) = self.read_body(status, &headers)?;
        Ok(Response {
            status,
            headers,
            body,
            complete,
        })
    }
}

/// Send `raw` on a new connection and read one response:
/// `(status, headers, body)`. Handles Content-Length, chunked and
/// read-to-EOF bodies; a body cut short by the peer is returned as far as it got.
pub fn http_request(
    addr: SocketAddr,
    raw: &[u8],
    timeout: Duration,
) -> io::Result<(u16, Headers, Vec<u8>)> {
    let mut conn = HttpConn::connect(addr, timeout)?;
    conn.send(raw)?;
    let r = conn.read_response()?;
    Ok((r.status, r.headers, r.body))
}

/// The peer closed or reset the connection.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

// ---------------------------------------------------------------- SSE

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}

/// Concatenated `choices[0].delta.content` of a chat completion stream.
pub fn sse_chat_text(body: &[u8]) -> String {
    sse_data(body)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// A chat completion request body.
pub fn chat_body(model: &str, prompt: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    })
    .to_string()
}
