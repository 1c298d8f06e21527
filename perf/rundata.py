"""A perf/run.sh run's raw directory read into figures (`collect`): meta.json, wrk text with its
WRKJSON line, oha JSON, /proc snapshots, memory samples and ringgate's GET /latency readings,
into a `Run`. perf/report.py renders it and perf/check.py compares its key figures. Standard
library only.

The saturation runs come in rounds (`<target>/sat_plain.r1.wrk.txt` …, SAT_ROUNDS of them,
the targets alternated): a target's figure is the median over its rounds, and a ratio of two
targets the median of the rounds' ratios (`Run.sat_ratio`), each round's two runs having been
made seconds apart. A raw directory from before the rounds (one `sat_plain.wrk.txt` per
target) reads as a run of one round.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from perfkit import foreign_pct

ORDER = ("mock", "floor", "nginx", "ringgate", "governed")
LABEL = {"mock": "direct (mock)", "floor": "floor (io_uring relay)", "nginx": "nginx", "ringgate": "ringgate",
         "governed": "ringgate governed"}
INSIDE = ("ringgate", "governed")  # the targets that measure their own overhead (GET /latency)
# Ratio columns, "a / b"; only those whose two targets ran are shown.
PAIRS = (("ringgate", "nginx"), ("governed", "nginx"), ("governed", "ringgate"), ("floor", "nginx"),
         ("ringgate", "floor"))
SCENARIOS = ("plain", "stream")
# The figures of a saturation round whose median over the rounds is the target's figure.
SAT_MEDIANS = ("rps", "lat_mean_us", "p99_us", "proxy_us", "mock_us", "loadgen_us", "proxy_util", "idle_pct")
PCTS = ("p50", "p99", "p99.9")
NOISE_MARK = " ⚠"
# Above this (% of one core), the targets waiting for their turn disturbed a measurement: idle,
# ringgate and governed used 0.28 and 0.32 % each, nginx, the floor and the mocks nothing
# (run 20261208T023907Z, over 3-4 minutes of measurements each).
IDLE_LIMIT = 2.0

def mib(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def div(a, b):
    return None if a is None or b is None or b == 0 else a / b


def median(values):
    """The median of the values that are not None (None when none is)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


# --------------------------------------------------------------------------------------------
# reading the raw directory
# --------------------------------------------------------------------------------------------

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


def _idle_pct(before, after):
    """CPU used during a measurement by the targets waiting for their turn (snapshot roles
    `idle.<target>`), % of one core; None for runs from before the targets ran side by side."""
    if not before or not after:
        return None
    idle = [_cpu_delta(before, after, role) for role in after["procs"] if role.startswith("idle.")]
    wall = after["t"] - before["t"]
    return 100 * sum(c for c in idle if c is not None) / wall if idle and wall > 0 else None


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


def _overhead_buckets(p: Path, family: str) -> dict[int, int]:
    """ringgate's `GET /latency`: one family's fine buckets (`gateway_overhead`, `gateway_cpu`)
    of every 2xx series, summed (exclusive upper bound in µs → count)."""
    j = _load(p)
    out: dict[int, int] = {}
    for row in (j or {}).get("data", []):
        if row.get("class") != "2xx":
            continue
        for upper, n in row.get(family, {}).get("buckets", []):
            out[upper] = out.get(upper, 0) + n
    return out


