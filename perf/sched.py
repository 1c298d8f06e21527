#!/usr/bin/env python3
"""Sets the scheduling of a running process's threads, by thread name: for perf/ab.sh's
A_HOOK / B_HOOK, to try a placement or policy on a binary without rebuilding it.

  idle NAME... PID          SCHED_IDLE for PID's threads whose name starts with a NAME
  slice US NAME... PID      a requested time slice of US µs (sched_setattr's sched_runtime
                            for SCHED_OTHER, Linux ≥ 6.12: a task with a shorter slice may
                            preempt one with a longer slice when it wakes)

The pid comes last, as perf/ab.sh's hooks append it. Prints what it changed, one line per
thread, to stderr. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

SYS_SCHED_SETATTR = 314  # x86_64
LIBC = ctypes.CDLL(None, use_errno=True)


class SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    ]


def threads(pid: int, names: list[str]):
    for task in Path(f"/proc/{pid}/task").iterdir():
        comm = (task / "comm").read_text().strip()
        if any(comm.startswith(n) for n in names):
            yield int(task.name), comm


def set_slice(tid: int, us: int) -> None:
    attr = SchedAttr(size=ctypes.sizeof(SchedAttr), sched_policy=os.SCHED_OTHER, sched_runtime=us * 1000)
    if LIBC.syscall(SYS_SCHED_SETATTR, tid, ctypes.byref(attr), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def main(argv: list[str]) -> None:
    if len(argv) < 3 or not argv[-1].isdigit():
        sys.exit(__doc__)
    what, pid = argv[0], int(argv[-1])
    if what == "idle":
        for tid, comm in threads(pid, argv[1:-1]):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            print(f"sched.py: {comm} ({tid}) SCHED_IDLE", file=sys.stderr)
    elif what == "slice":
        us = int(argv[1])
        for tid, comm in threads(pid, argv[2:-1]):
            set_slice(tid, us)
            print(f"sched.py: {comm} ({tid}) slice {us} µs", file=sys.stderr)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
