//! Shared harness for ringgate's Rust integration tests.
//!
//! Each test starts its own `mock-llm` and `ringgate` processes (killed on drop)
//! and talks to the gateway with a tiny blocking HTTP/1.1 client over
//! `std::net::TcpStream`, so the tests can send exactly the bytes they mean to
//! (half a request head, a lying Content-Length, a dropped socket, ...).
//!
//! Binaries: ringgate is `CARGO_BIN_EXE_ringgate`; mock-llm is expected next to
//! it in the same target dir (build it with `cargo build --workspace --bins`),
//! and either can be overridden with `RINGGATE_BIN` / `MOCK_BIN`.
//!
//! On a panic the processes' stderr is printed when their handles drop; set
//! `RINGGATE_KEEP_LOGS=1` to keep the temp dirs around.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
pub const BUILD_HINT: &str = "cargo build --workspace --bins";

// ---------------------------------------------------------------- binaries & dirs

/// Path of the ringgate binary under test.
pub fn ringgate_bin() -> PathBuf {
    let path = std::env::var_os("RINGGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ringgate")));
    assert!(
        path.is_file(),
        "ringgate binary not found at {}; build it with `{BUILD_HINT}`",
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
         binaries); build it with `{BUILD_HINT}` or set MOCK_BIN",
        path.display()
    );
    path
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
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

/// SIGTERM, a short grace period, then SIGKILL.
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: plain kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------- mock-llm

