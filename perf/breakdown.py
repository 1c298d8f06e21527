#!/usr/bin/env python3
"""Where a proxy's CPU time per request goes, from a `perf record` of it.

Usage: python3 perf/breakdown.py [LABEL=]PERF_DATA US_PER_REQ [[LABEL=]PERF_DATA US_PER_REQ ...]

Each profile's samples (cpu-clock) are sorted into buckets by thread and symbol, and each
bucket's share is turned into microseconds per request with the CPU time per request that
the same run measured (perf/ab.sh prints it). Several profiles are printed side by side, so
that nginx, plain ringgate and governed ringgate can be read against each other
(docs/perf.md, "Every microsecond"). The buckets:

- tcp/ip: the kernel's TCP/IP over loopback. A loopback send also runs the receiving
  socket's processing, so this is both ends of every segment the process sends;
- syscalls + readiness: system call entry and exit, epoll (nginx) or the io_uring machinery
  (submission, poll arming, task work, completions), scheduling and idle wake-ups;
- copies: the kernel's copies between sockets and user buffers;
- user: code in the process's own binary and libc, split out for the vDSO clock reads and
  memcpy, which are cheap to name and easy to misattribute;
- coordinator, store, lease desk: ringgate's threads other than the shards (their user and
  kernel time together).
"""

import re
import subprocess
import sys

RING = re.compile(r"^(__)?io_|io_uring|llist_|task_work|tctx_")
READINESS = re.compile(r"ep_|epoll|_poll|poll_")
SYSCALL = re.compile(
    r"do_syscall|entry_SYSCALL|syscall_|__x64_sys|^fdget|^fget|^fput|__fget|exit_to_user|"
    r"irqentry|restore_fpregs|switch_fpu"
)
SCHED = re.compile(
    r"sched|schedule|finish_task_switch|__switch|pick_next|enqueue|dequeue|update_curr|"
    r"try_to_wake|ttwu|idle|hrtimer|tick_"
)
COPY = re.compile(r"copy_|memcpy|memmove|check_object|virt_addr_valid|_iter$")

THREADS = {
    "tokio-rt-worker": "store writes (SQLite, blocking pool)",
    "coordinator": "coordinator (fold, spool, metrics)",
    "lease-desk": "lease desk",
}

BUCKETS = [
    "tcp/ip (loopback, both ends)",
    "io_uring machinery",
    "syscall entry + epoll",
    "scheduling",
    "kernel copies",
    "user: vDSO clock reads",
    "user: memcpy/memmove (libc)",
    "user: the proxy's own code",
    *THREADS.values(),
    "other threads",
]


def bucket(comm: str, dso: str, sym: str) -> str:
    if comm in THREADS:
        return THREADS[comm]
    if not comm.startswith(("shard", "nginx", "rg", "floor")):
        return "other threads"
    if dso == "[vdso]":
        return "user: vDSO clock reads"
    if dso.startswith("[kernel"):
        if RING.search(sym):
            return "io_uring machinery"
        if READINESS.search(sym) or SYSCALL.search(sym):
            return "syscall entry + epoll"
        if SCHED.search(sym):
            return "scheduling"
        if COPY.search(sym):
            return "kernel copies"
        return "tcp/ip (loopback, both ends)"
    if "memmove" in sym or "memcpy" in sym:
        return "user: memcpy/memmove (libc)"
    return "user: the proxy's own code"


def shares(path: str) -> dict:
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "-g", "none", "--sort", "comm,dso,sym",
         "--stdio", "--field-separator", "|"],
        capture_output=True, text=True, check=True,
    ).stdout
    totals: dict = {}
    for line in out.splitlines():
        fields = [f.strip() for f in line.split("|", 3)]
        if line.startswith("#") or len(fields) < 4 or not fields[0].endswith("%"):
            continue
        pct, comm, dso, sym = fields
        sym = sym.split("] ", 1)[-1]
        b = bucket(comm, dso, sym)
        totals[b] = totals.get(b, 0.0) + float(pct.rstrip("%"))
    return totals


def main(argv: list) -> None:
    if len(argv) < 2 or len(argv) % 2:
        sys.exit(__doc__)
    runs = [(argv[i], float(argv[i + 1])) for i in range(0, len(argv), 2)]
    tables = [(path, us, shares(path.split("=", 1)[-1])) for path, us in runs]
    names = [path.split("=", 1)[0] if "=" in path else path.rsplit("/", 1)[-1] for path, _, _ in tables]
    print("| µs per request | " + " | ".join(names) + " |")
    print("|---|" + "--:|" * len(names))
    for b in BUCKETS:
        cells = [t.get(b, 0.0) * us / 100 for _, us, t in tables]
        if any(c >= 0.005 for c in cells):
            print(f"| {b} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    print("| **total (measured)** | " + " | ".join(f"**{us:.2f}**" for _, us, _ in tables) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