def _bucket_quantile(buckets: dict[int, int], q: float):
    """The exclusive upper bound of the bucket holding quantile q (at most 12.5 % above the value)."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    seen = 0
    for upper in sorted(buckets):
        seen += buckets[upper]
        if seen >= q * total:
            return upper
    return max(buckets)


def sat_pick(row: dict, t: str, key: str):
    """One figure of a saturation row (a round's, or the median row); "cpu_us" is the proxy's
    CPU per request, or the mock's for direct."""
    if key == "cpu_us":
        key = "mock_us" if t == "mock" else "proxy_us"
    return row.get(key)


@dataclass
class Run:
    raw: Path
    meta: dict
    env: dict
    targets: list[str]
    rates: list[str]
    threshold: float
    sat: dict = field(default_factory=dict)      # (scenario, target) -> median row over the rounds
    sat_rounds: dict = field(default_factory=dict)  # (scenario, target) -> one row per round, in order
    ol: dict = field(default_factory=dict)       # (rate, target) -> row
    inside: dict = field(default_factory=dict)   # (rate, target) -> overhead quantiles
    inside_cpu: dict = field(default_factory=dict)  # (rate, target) -> own running time quantiles
    mem: dict = field(default_factory=dict)      # target -> row
    anomalies: list = field(default_factory=list)
    noisy_seen: set = field(default_factory=set)

    @property
    def proxies(self) -> list[str]:
        return [t for t in self.targets if t != "mock"]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in PAIRS if a in self.targets and b in self.targets]

    @property
    def rounds(self) -> int:
        return max((len(v) for v in self.sat_rounds.values()), default=0)

    def sat_value(self, scen: str, t: str, key: str):
        """One saturation figure of a target: its median over the rounds (see sat_pick)."""
        return sat_pick(self.sat.get((scen, t), {}), t, key)

    def sat_round_pairs(self, scen: str, a: str, b: str) -> list[tuple[dict, dict]]:
        """(a's row, b's row) of each round in which both targets have a wrk result."""
        return [(x, y) for x, y in zip(self.sat_rounds.get((scen, a), []), self.sat_rounds.get((scen, b), []))
                if x.get("wrk") and y.get("wrk")]

    def sat_round_ratios(self, scen: str, a: str, b: str, key: str) -> list[float]:
        """a / b of one saturation figure in each round (its two runs were seconds apart)."""
        ratios = (div(sat_pick(x, a, key), sat_pick(y, b, key)) for x, y in self.sat_round_pairs(scen, a, b))
        return [r for r in ratios if r is not None]

    def sat_ratio(self, scen: str, a: str, b: str, key: str):
        """a / b of one saturation figure: the median of the rounds' ratios, as perf/ab.sh takes it
        (one disturbed round moves a ratio of medians, not the median of ratios)."""
        return median(self.sat_round_ratios(scen, a, b, key))

    def sat_noisy(self, scen: str, *ts: str) -> bool:
        return any(self.sat.get((scen, t), {}).get("noisy") for t in ts)

    def added(self, rate: str, t: str, p: str):
        """Open-loop latency the proxy adds over direct at the same offered rate, µs."""
        if t == "mock":
            return None
        base, v = self.ol.get((rate, "mock"), {}).get(p), self.ol.get((rate, t), {}).get(p)
        return None if base is None or v is None else v - base

    def ol_noisy(self, rate: str, *ts: str) -> bool:
        return any(self.ol.get((rate, t), {}).get("noisy") for t in ("mock", *ts))


def _snaps(run: Run, t: str, name: str):
    d = run.raw / t
    b, a = _load(d / f"{name}.cpu_before.json"), _load(d / f"{name}.cpu_after.json")
    for s in (b, a):
        if s:
            run.noisy_seen.update(s.get("noisy", []))
    return b, a, (foreign_pct(b, a) if b and a else None)


def _sat_names(run: Run, scen: str) -> list[str]:
    """A scenario's saturation runs, one per round (a run from before the rounds: its one run)."""
    rounds = int(run.env.get("sat_rounds", 0))
    return [f"sat_{scen}.r{r}" for r in range(1, rounds + 1)] if rounds else [f"sat_{scen}"]