/// A running mock-llm, killed on drop.
pub struct MockLlm {
    child: Child,
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl MockLlm {
    /// Start with `--listen 127.0.0.1:0` plus `args`, and wait for its
    /// `mock-llm listening on 127.0.0.1:PORT` line.
    pub fn start(args: &[&str]) -> MockLlm {
        let dir = TempDir::new("ringgate-mock");
        let stderr_path = dir.path().join("mock-llm.stderr");
        let bin = mock_bin();
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("create mock stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

        // Keep draining stdout on a thread so the pipe never fills up.
        let stdout = child.stdout.take().expect("mock stdout");
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let (Some(tx), Ok(addr)) = (tx.take(), rest.trim().parse()) {
                        let _ = tx.send(addr);
                    }
                }
            }
        });

        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => MockLlm {
                child,
                addr,
                stderr_path,
                _dir: dir,
            },
            Err(_) => {
                let status = child.try_wait();
                terminate(&mut child);
                panic!(
                    "mock-llm did not print 'mock-llm listening on ADDR' within {STARTUP_TIMEOUT:?} \
                     (status {status:?})\n----- mock-llm stderr -----\n{}",
                    read_tail(&stderr_path, 8000)
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT/v1`, for a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn stderr(&self) -> String {
        read_tail(&self.stderr_path, 8000)
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        terminate(&mut self.child);
        if thread::panicking() {
            eprintln!("----- mock-llm stderr -----\n{}", self.stderr());
        }
    }
}

// ---------------------------------------------------------------- gateway

/// The standard test config body (everything but `listen:`): one `mock`
/// provider, `fast` alias, bare names to `mock`. `extra` is appended verbatim
/// (top-level YAML, e.g. a `limits:` block).
pub fn basic_config(mock_base_url: &str, extra: &str) -> String {
    format!(
        "shards: 2\n\
         pin_cores: false\n\
         default_provider: mock\n\
         aliases:\n  fast: mock/gpt-4o-mini\n\
         providers:\n  mock:\n    base_url: {mock_base_url}\n    \
         models: [gpt-4o-mini, text-embedding-3-small]\n\
         {extra}"
    )
}

/// A running `ringgate serve`, killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// The control port (metrics).
    pub control: SocketAddr,
    pub config_path: PathBuf,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    _dir: TempDir,
}

impl Gateway {
    /// Write `config_yaml` to a temp file and run `ringgate serve --config` on
    /// it, then wait for `GET /health` to answer 200. If the YAML has no
    /// top-level `listen:` line, `listen: 127.0.0.1:<free port>` is prepended;
    /// likewise a `control:` block with a free port for the control port.
    pub fn start(config_yaml: &str) -> Gateway {
        // Without explicit addresses ringgate binds port 0 and the harness reads the ports it
        // got from its log: probing for a free port and passing it on races with other
        // gateways started in parallel — and with SO_REUSEPORT two of them could even share it.
        let mut yaml = String::new();
        if !config_yaml.lines().any(|l| l.starts_with("control:")) {
            yaml.push_str("control: {listen: 127.0.0.1:0}\n");
        }
        if !config_yaml.lines().any(|l| l.starts_with("listen:")) {
            yaml.push_str("listen: 127.0.0.1:0\n");
        }
        yaml.push_str(config_yaml);
        Self::try_start(&yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The address a log line `<marker> ADDR` names, once ringgate has written it.
    fn logged_addr(stderr_path: &Path, marker: &str) -> Option<SocketAddr> {
        let log = fs::read_to_string(stderr_path).ok()?;
        let rest = &log[log.find(marker)? + marker.len()..];
        rest.split_whitespace().next()?.parse().ok()
    }

    fn try_start(config_yaml: &str) -> Result<Gateway, String> {
        let addr: SocketAddr = config_yaml
            .lines()
            .find_map(|l| l.strip_prefix("listen:"))
            .map(|v| v.trim().trim_matches('"').trim_matches('\''))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("config needs `listen: IP:PORT`:\n{config_yaml}"))?;

        let dir = TempDir::new("ringgate-gw");
        let config_path = dir.path().join("ringgate.yaml");
        fs::write(&config_path, config_yaml).map_err(|e| format!("write config: {e}"))?;
        let stderr_path = dir.path().join("ringgate.stderr");
        let stdout_path = dir.path().join("ringgate.stdout");
        let bin = ringgate_bin();
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).map_err(|e| e.to_string())?)
            .stderr(File::create(&stderr_path).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;

        let control: SocketAddr = config_yaml
            .lines()
            .find_map(|l| l.strip_prefix("control: {listen: "))
            .and_then(|v| v.trim_end_matches('}').trim().parse().ok())
            .unwrap_or_else(|| "127.0.0.1:9090".parse().expect("valid"));
        let mut gw = Gateway {
            child,
            addr,
            control,
            config_path,
            stderr_path,
            stdout_path,
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last = String::from("no attempt yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = gw.child.try_wait() {
                last = format!("process exited: {status}");
                break;
            }
            if gw.addr.port() == 0 || gw.control.port() == 0 {
                if let Some(a) = Self::logged_addr(&gw.stderr_path, "ringgate listening on ") {
                    gw.addr = a;
                }
                if let Some(a) = Self::logged_addr(&gw.stderr_path, "control port listening on ") {
                    gw.control = a;
                }
                if gw.addr.port() == 0 {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
            match http_request(
                gw.addr,
                b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                Duration::from_secs(2),
            ) {
                Ok((200, _, _)) => return Ok(gw),
                Ok((status, _, body)) => {
                    last = format!("GET /health -> {status} {}", String::from_utf8_lossy(&body))
                }
                Err(e) => last = format!("GET /health -> {e}"),
            }
            thread::sleep(Duration::from_millis(100));
        }
        terminate(&mut gw.child);
        Err(format!(
            "ringgate did not become healthy on {addr} within {STARTUP_TIMEOUT:?} ({last})\n\
             ----- config -----\n{config_yaml}\n----- ringgate stderr -----\n{}\n----- ringgate stdout -----\n{}",
            gw.stderr(),
            read_tail(&gw.stdout_path, 4000)
        ))
    }

    pub fn stderr(&self) -> String {
        read_tail(&self.stderr_path, 8000)
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

    /// Resident set size of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (graceful drain) without waiting.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

impl Drop for Gateway {
    fn drop(&mut self) {
        terminate(&mut self.child);
        if thread::panicking() {
            eprintln!("----- ringgate stderr -----\n{}", self.stderr());
        }
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
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before status line",
                ));
            }
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
                let mut h = String::new();
                if self.reader.read_line(&mut h)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside headers",
                    ));
                }
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
