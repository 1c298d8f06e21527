#!/usr/bin/env python3
"""The markdown report of a perf/run.sh run, and the figures the regression guard compares.

Usage: python3 perf/report.py RAWDIR        (prints the report; perf/run.sh does this)

collect(RAWDIR) (perf/rundata.py) reads what the run left in its raw directory into a Run;
render(run) writes the markdown; key_figures(run) gives the ratios perf/check.py watches.
Every table has a column or row per target in TARGETS, so a run of only some targets
(TARGETS="nginx governed") still renders, with "n/a" or "not measured" where a figure needs a
target that did not run. Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rundata import INSIDE, LABEL, NOISE_MARK, PCTS, SCENARIOS, Run, collect, div, median, mib, positive_div, sat_pick

# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------

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
    return _sign(us) + _fmt_us(abs(us))


def _sign(us) -> str:
    """The sign of `us` as printed in whole µs: a difference of −0.3 µs is "+0", not "−0"."""
    return "+" if round(us) >= 0 else "−"


def _pct(v):
    return "n/a" if v is None else f"{v:.0f} %"


def _times(r):
    return "n/a" if r is None else f"{r:.2f}×"


def _ratio(a, b):
    return _times(div(a, b))


def _signed_whole(us) -> str:
    return _sign(us) + f"{abs(us):.0f}"


def _each(values: list, fmt) -> str:
    """One value per round, in round order."""
    return ", ".join("n/a" if v is None else fmt(v) for v in values)


def _with_rounds(ratios: list[float]) -> str:
    """The median of the rounds' ratios, and each round's when there were several:
    "0.98× (rounds 0.96, 0.98, 1.01)"."""
    each = f" (rounds {_each(ratios, lambda r: f'{r:.2f}')})" if len(ratios) > 1 else ""
    return _times(median(ratios)) + each


def _us_with_rounds(diffs: list[float]) -> str:
    """The median of the rounds' latency differences, and each round's when there were several:
    "+29 µs (rounds +40, +12, +29 µs)"."""
    each = f" (rounds {_each(diffs, _signed_whole)} µs)" if len(diffs) > 1 else ""
    return _fmt_signed_us(median(diffs)) + each


def _positive_ratio(a, b):
    """Ratio of two added latencies (positive_div), "—" where it has no meaning."""
    r = positive_div(a, b)
    return "—" if r is None else _times(r)



def _mark(noisy) -> str:
    return NOISE_MARK if noisy else ""


# --------------------------------------------------------------------------------------------
# issue 14's targets and the regression guard's figures
# --------------------------------------------------------------------------------------------

ISSUE_RATE = "5000"       # the open-loop rate issue 14 states its latency targets at
RSS_LIMIT_BYTES = 30e6    # "peak RSS ≤ 30 MB governed", read as decimal MB (28.6 MiB): the stricter reading
# Beyond this drift between two targets' runs (the mock's CPU per request behind each), a CPU
# verdict is not one the run can give: on the shared VMs of docs/perf.md ("The floor"), runs
# with 0.66–1.58× drifts gave both verdicts for the same binaries.
DRIFT_LIMIT = 0.10


def _idle_conns(run: Run) -> str:
    return str(run.env.get("idle_conns", "?"))


def _verdict(ok: bool, noisy: bool = False) -> str:
    return ("pass" if ok else "**fail**") + _mark(noisy)


def _not_measured(run: Run, *needs: str) -> str:
    missing = [t for t in needs if t not in run.targets]
    return f"not measured (TARGETS lacks {', '.join(missing)})" if missing else "not measured (no result)"


def _cpu_target(run: Run, scen: str, t: str, ref: str, factor: float) -> tuple[str, str, str]:
    claim = f"{LABEL[t]}, saturation {scen}: CPU µs/req ≤ {factor:.2f}× {LABEL[ref]}'s"
    a, b = run.sat_value(scen, t, "cpu_us"), run.sat_value(scen, ref, "cpu_us")
    rounds = cpu_rounds(run, scen, t, ref)
    if a is None or b is None or not rounds:
        return claim, "—", _not_measured(run, t, ref)
    raw = [r for r, _ in rounds]
    measured = f"{a:.1f} vs {b:.1f} µs; {_with_rounds(raw)}"
    ratios = [median(raw)]
    drifts = [d for _, d in rounds if d is not None]
    if drifts:
        ratios.append(median(at_ref_speed(rounds)))
        measured += (f"; {_with_rounds(at_ref_speed(rounds))} at the machine's speed of {LABEL[ref]}'s run"
                     f"{' of each round' if len(rounds) > 1 else ''} (the mock cost "
                     f"{', '.join(f'{d:.2f}' for d in drifts)}× as much per request)")
    verdict = _verdict(max(ratios) <= factor, run.sat_noisy(scen, t, ref))
    moved = median(abs(d - 1) for d in drifts)
    if moved is not None and moved > DRIFT_LIMIT:
        verdict += (f" (the machine's speed moved {moved * 100:.0f} % between the two targets' runs"
                    f"{' of a round (median of the rounds)' if len(drifts) > 1 else ''}: confirm with `perf/ab.sh`)")
    return claim, measured, verdict


def cpu_rounds(run: Run, scen: str, t: str, ref: str) -> list[tuple[float, float | None]]:
    """Each round's CPU per request of `t` ÷ `ref`'s, with the drift of the machine's speed between
    the two runs: how much more the mock behind `t` cost per request than the mock behind `ref`
    (the same fixed work on the same cores; on a shared VM it moved by a third between targets
    measured minutes apart, and now and then between runs seconds apart: the VM slowed for one
    run). The drift is None when a round lacks the mock's figure."""
    out = []
    for x, y in run.sat_round_pairs(scen, t, ref):
        raw = div(sat_pick(x, t, "cpu_us"), sat_pick(y, ref, "cpu_us"))
        if raw is not None:
            out.append((raw, div(x.get("mock_us"), y.get("mock_us"))))
    return out


