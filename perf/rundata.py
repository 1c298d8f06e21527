"""A perf/run.sh run's raw directory read into figures (`collect`): meta.json, wrk text with its
WRKJSON line, oha JSON, /proc snapshots, memory samples and ringgate's GET /latency readings,
into a `Run`. perf/report.py renders it and perf/check.py compares its key figures. Standard
library only.

The saturation and open-loop runs come in rounds (`<target>/sat_plain.r1.wrk.txt` …, SAT_ROUNDS
of them; `<target>/open_5000.r1.oha.json` …, OPEN_ROUNDS of them at each rate; the targets
alternated): a target's figure is the median over its rounds, a ratio of two targets the median
of the rounds' ratios (`Run.sat_ratio`), and a difference of two targets' latencies — the latency
a proxy adds over direct, or one proxy's over another's — the median of the rounds' differences
(`Run.ol_diffs`, `Run.added`), each round's runs having been made seconds apart. A raw directory from before
the rounds of a phase (one `sat_plain.wrk.txt`, one `open_5000.oha.json` per target) reads as a
run of one round of it.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
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
# The same for an open-loop round.
OL_MEDIANS = ("rps", *PCTS, "cpu_us", "idle_pct")
NOISE_MARK = " ⚠"
# Above this (% of one core), the targets waiting for their turn disturbed a measurement: idle,
# ringgate and governed used 0.28 and 0.32 % each, nginx, the floor and the mocks nothing
# (run 20261208T023907Z, over 3-4 minutes of measurements each).
IDLE_LIMIT = 2.0

def mib(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def div(a, b):
    return None if a is None or b is None or b == 0 else a / b


def positive_div(a, b):
    """a / b of two added latencies: only meaningful when both are above zero (None otherwise)."""
    return a / b if a is not None and b is not None and a > 0 and b > 0 else None


def sub(a, b):
    return None if a is None or b is None else a - b


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


def round_pairs(xs: list[dict], ys: list[dict]) -> list[tuple[dict, dict]]:
    """(a's row, b's row) of each round in which both targets have a result."""
    return [(x, y) for x, y in zip(xs, ys) if x["done"] and y["done"]]


def per_round(xs: list[dict], ys: list[dict], f) -> list[float]:
    """f(a's row, b's row) of each round in which both have a result and f gives a value."""
    values = (f(x, y) for x, y in round_pairs(xs, ys))
    return [v for v in values if v is not None]


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
    ol: dict = field(default_factory=dict)       # (rate, target) -> median row over the rounds
    ol_rounds: dict = field(default_factory=dict)  # (rate, target) -> one row per round, in order
    inside: dict = field(default_factory=dict)   # (rate, target) -> overhead quantiles, all rounds
    inside_cpu: dict = field(default_factory=dict)  # (rate, target) -> own running time quantiles, all rounds
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
    def sat_round_count(self) -> int:
        return max((len(v) for v in self.sat_rounds.values()), default=0)

    @property
    def ol_round_count(self) -> int:
        return max((len(v) for v in self.ol_rounds.values()), default=0)

    def round_rows(self):
        """(phase, target, row) of every saturation and open-loop run, round by round."""
        for (scen, t), rows in self.sat_rounds.items():
            yield from ((f"saturation/{scen}", t, r) for r in rows)
        for (rate, t), rows in self.ol_rounds.items():
            yield from ((f"open loop {rate} req/s", t, r) for r in rows)

    def sat_value(self, scen: str, t: str, key: str):
        """One saturation figure of a target: its median over the rounds (see sat_pick)."""
        return sat_pick(self.sat.get((scen, t), {}), t, key)

    def sat_round_pairs(self, scen: str, a: str, b: str) -> list[tuple[dict, dict]]:
        """(a's row, b's row) of each round in which both targets have a wrk result."""
        return round_pairs(self.sat_rounds.get((scen, a), []), self.sat_rounds.get((scen, b), []))

    def sat_round_ratios(self, scen: str, a: str, b: str, key: str) -> list[float]:
        """a / b of one saturation figure in each round (its two runs were seconds apart)."""
        return per_round(self.sat_rounds.get((scen, a), []), self.sat_rounds.get((scen, b), []),
                         lambda x, y: div(sat_pick(x, a, key), sat_pick(y, b, key)))

    def sat_ratio(self, scen: str, a: str, b: str, key: str):
        """a / b of one saturation figure: the median of the rounds' ratios, as perf/ab.sh takes it
        (one disturbed round moves a ratio of medians, not the median of ratios)."""
        return median(self.sat_round_ratios(scen, a, b, key))

    def sat_noisy(self, scen: str, *ts: str) -> bool:
        return any(self.sat.get((scen, t), {}).get("noisy") for t in ts)

    def ol_diffs(self, rate: str, a: str, b: str, p: str) -> list[float]:
        """a's open-loop percentile minus b's at the same offered rate, µs, in each round (its runs
        were seconds apart). A single run's p99 swings by a third on a shared VM: the median of
        such paired differences, as perf/ab.sh takes it, is not moved by one disturbed round."""
        return per_round(self.ol_rounds.get((rate, a), []), self.ol_rounds.get((rate, b), []),
                         lambda x, y: sub(x.get(p), y.get(p)))

    def added_rounds(self, rate: str, t: str, p: str) -> list[float]:
        """The latency a proxy adds over direct in each round (none for direct itself)."""
        return [] if t == "mock" else self.ol_diffs(rate, t, "mock", p)

    def added(self, rate: str, t: str, p: str):
        """Open-loop latency the proxy adds over direct at the same offered rate, µs: the median of
        the rounds' differences."""
        return median(self.added_rounds(rate, t, p))

    def ol_noisy(self, rate: str, *ts: str) -> bool:
        return any(self.ol.get((rate, t), {}).get("noisy") for t in ("mock", *ts))


