//! A running `ringgate serve`: starting it on a config, its metrics and process, signals, and
//! one-shot requests to it.

use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::process::{ready_addr, ringgate_bin, Process, TempDir};
use super::{
    build_request, http_request, merged, write_config, HttpConn, Response, DEFAULT_TIMEOUT,
};

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