def _sat_round(run: Run, scen: str, t: str, name: str) -> dict:
    """One saturation run of one target."""
    r = _wrk(run.raw / t / f"{name}.wrk.txt")
    b, a, fp = _snaps(run, t, name)
    row = {"name": name, "wrk": r, "foreign": fp, "noisy": fp is not None and fp > run.threshold}
    if not r:
        run.anomalies.append(f"saturation/{scen} → {t}: no wrk result (see `{t}/{name}.wrk.txt`)")
        return row
    secs, n = r["duration_us"] / 1e6, r["requests"]
    row["rps"] = n / secs if secs else None
    row["lat_mean_us"], row["p99_us"] = r["lat_mean_us"], r["p99_us"]
    row["errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
    row["non2xx"] = r["err_status"]
    pc = _cpu_delta(b, a, "proxy" if t != "mock" else "mock")
    mc = _cpu_delta(b, a, "mock")
    row["proxy_us"] = pc / n * 1e6 if pc is not None and n else None
    row["mock_us"] = mc / n * 1e6 if mc is not None and n else None
    row["proxy_util"] = 100 * pc / (a["t"] - b["t"]) if pc is not None else None
    lg = ((a["shell_ticks"] - b["shell_ticks"]) / b["clk_tck"]
          if a.get("shell_ticks") is not None and b.get("shell_ticks") is not None else None)
    row["loadgen_us"] = lg / n * 1e6 if lg is not None and n else None
    row["busy"] = _core_busy(b, a)
    row["idle_pct"] = _idle_pct(b, a)
    if row["errors"] or row["non2xx"]:
        run.anomalies.append(
            f"saturation/{scen} → {t}: wrk reported {row['non2xx']} non-2xx/3xx responses and "
            f"socket errors connect={r['err_connect']} read={r['err_read']} write={r['err_write']} "
            f"timeout={r['err_timeout']} (raw: `{t}/{name}.wrk.txt`)"
        )
    return row


def _median_row(rounds: list[dict]) -> dict:
    """A target's saturation figures over its rounds: the median of each figure, the errors of all
    rounds, the most other load any round saw, and noisy when any round was."""
    done = [r for r in rounds if r["wrk"]]
    foreign = [r["foreign"] for r in rounds if r["foreign"] is not None]
    return {
        **{k: median(r.get(k) for r in done) for k in SAT_MEDIANS},
        "rounds": len(done),
        "errors": sum(r["errors"] for r in done),
        "non2xx": sum(r["non2xx"] for r in done),
        "busy": {cpu: median(r["busy"].get(cpu) for r in done) for cpu in (done[0]["busy"] if done else {})},
        "foreign": max(foreign, default=None),
        "noisy": any(r["noisy"] for r in rounds),
    }


def _collect_saturation(run: Run) -> None:
    for scen in SCENARIOS:
        for t in run.targets:
            rounds = [_sat_round(run, scen, t, name) for name in _sat_names(run, scen)]
            run.sat_rounds[(scen, t)] = rounds
            run.sat[(scen, t)] = _median_row(rounds)


def _collect_open_loop(run: Run) -> None:
    for rate in run.rates:
        for t in run.targets:
            j = _load(run.raw / t / f"open_{rate}.oha.json")
            b, a, fp = _snaps(run, t, f"open_{rate}")
            row: dict = {}
            run.ol[(rate, t)] = row
            if not j:
                run.anomalies.append(f"open loop {rate} req/s → {t}: no oha result")
                continue
            pct = j.get("latencyPercentiles", {})
            codes = j.get("statusCodeDistribution", {})
            errs = j.get("errorDistribution", {})
            n = sum(codes.values())
            row.update({
                "rps": n / j["summary"]["total"] if j["summary"].get("total") else None,
                **{p: pct[p] * 1e6 if pct.get(p) is not None else None for p in PCTS},
                "non200": sum(v for k, v in codes.items() if k != "200"),
                "errors": errs,
                "n": n,
                "foreign": fp,
                "noisy": fp is not None and fp > run.threshold,
            })
            c = _cpu_delta(b, a, "proxy" if t != "mock" else "mock")
            row["cpu_us"] = c / n * 1e6 if c is not None and n else None
            row["idle_pct"] = _idle_pct(b, a)
            real_errs = {k: v for k, v in errs.items() if "deadline" not in k.lower()}
            if row["non200"] or real_errs:
                run.anomalies.append(
                    f"open loop {rate} req/s → {t}: {row['non200']} non-200 responses, errors {real_errs} "
                    f"(raw: `{t}/open_{rate}.oha.json`)"
                )
            if row["rps"] and row["rps"] < 0.95 * float(rate):
                run.anomalies.append(
                    f"open loop {rate} req/s → {t}: achieved only {row['rps']:,.0f} req/s "
                    f"(< 95 % of the offered rate — target or load generator saturated)"
                )


def _collect_inside(run: Run) -> None:
    """The overhead ringgate measures itself, per open-loop run: the difference of the /latency
    readings taken just before and after it."""
    for rate in run.rates:
        for t in run.targets:
            if t not in INSIDE:
                continue
            d = run.raw / t
            for family, into in (("gateway_overhead", run.inside), ("gateway_cpu", run.inside_cpu)):
                before = _overhead_buckets(d / f"open_{rate}.latency_before.json", family)
                after = _overhead_buckets(d / f"open_{rate}.latency_after.json", family)
                diff = {u: n - before.get(u, 0) for u, n in after.items() if n - before.get(u, 0) > 0}
                if diff:
                    into[(rate, t)] = {"n": sum(diff.values()),
                                       **{p: _bucket_quantile(diff, q) for p, q in
                                          (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))}}