def at_ref_speed(rounds: list[tuple[float, float | None]]) -> list[float]:
    """Each round's CPU ratio with that round's drift divided out (cpu_rounds)."""
    return [raw / drift if drift else raw for raw, drift in rounds]


def _added_target(run: Run, t: str, ref: str) -> tuple[str, str, str]:
    """The verdict compares the two round by round: the median of the rounds' differences of t's
    p99 and ref's (t's added p99 minus ref's: direct's run, whose p99 swings as much as theirs,
    drops out), as perf/ab.sh compares two sides. The medians of each one's added p99 are shown
    beside it; they come from different rounds' direct runs and may order the two otherwise."""
    claim = f"{LABEL[t]}: added p99 at {ISSUE_RATE} req/s ≤ {LABEL[ref]}'s"
    if ISSUE_RATE not in run.rates:
        return claim, "—", f"not measured (RATES lacks {ISSUE_RATE})"
    a, b = run.added_rounds(ISSUE_RATE, t, "p99"), run.added_rounds(ISSUE_RATE, ref, "p99")
    gaps = run.ol_diffs(ISSUE_RATE, t, ref, "p99")
    if not a or not b or not gaps:
        return claim, "—", _not_measured(run, t, ref, "mock")
    measured = f"{_us_with_rounds(a)} vs {LABEL[ref]}'s {_us_with_rounds(b)}"
    if len(gaps) > 1:
        measured += f"; {LABEL[t]} − {LABEL[ref]}, round by round: {_us_with_rounds(gaps)}"
    return claim, measured, _verdict(median(gaps) <= 0, run.ol_noisy(ISSUE_RATE, t, ref))


def _inside_target(run: Run, t: str, p: str, limit_us: int, own: bool = False) -> tuple[str, str, str]:
    what = "own running time (sampled)" if own else "overhead inside"
    claim = f"{LABEL[t]}: {what} at {ISSUE_RATE} req/s, {p} ≤ {limit_us} µs"
    q = (run.inside_cpu if own else run.inside).get((ISSUE_RATE, t))
    if ISSUE_RATE not in run.rates:
        return claim, "—", f"not measured (RATES lacks {ISSUE_RATE})"
    if not q:
        return claim, "—", _not_measured(run, t)
    # The bucket bound is exclusive and the values are whole µs: every value in it is ≤ bound − 1.
    return claim, f"< {q[p]} µs ({q['n']:,} requests)", _verdict(q[p] - 1 <= limit_us, run.ol_noisy(ISSUE_RATE, t))


def _rss_target(run: Run) -> tuple[str, str, str]:
    claim = "ringgate governed: peak RSS ≤ 30 MB"
    m = run.mem.get("governed")
    if not m:
        return claim, "—", _not_measured(run, "governed")
    return (claim, f"{m['peak'] * 1024 / 1e6:.1f} MB ({mib(m['peak'])}) over the whole run, "
                   f"{_idle_conns(run)} idle conns included; {mib(m['hwm'])} after the load alone",
            _verdict(m["peak"] * 1024 <= RSS_LIMIT_BYTES))


def issue14_targets(run: Run) -> list[tuple[str, str, str]]:
    return [
        _cpu_target(run, "plain", "ringgate", "nginx", 0.80),
        _cpu_target(run, "stream", "ringgate", "nginx", 0.80),
        _cpu_target(run, "plain", "governed", "nginx", 0.85),
        _cpu_target(run, "plain", "governed", "ringgate", 1.10),
        _added_target(run, "governed", "nginx"),
        _added_target(run, "governed", "ringgate"),
        _inside_target(run, "ringgate", "p50", 5),
        _inside_target(run, "ringgate", "p99", 20),
        _inside_target(run, "governed", "p50", 5),
        _inside_target(run, "governed", "p99", 20),
        _inside_target(run, "ringgate", "p50", 5, own=True),
        _inside_target(run, "ringgate", "p99", 20, own=True),
        _inside_target(run, "governed", "p50", 5, own=True),
        _inside_target(run, "governed", "p99", 20, own=True),
        _rss_target(run),
    ]


def _cpu_names(spec: str) -> set[str]:
    """`/proc/stat` names of a taskset CPU list such as "0", "0,2" or "0-3"."""
    names = set()
    for part in filter(None, str(spec).split(",")):
        lo, _, hi = part.partition("-")
        names.update(f"cpu{c}" for c in range(int(lo), int(hi or lo) + 1))
    return names


