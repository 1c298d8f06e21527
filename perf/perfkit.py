#!/usr/bin/env python3
"""Helpers for perf/run.sh: /proc sampling, the idle-connection test, and the report.

Standard library only. Subcommands (all write JSON files into the run's raw directory):

  meta OUT                      machine facts + run settings (from PERF_* environment vars)
  snap OUT [--shell PID] role=PID ...
                                CPU ticks (utime+stime) of each PID's process tree + /proc/stat
  mem OUT role=PID ...          VmRSS / VmHWM / Pss of each PID's process tree
  idle OUT --port P --n N --body FILE role=PID ...
                                open N keep-alive connections, one request each, keep them open,
                                read memory, check they are still open, close them, read again
  noise BEFORE AFTER            other processes' user CPU between two snaps, % of one core
  quiet [--max-wait S]          wait (bounded) until the machine is quiet
  report RAWDIR                 render the markdown report from everything in RAWDIR

"role=PID" names the root of a process tree (nginx master -> workers are included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY = {"rustc", "cargo", "clippy-driver", "rustdoc", "cargo-clippy", "cc1", "cc1plus", "ld", "ld.lld", "lld", "clang", "gcc", "mold"}


# --------------------------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> tuple[str, list[str]]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    lp, rp = raw.index("("), raw.rindex(")")
    return raw[lp + 1 : rp], raw[rp + 2 :].split()


def _all_ppids() -> dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                _, f = _stat_fields(int(d))
                out[int(d)] = int(f[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def tree(root: int) -> list[int]:
    """root and all its descendants (processes, not threads: /proc/PID/stat covers threads)."""
    ppids = _all_ppids()
    pids, frontier = [root], [root]
    while frontier:
        nxt = [p for p, pp in ppids.items() if pp in frontier]
        pids += nxt
        frontier = nxt
    return [p for p in pids if Path(f"/proc/{p}").exists()]


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, utime) of a whole process (all its threads), in clock ticks."""
    _, f = _stat_fields(pid)
    # after "(comm) ": f[0]=state (field 3) ... utime is field 14, stime field 15
    return int(f[11]) + int(f[12]), int(f[11])


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def proc_stat_cpus() -> dict[str, list[int]]:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            name, *vals = line.split()
            out[name] = [int(v) for v in vals]
    return out


def noisy_neighbours() -> list[str]:
    me = os.getpid()
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != me:
            try:
                comm = Path(f"/proc/{d}/comm").read_text().strip()
            except OSError:
                continue
            if comm in NOISY:
                found.append(f"{comm}[{d}]")
    return sorted(found)


def parse_roles(items: list[str]) -> dict[str, int]:
    roles = {}
    for it in items:
        role, _, pid = it.partition("=")
        roles[role] = int(pid)
    return roles


def mem_of(roles: dict[str, int]) -> dict:
    out = {}
    for role, root in roles.items():
        per = {}
        for p in tree(root):
            try:
                comm = Path(f"/proc/{p}/comm").read_text().strip()
                per[str(p)] = {"comm": comm, **status_kb(p), "fds": len(os.listdir(f"/proc/{p}/fd"))}
            except OSError:
                pass
        out[role] = {
            "root": root,
            "per_pid": per,
            "rss_kb": sum(v.get("VmRSS", 0) for v in per.values()),
            "hwm_kb": sum(v.get("VmHWM", 0) for v in per.values()),
            "pss_kb": sum(v.get("Pss", 0) for v in per.values()),
            "fds": sum(v.get("fds", 0) for v in per.values()),
        }
    return out


# --------------------------------------------------------------------------------------------
# subcommands that sample
# --------------------------------------------------------------------------------------------

def cmd_snap(args) -> None:
    roles = parse_roles(args.roles)
    procs = {}
    for role, root in roles.items():
        per = {}
        for p in tree(root):
            try:
                per[str(p)] = cpu_ticks(p)
            except OSError:
                pass
        procs[role] = {"root": root, "ticks": sum(v[0] for v in per.values()),
                       "uticks": sum(v[1] for v in per.values()), "per_pid": per}
    shell_ticks = shell_uticks = None
    if args.shell:
        _, f = _stat_fields(args.shell)
        # the driving shell's own time + that of every child it has reaped (wrk, oha, helpers)
        shell_ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        shell_uticks = int(f[11]) + int(f[13])
    snap = {
        "t": time.monotonic(),
        "shell_ticks": shell_ticks,
        "shell_uticks": shell_uticks,
        "clk_tck": CLK_TCK,
        "procs": procs,
        "cpus": proc_stat_cpus(),
        "noisy": noisy_neighbours(),
    }
    Path(args.out).write_text(json.dumps(snap))


def foreign_pct(before: dict, after: dict) -> float | None:
    """User-mode CPU used during [before, after] by processes that are not part of the test (other
    users' compilers, tests, daemons), in % of one core: user+nice time of all CPUs (/proc/stat)
    minus the user time of the process trees under test and of the driving shell's reaped children
    (the load generator, helpers). User time only, because system time is entangled with loopback
    softirq work that the kernel books partly to our processes and partly to no process at all."""
    if before.get("shell_uticks") is None or after.get("shell_uticks") is None:
        return None
    busy = 0
    for cpu, a in after["cpus"].items():
        b = before["cpus"].get(cpu)
        if b:
            busy += (a[0] - b[0]) + (a[1] - b[1])  # user + nice
    ours = after["shell_uticks"] - before["shell_uticks"]
    for role, pa in after["procs"].items():
        pb = before["procs"].get(role)
        if pb:
            ours += pa["uticks"] - pb["uticks"]
    wall = after["t"] - before["t"]
    if wall <= 0:
        return None
    # /proc/stat counts in USER_HZ, which is CLK_TCK on Linux
    return max(0.0, 100.0 * (busy - ours) / before["clk_tck"] / wall)