def _collect_memory(run: Run) -> None:
    for t in run.targets:
        d = run.raw / t
        role = "proxy" if t != "mock" else "mock"
        start, after, idle = _load(d / "mem_start.json"), _load(d / "mem_after_load.json"), _load(d / "idle.json")
        if not (start and after and idle) or role not in after or not after[role]["per_pid"] \
                or not idle["with_idle"][role]["per_pid"]:
            run.anomalies.append(f"memory → {t}: missing measurements")
            continue
        bi, wi, ac = idle["before"][role], idle["with_idle"][role], idle["after_close"][role]
        c2 = idle.get("cycle2")
        readings = [after[role], wi, ac] + ([c2["with_idle"][role], c2["after_close"][role]] if c2 else [])
        run.mem[t] = {
            "start": start[role], "after": after[role], "before_idle": bi, "with_idle": wi, "after_close": ac,
            "cycle2": c2 and {"with_idle": c2["with_idle"][role], "after_close": c2["after_close"][role]},
            "idle": idle,
            "hwm": after[role]["hwm_kb"],
            # VmHWM only grows: the last reading is the peak of the whole run, idle test included.
            "peak": max(r["hwm_kb"] for r in readings),
            "per_conn": (wi["rss_kb"] - bi["rss_kb"]) / idle["opened"] if idle["opened"] else None,
        }
        _memory_anomalies(run, t, run.mem[t])


def _memory_anomalies(run: Run, t: str, m: dict) -> None:
    idle, bi, wi, ac, c2 = m["idle"], m["before_idle"], m["with_idle"], m["after_close"], m["cycle2"]
    for name, cyc in (("1st", idle), ("2nd", idle.get("cycle2"))):
        if not cyc:
            continue
        if cyc["opened"] < idle["n"] or cyc["error_count"]:
            run.anomalies.append(
                f"idle test ({name} round) → {t}: opened {cyc['opened']} of {idle['n']} connections; errors "
                f"{cyc['error_count']} e.g. {cyc['errors'][:3]}"
            )
        bad = {k: v for k, v in cyc["statuses"].items() if k != "200"}
        if bad:
            run.anomalies.append(f"idle test ({name} round) → {t}: non-200 statuses {bad}")
        if cyc["alive_after_hold"] < cyc["opened"]:
            run.anomalies.append(
                f"idle test ({name} round) → {t}: {cyc['opened'] - cyc['alive_after_hold']} of {cyc['opened']} "
                f"idle connections were closed by the server within {cyc['hold_seconds']:.0f} s"
            )
    if "fds" in ac and ac["fds"] > bi["fds"] + 16:
        run.anomalies.append(
            f"idle test → {t}: {ac['fds'] - bi['fds']} more open file descriptors after the client closed its "
            f"{idle['opened']} connections than before opening them ({bi['fds']} → {ac['fds']})"
        )
    if t == "mock":
        return
    if ac["rss_kb"] > bi["rss_kb"] + 8 * 1024:
        run.anomalies.append(
            f"idle test → {t}: RSS after closing the {idle['opened']} idle connections is {mib(ac['rss_kb'])}, "
            f"{mib(ac['rss_kb'] - bi['rss_kb'])} above the {mib(bi['rss_kb'])} before opening them "
            "(memory not returned to the OS"
            + (f"; 2nd identical round: {mib(c2['with_idle']['rss_kb'])} with idle conns, "
               f"{mib(c2['after_close']['rss_kb'])} after closing" if c2 else "") + ")"
        )
    if c2 and c2["with_idle"]["rss_kb"] > wi["rss_kb"] + 4 * 1024:
        run.anomalies.append(
            f"idle test → {t}: RSS grows across identical rounds: {mib(wi['rss_kb'])} with idle conns in round 1, "
            f"{mib(c2['with_idle']['rss_kb'])} in round 2"
        )