def bound_elsewhere(run: Run, scen: str, t: str) -> str | None:
    """The CPU that held a proxy's saturation throughput down when it was not the proxy's own:
    the proxy under 90 % busy while another core (the mock's and the load generator's) was at
    95 % or more. Such a run's req/s measures that core, not the proxy."""
    row = run.sat.get((scen, t), {})
    if row.get("proxy_util") is None or row["proxy_util"] >= 90:
        return None
    own = _cpu_names(run.env.get("proxy_cpus", ""))
    return next((cpu for cpu, busy in sorted(row.get("busy", {}).items()) if cpu not in own and busy >= 95), None)


def key_figures(run: Run) -> dict[str, dict]:
    """The figures perf/check.py compares between runs: ratios of two targets measured in the same
    run (a shared machine's load moves both, so their ratio moves far less than either), and peak
    RSS, which load does not move. name -> {"value", "better": "lower"|"higher", "noisy", "bound"?}
    ("bound": the CPU that held a throughput figure down instead of the proxy, see
    bound_elsewhere)."""
    out: dict[str, dict] = {}

    def put(name: str, value, better: str, noisy: bool, bound: str | None = None) -> None:
        if value is not None:
            out[name] = {"value": round(value, 4), "better": better, "noisy": bool(noisy)}
            if bound:
                out[name]["bound"] = bound

    for a, b in run.pairs:
        for scen in SCENARIOS:
            noisy = run.sat_noisy(scen, a, b)
            # Each round's ratio at the machine's speed of b's run of that round (see cpu_rounds),
            # then the median of the rounds, which one disturbed round does not move. With the
            # targets minutes apart (before the rounds) the raw ratio moved by a quarter between
            # runs of the same binaries as the VM sped up or slowed down.
            put(f"{scen} CPU/req {a}/{b}", median(at_ref_speed(cpu_rounds(run, scen, a, b))), "lower", noisy)
            put(f"{scen} req/s {a}/{b}", run.sat_ratio(scen, a, b, "rps"),
                "higher", noisy, bound_elsewhere(run, scen, a) or bound_elsewhere(run, scen, b))
        for rate in run.rates:
            # The ratio of the medians of the rounds' added p99s, not the median of the rounds' ratios:
            # a round's ratio is undefined when an added p99 was ≤ 0 in it, which happens (direct's
            # p99 swings by as much as the latency a proxy adds).
            put(f"added p99 at {rate}/s {a}/{b}", positive_div(run.added(rate, a, "p99"), run.added(rate, b, "p99")),
                "lower", run.ol_noisy(rate, a, b))
    for t in run.proxies:
        if t in run.mem:
            put(f"peak RSS {t} (MiB)", run.mem[t]["peak"] / 1024, "lower", False)
    return out


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------

def _sat_duration(run: Run) -> str:
    """wrk's run length (runs before SAT_DURATION: DURATION's, which oha still takes)."""
    return run.env.get("sat_duration", run.env.get("duration"))


def _sat_rounds_phrase(run: Run) -> str:
    if run.sat_round_count <= 1:
        return ""
    return (f" in {run.sat_round_count} rounds (every target's plain runs, then its streamed ones, in the order of "
            "TARGETS, reversed every other round)")


def _ol_rounds_phrase(run: Run) -> str:
    if run.ol_round_count <= 1:
        return ""
    return (f" in {run.ol_round_count} rounds at each rate (every target once, in the order of TARGETS, reversed "
            "every other round)")


def _render_header(run: Run, w) -> None:
    meta, env = run.meta, run.env
    w(f"# ringgate load test — {env.get('stamp', run.raw.name)} UTC")
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("|---|---|")
    for label, key in (("nproc", "nproc"), ("kernel (`uname -r`)", "kernel"), ("CPU", "cpu_model"),
                       ("memory", "mem_total"), ("nginx", "nginx"), ("wrk", "wrk"), ("oha", "oha"), ("rustc", "rustc")):
        w(f"| {label} | {meta.get(key)} |")
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
        f"Settings: wrk `-t{env.get('wrk_threads')} -c{env.get('conns')} -d{_sat_duration(run)} --latency`"
        f"{_sat_rounds_phrase(run)}, oha `-c {env.get('conns')} -z {env.get('duration')} -q RATE --latency-correction` "
        f"(`--worker-threads {env.get('oha_threads')}`) at {', '.join(run.rates)} req/s{_ol_rounds_phrase(run)}, "
        f"{env.get('idle_conns')} idle connections; request body {env.get('body_bytes')} bytes "
        f"(`POST /v1/chat/completions`, model `mock/gpt-4o-mini`), "
        f"streaming = mock defaults (8 chunks, 0 ms interval). Warm-up {env.get('warmup')} per target, not measured."
    )
    w("")
    w("## Core placement")
    w("")
    proxies = ", ".join(LABEL[t] for t in run.proxies) or "none in this run"
    w(
        f"- **proxy cases** ({proxies}): proxy on cpu `{env.get('proxy_cpus')}` "
        f"(nginx `worker_processes {env.get('proxy_cores')}`, ringgate `--shards {env.get('proxy_cores')}`, shards pinned); "
        f"mock-llm (`--workers {env.get('mock_workers')}`) on cpu `{env.get('mock_cpus')}`; "
        f"load generator (wrk/oha/idle client) on cpu `{env.get('loadgen_cpus')}`."
    )
    w(
        f"- **direct case**: mock-llm (`--workers {env.get('direct_mock_workers')}`) on cpu `{env.get('direct_mock_cpus')}`, "
        f"load generator on cpu `{env.get('loadgen_cpus')}`."
    )
    if "floor" in run.targets:
        w(
            f"- **floor**: perf/floor's `floor-uring` (one thread) on cpu `{env.get('proxy_cpus')}`, in front of the "
            "same mock: a byte relay, one upstream connection per client connection, no HTTP — what the proxy hop "
            "itself costs (docs/perf.md, \"The floor\")."
        )
    if env.get("coordinator_cpus"):
        w(
            f"- **ringgate's coordinator** (store writes, lease desk, admin) on cpu `{env.get('coordinator_cpus')}`: "
            "the process may run on the proxy cpus and these, its shards pinned to the proxy cpus and the "
            "coordinator's threads to the rest. Its CPU counts in ringgate's CPU per request."
        )
    if "governed" in run.targets:
        w(
            "- **ringgate governed**: the same binary and placement as ringgate, with governance on: SQLite store "
            "(a fresh file in the run's temp directory), `request_logs: all` (a log row per request), "
            "`require_virtual_key: true`, and one virtual key (rpm, tpm and a monthly budget set far above what a "
            "run uses, so nothing is refused) that every request of every scenario carries."
        )
    w(
        "- Everything on 127.0.0.1, pinned with `taskset -c`. Overrides: `PROXY_CPUS`, `COORDINATOR_CPUS`, `MOCK_CPUS`, "
        "`LOADGEN_CPUS`, `DIRECT_MOCK_CPUS`."
    )
    w("")


