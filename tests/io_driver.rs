//! The io driver shards run on, as a deployment sees it: `/ready` and the control port's
//! `/metrics` name it; where a seccomp profile blocks io_uring (Docker's default profile
//! does), `runtime.driver: auto` falls back to epoll and `runtime.driver: io_uring` refuses
//! to start with a message that says how to fix it. The blocking profile is a seccomp filter
//! the test installs in the gateway's process before it runs, answering the three io_uring
//! syscalls with EPERM as Docker's does.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

/// Makes `command` run under a seccomp filter that fails io_uring_setup, io_uring_enter and
/// io_uring_register with EPERM and allows everything else.
fn block_io_uring(command: &mut Command) {
    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    /// Skips `to_errno` instructions when the syscall number is `nr`.
    fn if_nr(nr: libc::c_long, to_errno: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: to_errno,
            jf: 0,
            k: nr as u32,
        }
    }
    let filter = [
        // Load seccomp_data.nr (offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        if_nr(libc::SYS_io_uring_setup, 3),
        if_nr(libc::SYS_io_uring_enter, 2),
        if_nr(libc::SYS_io_uring_register, 1),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
    ];
    // SAFETY: the closure runs in the forked child before exec and only makes two prctl
    // calls over memory the closure owns (no allocation, no locks).
    unsafe {
        command.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            let one: libc::c_ulong = 1;
            let zero: libc::c_ulong = 0;
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, one, zero, zero, zero) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::c_ulong::from(libc::SECCOMP_MODE_FILTER),
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The `ringgate_io_driver` samples on the control port.
fn driver_samples(gw: &Gateway) -> Vec<String> {
    gw.metrics()
        .lines()
        .filter(|l| l.starts_with("ringgate_io_driver{"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn io_uring_is_named_on_ready_and_metrics() {
    let gw = Gateway::start(json!({
        "shards": 2,
        "runtime": {"driver": "io_uring"},
        "providers": {"mock": {"base_url": "http://127.0.0.1:9/v1"}},
    }));
    let ready = gw.get("/ready");
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.text(),
        r#"{"status":"ready","io_driver":"io_uring","shards":2}"#
    );
    assert_eq!(
        driver_samples(&gw),
        [r#"ringgate_io_driver{driver="io_uring"} 1"#]
    );
}

#[test]
fn auto_falls_back_to_epoll_where_seccomp_blocks_io_uring() {
    let mock = MockLlm::start(&[]);
    let gw = Gateway::start_with(
        merged(basic_config(&mock.base_url()), json!({"shards": 1})),
        block_io_uring,
    );
    assert_eq!(gw.get("/ready").json()["io_driver"], "epoll");
    assert_eq!(gw.get("/ready").json()["shards"], 1);
    assert_eq!(
        driver_samples(&gw),
        [r#"ringgate_io_driver{driver="epoll"} 1"#]
    );
    let log = gw.stderr();
    assert!(
        log.contains("io_uring_setup failed: Operation not permitted"),
        "the fallback should be logged with its cause: {log}"
    );
    let resp = gw.post_json(
        "/v1/chat/completions",
        &chat_body("gpt-4o-mini", "hello", false),
        &[],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["choices"][0]["message"]["content"],
        "echo: hello"
    );
    // The request's times come from one clock reading per poll; epoll's I/O can complete
    // within a poll, and the wait on the provider must still be timed and left out of the
    // overhead.
    let resp = gw.post_json(
        "/v1/chat/completions",
        &chat_body("gpt-4o-mini", "hello", false),
        &[("x-ringgate-overhead", "1"), ("x-mock-latency-ms", "40")],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let overhead_us: u64 = resp
        .header("x-ringgate-overhead-us")
        .expect("overhead header")
        .parse()
        .expect("microseconds");
    assert!(
        overhead_us < 40_000,
        "overhead {overhead_us} µs holds the provider's 40 ms"
    );
}

#[test]
fn io_uring_refuses_to_start_where_seccomp_blocks_it() {
    let dir = TempDir::new("ringgate-no-uring");
    let config = dir.path().join("ringgate.yaml");
    write_config(
        &config,
        &json!({
            "listen": "127.0.0.1:0",
            "control": {"listen": "127.0.0.1:0"},
            "runtime": {"driver": "io_uring"},
            "providers": {"mock": {"base_url": "http://127.0.0.1:9/v1"}},
        }),
    );
    let log = dir.path().join("ringgate.log");
    let mut command = Command::new(ringgate_bin());
    block_io_uring(&mut command);
    let mut child = command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create log"))
        .spawn()
        .expect("spawn ringgate");
    let status = poll_until(STARTUP_TIMEOUT, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("ringgate kept running without io_uring:\n{text}"));
    assert!(
        !status.success(),
        "ringgate exited 0 without io_uring:\n{text}"
    );
    for needle in [
        "io_uring_setup failed: Operation not permitted",
        "seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register",
        "runtime.driver: auto",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}