def _snaps(run: Run, t: str, name: str):
    d = run.raw / t
    b, a = _load(d / f"{name}.cpu_before.json"), _load(d / f"{name}.cpu_after.json")
    for s in (b, a):
        if s:
            run.noisy_seen.update(s.get("noisy", []))
    return b, a, (foreign_pct(b, a) if b and a else None)


def _round_names(run: Run, stem: str, rounds_setting: str) -> list[str]:
    """A measurement's runs, `<stem>.r1` …, one per round (as many as the run's setting says);
    a run from before that phase's rounds: its one run, `<stem>`."""
    rounds = int(run.env.get(rounds_setting, 0))
    return [f"{stem}.r{r}" for r in range(1, rounds + 1)] if rounds else [stem]


def _read_round(run: Run, what: str, t: str, name: str, suffix: str, read):
    """One run of either phase: its load generator's result (`<name>.wrk.txt`, `<name>.oha.json`:
    `suffix`, read by `read`), its /proc snapshots, and the row every round starts with (its name,
    whether it has a result, the other load meanwhile). -> row, result (None: an anomaly), the
    snapshots before and after"""
    file, tool = f"{name}.{suffix}", suffix.split(".")[0]
    result = read(run.raw / t / file)
    b, a, fp = _snaps(run, t, name)
    if result is None:
        run.anomalies.append(f"{what} → {t}: no {tool} result (see `{t}/{file}`)")
    row = {"name": name, "done": result is not None, "foreign": fp, "noisy": fp is not None and fp > run.threshold}
    return row, result, b, a


def _sat_round(run: Run, scen: str, t: str, name: str) -> dict:
    """One saturation run of one target."""
    row, r, b, a = _read_round(run, f"saturation/{scen}", t, name, "wrk.txt", _wrk)
    if not r:
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


def _over_rounds(rounds: list[dict], keys: tuple[str, ...]) -> dict:
    """What a target's rounds of one measurement add up to: the median of each figure over the
    rounds with a result, how many had one, the most other load any round saw, and noisy when any
    round was."""
    done = [r for r in rounds if r["done"]]
    foreign = [r["foreign"] for r in rounds if r["foreign"] is not None]
    return {
        **{k: median(r.get(k) for r in done) for k in keys},
        "rounds": len(done),
        "foreign": max(foreign, default=None),
        "noisy": any(r["noisy"] for r in rounds),
    }


def _sat_median_row(rounds: list[dict]) -> dict:
    """A target's saturation figures over its rounds (_over_rounds), with the errors of all rounds."""
    done = [r for r in rounds if r["done"]]
    return {
        **_over_rounds(rounds, SAT_MEDIANS),
        "errors": sum(r["errors"] for r in done),
        "non2xx": sum(r["non2xx"] for r in done),
        "busy": {cpu: median(r["busy"].get(cpu) for r in done) for cpu in (done[0]["busy"] if done else {})},
    }


def _collect_saturation(run: Run) -> None:
    for scen in SCENARIOS:
        for t in run.targets:
            rounds = [_sat_round(run, scen, t, name) for name in _round_names(run, f"sat_{scen}", "sat_rounds")]
            run.sat_rounds[(scen, t)] = rounds
            run.sat[(scen, t)] = _sat_median_row(rounds)