def _render_issue14(run: Run, w) -> None:
    w("## Targets (issue 14)")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")
    for claim, measured, verdict in issue14_targets(run):
        w(f"| {claim} | {measured} | {verdict} |")
    w("")
    floor = {scen: run.sat_ratio(scen, "floor", "nginx", "cpu_us") for scen in SCENARIOS}
    if all(r is not None for r in floor.values()):
        w(f"The floor in this run: `floor-uring` — the same bytes relayed with no HTTP on a bare io_uring ring "
          f"(multishot receive into provided buffers, fixed files, `DEFER_TASKRUN`) — cost {floor['plain']:.2f}× "
          f"nginx's CPU per plain request and {floor['stream']:.2f}× per streamed one. No proxy over this loopback "
          "costs less than the relay of its bytes, so a CPU target below the floor is out of reach of any proxy's "
          "code (docs/perf.md, \"The floor\").")
        w("")
    w(f"CPU figures are the saturation runs' (section 1–2); added p99 is the open-loop runs' p99 at {ISSUE_RATE} "
      "req/s minus direct's (section 3), the median of the rounds' differences, and a proxy's added p99 is compared "
      "with another's round by round: the verdict is on the median of the rounds' differences of the two (direct's "
      "run drops out of it; a single run's p99 swings by a third on a shared VM); overhead inside is ringgate's own "
      "`GET /latency` over that rate's runs (all rounds), as the exclusive "
      "bound of its fine bucket (within 12.5 %, so a verdict near the limit is only as sharp as that); peak RSS is "
      f"the last VmHWM of the process, after the load and the idle-connection test. {NOISE_MARK.strip()} = a "
      "figure behind the verdict came from a noisy measurement. A CPU ratio is the median of the rounds' ratios "
      "(each round's two runs were made seconds apart, and the order of the targets is reversed every other "
      "round), and a shared machine's speed drifts even so (seen: by a third over minutes): so it is also given "
      "with each round's drift divided out, as the mock behind both measured it (the same work on the same "
      "cores; behind nginx the mock also serves another connection pattern, so there it is an estimate), and a "
      "CPU target passes only when both medians meet it. `perf/ab.sh` (two sides, more rounds) is the sharper "
      "instrument for a ratio near its limit.")
    w("")


