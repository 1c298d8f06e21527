#!/usr/bin/env python3
"""Regression guard: compare fresh measurements with baselines saved in the repository.

  check.py run RAWDIR [--baseline perf/baseline.json] [--save [--note TEXT]]
      The ratios of a perf/run.sh run (report.key_figures: ringgate/nginx and governed/… CPU per
      request and throughput, added p99 ratios per rate, peak RSS) against perf/baseline.json.
      Ratios rather than absolute numbers: on a shared, noisy machine the load shifts both
      targets of a ratio, so the ratio moves far less than either; a saturation ratio is the
      median of the run's alternated rounds' ratios, an added p99 the median of the rounds'
      differences to direct. --save writes the file.

  check.py bench CRITERION_DIR --since EPOCH [--baseline benches/baselines/hot_path.json]
                 [--save | --slower-out FILE [--partial]]
      The criterion estimates written since EPOCH (one `cargo bench` run; perf/bench-guard.sh)
      against the saved ones, by median time. --save writes the file. --slower-out writes a
      criterion filter (a regex) matching the benches that got slower, so that they can be
      measured again; --partial compares only the benches measured since EPOCH (that re-run).

Both print a markdown table of the figures that moved beyond their tolerance, in either
direction, and exit 3 when one moved the wrong way (slower, costlier, bigger), else 0.
CHECK_TOLERANCE (percent) overrides every saved tolerance. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import perfkit
import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REGRESSED = 3  # exit status when something got worse (1 and 2 are Python's and argparse's errors)

# How far a run figure may move before it is reported, by kind, and whether a move for the worse
# fails the check ("gates"). From two full default runs of the same binaries on the 2-core
# development machine (docs/perf.md, "Regression guard"): CPU-per-request ratios and peak RSS
# agreed within 3 %, throughput ratios within 6 %; added-p99 ratios differed by up to 6×, so
# they are listed, never failed on.
RUN_KINDS = {"CPU/req": (0.10, True), "req/s": (0.10, True), "added p99": (0.50, False), "peak RSS": (0.15, True)}
BENCH_TOLERANCE = 0.20


def _tolerance_override() -> float | None:
    v = os.environ.get("CHECK_TOLERANCE")
    return float(v) / 100 if v else None


def compare(saved: dict[str, dict], now: dict[str, dict], worse_word: str, better_word: str) -> tuple[list[str], list[str]]:
    """Markdown lines for the figures that moved beyond tolerance, and the names of those that got worse.
    saved: name -> {"value", "better": "lower"|"higher", "tolerance", "gate"? (default true)};
    now: name -> {"value", "noisy"?, "bound"?}; a figure "bound" by another CPU (a throughput the
    mock's core held down, perf/report.py bound_elsewhere) is reported but does not gate."""
    override = _tolerance_override()
    moved, missing = [], []
    worse = []
    for name, s in saved.items():
        n = now.get(name)
        if n is None:
            missing.append(name)
            continue
        tol = override if override is not None else s["tolerance"]
        change = n["value"] / s["value"] - 1 if s["value"] else 0.0
        got_worse = change > tol if s["better"] == "lower" else change < -tol
        got_better = change < -tol if s["better"] == "lower" else change > tol
        if not (got_worse or got_better):
            continue
        gates = s.get("gate", True) and not n.get("bound")
        if got_worse and gates:
            worse.append(name)
        why = f"bound by {n['bound']}, not gating" if n.get("bound") else "not gating"
        verdict = better_word if not got_worse else f"**{worse_word}**" if gates else f"{worse_word} ({why})"
        moved.append(f"| {name} | {s['value']:.4g} | {n['value']:.4g}{report.NOISE_MARK if n.get('noisy') else ''} | "
                     f"{change * 100:+.1f} % | ±{tol * 100:.0f} % | {verdict} |")
    lines = [f"{len(saved) - len(missing)} figures compared; {len(moved)} moved beyond tolerance, {len(worse)} of them "
             f"{worse_word}" + (f" (tolerance overridden: CHECK_TOLERANCE={os.environ['CHECK_TOLERANCE']} %)"
                                if override is not None else "") + "."]
    if moved:
        lines += ["", "| figure | baseline | now | change | tolerance | verdict |", "|---|--:|--:|--:|--:|---|", *moved]
    if missing:
        lines += ["", f"Not measured in this run: {', '.join(missing)}."]
    return lines, worse


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", ".", ":!perf", ":!benches/baselines",
                                ":!docs/perf.md"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def _write(path: Path, doc: dict, what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"saved {len(doc[what])} {what} to {path}")


# --------------------------------------------------------------------------------------------
# perf/run.sh runs
# --------------------------------------------------------------------------------------------

def _run_kind(name: str) -> dict:
    tol, gate = next(v for kind, v in RUN_KINDS.items() if kind in name)
    return {"tolerance": tol, "gate": gate}


# The run settings the figures depend on: peak RSS on the idle connections, the governed ratios
# on the run's length (governed plain CPU was 21-22 µs/req in 1-3 s runs, 24-25 in 10 s ones).
# `duration` is oha's run length, and was wrk's too before `sat_duration` and `sat_rounds`.
SETTINGS = ("duration", "open_rounds", "sat_duration", "sat_rounds", "warmup", "conns", "idle_conns", "proxy_cpus",
            "mock_cpus", "loadgen_cpus")

# The phases perf/run.sh came to measure in alternated rounds: the setting a run in rounds
# records, the phase, and what its figures are in rounds. A baseline saved before a phase's
# rounds has its figures from one run per target, the targets minutes apart.
ROUND_LAYOUTS = (
    ("sat_rounds", "saturation", "its CPU/req and req/s ratios are the medians of the rounds' ratios"),
    ("open_rounds", "the open loop", "its added-p99 ratios divide the medians of the rounds' added p99s (each "
                                     "round's p99 minus direct's of that round)"),
)


def _layout_notes(saved_settings: dict, settings: dict) -> list[str]:
    """What a comparison across a phase's two layouts means: the figures keep their names and
    meaning (CPU per request and req/s of a over b, the CPU ratio at b's machine speed, a's added
    p99 over b's), with less of the machine's drift between the two targets in those of a run in
    rounds."""
    notes = []
    for setting, phase, figures in ROUND_LAYOUTS:
        before, now = setting not in saved_settings, settings.get(setting) is None
        if before == now:
            continue
        old, new = ("the baseline", "this run") if before else ("this run", "the baseline")
        notes.append(f"{old[0].upper()}{old[1:]} measured {phase} before the alternated rounds (one run per target, "
                     f"the targets minutes apart), {new} in rounds: {figures}, the same figures with less of the "
                     "machine's drift between the two targets in them, so a move may be the old layout's drift.")
    return notes


def cmd_run(args) -> int:
    run = report.collect(Path(args.raw))
    figures = report.key_figures(run)
    settings = {k: run.env.get(k) for k in SETTINGS}
    if args.save:
        _write(Path(args.baseline), {
            "source": {"run": run.raw.name, "command": run.env.get("command"), "work tree": run.env.get("git"),
                       "ringgate binary": run.meta.get("bins", {}).get("ringgate"),
                       "machine": f"{run.meta.get('nproc')} CPUs, {run.meta.get('cpu_model')}, "
                                  f"kernel {run.meta.get('kernel')}",
                       "note": args.note},
            "settings": settings,
            "noisy figures at save": sorted(k for k, v in figures.items() if v["noisy"]),
            "figures": {k: {"value": v["value"], "better": v["better"], **_run_kind(k)}
                        for k, v in figures.items()},
        }, "figures")
        return 0
    saved = json.loads(Path(args.baseline).read_text())
    lines, worse = compare(saved["figures"], figures, "worse", "better")
    src = saved.get("source", {})
    print(f"## Regression guard (perf/check.py against `{os.path.relpath(args.baseline, ROOT)}`)")
    print()
    print(f"Baseline: run {src.get('run')} (work tree {src.get('work tree')}). Ratios of two targets of the same "
          f"run, and peak RSS; {report.NOISE_MARK.strip()} = measured while the machine was noisy.")
    print()
    differs = {k: (v, settings[k]) for k, v in saved.get("settings", {}).items() if v != settings.get(k)}
    if differs:
        print("This run's settings differ from the baseline's, so a move may be the settings': " +
              "; ".join(f"{k} {a} → {b}" for k, (a, b) in differs.items()) + ".")
        print()
    for note in _layout_notes(saved.get("settings", {}), settings):
        print(note)
        print()
    print("\n".join(lines))
    return REGRESSED if worse else 0


# --------------------------------------------------------------------------------------------
# criterion benches
# --------------------------------------------------------------------------------------------

def _criterion_estimates(root: Path, since: float) -> dict[str, dict]:
    """bench id -> mean and median point estimates (ns) of the benches a run wrote after `since`
    (target/criterion keeps the results of benches that no longer exist; those are skipped)."""
    out = {}
    for est in sorted(root.glob("**/new/estimates.json")):
        if est.stat().st_mtime < since:
            continue
        bench = json.loads((est.parent / "benchmark.json").read_text())
        e = json.loads(est.read_text())
        out[bench["full_id"]] = {"mean_ns": e["mean"]["point_estimate"], "median_ns": e["median"]["point_estimate"]}
    return out


def cmd_bench(args) -> int:
    benches = _criterion_estimates(Path(args.criterion), args.since)
    if not benches:
        sys.exit(f"no criterion estimates written since {time.ctime(args.since)} under {args.criterion}")
    machine = perfkit.machine_facts()
    if args.save:
        _write(Path(args.baseline), {
            "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git": _git_head(),
            "command": "bash perf/bench-guard.sh save  (cargo bench --bench hot_path)",
            "machine": machine,
            "compared": "median_ns (mean_ns is kept for reference)",
            "tolerance": BENCH_TOLERANCE,
            "benches": dict(sorted(benches.items())),
        }, "benches")
        return 0
    saved = json.loads(Path(args.baseline).read_text())
    if args.partial:
        saved["benches"] = {k: v for k, v in saved["benches"].items() if k in benches}
    print(f"## Hot-path benches {'re-measured ' if args.partial else ''}against `{os.path.relpath(args.baseline, ROOT)}` "
          f"(saved {saved.get('saved')} at {saved.get('git')})")
    print()
    differs = {k: (saved["machine"].get(k), v) for k, v in machine.items() if saved["machine"].get(k) != v}
    if differs:
        print("Machine differs from the baseline's, so the times are not comparable as they are: " +
              "; ".join(f"{k}: {a} → {b}" for k, (a, b) in differs.items()) + ".")
        print()
    lines, worse = compare(
        {k: {"value": v["median_ns"], "better": "lower", "tolerance": saved["tolerance"]} for k, v in saved["benches"].items()},
        {k: {"value": v["median_ns"]} for k, v in benches.items()}, "slower", "faster")
    print("\n".join(lines))
    if args.slower_out:
        Path(args.slower_out).write_text("^(" + "|".join(re.escape(n) for n in worse) + ")$" if worse else "")
    new = sorted(set(benches) - set(saved["benches"]))
    if new and not args.partial:
        print()
        print(f"Not in the baseline (new benches; `save` to add them): {', '.join(new)}.")
    return REGRESSED if worse else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("raw")
    p.add_argument("--baseline", default=str(HERE / "baseline.json"))
    p.add_argument("--save", action="store_true")
    p.add_argument("--note", help="with --save: what the figures were measured on (e.g. the binary's commit)")
    p = sub.add_parser("bench")
    p.add_argument("criterion")
    p.add_argument("--since", type=float, required=True, help="Unix time the cargo bench run started")
    p.add_argument("--baseline", default=str(ROOT / "benches" / "baselines" / "hot_path.json"))
    p.add_argument("--save", action="store_true")
    p.add_argument("--slower-out", help="write a criterion filter matching the benches that got slower")
    p.add_argument("--partial", action="store_true", help="compare only the benches measured since --since")
    args = ap.parse_args()
    return {"run": cmd_run, "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