def cmd_noise(args) -> None:
    v = foreign_pct(json.loads(Path(args.before).read_text()), json.loads(Path(args.after).read_text()))
    print("0" if v is None else f"{v:.1f}")


def machine_busy_pct(interval: float) -> float:
    """All busy time on all CPUs over `interval`, in % of one core."""
    b = proc_stat_cpus()
    time.sleep(interval)
    a = proc_stat_cpus()
    busy = 0
    for cpu, va in a.items():
        d = [x - y for x, y in zip(va, b.get(cpu, va))]
        busy += sum(d[:8]) - d[3] - d[4]
    return 100.0 * busy / CLK_TCK / interval


def cmd_quiet(args) -> None:
    """Wait (bounded) until the machine is quiet: busy < threshold for two 1 s windows in a row."""
    deadline = time.monotonic() + args.max_wait
    calm = 0
    last = 0.0
    while True:
        last = machine_busy_pct(1.0)
        calm = calm + 1 if last < args.threshold else 0
        if calm >= 2:
            print(f"quiet ({last:.0f}% of a core busy)")
            return
        if time.monotonic() >= deadline:
            print(f"still busy after {args.max_wait:.0f}s ({last:.0f}% of a core); going on")
            return


def cmd_mem(args) -> None:
    Path(args.out).write_text(json.dumps(mem_of(parse_roles(args.roles))))


def _read_response(sock: socket.socket) -> int:
    """Read one HTTP/1.1 response with Content-Length (or chunked) framing; return status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        need = int(headers["content-length"]) - len(rest)
        while need > 0:
            chunk = sock.recv(min(need, 65536))
            if not chunk:
                raise ConnectionError("closed mid-body")
            need -= len(chunk)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
    return status


def _alive(socks: list[socket.socket]) -> int:
    """How many sockets the peer has not closed (or reset)."""
    alive = 0
    for i in range(0, len(socks), 500):
        batch = socks[i : i + 500]
        readable = set()
        if batch:
            readable, _, _ = select.select(batch, [], [], 0)
        for s in batch:
            if s not in readable:
                alive += 1
                continue
            try:
                data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                alive += 1 if data else 0
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
    return alive


def _idle_cycle(args, roles: dict[str, int], req: bytes) -> dict:
    result: dict = {}
    socks: list[socket.socket] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    t0 = time.monotonic()
    for _ in range(args.n):
        try:
            s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(req)
            st = _read_response(s)
            statuses[str(st)] = statuses.get(str(st), 0) + 1
            socks.append(s)
        except OSError as e:  # includes ConnectionError / timeout
            errors.append(repr(e))
    result["open_seconds"] = time.monotonic() - t0
    result["opened"] = len(socks)
    result["statuses"] = statuses
    result["errors"] = errors[:10]
    result["error_count"] = len(errors)
    time.sleep(args.settle)
    result["with_idle"] = mem_of(roles)
    result["alive_at_measure"] = _alive(socks)
    time.sleep(args.hold)
    result["alive_after_hold"] = _alive(socks)
    result["hold_seconds"] = args.hold + args.settle
    for s in socks:
        s.close()
    time.sleep(args.settle)
    result["after_close"] = mem_of(roles)
    return result


def cmd_idle(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    roles = parse_roles(args.roles)
    body = Path(args.body).read_bytes()
    req = (
        f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    result = {"n": args.n, "before": mem_of(roles), **_idle_cycle(args, roles, req)}
    # A second identical cycle separates allocator retention (RSS stays flat on the second
    # round) from growth (RSS climbs again).
    if args.cycles > 1:
        result["cycle2"] = _idle_cycle(args, roles, req)
    Path(args.out).write_text(json.dumps(result))


def _cmd_out(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"


def _bin_fact(path: str) -> str:
    import hashlib
    try:
        st = os.stat(path)
        h = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "?"
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st.st_mtime))
    return f"`{path}` built {built}, sha256 {h}…"


def cmd_meta(args) -> None:
    cpu_model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_total = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    env = {k[len("PERF_") :].lower(): v for k, v in os.environ.items() if k.startswith("PERF_")}
    wrk_v = _cmd_out(["wrk", "--version"]).splitlines()
    meta = {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "mem_total": mem_total,
        "nginx": _cmd_out([env.get("nginx_bin", "nginx"), "-v"]).replace("nginx version: ", ""),
        "wrk": wrk_v[0].split(" Copyright")[0] if wrk_v else "?",
        "oha": _cmd_out(["oha", "--version"]),
        "rustc": _cmd_out(["rustc", "--version"]),
        "python": platform.python_version(),
        "clk_tck": CLK_TCK,
        "noisy_at_start": noisy_neighbours(),
        "bins": {name: _bin_fact(env.get(key, "")) for name, key in
                 (("ringgate", "ringgate_bin_src"), ("mock-llm", "mock_bin_src"))},
        "env": env,
    }
    Path(args.out).write_text(json.dumps(meta, indent=1))


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

NOISE_MARK = " ⚠"
TARGET_LABEL = {"mock": "direct (mock)", "nginx": "nginx", "ringgate": "ringgate"}


def _load(p: Path):
    return json.loads(p.read_text()) if p.exists() else None


def _wrk(p: Path):
    if not p.exists():
        return None
    for line in p.read_text().splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON ") :])
    return None


def _cpu_delta(before, after, role: str):
    if not before or not after or role not in before["procs"] or role not in after["procs"]:
        return None
    if not after["procs"][role]["per_pid"] or str(after["procs"][role]["root"]) not in after["procs"][role]["per_pid"]:
        return None  # the process had exited
    return (after["procs"][role]["ticks"] - before["procs"][role]["ticks"]) / before["clk_tck"]


def _core_busy(before, after) -> dict[str, float]:
    out = {}
    if not before or not after:
        return out
    for cpu, a in after["cpus"].items():
        b = before["cpus"].get(cpu)
        if not b:
            continue
        d = [x - y for x, y in zip(a, b)]
        total = sum(d[:8])  # user nice system idle iowait irq softirq steal
        idle = d[3] + d[4]
        out[cpu] = 100.0 * (total - idle) / total if total else 0.0
    return out


def _fmt_us(us):
    if us is None:
        return "n/a"
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def _fmt_signed_us(us):
    if us is None:
        return "n/a"
    sign = "+" if us >= 0 else "−"
    return sign + _fmt_us(abs(us))


def _pct(v):
    return "n/a" if v is None else f"{v:.0f} %"


def _ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}×"


def _mib(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def _overhead_buckets(p: Path) -> dict[int, int]:
    """ringgate's `GET /latency`: the gateway-overhead fine buckets of every 2xx series, summed
    (upper bound in µs → count)."""
    j = _load(p)
    out: dict[int, int] = {}
    for row in (j or {}).get("data", []):
        if row.get("class") != "2xx":
            continue
        for upper, n in row.get("gateway_overhead", {}).get("buckets", []):
            out[upper] = out.get(upper, 0) + n
    return out


def _bucket_quantile(buckets: dict[int, int], q: float):
    """The upper bound of the bucket holding quantile q (at most 12.5 % above the value)."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    seen = 0
    for upper in sorted(buckets):
        seen += buckets[upper]
        if seen >= q * total:
            return upper
    return max(buckets)