def _render_summary(run: Run, w) -> None:
    pairs = run.pairs
    w("## Summary")
    w("")
    w("| metric | " + " | ".join(LABEL[t] for t in run.targets) + "".join(f" | {a} / {b}" for a, b in pairs) + " |")
    w("|---|" + "--:|" * (len(run.targets) + len(pairs)))

    def row(label: str, vals: dict, fmt, noisy: dict | None = None, ratio=_ratio, pair=None) -> None:
        """pair(a, b), when given, is a ratio column's cell; else ratio of the two targets' values."""
        cells = [(fmt(vals[t]) if vals.get(t) is not None else "—") + _mark(noisy and noisy.get(t)) for t in run.targets]
        cells += [pair(a, b) if pair else ratio(vals.get(a), vals.get(b)) for a, b in pairs]
        w(f"| {label} | " + " | ".join(cells) + " |")

    for scen in SCENARIOS:
        nz = {t: run.sat_noisy(scen, t) for t in run.targets}
        for key, label, fmt in (("rps", "req/s", lambda v: f"{v:,.0f}"), ("p99_us", "p99 latency", _fmt_us),
                                ("cpu_us", "CPU µs/req (proxy; direct = mock)", lambda v: f"{v:.1f}")):
            row(f"saturation {scen}: {label}", {t: run.sat_value(scen, t, key) for t in run.targets}, fmt, nz,
                pair=lambda a, b, scen=scen, key=key: _times(run.sat_ratio(scen, a, b, key)))
    for rate in run.rates:
        nz = {t: run.ol_noisy(rate, t) for t in run.targets}
        for p in PCTS:
            row(f"open loop {rate}/s: added {p}", {t: run.added(rate, t, p) for t in run.targets}, _fmt_signed_us, nz,
                _positive_ratio)
    mem = {t: run.mem.get(t, {}) for t in run.targets}
    row("peak RSS (VmHWM) after load", {t: m.get("hwm") for t, m in mem.items()}, mib)
    row("peak RSS, whole run (idle test included)", {t: m.get("peak") for t, m in mem.items()}, mib)
    row(f"RSS with {_idle_conns(run)} idle conns", {t: m.get("with_idle", {}).get("rss_kb") for t, m in mem.items()}, mib)
    row("RSS per idle conn", {t: m.get("per_conn") for t, m in mem.items()}, lambda v: f"{v:.1f} KiB",
        ratio=_positive_ratio)
    w("")
    w("Details, definitions and the ratios to direct follow below. A saturation figure is the median of the "
      "target's rounds, a saturation ratio the median of the rounds' ratios, an added latency the median of the "
      "rounds' differences to direct. "
      "req/s: higher is better; latency, CPU, memory: lower is better.")
    w("")


def _render_saturation(run: Run, w) -> None:
    env = run.env
    cpus = sorted(next((r["busy"] for r in run.sat.values() if r.get("busy")), {}))
    rounds = f", {run.sat_round_count} rounds: medians" if run.sat_round_count > 1 else ""
    w(f"## 1–2. Saturation (closed loop: wrk -t{env.get('wrk_threads')} -c{env.get('conns')} -d{_sat_duration(run)}"
      f"{rounds})")
    w("")
    w("| scenario | target | req/s | avg latency | p99 latency | non-2xx | socket errors "
      "| CPU µs/req (proxy) | CPU µs/req (mock) | CPU µs/req (wrk) | proxy core busy | "
      + "".join(f"{c} busy | " for c in cpus) + "other load |")
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * len(cpus) + "--:|")
    for scen in SCENARIOS:
        for t in run.targets:
            row = run.sat[(scen, t)]
            if not row["rounds"]:
                w(f"| {scen} | {LABEL[t]} | n/a |" + " |" * (9 + len(cpus)))
                continue
            proxy_us = f"{row['proxy_us']:.1f}" if t != "mock" and row.get("proxy_us") is not None else "—"
            mock_us = f"{row['mock_us']:.1f}" if row.get("mock_us") is not None else "n/a"
            lg_us = f"{row['loadgen_us']:.1f}" if row.get("loadgen_us") is not None else "n/a"
            util = f"{row['proxy_util']:.0f} %" if t != "mock" and row.get("proxy_util") is not None else "—"
            busy = "".join(f"{v:.0f} % | " for _, v in sorted(row["busy"].items()))
            w(
                f"| {scen} | {LABEL[t]}{_mark(row['noisy'])} | {row['rps']:,.0f} | {_fmt_us(row['lat_mean_us'])} | "
                f"{_fmt_us(row['p99_us'])} | {row['non2xx']} | {row['errors']} | {proxy_us} | {mock_us} | {lg_us} | {util} | "
                f"{busy}{_pct(row['foreign'])} |"
            )
    w("")
    w(
        "CPU µs/req = (utime+stime of the whole process tree, all threads, from `/proc/PID/stat`, after − before) "
        "÷ requests wrk completed. For the direct row the mock's figure is the one to compare with the proxies'. "
        "CPU µs/req (wrk) is the load generator's, from the driving shell's reaped-children times. "
        "\"proxy core busy\" = proxy CPU-seconds ÷ wall-seconds; the cpuN columns are whole-core utilisation from `/proc/stat` "
        "(includes everything on that core, also softirq time of the loopback traffic, which no process is "
        "charged for). \"other load\" = user-mode CPU used meanwhile by processes that are not part of the test "
        f"(the machine is shared), in % of one core; above {run.threshold:g} % a run is redone after the "
        f"machine quietens (bounded), and rows still above it are marked{NOISE_MARK}."
        + (" With rounds, each figure is the median of the target's rounds, non-2xx and socket errors are those of "
           "all rounds, \"other load\" is the most any round saw, and a row is marked when any round was."
           if run.sat_round_count > 1 else "")
    )
    w("")
    _render_idle_targets(run, w)
    _render_sat_rounds(run, w)
    cols = [(a, b) for a, b in run.pairs]
    if "mock" in run.targets:
        cols += [(t, "mock") for t in run.proxies]
    if not cols:
        return
    w("### Ratios (saturation)")
    w("")
    w("| scenario | metric | " + " | ".join(f"{a} / {'direct' if b == 'mock' else b}" for a, b in cols) + " |")
    w("|---|---|" + "--:|" * len(cols))
    for scen in SCENARIOS:
        for key, label in (("rps", "req/s"), ("lat_mean_us", "avg latency"), ("p99_us", "p99 latency"),
                           ("cpu_us", "CPU µs/req")):
            w(f"| {scen} | {label} | " + " | ".join(
                _times(run.sat_ratio(scen, a, b, key)) + _mark(run.sat_noisy(scen, a, b)) for a, b in cols) + " |")
    w("")
    w("For the CPU row, \"direct\" is the mock-llm's own CPU per request when it serves the load directly. "
      + ("Each ratio is the median of the rounds' ratios. " if run.sat_round_count > 1 else "")
      + "req/s: higher is better; latency, CPU: lower is better.")
    w("")
    _render_cpu_ratio_rounds(run, w)