def _collect_against_nginx(run: Run) -> None:
    """ringgate (plain or governed) slower or costlier per request than nginx is worth a line."""
    if "nginx" not in run.targets:
        return
    for t in INSIDE:
        if t not in run.targets:
            continue
        for scen in SCENARIOS:
            g, n, r = (run.sat_value(scen, t, "rps"), run.sat_value(scen, "nginx", "rps"),
                       run.sat_ratio(scen, t, "nginx", "rps"))
            if g and n and r and r < 1:
                run.anomalies.append(f"saturation/{scen}: {LABEL[t]} throughput {g:,.0f} req/s is lower than "
                                     f"nginx {n:,.0f} req/s ({r:.2f}×)")
            g, n, r = (run.sat_value(scen, t, "cpu_us"), run.sat_value(scen, "nginx", "cpu_us"),
                       run.sat_ratio(scen, t, "nginx", "cpu_us"))
            if g and n and r and r > 1:
                run.anomalies.append(f"saturation/{scen}: {LABEL[t]} uses more CPU per request than nginx "
                                     f"({g:.1f} vs {n:.1f} µs/req, {r:.2f}×)")


def _collect_idle(run: Run) -> None:
    """A measurement during which the targets waiting for their turn were not idle is worth a line."""
    rows = [(f"saturation/{scen} ({r['name']})", t, r) for (scen, t), rounds in run.sat_rounds.items() for r in rounds]
    rows += [(f"open loop {rate} req/s", t, r) for (rate, t), r in run.ol.items()]
    for what, t, r in rows:
        if (r.get("idle_pct") or 0) > IDLE_LIMIT:
            run.anomalies.append(f"{what} → {t}: the other targets, waiting for their turn, used {r['idle_pct']:.1f} % "
                                 f"of a core meanwhile (idle, they use < {IDLE_LIMIT:g} %; see the snapshots' "
                                 "`idle.*` roles)")


def _collect_logs(run: Run) -> None:
    extra = run.raw / "anomalies.txt"
    if extra.exists():
        run.anomalies += [ln for ln in extra.read_text().splitlines() if ln.strip()]
    for t in run.proxies:
        log = run.raw / t / f"{t}.stderr.log"
        if log.exists():
            lines = [ln for ln in log.read_text(errors="replace").splitlines()
                     if re.search(r"\b(WARN|ERROR|panicked|\[error\]|\[crit\]|\[alert\]|\[emerg\])", ln)]
            if lines:
                run.anomalies.append(f"{t} stderr has {len(lines)} warning/error lines; first: " +
                                     " / ".join(f"`{ln[:200]}`" for ln in lines[:3]))


def collect(raw: Path) -> Run:
    meta = _load(raw / "meta.json") or {}
    env = meta.get("env", {})
    wanted = env.get("targets", " ".join(ORDER)).split()
    run = Run(raw=raw, meta=meta, env=env, targets=[t for t in ORDER if t in wanted],
              rates=env.get("rates", "1000 2500 5000").split(), threshold=float(env.get("noise_threshold", "10")))
    run.noisy_seen.update(meta.get("noisy_at_start", []))
    _collect_saturation(run)
    _collect_against_nginx(run)
    _collect_open_loop(run)
    _collect_inside(run)
    _collect_memory(run)
    _collect_idle(run)
    _collect_logs(run)
    return run