def overhead_section(w, raw: Path, rates, ol) -> None:
    """ringgate's overhead as it measures it (total minus time waiting on the mock), per open-loop
    rate, from the difference of two `/latency` readings, beside the client-side added latency."""
    w("### ringgate's overhead, measured inside (`GET /latency`, difference over the run)")
    w("")
    w("| rate | requests | overhead p50 | p90 | p99 | p99.9 | client-side added p50 | added p99 |")
    w("|--:|--:|--:|--:|--:|--:|--:|--:|")
    for rate in rates:
        d = raw / "ringgate"
        before = _overhead_buckets(d / f"open_{rate}.latency_before.json")
        after = _overhead_buckets(d / f"open_{rate}.latency_after.json")
        if not after:
            w(f"| {rate} | n/a | | | | | | |")
            continue
        diff = {u: n - before.get(u, 0) for u, n in after.items() if n - before.get(u, 0) > 0}
        cells = [_bucket_quantile(diff, q) for q in (0.5, 0.9, 0.99, 0.999)]
        base, g = ol.get((rate, "mock"), {}), ol.get((rate, "ringgate"), {})
        added = []
        for p in ("p50", "p99"):
            if base.get(p) is not None and g.get(p) is not None:
                added.append(_fmt_signed_us(g[p] - base[p]))
            else:
                added.append("n/a")
        w(f"| {rate} | {sum(diff.values()):,} | " + " | ".join(f"≤ {c} µs" if c is not None else "n/a" for c in cells)
          + f" | {added[0]} | {added[1]} |")
    w("")
    w("The overhead is what ringgate spends per request between reading the request whole and writing the "
      "response's last byte, minus the time it waits on the mock (docs/observability.md); each figure is the upper "
      "bound of its fine bucket (within 12.5 %). The client-side added latency also holds the extra hop's "
      "kernel and scheduling time, which the gateway cannot see.")
    w("")