def _ol_round(run: Run, rate: str, t: str, name: str) -> dict:
    """One open-loop run of one target."""
    row, j, b, a = _read_round(run, f"open loop {rate} req/s", t, name, "oha.json", _load)
    if not j:
        return row
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
    })
    c = _cpu_delta(b, a, "proxy" if t != "mock" else "mock")
    row["cpu_us"] = c / n * 1e6 if c is not None and n else None
    row["idle_pct"] = _idle_pct(b, a)
    real_errs = {k: v for k, v in errs.items() if "deadline" not in k.lower()}
    if row["non200"] or real_errs:
        run.anomalies.append(
            f"open loop {rate} req/s → {t}: {row['non200']} non-200 responses, errors {real_errs} "
            f"(raw: `{t}/{name}.oha.json`)"
        )
    if row["rps"] and row["rps"] < 0.95 * float(rate):
        run.anomalies.append(
            f"open loop {rate} req/s → {t}: achieved only {row['rps']:,.0f} req/s in `{t}/{name}` "
            f"(< 95 % of the offered rate — target or load generator saturated)"
        )
    return row


def _ol_median_row(rounds: list[dict]) -> dict:
    """A target's open-loop figures at one rate over its rounds (_over_rounds), with the non-200
    responses and errors of all rounds."""
    done = [r for r in rounds if r["done"]]
    return {
        **_over_rounds(rounds, OL_MEDIANS),
        "non200": sum(r["non200"] for r in done),
        "errors": dict(sum((Counter(r["errors"]) for r in done), Counter())),
    }


def _collect_open_loop(run: Run) -> None:
    for rate in run.rates:
        for t in run.targets:
            rounds = [_ol_round(run, rate, t, name) for name in _round_names(run, f"open_{rate}", "open_rounds")]
            run.ol_rounds[(rate, t)] = rounds
            run.ol[(rate, t)] = _ol_median_row(rounds)


def _inside_buckets(run: Run, rate: str, t: str, family: str) -> dict[int, int]:
    """The requests of all a rate's rounds in one family's buckets: the differences of the /latency
    readings taken just before and after each round's run, summed (the buckets are counts)."""
    out: Counter = Counter()
    for name in _round_names(run, f"open_{rate}", "open_rounds"):
        before = _overhead_buckets(run.raw / t / f"{name}.latency_before.json", family)
        after = _overhead_buckets(run.raw / t / f"{name}.latency_after.json", family)
        out.update({u: n - before.get(u, 0) for u, n in after.items() if n - before.get(u, 0) > 0})
    return dict(out)


def _collect_inside(run: Run) -> None:
    """The overhead ringgate measures itself over each rate's open-loop runs (_inside_buckets)."""
    for rate in run.rates:
        for t in run.targets:
            if t not in INSIDE:
                continue
            for family, into in (("gateway_overhead", run.inside), ("gateway_cpu", run.inside_cpu)):
                diff = _inside_buckets(run, rate, t, family)
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
    """ringgate (plain or governed) slower or costlier per request than nginx is worth a line (by
    the ratio as printed: 0.999× is not a line that says 1.00×)."""
    if "nginx" not in run.targets:
        return
    for t in INSIDE:
        if t not in run.targets:
            continue
        for scen in SCENARIOS:
            g, n, r = (run.sat_value(scen, t, "rps"), run.sat_value(scen, "nginx", "rps"),
                       run.sat_ratio(scen, t, "nginx", "rps"))
            if g and n and r and round(r, 2) < 1:
                run.anomalies.append(f"saturation/{scen}: {LABEL[t]} throughput {g:,.0f} req/s is lower than "
                                     f"nginx {n:,.0f} req/s ({r:.2f}×)")
            g, n, r = (run.sat_value(scen, t, "cpu_us"), run.sat_value(scen, "nginx", "cpu_us"),
                       run.sat_ratio(scen, t, "nginx", "cpu_us"))
            if g and n and r and round(r, 2) > 1:
                run.anomalies.append(f"saturation/{scen}: {LABEL[t]} uses more CPU per request than nginx "
                                     f"({g:.1f} vs {n:.1f} µs/req, {r:.2f}×)")


def _collect_idle(run: Run) -> None:
    """A measurement during which the targets waiting for their turn were not idle is worth a line."""
    for phase, t, r in run.round_rows():
        if (r.get("idle_pct") or 0) > IDLE_LIMIT:
            run.anomalies.append(f"{phase} ({r['name']}) → {t}: the other targets, waiting for their turn, used "
                                 f"{r['idle_pct']:.1f} % of a core meanwhile (idle, they use < {IDLE_LIMIT:g} %; see "
                                 "the snapshots' `idle.*` roles)")


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
