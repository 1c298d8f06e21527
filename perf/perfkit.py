#!/usr/bin/env python3
"""Helpers for perf/run.sh: /proc sampling, the idle-connection test, noise accounting.

Standard library only. Subcommands (all write JSON files into the run's raw directory):

  meta OUT                      machine facts + run settings (from PERF_* environment vars)
  snap OUT [--shell PID] role=PID ...
                                CPU ticks (utime+stime) of each PID's process tree + /proc/stat
  mem OUT role=PID ...          VmRSS / VmHWM / Pss of each PID's process tree
  idle OUT --port P --n N --body FILE [-H 'name: value' ...] role=PID ...
                                open N keep-alive connections, one request each, keep them open,
                                read memory, check they are still open, close them, read again
  noise BEFORE AFTER            other processes' user CPU between two snaps, % of one core
  quiet [--max-wait S]          wait (bounded) until the machine is quiet
  report RAWDIR                 render the markdown report from everything in RAWDIR (report.py)

"role=PID" names the root of a process tree (nginx master -> workers are included). perf/run.sh
snapshots the measured target as `proxy` and `mock`, and every other target's process, waiting
for its turn, as `idle.<target>`: the noise accounting counts them all as the test's own.
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


def tree(root: int, ppids: dict[int, int] | None = None) -> list[int]:
    """root and all its descendants (processes, not threads: /proc/PID/stat covers threads);
    `ppids` (_all_ppids) when the caller walks several trees of one moment."""
    ppids = _all_ppids() if ppids is None else ppids
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
    ppids = _all_ppids()
    for role, root in roles.items():
        per = {}
        for p in tree(root, ppids):
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
    extra = "".join(f"{h}\r\n" for h in args.header)  # e.g. the governed target's virtual key
    req = (
        f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n{extra}"
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


def machine_facts() -> dict:
    """What a measurement's numbers depend on besides the code (also stored with bench baselines)."""
    cpu_model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_total = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "mem_total": mem_total,
        "rustc": _cmd_out(["rustc", "--version"]),
    }


def cmd_meta(args) -> None:
    env = {k[len("PERF_") :].lower(): v for k, v in os.environ.items() if k.startswith("PERF_")}
    wrk_v = _cmd_out(["wrk", "--version"]).splitlines()
    meta = {
        **machine_facts(),
        "nginx": _cmd_out([env.get("nginx_bin", "nginx"), "-v"]).replace("nginx version: ", ""),
        "wrk": wrk_v[0].split(" Copyright")[0] if wrk_v else "?",
        "oha": _cmd_out(["oha", "--version"]),
        "python": platform.python_version(),
        "clk_tck": CLK_TCK,
        "noisy_at_start": noisy_neighbours(),
        "bins": {name: _bin_fact(env.get(key, "")) for name, key in
                 (("ringgate", "ringgate_bin_src"), ("mock-llm", "mock_bin_src"))},
        "env": env,
    }
    Path(args.out).write_text(json.dumps(meta, indent=1))


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
    p.add_argument("-H", "--header", action="append", default=[], help="extra request header, 'name: value'")
    p = sub.add_parser("report")
    p.add_argument("raw")
    args = ap.parse_args()
    if args.cmd == "report":  # kept here for the commands docs/perf.md quotes; the report lives in report.py
        import report
        print(report.render(report.collect(Path(args.raw))))
        return
    {"meta": cmd_meta, "snap": cmd_snap, "noise": cmd_noise, "quiet": cmd_quiet, "mem": cmd_mem, "idle": cmd_idle}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