def _render_idle_targets(run: Run, w) -> None:
    """What the targets waiting for their turn used while another was measured."""
    idle = [r["idle_pct"] for _, _, r in run.round_rows() if r.get("idle_pct") is not None]
    if idle:
        w(f"Every target runs from the start to its last measurement; while one is measured the others wait, idle. "
          f"Their processes count as the test's, not as other load, and used at most {max(idle):.2f} % of a core "
          f"during any measurement (median {median(idle):.2f} %).")
        w("")


def _table(w, title: str, head: list[str], align: str, rows, note: str) -> None:
    """A titled markdown table with a note under it; `align` has a letter a column, "l" or "r"."""
    w(f"### {title}")
    w("")
    w("| " + " | ".join(head) + " |")
    w("|" + "|".join("--:" if a == "r" else "---" for a in align) + "|")
    for cells in rows:
        w("| " + " | ".join(cells) + " |")
    w("")
    w(note)
    w("")


def _one_decimal(v) -> str:
    return f"{v:.1f}"


def _render_sat_rounds(run: Run, w) -> None:
    """Each target's figures round by round: the drift the medians smooth over."""
    if run.sat_round_count <= 1:
        return

    def cells(scen: str, t: str) -> list[str]:
        rows = run.sat_rounds[(scen, t)]
        return [scen, LABEL[t], _each([r.get("rps") for r in rows], lambda v: f"{v:,.0f}"),
                _each([sat_pick(r, t, "cpu_us") for r in rows], _one_decimal),
                _each([r.get("mock_us") for r in rows], _one_decimal), _each([r.get("foreign") for r in rows], _pct)]

    _table(w, "Saturation by round",
           ["scenario", "target", "req/s", "CPU µs/req (proxy; direct = mock)", "CPU µs/req (mock)", "other load"],
           "llrrrr", (cells(scen, t) for scen in SCENARIOS for t in run.targets),
           "One value per round, in round order (a round runs the targets in the order of TARGETS, the next in "
           "reverse).")


def _render_cpu_ratio_rounds(run: Run, w) -> None:
    """Each pair's CPU ratio round by round, raw and with the round's drift divided out."""
    if run.sat_round_count <= 1 or not run.pairs:
        return

    def cells(scen: str, a: str, b: str, rounds: list[tuple[float, float | None]]) -> list[str]:
        return [scen, f"{a} / {b}{_mark(run.sat_noisy(scen, a, b))}", _with_rounds([r for r, _ in rounds]),
                _each([d for _, d in rounds], lambda d: f"{d:.2f}"), _with_rounds(at_ref_speed(rounds))]

    _table(w, "CPU per request, ratios by round",
           ["scenario", "ratio", "raw: median (rounds)", "the mock behind a ÷ behind b",
            "at b's speed: median (rounds)"],
           "llrrr", (cells(scen, a, b, rounds) for scen in SCENARIOS for a, b in run.pairs
                     if (rounds := cpu_rounds(run, scen, a, b))),
           "The second column is each round's drift of the machine's speed between the two runs, by the mock's own "
           "CPU per request behind each; the last divides it out round by round. The regression guard "
           "(perf/check.py) compares the median at b's speed.")


