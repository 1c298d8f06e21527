#!/usr/bin/env python3
"""Which functions a change (or a mode) adds instructions to: two callgrind dumps of the
shard thread that perf/instructions.sh printed ("raw: ..."), each function's own
instructions per request, B minus A, largest first.

Usage: python3 perf/instructions-diff.py A_DUMP B_DUMP [COUNT=1000] [TOP=25]
(COUNT: the requests each run counted, as given to perf/instructions.sh.)
"""

import re
import subprocess
import sys

LINE = re.compile(r"^ *([0-9,]+) +\( *[0-9.]+%\) +(.*)$")
# Thread entry frames, reported with the thread's whole count: not work of their own.
ENTRY = ("clone", "start_thread", "thread_start", "call_once{{vtable.shim}}")


def own_instructions(dump: str, requests: int) -> dict[str, float]:
    """Each function's own instructions per request (inlined code is its caller's)."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
        capture_output=True, text=True, check=True,
    ).stdout
    table: dict[str, float] = {}
    listing = False
    for line in out.splitlines():
        if "file:function" in line:
            listing = True
            continue
        if listing and table and not line.strip():
            break  # the source annotations that follow are not the function list
        m = LINE.match(line) if listing else None
        if not m:
            continue
        function = m.group(2).split(":", 1)[-1].split(" [")[0]
        if function.endswith(ENTRY):
            continue
        table[function] = table.get(function, 0) + int(m.group(1).replace(",", "")) / requests
    return table


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 25
    a = own_instructions(sys.argv[1], requests)
    b = own_instructions(sys.argv[2], requests)
    print(f"A {sum(a.values()):,.0f}, B {sum(b.values()):,.0f} instructions per request")
    rows = sorted(((b.get(f, 0) - a.get(f, 0), f) for f in a.keys() | b.keys()),
                  key=lambda r: -abs(r[0]))
    for delta, function in rows[:top]:
        print(f"{delta:+8.0f}  {function[:150]}")


if __name__ == "__main__":
    main()
