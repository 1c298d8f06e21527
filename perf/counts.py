#!/usr/bin/env python3
"""Work per request, counted rather than timed: for perf/ab.sh COUNTS=1.

CPU time per request moves by ±5 % between runs on a shared VM; the number of clock reads,
allocations, ring submissions, system calls and context switches per request does not, so a
change that removes some of them shows even where its time cannot be seen.

  events BIN GROUP   defines uprobes on BIN under GROUP (the clock: std's Timespec::now, which
                     Instant::now and SystemTime::now call; allocations: mimalloc's entry
                     points the Rust global allocator calls) and prints the `perf stat -e` list
  drop GROUP         removes GROUP's uprobes
  per-request FILE REQUESTS
                     prints `perf stat -x,` output FILE as counts per request, one line
  labels             prints the names of those counts, in that line's order

Needs root (tracefs). Uprobes cost ~1 µs per hit: the CPU figures of a counting run are not
comparable with a run without them (both sides of an A/B carry them alike).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def tracefs() -> Path:
    """The tracing file system, mounted first where a fresh machine has not mounted it."""
    mount = Path("/sys/kernel/tracing")
    if not (mount / "uprobe_events").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(mount)], check=True)
    return mount


TRACEFS = tracefs()

# uprobe name -> (how its symbol is found in `nm` output, its column's label)
PROBES = {
    "clock": (re.compile(r"Timespec\d*now"), "clock reads"),  # v0-mangled `<Timespec>::now`
    "alloc": (re.compile(r"^mi_malloc_aligned$"), "allocs"),
    "zalloc": (re.compile(r"^mi_zalloc_aligned$"), "zeroed allocs"),
    "realloc": (re.compile(r"^mi_realloc_aligned$"), "reallocs"),
}
# kernel event -> its column's label
KERNEL_EVENTS = {
    "io_uring:io_uring_submit_req": "ring ops",
    "syscalls:sys_enter_io_uring_enter": "io_uring_enter",
    "raw_syscalls:sys_enter": "syscalls",
    "context-switches": "switches",
}
# every count's label, in the order events are listed and counts printed
LABELS = {probe: label for probe, (_, label) in PROBES.items()} | KERNEL_EVENTS


def load_segments(binary: str) -> list[tuple[int, int, int]]:
    """(file offset, virtual address, file size) of each LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    segs = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            segs.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    return segs


def file_offset(segs: list[tuple[int, int, int]], vaddr: int) -> int:
    for off, start, size in segs:
        if start <= vaddr < start + size:
            return vaddr - start + off
    raise SystemExit(f"address {vaddr:#x} is in no LOAD segment")


def cmd_events(binary: str, group: str) -> None:
    binary = str(Path(binary).resolve())
    nm = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
    segs = load_segments(binary)
    found: dict[str, int] = {}
    for line in nm.splitlines():
        f = line.split()
        if len(f) != 3 or f[1] not in "tT":
            continue
        for probe, (pattern, _) in PROBES.items():
            if probe not in found and pattern.search(f[2]):
                found[probe] = int(f[0], 16)
    missing = set(PROBES) - set(found)
    if missing:
        raise SystemExit(f"{binary}: no symbol for {', '.join(sorted(missing))}")
    cmd_drop(group)
    for probe, vaddr in found.items():
        define(f"p:{group}/{probe} {binary}:{file_offset(segs, vaddr):#x}")
    print(",".join([f"{group}:{p}" for p in PROBES] + list(KERNEL_EVENTS)))


def define(line: str) -> None:
    """One line appended to tracefs's uprobe_events (by a plain write: Python's append mode
    seeks to the end first, which tracefs refuses)."""
    fd = os.open(TRACEFS / "uprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def cmd_drop(group: str) -> None:
    for line in (TRACEFS / "uprobe_events").read_text().splitlines():
        name = line.split()[0].split(":", 1)[1]
        if name.startswith(f"{group}/"):
            define(f"-:{name}")


def cmd_per_request(path: str, requests: int) -> None:
    counts: dict[str, float] = {}
    for line in Path(path).read_text().splitlines():
        f = line.split(",")
        if len(f) < 3 or line.startswith("#") or not f[0].replace(".", "").isdigit():
            continue
        event = f[2]
        probe = event.partition(":")[2]
        counts[probe if probe in PROBES else event] = float(f[0])
    per = {LABELS[e]: counts.get(e, 0.0) / max(requests, 1) for e in LABELS}
    print(" ".join(f"{v:.2f}" for v in per.values()))


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["events"] and len(args) == 3:
        cmd_events(args[1], args[2])
    elif args[:1] == ["drop"] and len(args) == 2:
        cmd_drop(args[1])
    elif args[:1] == ["per-request"] and len(args) == 3:
        cmd_per_request(args[1], int(args[2]))
    elif args[:1] == ["labels"]:
        print(" | ".join(LABELS.values()))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