def _render_open_loop(run: Run, w) -> None:
    env = run.env
    rounds = f", {run.ol_round_count} rounds at each rate: medians" if run.ol_round_count > 1 else ""
    w(f"## 3. Open loop (oha -q RATE -c {env.get('conns')} -z {env.get('duration')} --latency-correction{rounds})")
    w("")
    w("| rate | target | achieved req/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | "
      "CPU µs/req (proxy) | non-200 | errors | other load |")
    w("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for rate in run.rates:
        base_noisy = run.ol.get((rate, "mock"), {}).get("noisy")
        for t in run.targets:
            row = run.ol[(rate, t)]
            if not row["rounds"]:
                w(f"| {rate} | {LABEL[t]} | n/a |" + " |" * 10)
                continue
            added = ["—" if t == "mock" else _fmt_signed_us(run.added(rate, t, p)) + _mark(base_noisy) for p in PCTS]
            errs = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0"
            cpu = f"{row['cpu_us']:.1f}" if row.get("cpu_us") is not None else "n/a"
            w(
                f"| {rate} | {LABEL[t]}{_mark(row['noisy'])} | {row['rps']:,.0f} | {_fmt_us(row['p50'])} | "
                f"{_fmt_us(row['p99'])} | {_fmt_us(row['p99.9'])} | {' | '.join(added)} | "
                f"{cpu}{' (mock)' if t == 'mock' else ''} | {row['non200']} | {errs} | {_pct(row['foreign'])} |"
            )
    w("")
    w(
        "Added latency = proxy percentile − direct percentile at the same offered rate (same client, same "
        "placement except the extra hop). oha aborts requests still in flight when `-z` expires; those show as "
        "\"aborted due to deadline\" and are not failures."
        + (" With rounds, a percentile, the achieved rate and the CPU per request are the medians of the target's "
           "rounds; an added latency is the median of the rounds' differences to direct's run of the same round "
           "(so not, in general, the difference of the two medians beside it); non-200 and errors are those of all "
           "rounds, \"other load\" the most any round saw, and a row is marked when any round was."
           if run.ol_round_count > 1 else "")
    )
    w("")
    _render_ol_rounds(run, w)
    if not run.pairs or "mock" not in run.targets:
        return
    w("### Added latency compared")
    w("")
    w("| rate | percentile | " + " | ".join(LABEL[t] for t in run.proxies)
      + "".join(f" | {a} / {b}" for a, b in run.pairs) + " |")
    w("|--:|---|" + "--:|" * (len(run.proxies) + len(run.pairs)))
    for rate in run.rates:
        for p in PCTS:
            vals = {t: run.added(rate, t, p) for t in run.proxies}
            w(f"| {rate} | {p} | " + " | ".join(_fmt_signed_us(vals[t]) + _mark(run.ol_noisy(rate, t)) for t in run.proxies)
              + "".join(f" | {_positive_ratio(vals[a], vals[b])}" for a, b in run.pairs) + " |")
    w("")
    w("A ratio needs both added latencies above zero (\"—\" otherwise).")
    w("")
    _render_ol_pair_rounds(run, w)


def _render_ol_rounds(run: Run, w) -> None:
    """Each target's open-loop figures round by round: the swings the medians smooth over."""
    if run.ol_round_count <= 1:
        return

    def cells(rate: str, t: str) -> list[str]:
        rows = run.ol_rounds[(rate, t)]
        added = "—" if t == "mock" else _us_with_rounds(run.added_rounds(rate, t, "p99"))
        return [rate, LABEL[t], *(_each([r.get(p) for r in rows], _fmt_us) for p in PCTS), added,
                _each([r.get("cpu_us") for r in rows], _one_decimal), _each([r.get("foreign") for r in rows], _pct)]

    _table(w, "Open loop by round",
           ["rate", "target", "p50", "p99", "p99.9", "added p99: median (rounds)", "CPU µs/req", "other load"],
           "rlrrrrrr", (cells(rate, t) for rate in run.rates for t in run.targets),
           "One value per round, in round order (a round runs the targets in the order of TARGETS, the next in "
           "reverse); a target's added latency of a round is its percentile minus direct's of that round.")


def _render_ol_pair_rounds(run: Run, w) -> None:
    """Two proxies' latencies compared round by round: the difference of their added latencies."""
    if run.ol_round_count <= 1:
        return
    _table(w, "Added latency of two proxies, round by round", ["rate", "a − b", "p50: median (rounds)", "p99", "p99.9"],
           "rlrrr", ([rate, f"{a} − {b}{_mark(run.ol_noisy(rate, a, b))}",
                      *(_us_with_rounds(run.ol_diffs(rate, a, b, p)) for p in PCTS)]
                     for rate in run.rates for a, b in run.pairs),
           "a's percentile minus b's in each round (their runs seconds apart), which is a's added latency minus b's: "
           "direct's run drops out. The Targets table's verdicts on added p99 use the median of these differences.")


def _render_inside(run: Run, w) -> None:
    inside = [t for t in run.targets if t in INSIDE]
    if not inside:
        return
    w("### ringgate's overhead, measured inside (`GET /latency`, differences over each open-loop run, a rate's "
      "rounds summed)")
    w("")
    w("| rate | target | requests | overhead p50 | p90 | p99 | p99.9 | own time: sampled | p50 | p99 "
      "| client-side added p50 | added p99 |")
    w("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for rate in run.rates:
        for t in inside:
            q, c = run.inside.get((rate, t)), run.inside_cpu.get((rate, t))
            added = " | ".join(_fmt_signed_us(run.added(rate, t, p)) for p in ("p50", "p99"))
            own = (f"{c['n']:,} | < {c['p50']} µs | < {c['p99']} µs" if c else "n/a | | ")
            if not q:
                w(f"| {rate} | {LABEL[t]} | n/a | | | | | {own} | {added} |")
                continue
            w(f"| {rate} | {LABEL[t]}{_mark(run.ol_noisy(rate, t))} | {q['n']:,} | "
              + " | ".join(f"< {q[p]} µs" for p in ("p50", "p90", "p99", "p99.9")) + f" | {own} | {added} |")
    w("")
    w("The overhead is what ringgate spends per request between reading the request whole and writing the "
      "response's last byte, minus the time it waits on the mock (docs/observability.md): wall time, so it also "
      "holds the kernel's sends on the shard's ring and the turns of other requests. The own time is the shard "
      "running the request's code (its task's polls), measured on one connection in 8. Each figure is the "
      "exclusive upper bound of its fine bucket (within 12.5 %). The client-side added latency also holds the extra "
      "hop's kernel and scheduling time, which the gateway cannot see.")
    w("")


def _render_memory(run: Run, w) -> None:
    w(f"## 5. Memory (process tree, after the runs above; idle test = {_idle_conns(run)} keep-alive "
      "connections, one request each, done twice)")
    w("")
    w("| target | RSS at start | peak RSS (VmHWM) after load | RSS before idle test | RSS with idle conns | "
      "per idle conn | PSS with idle conns | RSS after closing | 2nd round: with idle / after closing | "
      "peak RSS, whole run | conns opened / still open after hold | open fds: before / with idle / after closing |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    tree_notes = []
    for t in run.targets:
        m = run.mem.get(t)
        if not m:
            w(f"| {LABEL[t]} | n/a |" + " |" * 11)
            continue
        idle, c2 = m["idle"], m["cycle2"]
        bi, wi, ac = m["before_idle"], m["with_idle"], m["after_close"]
        second = f"{mib(c2['with_idle']['rss_kb'])} / {mib(c2['after_close']['rss_kb'])}" if c2 else "—"
        opened = f"{idle['opened']}/{idle['n']} / {idle['alive_after_hold']}"
        if idle.get("cycle2"):
            opened += f" (2nd: {idle['cycle2']['opened']} / {idle['cycle2']['alive_after_hold']})"
        per_conn = "n/a" if m["per_conn"] is None else f"{m['per_conn']:.1f} KiB"
        w(
            f"| {LABEL[t]} | {mib(m['start']['rss_kb'])} | {mib(m['hwm'])} | {mib(bi['rss_kb'])} | {mib(wi['rss_kb'])} | "
            f"{per_conn} | {mib(wi['pss_kb'])} | {mib(ac['rss_kb'])} | {second} | {mib(m['peak'])} | {opened} | "
            f"{bi.get('fds', '?')} / {wi.get('fds', '?')} / {ac.get('fds', '?')} |"
        )
        if len(m["after"]["per_pid"]) > 1:
            parts = ", ".join(f"{v['comm']}[{p}] RSS {mib(v.get('VmRSS'))} HWM {mib(v.get('VmHWM'))}"
                              for p, v in m["after"]["per_pid"].items())
            tree_notes.append(f"{LABEL[t]} processes after load: {parts}.")
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
        f"server had not closed after {run.env.get('idle_hold', '?')} s. The second round repeats the test on the same "
        "process: flat numbers mean allocator retention, rising numbers mean growth. \"peak RSS, whole run\" is "
        "the last VmHWM reading, after the idle test."
    )
    w("")
    pairs = [(a, b) for a, b in run.pairs if a in run.mem and b in run.mem]
    if not pairs:
        return
    w("### Ratios (memory)")
    w("")
    w("| metric | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
    w("|---|" + "--:|" * len(pairs))
    for label, get in (("peak RSS (VmHWM) after load", lambda m: m["hwm"]),
                       ("peak RSS, whole run", lambda m: m["peak"]),
                       ("RSS with idle conns", lambda m: m["with_idle"]["rss_kb"]),
                       ("PSS with idle conns", lambda m: m["with_idle"]["pss_kb"])):
        w(f"| {label} | " + " | ".join(_ratio(get(run.mem[a]), get(run.mem[b])) for a, b in pairs) + " |")
    w("| per idle conn | " + " | ".join(
        f"{run.mem[a]['per_conn']:.1f} vs {run.mem[b]['per_conn']:.1f} KiB"
        if run.mem[a]["per_conn"] is not None and run.mem[b]["per_conn"] is not None else "n/a"
        for a, b in pairs) + " |")
    w("")


def _render_anomalies(run: Run, w) -> None:
    w("## Anomalies detected by the script")
    w("")
    for a in run.anomalies:
        w(f"- {a}")
    if not run.anomalies:
        w("- none (no errors, no non-2xx, no process died, no idle connection dropped, ringgate ≥ nginx throughput)")
    w("")
    redo_lines = []
    for t in run.targets:
        nl = run.raw / t / "noise.log"
        if nl.exists():
            attempts: dict[str, list[str]] = {}
            for ln in nl.read_text().splitlines():
                m = re.match(r"(\S+) attempt \d+: other processes used ([\d.]+)%", ln)
                if m:
                    attempts.setdefault(m.group(1), []).append(m.group(2) + " %")
            redo_lines += [f"{t}/{name} ({' → '.join(v)})" for name, v in attempts.items() if len(v) > 1]
    marked = [f"{t}/{r['name']}" for _, t, r in run.round_rows() if r["noisy"]]
    if redo_lines or marked:
        w("## Noise on the shared machine")
        w("")
        if redo_lines:
            w(f"Measurements redone because other processes used > {run.threshold:g} % of a core (other load per "
              "attempt; the last attempt is the one reported): " + "; ".join(redo_lines) + ".")
            w("")
        if marked:
            w(f"Still noisy after the allowed redos (marked{NOISE_MARK}; treat with care): {', '.join(marked)}."
              + (f" Compilers seen: {', '.join(sorted(run.noisy_seen)[:6])}." if run.noisy_seen else ""))
            w("")
    w(f"Raw outputs (wrk/oha/proc samples/logs): `perf/results/{run.raw.name}/`.")


def render(run: Run) -> str:
    lines: list[str] = []
    for part in (_render_header, _render_issue14, _render_summary, _render_saturation, _render_open_loop,
                 _render_inside, _render_memory, _render_anomalies):
        part(run, lines.append)
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RAWDIR")
    print(render(collect(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