def cmd_report(args) -> None:
    raw = Path(args.raw)
    meta = _load(raw / "meta.json") or {}
    env = meta.get("env", {})
    targets = env.get("targets", "mock nginx ringgate").split()
    rates = env.get("rates", "1000 2500 5000").split()
    proxies = [t for t in targets if t != "mock"]
    threshold = float(env.get("noise_threshold", "10"))
    anomalies: list[str] = []
    noisy_seen: set[str] = set(meta.get("noisy_at_start", []))
    L: list[str] = []
    w = L.append

    w(f"# ringgate load test — {env.get('stamp', raw.name)} UTC")
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| nproc | {meta.get('nproc')} |")
    w(f"| kernel (`uname -r`) | {meta.get('kernel')} |")
    w(f"| CPU | {meta.get('cpu_model')} |")
    w(f"| memory | {meta.get('mem_total')} |")
    w(f"| nginx | {meta.get('nginx')} |")
    w(f"| wrk | {meta.get('wrk')} |")
    w(f"| oha | {meta.get('oha')} |")
    w(f"| rustc | {meta.get('rustc')} |")
    w(f"| work tree at run time | {env.get('git', '?')} |")
    for b in ("ringgate", "mock-llm"):
        w(f"| {b} binary | {meta.get('bins', {}).get(b, '?')} |")
    w(f"| open-file limit | {env.get('nofile', '?')} |")
    w("")
    w("## Command")
    w("")
    w("```")
    w(env.get("command", "bash perf/run.sh"))
    w("```")
    w("")
    w(
        f"Settings: wrk `-t{env.get('wrk_threads')} -c{env.get('conns')} -d{env.get('duration')} --latency`, "
        f"oha `-c {env.get('conns')} -z {env.get('duration')} -q RATE --latency-correction` "
        f"(`--worker-threads {env.get('oha_threads')}`) at {', '.join(rates)} req/s, "
        f"{env.get('idle_conns')} idle connections; request body {env.get('body_bytes')} bytes "
        f"(`POST /v1/chat/completions`, model `mock/gpt-4o-mini`), "
        f"streaming = mock defaults (8 chunks, 0 ms interval). Warm-up {env.get('warmup')} per target, not measured."
    )
    w("")
    w("## Core placement")
    w("")
    w(
        f"- **proxy cases** (nginx, ringgate): proxy on cpu `{env.get('proxy_cpus')}` "
        f"(nginx `worker_processes {env.get('proxy_cores')}`, ringgate `--shards {env.get('proxy_cores')}`, shards pinned); "
        f"mock-llm (`--workers {env.get('mock_workers')}`) on cpu `{env.get('mock_cpus')}`; "
        f"load generator (wrk/oha/idle client) on cpu `{env.get('loadgen_cpus')}`."
    )
    w(
        f"- **direct case**: mock-llm (`--workers {env.get('direct_mock_workers')}`) on cpu `{env.get('direct_mock_cpus')}`, "
        f"load generator on cpu `{env.get('loadgen_cpus')}`."
    )
    w(
        "- Everything on 127.0.0.1, pinned with `taskset -c`. Overrides: `PROXY_CPUS`, `MOCK_CPUS`, "
        "`LOADGEN_CPUS`, `DIRECT_MOCK_CPUS`."
    )
    w("")
    summary_at = len(L)

    # ---------------- saturation ----------------
    sat: dict[tuple[str, str], dict] = {}
    for scen in ("plain", "stream"):
        for t in targets:
            d = raw / t
            r = _wrk(d / f"sat_{scen}.wrk.txt")
            b, a = _load(d / f"sat_{scen}.cpu_before.json"), _load(d / f"sat_{scen}.cpu_after.json")
            for s in (b, a):
                if s:
                    noisy_seen.update(s.get("noisy", []))
            fp = foreign_pct(b, a) if b and a else None
            row = {"wrk": r, "foreign": fp, "noisy": fp is not None and fp > threshold}
            if r:
                secs = r["duration_us"] / 1e6
                row["rps"] = r["requests"] / secs if secs else None
                row["errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
                row["non2xx"] = r["err_status"]
                n = r["requests"]
                role = "proxy" if t != "mock" else "mock"
                pc = _cpu_delta(b, a, role)
                mc = _cpu_delta(b, a, "mock")
                row["proxy_us"] = pc / n * 1e6 if pc is not None and n else None
                row["mock_us"] = mc / n * 1e6 if mc is not None and n else None
                row["proxy_util"] = 100 * pc / (a["t"] - b["t"]) if pc is not None else None
                lg = ((a["shell_ticks"] - b["shell_ticks"]) / b["clk_tck"]
                      if a.get("shell_ticks") is not None and b.get("shell_ticks") is not None else None)
                row["loadgen_us"] = lg / n * 1e6 if lg is not None and n else None
                row["busy"] = _core_busy(b, a)
                if row["errors"] or row["non2xx"]:
                    anomalies.append(
                        f"saturation/{scen} → {t}: wrk reported {row['non2xx']} non-2xx/3xx responses and "
                        f"socket errors connect={r['err_connect']} read={r['err_read']} write={r['err_write']} "
                        f"timeout={r['err_timeout']} (raw: `{t}/sat_{scen}.wrk.txt`)"
                    )
            else:
                anomalies.append(f"saturation/{scen} → {t}: no wrk result (see `{t}/sat_{scen}.wrk.txt`)")
            sat[(scen, t)] = row

    w(f"## 1–2. Saturation (closed loop: wrk -t{env.get('wrk_threads')} -c{env.get('conns')} -d{env.get('duration')})")
    w("")
    w(
        "| scenario | target | req/s | avg latency | p99 latency | non-2xx | socket errors "
        "| CPU µs/req (proxy) | CPU µs/req (mock) | CPU µs/req (wrk) | proxy core busy | " +
        " | ".join(f"{c} busy" for c in sorted(next((r['busy'] for r in sat.values() if r.get('busy')), {}))) +
        " | other load |"
    )
    ncpu_cols = len(next((r["busy"] for r in sat.values() if r.get("busy")), {}))
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * ncpu_cols + "--:|")
    for scen in ("plain", "stream"):
        for t in targets:
            row = sat[(scen, t)]
            r = row.get("wrk")
            if not r:
                w(f"| {scen} | {TARGET_LABEL[t]} | n/a |" + " |" * (10 + ncpu_cols))
                continue
            proxy_us = f"{row['proxy_us']:.1f}" if t != "mock" and row.get("proxy_us") is not None else "—"
            mock_us = f"{row['mock_us']:.1f}" if row.get("mock_us") is not None else "n/a"
            lg_us = f"{row['loadgen_us']:.1f}" if row.get("loadgen_us") is not None else "n/a"
            util = f"{row['proxy_util']:.0f} %" if t != "mock" and row.get("proxy_util") is not None else "—"
            busy = " | ".join(f"{v:.0f} %" for _, v in sorted(row["busy"].items()))
            w(
                f"| {scen} | {TARGET_LABEL[t]}{NOISE_MARK if row['noisy'] else ''} | {row['rps']:,.0f} | {_fmt_us(r['lat_mean_us'])} | "
                f"{_fmt_us(r['p99_us'])} | {row['non2xx']} | {row['errors']} | {proxy_us} | {mock_us} | {lg_us} | {util} | {busy} | {_pct(row['foreign'])} |"
            )
    w("")
    w(
        "CPU µs/req = (utime+stime of the whole process tree, all threads, from `/proc/PID/stat`, after − before) "
        "÷ requests wrk completed. For the direct row the mock's figure is the one to compare with the proxies'. "
        "CPU µs/req (wrk) is the load generator's, from the driving shell's reaped-children times. "
        "\"proxy core busy\" = proxy CPU-seconds ÷ wall-seconds; the cpuN columns are whole-core utilisation from `/proc/stat` "
        "(includes everything on that core, also softirq time of the loopback traffic, which no process is "
        "charged for). \"other load\" = user-mode CPU used meanwhile by processes that are not part of the test "
        f"(the machine is shared), in % of one core; above {threshold:g} % a run is redone after the "
        f"machine quietens (bounded), and rows still above it are marked{NOISE_MARK}."
    )
    w("")

    # ratios
    w("### Ratios (saturation)")
    w("")
    w("| scenario | metric | ringgate / nginx | nginx / direct | ringgate / direct |")
    w("|---|---|--:|--:|--:|")
    for scen in ("plain", "stream"):
        m, n, g = sat.get((scen, "mock"), {}), sat.get((scen, "nginx"), {}), sat.get((scen, "ringgate"), {})

        def val(row, key):
            if not row:
                return None
            if key in ("lat_mean_us", "p99_us"):
                return row["wrk"][key] if row.get("wrk") else None
            return row.get(key)

        for key, label in (("rps", "req/s"), ("lat_mean_us", "avg latency"), ("p99_us", "p99 latency"),
                           ("proxy_us", "CPU µs/req")):
            direct = val(m, "mock_us") if key == "proxy_us" else val(m, key)
            w(
                f"| {scen} | {label} | {_ratio(val(g, key), val(n, key))} | {_ratio(val(n, key), direct)} | "
                f"{_ratio(val(g, key), direct)} |"
            )
        if val(g, "rps") and val(n, "rps") and val(g, "rps") < val(n, "rps"):
            anomalies.append(
                f"saturation/{scen}: ringgate throughput {val(g, 'rps'):,.0f} req/s is lower than nginx "
                f"{val(n, 'rps'):,.0f} req/s ({val(g, 'rps') / val(n, 'rps'):.2f}×)"
            )
        if val(g, "proxy_us") and val(n, "proxy_us") and val(g, "proxy_us") > val(n, "proxy_us"):
            anomalies.append(
                f"saturation/{scen}: ringgate uses more CPU per request than nginx "
                f"({val(g, 'proxy_us'):.1f} vs {val(n, 'proxy_us'):.1f} µs/req)"
            )
    w("")
    w("For the CPU row, \"direct\" is the mock-llm's own CPU per request when it serves the load directly. "
      "req/s: higher is better; latency, CPU: lower is better.")
    w("")

    # ---------------- open loop ----------------
    w(f"## 3. Open loop (oha -q RATE -c {env.get('conns')} -z {env.get('duration')} --latency-correction)")
    w("")
    w("| rate | target | achieved req/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | CPU µs/req (proxy) | non-200 | errors | other load |")
    w("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    ol: dict[tuple[str, str], dict] = {}
    for rate in rates:
        for t in targets:
            d = raw / t
            j = _load(d / f"open_{rate}.oha.json")
            b, a = _load(d / f"open_{rate}.cpu_before.json"), _load(d / f"open_{rate}.cpu_after.json")
            for s in (b, a):
                if s:
                    noisy_seen.update(s.get("noisy", []))
            row = {}
            if j:
                pct = j.get("latencyPercentiles", {})
                codes = j.get("statusCodeDistribution", {})
                errs = j.get("errorDistribution", {})
                n = sum(codes.values())
                row = {
                    "rps": n / j["summary"]["total"] if j["summary"].get("total") else None,
                    "p50": pct.get("p50", 0) * 1e6 if pct.get("p50") is not None else None,
                    "p99": pct.get("p99", 0) * 1e6 if pct.get("p99") is not None else None,
                    "p99.9": pct.get("p99.9", 0) * 1e6 if pct.get("p99.9") is not None else None,
                    "non200": sum(v for k, v in codes.items() if k != "200"),
                    "errors": errs,
                    "n": n,
                    "foreign": foreign_pct(b, a) if b and a else None,
                }
                row["noisy"] = row["foreign"] is not None and row["foreign"] > threshold
                role = "proxy" if t != "mock" else "mock"
                c = _cpu_delta(b, a, role)
                row["cpu_us"] = c / n * 1e6 if c is not None and n else None
                real_errs = {k: v for k, v in errs.items() if "deadline" not in k.lower()}
                if row["non200"] or real_errs:
                    anomalies.append(
                        f"open loop {rate} req/s → {t}: {row['non200']} non-200 responses, errors {real_errs} "
                        f"(raw: `{t}/open_{rate}.oha.json`)"
                    )
                if row["rps"] and row["rps"] < 0.95 * float(rate):
                    anomalies.append(
                        f"open loop {rate} req/s → {t}: achieved only {row['rps']:,.0f} req/s "
                        f"(< 95 % of the offered rate — target or load generator saturated)"
                    )
            else:
                anomalies.append(f"open loop {rate} req/s → {t}: no oha result")
            ol[(rate, t)] = row
        base = ol.get((rate, "mock"), {})
        for t in targets:
            row = ol[(rate, t)]
            if not row:
                w(f"| {rate} | {TARGET_LABEL[t]} | n/a |" + " |" * 10)
                continue
            added = []
            for p in ("p50", "p99", "p99.9"):
                if t == "mock":
                    cell = "—"
                elif base.get(p) is None or row.get(p) is None:
                    cell = "n/a"
                else:
                    cell = _fmt_signed_us(row[p] - base[p])
                if t != "mock" and base.get("noisy"):
                    cell += NOISE_MARK
                added.append(cell)
            errs = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
            cpu = f"{row['cpu_us']:.1f}" if row.get("cpu_us") is not None else "n/a"
            if t == "mock":
                cpu += " (mock)"
            w(
                f"| {rate} | {TARGET_LABEL[t]}{NOISE_MARK if row['noisy'] else ''} | {row['rps']:,.0f} | {_fmt_us(row['p50'])} | {_fmt_us(row['p99'])} | "
                f"{_fmt_us(row['p99.9'])} | {added[0]} | {added[1]} | {added[2]} | {cpu} | {row['non200']} | {errs} | {_pct(row['foreign'])} |"
            )
    w("")
    w(
        "Added latency = proxy percentile − direct percentile at the same offered rate (same client, same "
        "placement except the extra hop). oha aborts requests still in flight when `-z` expires; those show as "
        "\"aborted due to deadline\" and are not failures."
    )
    w("")
    if "nginx" in targets and "ringgate" in targets and "mock" in targets:
        w("### Added latency, ringgate vs nginx")
        w("")
        w("| rate | p50 ringgate / nginx | p99 ringgate / nginx | p99.9 ringgate / nginx |")
        w("|--:|--:|--:|--:|")
        for rate in rates:
            base, n, g = ol.get((rate, "mock"), {}), ol.get((rate, "nginx"), {}), ol.get((rate, "ringgate"), {})
            cells = []
            for p in ("p50", "p99", "p99.9"):
                if all(x and x.get(p) is not None for x in (base, n, g)):
                    an, ag = n[p] - base[p], g[p] - base[p]
                    cells.append(f"{_fmt_signed_us(ag)} vs {_fmt_signed_us(an)}")
                else:
                    cells.append("n/a")
            w(f"| {rate} | " + " | ".join(cells) + " |")
        w("")

    if "ringgate" in targets:
        overhead_section(w, raw, rates, ol)

    # ---------------- memory ----------------
    w(f"## 5. Memory (process tree, after the runs above; idle test = {env.get('idle_conns')} keep-alive "
      "connections, one request each, done twice)")
    w("")
    w("| target | RSS at start | peak RSS (VmHWM) after load | RSS before idle test | RSS with idle conns | "
      "per idle conn | PSS with idle conns | RSS after closing | 2nd round: with idle / after closing | "
      "conns opened / still open after hold | open fds: before / with idle / after closing |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    mem_rows = {}
    tree_notes: list[str] = []
    for t in targets:
        d = raw / t
        role = "proxy" if t != "mock" else "mock"
        start = _load(d / "mem_start.json")
        after = _load(d / "mem_after_load.json")
        idle = _load(d / "idle.json")
        if not (start and after and idle) or role not in after or not after[role]["per_pid"] \
                or not idle["with_idle"][role]["per_pid"]:
            w(f"| {TARGET_LABEL[t]} | n/a |" + " |" * 10)
            anomalies.append(f"memory → {t}: missing measurements")
            continue
        s, a = start[role], after[role]
        bi, wi, ac = idle["before"][role], idle["with_idle"][role], idle["after_close"][role]
        per_conn = (wi["rss_kb"] - bi["rss_kb"]) / idle["opened"] if idle["opened"] else None
        mem_rows[t] = {"hwm": a["hwm_kb"], "idle": wi["rss_kb"], "per_conn": per_conn, "pss": wi["pss_kb"]}
        c2 = idle.get("cycle2")
        second = (f"{_mib(c2['with_idle'][role]['rss_kb'])} / {_mib(c2['after_close'][role]['rss_kb'])}"
                  if c2 else "—")
        opened = f"{idle['opened']}/{idle['n']} / {idle['alive_after_hold']}"
        if c2:
            opened += f" (2nd: {c2['opened']} / {c2['alive_after_hold']})"
        label = TARGET_LABEL[t]
        w(
            f"| {label} | {_mib(s['rss_kb'])} | {_mib(a['hwm_kb'])} | {_mib(bi['rss_kb'])} | {_mib(wi['rss_kb'])} | "
            f"{'n/a' if per_conn is None else f'{per_conn:.1f} KiB'} | {_mib(wi['pss_kb'])} | {_mib(ac['rss_kb'])} | {second} | {opened} | "
            f"{bi.get('fds', '?')} / {wi.get('fds', '?')} / {ac.get('fds', '?')} |"
        )
        for name, cyc in (("1st", idle), ("2nd", c2)):
            if not cyc:
                continue
            if cyc["opened"] < idle["n"] or cyc["error_count"]:
                anomalies.append(
                    f"idle test ({name} round) → {t}: opened {cyc['opened']} of {idle['n']} connections; errors "
                    f"{cyc['error_count']} e.g. {cyc['errors'][:3]}"
                )
            bad = {k: v for k, v in cyc["statuses"].items() if k != "200"}
            if bad:
                anomalies.append(f"idle test ({name} round) → {t}: non-200 statuses {bad}")
            if cyc["alive_after_hold"] < cyc["opened"]:
                anomalies.append(
                    f"idle test ({name} round) → {t}: {cyc['opened'] - cyc['alive_after_hold']} of {cyc['opened']} "
                    f"idle connections were closed by the server within {cyc['hold_seconds']:.0f} s"
                )
        if "fds" in ac and ac["fds"] > bi["fds"] + 16:
            anomalies.append(
                f"idle test → {t}: {ac['fds'] - bi['fds']} more open file descriptors after the client closed its "
                f"{idle['opened']} connections than before opening them ({bi['fds']} → {ac['fds']})"
            )
        if t != "mock" and ac["rss_kb"] > bi["rss_kb"] + 8 * 1024:
            anomalies.append(
                f"idle test → {t}: RSS after closing the {idle['opened']} idle connections is {_mib(ac['rss_kb'])}, "
                f"{_mib(ac['rss_kb'] - bi['rss_kb'])} above the {_mib(bi['rss_kb'])} before opening them "
                "(memory not returned to the OS"
                + (f"; 2nd identical round: {_mib(c2['with_idle'][role]['rss_kb'])} with idle conns, "
                   f"{_mib(c2['after_close'][role]['rss_kb'])} after closing" if c2 else "") + ")"
            )
        if t != "mock" and c2 and c2["with_idle"][role]["rss_kb"] > wi["rss_kb"] + 4 * 1024:
            anomalies.append(
                f"idle test → {t}: RSS grows across identical rounds: {_mib(wi['rss_kb'])} with idle conns in round 1, "
                f"{_mib(c2['with_idle'][role]['rss_kb'])} in round 2"
            )
        if len(a["per_pid"]) > 1:
            parts = ", ".join(f"{v['comm']}[{p}] RSS {_mib(v.get('VmRSS'))} HWM {_mib(v.get('VmHWM'))}"
                              for p, v in a["per_pid"].items())
            tree_notes.append(f"{label} processes after load: {parts}.")
    w("")
    for note in tree_notes:
        w(f"- {note}")
    if tree_notes:
        w("")
    w(
        "RSS figures sum every process of the tree (nginx: master + worker, whose pages are partly shared, "
        "so the sum over-counts; PSS splits shared pages and does not). \"per idle conn\" = (RSS with idle "
        "connections − RSS just before opening them) ÷ connections opened. The connections are opened one after "
        "another, each completes one request and then sits idle; \"still open after hold\" counts those the "
        f"server had not closed after {env.get('idle_hold', '?')} s. The second round repeats the test on the same "
        "process: flat numbers mean allocator retention, rising numbers mean growth."
    )
    w("")
    if "nginx" in mem_rows and "ringgate" in mem_rows:
        g, n = mem_rows["ringgate"], mem_rows["nginx"]
        w("### Ratios (memory)")
        w("")
        w("| metric | ringgate / nginx |")
        w("|---|--:|")
        w(f"| peak RSS (VmHWM) after load | {_ratio(g['hwm'], n['hwm'])} |")
        w(f"| RSS with idle conns | {_ratio(g['idle'], n['idle'])} |")
        w(f"| PSS with idle conns | {_ratio(g['pss'], n['pss'])} |")
        pc = (f"{g['per_conn']:.1f} vs {n['per_conn']:.1f} KiB" if g["per_conn"] is not None and
              n["per_conn"] is not None else "n/a")
        w(f"| per idle conn | {pc} |")
        w("")

    # ---------------- summary (inserted near the top) ----------------
    S: list[str] = []
    S.append("## Summary")
    S.append("")
    S.append("| metric | direct (mock) | nginx | ringgate | ringgate / nginx |")
    S.append("|---|--:|--:|--:|--:|")

    def srow(label, vals, fmt, noisy=None):
        d, n, g = (vals.get(t) for t in ("mock", "nginx", "ringgate"))
        cells = [(fmt(v) if v is not None else "—") + (NOISE_MARK if noisy and noisy.get(t) else "")
                 for t, v in (("mock", d), ("nginx", n), ("ringgate", g))]
        S.append(f"| {label} | " + " | ".join(cells) + f" | {_ratio(g, n)} |")

    for scen in ("plain", "stream"):
        nz = {t: sat.get((scen, t), {}).get("noisy") for t in targets}
        srow(f"saturation {scen}: req/s",
             {t: sat.get((scen, t), {}).get("rps") for t in targets}, lambda v: f"{v:,.0f}", nz)
        srow(f"saturation {scen}: p99 latency",
             {t: (sat.get((scen, t), {}).get("wrk") or {}).get("p99_us") for t in targets}, _fmt_us, nz)
        srow(f"saturation {scen}: CPU µs/req (proxy; direct = mock)",
             {t: sat.get((scen, t), {}).get("mock_us" if t == "mock" else "proxy_us") for t in targets},
             lambda v: f"{v:.1f}", nz)
    for rate in rates:
        for p in ("p50", "p99", "p99.9"):
            base = ol.get((rate, "mock"), {}).get(p)
            vals = {}
            for t in targets:
                v = ol.get((rate, t), {}).get(p)
                vals[t] = None if t == "mock" or v is None or base is None else v - base
            d, n, g = (vals.get(t) for t in ("mock", "nginx", "ringgate"))
            noisy = any(ol.get((rate, t), {}).get("noisy") for t in targets)
            mark = NOISE_MARK if noisy else ""
            ratio = _ratio(g, n) if n is not None and g is not None and n > 0 and g > 0 else "—"
            S.append(f"| open loop {rate}/s: added {p} | — | {_fmt_signed_us(n) + mark if n is not None else '—'} | "
                     f"{_fmt_signed_us(g) + mark if g is not None else '—'} | {ratio} |")
    srow("peak RSS (VmHWM) after load", {t: mem_rows.get(t, {}).get("hwm") for t in targets}, _mib)
    srow(f"RSS with {env.get('idle_conns')} idle conns", {t: mem_rows.get(t, {}).get("idle") for t in targets}, _mib)
    srow("RSS per idle conn", {t: mem_rows.get(t, {}).get("per_conn") for t in targets}, lambda v: f"{v:.1f} KiB")
    S.append("")
    S.append("Details, definitions and the ratios to direct follow below. "
             "req/s: higher is better; latency, CPU, memory: lower is better.")
    S.append("")
    L[summary_at:summary_at] = S

    # ---------------- anomalies ----------------
    extra = raw / "anomalies.txt"
    if extra.exists():
        anomalies += [ln for ln in extra.read_text().splitlines() if ln.strip()]
    for t in proxies:
        log = raw / t / f"{t}.stderr.log"
        if log.exists():
            lines = [ln for ln in log.read_text(errors="replace").splitlines()
                     if re.search(r"\b(WARN|ERROR|panicked|\[error\]|\[crit\]|\[alert\]|\[emerg\])", ln)]
            if lines:
                anomalies.append(
                    f"{t} stderr has {len(lines)} warning/error lines; first: " +
                    " / ".join(f"`{ln[:200]}`" for ln in lines[:3])
                )
    w("## Anomalies detected by the script")
    w("")
    if anomalies:
        for a_ in anomalies:
            w(f"- {a_}")
    else:
        w("- none (no errors, no non-2xx, no process died, no idle connection dropped, ringgate ≥ nginx throughput)")
    w("")
    redo_lines = []
    for t in targets:
        nl = raw / t / "noise.log"
        if nl.exists():
            attempts: dict[str, list[str]] = {}
            for ln in nl.read_text().splitlines():
                m = re.match(r"(\S+) attempt \d+: other processes used ([\d.]+)%", ln)
                if m:
                    attempts.setdefault(m.group(1), []).append(m.group(2) + " %")
            redo_lines += [f"{t}/{name} ({' → '.join(v)})" for name, v in attempts.items() if len(v) > 1]
    marked = [f"{k[1]}/{k[0]}" for k, r in sat.items() if r.get("noisy")] + \
             [f"{k[1]}/open {k[0]}" for k, r in ol.items() if r.get("noisy")]
    if redo_lines or marked:
        w("## Noise on the shared machine")
        w("")
        if redo_lines:
            w(f"Measurements redone because other processes used > {threshold:g} % of a core (other load per "
              "attempt; the last attempt is the one reported): " + "; ".join(redo_lines) + ".")
            w("")
        if marked:
            w(f"Still noisy after the allowed redos (marked{NOISE_MARK}; treat with care): {', '.join(marked)}."
              + (f" Compilers seen: {', '.join(sorted(noisy_seen)[:6])}." if noisy_seen else ""))
            w("")
    w(f"Raw outputs (wrk/oha/proc samples/logs): `perf/results/{raw.name}/`.")
    print("\n".join(L))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("meta")
    p.add_argument("out")
    p = sub.add_parser("snap")
    p.add_argument("out")
    p.add_argument("roles", nargs="+")
    p.add_argument("--shell", type=int)
    p = sub.add_parser("noise")
    p.add_argument("before")
    p.add_argument("after")
    p = sub.add_parser("quiet")
    p.add_argument("--max-wait", type=float, default=30)
    p.add_argument("--threshold", type=float, default=10)
    p = sub.add_parser("mem")
    p.add_argument("out")
    p.add_argument("roles", nargs="+")
    p = sub.add_parser("idle")
    p.add_argument("out")
    p.add_argument("roles", nargs="+")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--body", required=True)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--hold", type=float, default=2.0)
    p.add_argument("--cycles", type=int, default=2)
    p = sub.add_parser("report")
    p.add_argument("raw")
    args = ap.parse_args()
    {"meta": cmd_meta, "snap": cmd_snap, "noise": cmd_noise, "quiet": cmd_quiet, "mem": cmd_mem, "idle": cmd_idle, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
