#!/usr/bin/env bash
# perf/scale.sh — how ringgate's throughput and CPU per request grow with the number of shards.
#
# For every shard count in SHARDS and every target in TARGETS (plain: no governance; governed:
# SQLite, request_logs: all, one virtual key with rpm + tpm + a budget, as perf/run.sh's governed
# target), it starts mock-llm and ringgate on loopback, pinned with taskset, drives ringgate to
# saturation with wrk (connections scaled with the shard count) and reports, per shard count:
# req/s and its growth over 1 shard, CPU µs per request of the whole ringgate process and of
# each kind of thread (shard-N, coordinator, lease-desk, tokio blocking pool = the SQLite
# writer, main), the per-shard balance (ringgate_responses_total{shard} from /metrics on the
# control port), and how busy each CPU set was. docs/scale.md is the model these numbers test.
#
# Usage:  bash perf/scale.sh                              (2-core default: SHARDS="1 2", ~1.5 min)
#         SHARDS="1 2 4 8 16 32 64" bash perf/scale.sh    (a machine with >= 66 CPUs)
# Markdown report on stdout and in perf/results/scale-<UTC stamp>.md, raw material (wrk output,
# /proc snapshots, /metrics scrapes, configs, logs) in perf/results/scale-<UTC stamp>/.
# Progress on stderr. Loopback only; every process it starts is stopped on exit (trap).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/.." && pwd)"
# shellcheck source=perf/common.sh
source "${HERE}/common.sh"

# ---------------------------------------------------------------------------------------------
# Settings (every one can be overridden from the environment)
# ---------------------------------------------------------------------------------------------
KNOBS=(SHARDS TARGETS DURATION WARMUP ROUNDS CONNS_PER_SHARD CONNS_MAX WRK_THREADS PROXY_CPUS
       PROXY_POOL MOCK_CPUS LOADGEN_CPUS COORD_CPUS PACKED PORT_BASE KEY_JSON NOISE_THRESHOLD
       QUIET_WAIT RINGGATE_BIN MOCK_BIN PYTHON)
OVERRIDES=""
for k in "${KNOBS[@]}"; do
    if [[ -n "${!k+x}" ]]; then OVERRIDES+="${k}='${!k}' "; fi
done

SHARDS="${SHARDS:-1 2}"                  # shard counts to measure, in this order
TARGETS="${TARGETS:-plain governed}"     # plain | governed | governed-nolog (as governed, request_logs: none)
DURATION="${DURATION:-10}"               # seconds of measured wrk per measurement
WARMUP="${WARMUP:-2}"                    # seconds of unmeasured wrk before each measurement
ROUNDS="${ROUNDS:-1}"                    # repeat everything; even rounds run in reverse order
CONNS_PER_SHARD="${CONNS_PER_SHARD:-64}" # wrk connections = this × shards ...
CONNS_MAX="${CONNS_MAX:-4096}"           # ... but no more than this
PORT_BASE="${PORT_BASE:-18500}"          # mock = +1, ringgate = +3, its control port = +4
NOISE_THRESHOLD="${NOISE_THRESHOLD:-10}" # other processes' user CPU (% of a core) that marks a row ⚠
QUIET_WAIT="${QUIET_WAIT:-30}"           # max seconds to wait for a quiet machine (start, and one redo of a noisy row)
PACKED="${PACKED:-auto}"                 # also run N>1 shards packed on PROXY_POOL's first CPU (auto: when spreading overlaps the load side)
COORD_CPUS="${COORD_CPUS:-}"             # optional: move ringgate's non-shard threads here after start (taskset -p)
# The governed key: perf/common.sh's, limits far above what a run can use, so every request
# takes the whole governed path and none is refused (as perf/run.sh). Lower them to exercise
# lease refills.
KEY_JSON="${KEY_JSON:-${PERF_KEY_JSON}}"
TARGET_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}"
RINGGATE_BIN="${RINGGATE_BIN:-${TARGET_DIR}/release/ringgate}"
MOCK_BIN="${MOCK_BIN:-${TARGET_DIR}/release/mock-llm}"
PYTHON="${PYTHON:-python3}"

MOCK_PORT=$((PORT_BASE + 1))
RG_PORT=$((PORT_BASE + 3))
CTL_PORT=$((PORT_BASE + 4))
BODY="${HERE}/bodies/chat.json"
URL="http://127.0.0.1:${RG_PORT}/v1/chat/completions"
RG_SCALE_ADMIN_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export RG_SCALE_ADMIN_TOKEN

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="${HERE}/results"
RAW="${RESULTS}/scale-${STAMP}"
REPORT="${RESULTS}/scale-${STAMP}.md"
TMP="$(mktemp -d /tmp/ringgate-scale.XXXXXX)"
mkdir -p "${RAW}"

log() { printf '[scale %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is recorded and stopped on exit.
# ---------------------------------------------------------------------------------------------
PIDS=()
stop_pid() {  # pid: SIGTERM, wait up to 10 s, then SIGKILL
    local pid="$1" i
    kill -TERM "${pid}" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
}
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]:-}"; do [[ -n "${p}" && "${p}" != "$1" ]] && keep+=("${p}"); done
    PIDS=("${keep[@]:-}")
}
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]:-}"; do [[ -n "${pid}" ]] && stop_pid "${pid}"; done
    rm -rf "${TMP}"
    if [[ ${rc} -ne 0 ]]; then log "failed (exit ${rc}); partial raw output in ${RAW}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# The helper: CPU lists, /proc snapshots, /metrics parsing, the report. Python 3 stdlib only.
# ---------------------------------------------------------------------------------------------
cat > "${TMP}/scalekit.py" <<'PY'
import json, os, re, sys, time, statistics
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")

def expand(spec):
    out = []
    for part in spec.replace(" ", ",").split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out

def compress(cpus):
    cpus = sorted(set(cpus))
    out, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)

def stat_fields(path):
    raw = Path(path).read_text()
    rp = raw.rindex(")")
    return raw[raw.index("(") + 1 : rp], raw[rp + 2 :].split()

def proc_stat_cpus():
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            f = line.split()
            out[f[0]] = [int(x) for x in f[1:]]
    return out

def snap(out, args):
    """args: role=PID ... [--shell PID] [--threads role]: per-process utime/stime, per-thread
    utime/stime and schedstat (ns on CPU) of the --threads process, /proc/stat per CPU."""
    s = {"t": time.monotonic(), "clk": CLK, "cpus": proc_stat_cpus(), "procs": {}, "threads": {}}
    threads_of = None
    it = iter(args)
    for a in it:
        if a == "--shell":
            _, f = stat_fields(f"/proc/{next(it)}/stat")
            s["shell"] = {"ut": int(f[13]), "st": int(f[14])}  # cutime, cstime: reaped children (wrk)
        elif a == "--threads":
            threads_of = next(it)
        else:
            role, pid = a.split("=")
            try:
                _, f = stat_fields(f"/proc/{pid}/stat")
                s["procs"][role] = {"pid": int(pid), "ut": int(f[11]), "st": int(f[12])}
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        s["procs"][role][line.split(":")[0]] = int(line.split()[1])  # KiB
            except OSError:
                s["procs"][role] = None
    if threads_of and s["procs"].get(threads_of):
        pid = s["procs"][threads_of]["pid"]
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                comm, f = stat_fields(f"/proc/{pid}/task/{tid}/stat")
                try:
                    ns = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    ns = None
                s["threads"][tid] = {"comm": comm, "ut": int(f[11]), "st": int(f[12]), "ns": ns,
                                     "cpu": int(f[36])}
            except OSError:
                pass  # the thread ended between listdir and read
    Path(out).write_text(json.dumps(s))

def threads(pid):
    """tid comm, one a line (for taskset -p of the non-shard threads)."""
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            print(tid, Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip())
        except OSError:
            pass

METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

def metrics(path):
    out = []
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = METRIC.match(line)
        if m:
            try:
                v = float(m.group(3))
            except ValueError:
                continue
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), v))
    return out

def msum(ms, name, **want):
    return sum(v for n, l, v in ms if n == name and all(l.get(k) == w for k, w in want.items()))

def per_shard(ms, name, **want):
    out = {}
    for n, l, v in ms:
        if n == name and "shard" in l and all(l.get(k) == w for k, w in want.items()):
            out[int(l["shard"])] = out.get(int(l["shard"]), 0) + v
    return out

def group_of(comm):
    if comm.startswith("shard-"):
        return "shards"
    if comm == "coordinator":
        return "coordinator"
    if comm == "lease-desk":
        return "lease-desk"
    if comm.startswith("tokio-runtime") or comm.startswith("tokio-rt"):
        return "blocking"
    if comm == "ringgate":
        return "main"
    return "other"

GROUPS = ["shards", "coordinator", "lease-desk", "blocking", "main", "other"]

def thread_deltas(b, a):
    """µs on CPU per thread group over the window (schedstat ns when present, else ticks), and
    per shard. Threads born during the window count from 0; threads that ended during it are
    the residual of the process total ('ended')."""
    groups = {g: 0.0 for g in GROUPS}
    shards = {}
    for tid, ta in a["threads"].items():
        tb = b["threads"].get(tid)
        if ta["ns"] is not None and (tb is None or tb["ns"] is not None):
            us = (ta["ns"] - (tb["ns"] if tb else 0)) / 1000.0
        else:
            us = ((ta["ut"] + ta["st"]) - ((tb["ut"] + tb["st"]) if tb else 0)) * 1e6 / a["clk"]
        g = group_of(ta["comm"])
        groups[g] += us
        if g == "shards":
            shards[int(ta["comm"].split("-", 1)[1])] = us
    return groups, shards

def cpu_busy(b, a, cpus):
    """% busy (all non-idle time, softirq included) of a CPU set, averaged over its CPUs."""
    tot = busy = 0
    for c in cpus:
        vb, va = b["cpus"].get(f"cpu{c}"), a["cpus"].get(f"cpu{c}")
        if not vb or not va:
            continue
        d = [x - y for x, y in zip(va, vb)]
        t = sum(d[:8])
        tot += t
        busy += t - d[3] - d[4]
    return 100.0 * busy / tot if tot else None

def other_load(b, a):
    """User-mode CPU of processes not under test, % of one core (as perf/perfkit.py)."""
    busy = sum((va[0] - b["cpus"][c][0]) + (va[1] - b["cpus"][c][1]) for c, va in a["cpus"].items() if c in b["cpus"])
    ours = 0
    if "shell" in a and "shell" in b:
        ours += a["shell"]["ut"] - b["shell"]["ut"]
    for role, pa in a["procs"].items():
        pb = b["procs"].get(role)
        if pa and pb:
            ours += pa["ut"] - pb["ut"]
    wall = a["t"] - b["t"]
    return max(0.0, 100.0 * (busy - ours) / a["clk"] / wall) if wall > 0 else None

def proc_us(b, a, role):
    pb, pa = b["procs"].get(role), a["procs"].get(role)
    if not pb or not pa:
        return None
    return ((pa["ut"] + pa["st"]) - (pb["ut"] + pb["st"])) * 1e6 / a["clk"]

def wrk_json(path):
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[8:])
    return None

def load_measurement(d):
    d = Path(d)
    m = json.loads((d / "meta.json").read_text())
    r = {"meta": m, "dir": d.name, "ok": False, "notes": []}
    if not (d / "after.json").exists():
        r["notes"].append("no measurement (see the logs in " + d.name + ")")
        return r
    b, a = json.loads((d / "before.json").read_text()), json.loads((d / "after.json").read_text())
    w = wrk_json(d / "wrk.txt")
    if not w:
        r["notes"].append("wrk printed no result")
        return r
    wall = a["t"] - b["t"]
    reqs = w["requests"]
    mb, ma = metrics(d / "metrics_before.txt"), metrics(d / "metrics_after.txt")
    sb, sa = per_shard(mb, "ringgate_responses_total"), per_shard(ma, "ringgate_responses_total")
    resp = {k: sa.get(k, 0) - sb.get(k, 0) for k in sorted(set(sa) | set(sb))}
    conns = per_shard(metrics(d / "metrics_mid.txt"), "ringgate_connections")
    groups, shard_us = thread_deltas(b, a)
    proc = proc_us(b, a, "ringgate")
    known = sum(groups.values())
    r.update(ok=True, wall=wall, reqs=reqs, rps=reqs / (w["duration_us"] / 1e6), wrk=w,
             non2xx=w["err_status"], sockerr=w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"],
             proc_us=proc, groups=groups, shard_us=shard_us, ended_us=(proc - known) if proc is not None else None,
             mock_us=proc_us(b, a, "mock"),
             wrk_us=((a["shell"]["ut"] + a["shell"]["st"]) - (b["shell"]["ut"] + b["shell"]["st"])) * 1e6 / a["clk"],
             resp=resp, conns=conns,
             busy={k: cpu_busy(b, a, expand(m[k])) for k in ("proxy_cpus", "mock_cpus", "loadgen_cpus")},
             other=other_load(b, a),
             rss=(a["procs"]["ringgate"] or {}).get("VmRSS"), hwm=(a["procs"]["ringgate"] or {}).get("VmHWM"),
             dropped=msum(ma, "ringgate_usage_dropped_total") - msum(mb, "ringgate_usage_dropped_total"),
             backlog=msum(ma, "ringgate_usage_spool_backlog_batches"),
             governed=msum(ma, "ringgate_governed_requests_total") - msum(mb, "ringgate_governed_requests_total"))
    return r

def f1(v, nd=1):
    return "—" if v is None else f"{v:,.{nd}f}"

def pct(v):
    return "—" if v is None else f"{v:.0f} %"

def report(raw, argv):
    raw = Path(raw)
    info = json.loads((raw / "run.json").read_text())
    ms = [load_measurement(d) for d in raw.iterdir() if (d / "meta.json").exists()]
    ms.sort(key=lambda r: r["meta"]["seq"])
    thr = float(info["noise_threshold"])
    P = print
    P(f"# ringgate scale test — {info['stamp']} UTC")
    P()
    P("## Machine, binaries, command")
    P()
    P("| | |")
    P("|---|---|")
    for k, v in info["facts"]:
        P(f"| {k} | {v} |")
    P()
    P("```")
    P(info["command"])
    P("```")
    P()
    P(f"wrk `-d{info['duration']}s` after a {info['warmup']}s unmeasured warm-up, POST "
      f"`/v1/chat/completions` with `perf/bodies/chat.json` (stream: false), connections = "
      f"{info['conns_per_shard']} × shards (at most {info['conns_max']}); ringgate `pin_cores: true`; "
      f"mock-llm answers at once. plain = no governance; governed = SQLite, `request_logs: all`, "
      f"`require_virtual_key: true`, one key with rpm, tpm and a monthly budget far above what a run "
      f"uses (every request authenticated, admitted against three leases, settled, logged); "
      f"governed-nolog = the same with `request_logs: none` (usage still spooled and written).")
    P()
    P("## Placement")
    P()
    for line in info["placement_notes"]:
        P(f"- {line}")
    P()
    # --- summary (mean over rounds) --------------------------------------------------------
    keys = []
    for r in ms:
        k = (r["meta"]["target"], r["meta"]["layout"], int(r["meta"]["shards"]))
        if k not in keys:
            keys.append(k)
    def rows(k):
        return [r for r in ms if (r["meta"]["target"], r["meta"]["layout"], int(r["meta"]["shards"])) == k and r["ok"]]
    def mean(xs):
        xs = [x for x in xs if x is not None]
        return statistics.fmean(xs) if xs else None
    base = {}
    for k in keys:
        if k[2] == 1 and rows(k):
            base[k[0]] = mean([r["rps"] for r in rows(k)])
    P("## Throughput and CPU per request by shard count")
    P()
    P("Mean over rounds (range of req/s in brackets when more than one round). "
      "×1-shard = req/s ÷ the same target's req/s at 1 shard; per shard = that ÷ shards "
      "(1.00 = linear). CPU µs/req = CPU time ÷ requests wrk completed: the whole ringgate process "
      "(all threads), its shard threads together, then each thread of the node's shared side: the "
      "coordinator thread alone, the lease desk, and tokio's blocking pool (every SQLite call).")
    P()
    P("| target | layout | shards | proxy CPUs | conns | req/s | ×1-shard | per shard | p99 | CPU µs/req: ringgate | shard threads | coordinator | lease-desk | SQLite (blocking pool) | flusher ceiling | lease-desk ceiling | rounds |")
    P("|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for k in keys:
        rs = rows(k)
        if not rs:
            P(f"| {k[0]} | {k[1]} | {k[2]} | | | failed | | | | | | | | | | | 0 |")
            continue
        rps = mean([r["rps"] for r in rs])
        rng = f" [{min(r['rps'] for r in rs):,.0f}–{max(r['rps'] for r in rs):,.0f}]" if len(rs) > 1 else ""
        x = rps / base[k[0]] if base.get(k[0]) else None
        coord = mean([r["groups"]["coordinator"] / r["reqs"] for r in rs])
        desk = mean([r["groups"]["lease-desk"] / r["reqs"] for r in rs])
        blocking = mean([r["groups"]["blocking"] / r["reqs"] for r in rs])
        ceil = lambda us: f"{1e6 / us:,.0f} req/s" if us and us > 0.005 else "—"
        p99 = mean([r["wrk"]["p99_us"] for r in rs])
        noisy = any(r["other"] is not None and r["other"] > thr for r in rs)
        P(f"| {k[0]} | {k[1]} | {k[2]} | {rs[0]['meta']['proxy_cpus']} | {rs[0]['meta']['conns']} | "
          f"{rps:,.0f}{rng}{' ⚠' if noisy else ''} | {f1(x, 2) + '×' if x else '—'} | {f1(x / k[2] if x else None, 2)} | "
          f"{p99 / 1000:.2f} ms | {f1(mean([r['proc_us'] / r['reqs'] for r in rs]), 2)} | "
          f"{f1(mean([r['groups']['shards'] / r['reqs'] for r in rs]), 2)} | {f1(coord, 3)} | {f1(desk, 3)} | {f1(blocking, 3)} | "
          f"{ceil(coord + blocking)} | {ceil(desk)} | {len(rs)} |")
    P()
    P("Ceilings: the request rate at which a single-threaded stage of the node would need a "
      "whole core at the measured cost per request. **flusher** = 10⁶ ÷ (coordinator + SQLite "
      "µs/req): the coordinator thread spools and folds the usage records, then awaits the batch's "
      "SQLite transaction (one connection behind a mutex, on tokio's blocking pool) before it takes "
      "the next records, so the two add up rather than overlap. **lease desk** = 10⁶ ÷ lease-desk "
      "µs/req (it receives every shard's usage batches and refill requests on one thread). "
      "Below 0.005 µs/req nothing is shown (timers, not per-request work). Neither is pinned away "
      "from the shards: on ringgate's own CPUs they take their time from the shards' cores.")
    P()
    # --- per measurement: thread breakdown --------------------------------------------------
    P("## CPU by thread, per measurement (µs per request)")
    P()
    P("| round | target | layout | shards | requests | req/s | ringgate | shard-N | coordinator | lease-desk | blocking pool (SQLite) | main | other / ended | mock-llm | wrk | other load |")
    P("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in ms:
        m = r["meta"]
        if not r["ok"]:
            P(f"| {m['round']} | {m['target']} | {m['layout']} | {m['shards']} | failed: {'; '.join(r['notes'])} | | | | | | | | | | | |")
            continue
        n = r["reqs"]
        g = r["groups"]
        mark = " ⚠" if r["other"] is not None and r["other"] > thr else ""
        P(f"| {m['round']} | {m['target']} | {m['layout']} | {m['shards']} | {n:,} | {r['rps']:,.0f} | "
          f"{f1(r['proc_us'] / n, 2)} | {g['shards'] / n:.2f} | {g['coordinator'] / n:.3f} | {g['lease-desk'] / n:.3f} | "
          f"{g['blocking'] / n:.3f} | {g['main'] / n:.3f} | {f1(((r['ended_us'] or 0) + g['other']) / n, 3)} | "
          f"{f1(r['mock_us'] / n if r['mock_us'] is not None else None, 2)} | {r['wrk_us'] / n:.2f} | {f1(r['other'], 0)} %{mark} |")
    P()
    P("Process total from `/proc/PID/stat` (utime+stime, 10 ms ticks); threads from "
      "`/proc/PID/task/TID/schedstat` (ns on CPU), grouped by thread name: `shard-N`, `coordinator`, "
      "`lease-desk`, `tokio-runtime-w` (tokio's blocking pool: every SQLite call), `ringgate` (main "
      "thread, waits in sigwait). \"other / ended\" = the process total minus the threads alive at "
      "both ends (blocking-pool threads that exited mid-run, tick rounding). wrk = the driving "
      "shell's reaped-children time. \"other load\" = user CPU of processes not under test, % of a "
      f"core; above {thr:.0f} % the row is marked ⚠.")
    P()
    # --- balance ----------------------------------------------------------------------------
    P("## Per-shard balance (SO_REUSEPORT) and per-shard cost")
    P()
    P("| round | target | layout | shards | connections per shard, mid-run (ringgate_connections) | largest share | responses per shard (ringgate_responses_total) | largest share | fair share | CPU µs per response, per shard |")
    P("|--:|---|---|--:|---|--:|---|--:|--:|---|")
    for r in ms:
        m = r["meta"]
        if not r["ok"]:
            continue
        resp = r["resp"]
        tot = sum(resp.values())
        lg = max(resp.values()) / tot * 100 if tot else None
        per = ", ".join(f"{int(resp.get(i, 0)):,}" for i in range(int(m["shards"])))
        cost = ", ".join(f1(r["shard_us"].get(i, 0) / resp[i], 1) if resp.get(i) else "—" for i in range(int(m["shards"])))
        cs = r["conns"]
        ctot = sum(cs.values())
        cper = ", ".join(f"{int(cs.get(i, 0)):,}" for i in range(int(m["shards"]))) if cs else "—"
        clg = max(cs.values()) / ctot * 100 if ctot else None
        P(f"| {m['round']} | {m['target']} | {m['layout']} | {m['shards']} | {cper} | {pct(clg)} | {per} | {pct(lg)} | {100 / int(m['shards']):.0f} % | {cost} |")
    P()
    # --- utilisation ------------------------------------------------------------------------
    P("Connections are where SO_REUSEPORT's hash put them (one scrape halfway through the run); "
      "in a closed loop (wrk) the responses per shard also follow how much CPU each shard got, "
      "so compare the connection split with the balance formula in docs/scale.md.")
    P()
    P("## How busy each CPU set was")
    P()
    P("| round | target | layout | shards | proxy CPUs | busy | mock CPUs | busy | load-generator CPUs | busy | ringgate RSS after / peak |")
    P("|--:|---|---|--:|---|--:|---|--:|---|--:|--:|")
    for r in ms:
        m = r["meta"]
        if not r["ok"]:
            continue
        P(f"| {m['round']} | {m['target']} | {m['layout']} | {m['shards']} | {m['proxy_cpus']} | {pct(r['busy']['proxy_cpus'])} | "
          f"{m['mock_cpus']} ({m['mock_workers']} workers) | {pct(r['busy']['mock_cpus'])} | {m['loadgen_cpus']} (wrk -t{m['wrk_threads']}) | {pct(r['busy']['loadgen_cpus'])} | "
          f"{f1((r['rss'] or 0) / 1024, 1)} / {f1((r['hwm'] or 0) / 1024, 1)} MiB |")
    P()
    P("Busy = all non-idle time of those CPUs from `/proc/stat`, softirq included (loopback TCP "
      "work that no process is charged for), averaged over the set. When CPU sets overlap, each "
      "column counts the shared CPUs in full.")
    P()
    # --- anomalies --------------------------------------------------------------------------
    notes = []
    for r in ms:
        m = r["meta"]
        tag = f"round {m['round']} {m['target']} {m['layout']} {m['shards']} shard(s)"
        for n in r["notes"]:
            notes.append(f"{tag}: {n}")
        if not r["ok"]:
            continue
        if r["non2xx"] or r["sockerr"]:
            notes.append(f"{tag}: {r['non2xx']} non-2xx responses, {r['sockerr']} socket errors (wrk)")
        if r["dropped"]:
            notes.append(f"{tag}: {r['dropped']:.0f} usage records dropped (ringgate_usage_dropped_total)")
        if m["target"].startswith("governed") and r["governed"] == 0:
            notes.append(f"{tag}: ringgate_governed_requests_total did not move")
        if r["backlog"]:
            notes.append(f"{tag}: {r['backlog']:.0f} usage batches still waiting in the spool after the run")
        tot = sum(r["resp"].values())
        if tot and abs(tot - r["reqs"]) > max(1000, 0.02 * r["reqs"]):
            notes.append(f"{tag}: ringgate counted {tot:,.0f} responses, wrk {r['reqs']:,}")
        full = [f"{label} ({m[k]}: {r['busy'][k]:.0f} %)" for k, label in (("mock_cpus", "mock-llm"), ("loadgen_cpus", "wrk"))
                if r["busy"][k] is not None and r["busy"][k] > 90 and not set(expand(m[k])) & set(expand(m["proxy_cpus"]))]
        if full:
            notes.append(f"{tag}: the load side's CPUs were saturated — {', '.join(full)} busy — so req/s is bounded by them, not by ringgate")
        if r["other"] is not None and r["other"] > thr:
            notes.append(f"{tag}: other processes used {r['other']:.0f} % of a core meanwhile ⚠")
        err = Path(raw / r["dir"] / "ringgate.stderr.log")
        if err.exists():
            warn = [l for l in err.read_text(errors="replace").splitlines() if " WARN " in l or " ERROR " in l]
            if warn:
                notes.append(f"{tag}: ringgate logged {len(warn)} warning/error line(s), first: `{warn[0][:200]}`")
    P("## Anomalies detected by the script")
    P()
    for n in notes or ["none"]:
        P(f"- {n}")
    P()
    P(f"Raw material: `perf/results/{raw.name}/`.")

if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "expand":
        print(" ".join(map(str, expand(rest[0]))))
    elif cmd == "compress":
        print(compress([int(x) for x in rest]))
    elif cmd == "allowed":
        print(" ".join(map(str, sorted(os.sched_getaffinity(0)))))
    elif cmd == "snap":
        snap(rest[0], rest[1:])
    elif cmd == "threads":
        threads(rest[0])
    elif cmd == "report":
        report(rest[0], rest[1:])
    else:
        sys.exit(f"unknown command {cmd}")
PY
kit() { "${PYTHON}" "${TMP}/scalekit.py" "$@"; }

# ---------------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------------
for t in ${TARGETS}; do
    case "${t}" in plain|governed|governed-nolog) ;; *) die "unknown target '${t}' in TARGETS (plain, governed, governed-nolog)" ;; esac
done
for n in ${SHARDS}; do [[ "${n}" =~ ^[1-9][0-9]*$ ]] || die "SHARDS must be positive integers, got '${n}'"; done
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v taskset >/dev/null || die "taskset is not installed (util-linux)"
command -v curl >/dev/null || die "curl is not installed"
[[ -x "${RINGGATE_BIN}" ]] || die "no ringgate binary at ${RINGGATE_BIN} (cargo build --release, or set RINGGATE_BIN)"
[[ -x "${MOCK_BIN}" ]] || die "no mock-llm binary at ${MOCK_BIN} (cargo build --release, or set MOCK_BIN)"
# Run copies, so that a rebuild during the run cannot swap a binary under us; what the report
# says about them (build time, the state of the work tree they were built in) is read now.
RG_SRC="${RINGGATE_BIN}" MOCK_SRC="${MOCK_BIN}"
built() { date -u -r "$1" '+%Y-%m-%d %H:%M:%S UTC'; }
RG_BUILT="$(built "${RG_SRC}")" MOCK_BUILT="$(built "${MOCK_SRC}")"
GIT_DESC="$(git -C "$(dirname "${RG_SRC}")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git -C "$(dirname "${RG_SRC}")" status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | paste -sd' ' - || true)"
[[ -n "${DIRTY}" ]] && GIT_DESC+=" + uncommitted changes to ${DIRTY}"
cp "${RINGGATE_BIN}" "${TMP}/ringgate"; RINGGATE_BIN="${TMP}/ringgate"
cp "${MOCK_BIN}" "${TMP}/mock-llm"; MOCK_BIN="${TMP}/mock-llm"
port_free() { [[ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }
for p in "${MOCK_PORT}" "${RG_PORT}" "${CTL_PORT}"; do port_free "${p}" || die "port ${p} is in use (set PORT_BASE)"; done

# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------
read -r -a ALLOWED <<< "$(kit allowed)"
NALLOWED=${#ALLOWED[@]}
MAXS=0
for n in ${SHARDS}; do (( n > MAXS )) && MAXS=${n}; done
NOTES=()
if [[ -n "${PROXY_POOL:-}" ]]; then
    read -r -a POOL <<< "$(kit expand "${PROXY_POOL}")"
elif (( NALLOWED >= MAXS + 2 )); then
    POOL=("${ALLOWED[@]:0:MAXS}")          # ringgate at N shards gets the first N of these
else
    POOL=("${ALLOWED[@]:0:NALLOWED-1}")    # small machine: all but the last CPU ...
    (( MAXS > 1 && NALLOWED > 1 )) && POOL=("${ALLOWED[@]}")  # ... or all of them when N > 1 is asked
fi
REST=()
for c in "${ALLOWED[@]}"; do [[ " ${POOL[*]} " == *" ${c} "* ]] || REST+=("${c}"); done
if [[ -z "${MOCK_CPUS:-}" || -z "${LOADGEN_CPUS:-}" ]]; then
    if (( ${#REST[@]} >= 2 )); then
        half=$(( (${#REST[@]} + 1) / 2 ))
        : "${MOCK_CPUS:=$(kit compress "${REST[@]:0:half}")}"
        : "${LOADGEN_CPUS:=$(kit compress "${REST[@]:half}")}"
    else
        # Fewer than MAX shards + 2 CPUs: mock-llm and wrk share the last CPU, as perf/run.sh.
        : "${MOCK_CPUS:=${ALLOWED[NALLOWED-1]}}"
        : "${LOADGEN_CPUS:=${ALLOWED[NALLOWED-1]}}"
    fi
fi
MOCK_WORKERS=$(kit expand "${MOCK_CPUS}" | wc -w)
LOADGEN_N=$(kit expand "${LOADGEN_CPUS}" | wc -w)
SIDE=" $(kit expand "${MOCK_CPUS}") $(kit expand "${LOADGEN_CPUS}") "

proxy_cpus_for() {  # shards layout -> CPU list for ringgate
    if [[ -n "${PROXY_CPUS:-}" ]]; then echo "${PROXY_CPUS}"; return; fi
    if [[ "$2" == packed ]]; then echo "${POOL[0]}"; return; fi
    local n=$1
    (( n > ${#POOL[@]} )) && n=${#POOL[@]}
    kit compress "${POOL[@]:0:n}"
}
overlaps_side() {  # cpu-list -> 0 when any of its CPUs runs mock-llm or wrk
    local c
    for c in $(kit expand "$1"); do [[ "${SIDE}" == *" ${c} "* ]] && return 0; done
    return 1
}

LAYOUTS="spread"
if [[ -z "${PROXY_CPUS:-}" ]]; then
    any_overlap=0
    for n in ${SHARDS}; do overlaps_side "$(proxy_cpus_for "${n}" spread)" && any_overlap=1; done
    if [[ "${PACKED}" == 1 || ( "${PACKED}" == auto && ${any_overlap} == 1 ) ]]; then LAYOUTS="spread packed"; fi
fi

NOTES+=("machine: ${NALLOWED} CPUs allowed (${ALLOWED[*]}); ringgate's CPUs are chosen per shard count from \`$(kit compress "${POOL[@]}")\` (\`PROXY_POOL\`), mock-llm on \`${MOCK_CPUS}\` (\`--workers ${MOCK_WORKERS}\`), wrk on \`${LOADGEN_CPUS}\`, the same for every shard count; everything pinned with \`taskset -c\` on 127.0.0.1")
for n in ${SHARDS}; do
    pc="$(proxy_cpus_for "${n}" spread)"
    line="**spread**, ${n} shard(s): ringgate on \`${pc}\`"
    if (( $(kit expand "${pc}" | wc -w) < n )); then line+=" — fewer CPUs than shards: shards share CPUs (ringgate pins shard i to CPU i mod count)"; fi
    if overlaps_side "${pc}"; then line+=" — **shares CPU(s) with mock-llm and wrk**: throughput at this count is bounded by that shared CPU, not by ringgate; compare CPU per request, not req/s"; fi
    NOTES+=("${line}")
done
if [[ "${LAYOUTS}" == *packed* ]]; then
    NOTES+=("**packed**: every shard count on \`${POOL[0]}\` alone (the same one-core budget as 1 shard): what more shards cost per request when the cores do not grow — the sharing overhead (coordinator, balance) without the load side in the way. Run because spreading overlaps the load side here (\`PACKED=0\` skips it, \`PACKED=1\` forces it)")
fi
if [[ "$(kit expand "${MOCK_CPUS}")" == "$(kit expand "${LOADGEN_CPUS}")" ]]; then
    NOTES+=("mock-llm and wrk **share** \`${MOCK_CPUS}\` (too few CPUs to separate them: with ${NALLOWED} CPUs and up to ${MAXS} shards), as perf/run.sh does on 2 cores")
fi
if [[ -n "${COORD_CPUS}" ]]; then
    NOTES+=("after start, ringgate's non-shard threads (coordinator, lease-desk, tokio blocking pool, main) are moved to \`${COORD_CPUS}\` with \`taskset -p\` (\`COORD_CPUS\`; ringgate has no setting for it)")
else
    NOTES+=("the coordinator, lease-desk and blocking-pool threads are not pinned (ringgate has no setting for it): they float over ringgate's CPUs, beside the shards")
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE="$(ulimit -n)"
(( NOFILE >= 3 * CONNS_MAX + 512 || NOFILE >= 3 * CONNS_PER_SHARD * MAXS + 512 )) \
    || die "open-file limit ${NOFILE} is too low for up to $(( CONNS_PER_SHARD * MAXS )) connections (raise it or lower CONNS_MAX)"

# ---------------------------------------------------------------------------------------------
# Starting and stopping what is measured
# ---------------------------------------------------------------------------------------------
start_mock() {  # dir -> MOCK_PID
    local dir="$1" deadline=$((SECONDS + 10))
    rm -f "${TMP}/mock.ready"
    taskset -c "${MOCK_CPUS}" "${MOCK_BIN}" --listen "127.0.0.1:${MOCK_PORT}" --workers "${MOCK_WORKERS}" \
        --ready-file "${TMP}/mock.ready" > "${dir}/mock.stdout.log" 2> "${dir}/mock.stderr.log" &
    MOCK_PID=$!
    PIDS+=("${MOCK_PID}")
    until [[ -s "${TMP}/mock.ready" ]]; do
        kill -0 "${MOCK_PID}" 2>/dev/null || die "mock-llm exited at start: $(tail -3 "${dir}/mock.stderr.log")"
        (( SECONDS < deadline )) || die "mock-llm not ready within 10 s"
        sleep 0.05
    done
}

wait_http() {  # url seconds pid
    local deadline=$((SECONDS + $2))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)" == 200 ]]; do
        kill -0 "$3" 2>/dev/null || return 1
        (( SECONDS < deadline )) || return 1
        sleep 0.05
    done
}

start_ringgate() {  # target shards cpus dir -> RG_PID, KEY
    local t="$1" n="$2" cpus="$3" dir="$4"
    ringgate_conf "${dir}/ringgate.yaml" "${RG_PORT}" "${n}" "${CTL_PORT}" "${MOCK_PORT}"
    if [[ "${t}" == governed* ]]; then
        local logs=all
        [[ "${t}" == governed-nolog ]] && logs=none
        rm -rf "${TMP}/gov"; mkdir -p "${TMP}/gov"
        governance_conf "${dir}/ringgate.yaml" RG_SCALE_ADMIN_TOKEN "${logs}"
        printf '  database: %s\n' "${TMP}/gov/gov.db" >> "${dir}/ringgate.yaml"
    fi
    RUST_LOG="${RUST_LOG:-warn,ringgate=info}" taskset -c "${cpus}" "${RINGGATE_BIN}" serve --config "${dir}/ringgate.yaml" \
        > "${dir}/ringgate.stdout.log" 2> "${dir}/ringgate.stderr.log" &
    RG_PID=$!
    PIDS+=("${RG_PID}")
    wait_http "http://127.0.0.1:${RG_PORT}/health" 20 "${RG_PID}" \
        || die "ringgate (${t}, ${n} shards) did not answer /health: $(tail -3 "${dir}/ringgate.stderr.log")"
    wait_http "http://127.0.0.1:${CTL_PORT}/metrics" 10 "${RG_PID}" \
        || die "ringgate's control port did not answer /metrics"
    KEY=""
    if [[ "${t}" == governed* ]]; then
        KEY="$(create_perf_key "${CTL_PORT}" "${RG_SCALE_ADMIN_TOKEN}" "${TMP}/key.json" "${KEY_JSON}")" \
            || die "governed: POST /admin/keys failed"
    fi
    if [[ -n "${COORD_CPUS}" ]]; then
        local tid comm
        while read -r tid comm; do
            [[ "${comm}" == shard-* ]] || taskset -p -c "${COORD_CPUS}" "${tid}" > /dev/null
        done < <(kit threads "${RG_PID}")
    fi
    # Ready = a (keyed) request answered 200: for governed, the new key has reached the shards,
    # which the coordinator applies asynchronously after POST /admin/keys.
    local code deadline=$((SECONDS + 10)) auth=()
    [[ -n "${KEY}" ]] && auth=(-H "authorization: Bearer ${KEY}")
    until code="$(curl -s -o "${dir}/smoke.json" -w '%{http_code}' --max-time 2 -H 'content-type: application/json' \
            "${auth[@]}" --data-binary "@${BODY}" "${URL}")" && [[ "${code}" == 200 ]]; do
        (( SECONDS < deadline )) || die "${t}: smoke request answered HTTP ${code:-none} after 10 s: $(head -c 300 "${dir}/smoke.json" 2>/dev/null)"
        sleep 0.05
    done
}

stop_all() {
    if [[ -n "${RG_PID:-}" ]]; then stop_pid "${RG_PID}"; forget_pid "${RG_PID}"; RG_PID=""; fi
    if [[ -n "${MOCK_PID:-}" ]]; then stop_pid "${MOCK_PID}"; forget_pid "${MOCK_PID}"; MOCK_PID=""; fi
}

snapshot() {  # out
    kit snap "$1" "ringgate=${RG_PID}" "mock=${MOCK_PID}" --shell $$ --threads ringgate
}

measure() {  # round target layout shards
    local round="$1" t="$2" layout="$3" n="$4"
    local cpus conns threads dir foreign attempt=0
    cpus="$(proxy_cpus_for "${n}" "${layout}")"
    conns=$(( CONNS_PER_SHARD * n )); (( conns > CONNS_MAX )) && conns=${CONNS_MAX}
    threads="${WRK_THREADS:-${LOADGEN_N}}"; (( threads > conns )) && threads=${conns}
    while :; do
        SEQ=$((SEQ + 1))
        dir="${RAW}/$(printf 'r%d-%s-%s-%03d' "${round}" "${t}" "${layout}" "${n}")"
        (( attempt > 0 )) && dir+=".redo${attempt}"
        mkdir -p "${dir}"
        cat > "${dir}/meta.json" <<EOF
{"round": ${round}, "target": "${t}", "layout": "${layout}", "shards": ${n}, "proxy_cpus": "${cpus}",
 "mock_cpus": "${MOCK_CPUS}", "mock_workers": ${MOCK_WORKERS}, "loadgen_cpus": "${LOADGEN_CPUS}",
 "wrk_threads": ${threads}, "conns": ${conns}, "attempt": ${attempt}, "seq": ${SEQ}}
EOF
        log "round ${round}: ${t}, ${layout}, ${n} shard(s) on cpu ${cpus}; wrk -t${threads} -c${conns} -d${DURATION}s"
        start_mock "${dir}"
        start_ringgate "${t}" "${n}" "${cpus}" "${dir}"
        KEY="${KEY}" BODY_FILE="${BODY}" taskset -c "${LOADGEN_CPUS}" timeout $((WARMUP + 30)) \
            wrk -t"${threads}" -c"${conns}" -d"${WARMUP}s" -s "${HERE}/wrk/post.lua" "${URL}" \
            > "${dir}/warmup.txt" 2>&1 || log "warm-up wrk exited non-zero (see ${dir}/warmup.txt)"
        # /metrics is scraped outside the CPU window, so the scrape's cost is not charged to requests.
        curl -sf "http://127.0.0.1:${CTL_PORT}/metrics" -o "${dir}/metrics_before.txt" || true
        snapshot "${dir}/before.json"
        # Halfway through, one scrape for the connections each shard holds (the SO_REUSEPORT
        # split itself; responses per shard also depend on how much CPU each shard got). Its
        # cost (a fraction of a millisecond of the coordinator's time) is inside the window.
        ( sleep $(( (DURATION + 1) / 2 )); curl -sf --max-time 5 "http://127.0.0.1:${CTL_PORT}/metrics" -o "${dir}/metrics_mid.txt" ) &
        local mid=$!
        KEY="${KEY}" BODY_FILE="${BODY}" taskset -c "${LOADGEN_CPUS}" timeout $((DURATION + 30)) \
            wrk -t"${threads}" -c"${conns}" -d"${DURATION}s" --latency -s "${HERE}/wrk/post.lua" "${URL}" \
            > "${dir}/wrk.txt" 2>&1 || log "wrk exited non-zero (see ${dir}/wrk.txt)"
        wait "${mid}" 2>/dev/null || true
        snapshot "${dir}/after.json"
        curl -sf "http://127.0.0.1:${CTL_PORT}/metrics" -o "${dir}/metrics_after.txt" || true
        kill -0 "${RG_PID}" 2>/dev/null || log "ringgate stopped during the measurement: $(tail -3 "${dir}/ringgate.stderr.log")"
        log "  $(grep -E 'Requests/sec' "${dir}/wrk.txt" | tr -s ' ' || echo 'no result')"
        stop_all
        foreign="$("${PYTHON}" -c '
import json, sys
sys.path.insert(0, sys.argv[3]); import scalekit as k
b, a = (json.load(open(p)) for p in sys.argv[1:3])
v = k.other_load(b, a); print("0" if v is None else "%.0f" % v)' "${dir}/before.json" "${dir}/after.json" "${TMP}")"
        if (( foreign <= NOISE_THRESHOLD )) || (( attempt >= 1 )); then
            (( foreign > NOISE_THRESHOLD )) && log "  other processes used ${foreign}% of a core; kept and marked ⚠"
            break
        fi
        # Noisy: keep the attempt's files for the record (meta.noisy.json: not reported), redo once.
        mv "${dir}/meta.json" "${dir}/meta.noisy.json"
        attempt=$((attempt + 1))
        log "  other processes used ${foreign}% of a core; waiting for quiet (≤ ${QUIET_WAIT}s), then once more"
        "${PYTHON}" "${HERE}/perfkit.py" quiet --max-wait "${QUIET_WAIT}" --threshold "${NOISE_THRESHOLD}" >&2 || true
    done
}

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
log "results: ${REPORT}"
for n in "${NOTES[@]}"; do log "placement: ${n}"; done
log "waiting for a quiet machine (≤ ${QUIET_WAIT}s)"
"${PYTHON}" "${HERE}/perfkit.py" quiet --max-wait "${QUIET_WAIT}" --threshold "${NOISE_THRESHOLD}" >&2 || true

SEQ=0
PLAN=()
for t in ${TARGETS}; do
    for layout in ${LAYOUTS}; do
        for n in ${SHARDS}; do
            [[ "${layout}" == packed && "${n}" == 1 ]] && continue  # packed at 1 shard = spread at 1 shard
            PLAN+=("${t} ${layout} ${n}")
        done
    done
done
for round in $(seq 1 "${ROUNDS}"); do
    order=("${PLAN[@]}")
    if (( round % 2 == 0 )); then
        order=(); for (( i=${#PLAN[@]}-1; i>=0; i-- )); do order+=("${PLAN[i]}"); done
    fi
    for item in "${order[@]}"; do
        read -r t layout n <<< "${item}"
        measure "${round}" "${t}" "${layout}" "${n}"
    done
done
# Facts for the report header.
sha() { sha256sum "$1" | cut -c1-12; }
export SCALE_FACTS
SCALE_FACTS="$("${PYTHON}" - "${RG_SRC}" "${MOCK_SRC}" "${GIT_DESC}" "$(sha "${RINGGATE_BIN}")" "${RG_BUILT}" \
    "$(sha "${MOCK_BIN}")" "${MOCK_BUILT}" "${NOFILE}" <<'PY'
import json, platform, subprocess, sys
rg, mock, git, rsha, rbuilt, msha, mbuilt, nofile = sys.argv[1:]
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0) / 1048576
wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
wrkv = (wrk.stdout + wrk.stderr).splitlines()[0].split(" Copyright")[0] if (wrk.stdout + wrk.stderr) else "?"
print(json.dumps([
    ["CPUs (nproc)", subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()],
    ["CPU", model], ["memory", f"{mem:.1f} GiB"], ["kernel", platform.release()], ["wrk", wrkv],
    ["ringgate binary", f"`{rg}` built {rbuilt}, sha256 {rsha}… (the copy that ran); its work tree at the start: {git}"],
    ["mock-llm binary", f"`{mock}` built {mbuilt}, sha256 {msha}…"], ["open-file limit", nofile]]))
PY
)"
export SCALE_STAMP="${STAMP}" SCALE_COMMAND="${OVERRIDES}bash perf/scale.sh" SCALE_DURATION="${DURATION}"
export SCALE_WARMUP="${WARMUP}" SCALE_CONNS_PER_SHARD="${CONNS_PER_SHARD}" SCALE_CONNS_MAX="${CONNS_MAX}"
export SCALE_NOISE_THRESHOLD="${NOISE_THRESHOLD}"
printf '%s\n' "${NOTES[@]}" | "${PYTHON}" -c '
import json, os, sys
e = os.environ
json.dump({"stamp": e["SCALE_STAMP"], "command": e["SCALE_COMMAND"], "facts": json.loads(e["SCALE_FACTS"]),
           "duration": e["SCALE_DURATION"], "warmup": e["SCALE_WARMUP"], "conns_per_shard": e["SCALE_CONNS_PER_SHARD"],
           "conns_max": e["SCALE_CONNS_MAX"], "noise_threshold": e["SCALE_NOISE_THRESHOLD"],
           "placement_notes": sys.stdin.read().splitlines()}, open(sys.argv[1], "w"), indent=1)' "${RAW}/run.json"
kit report "${RAW}" > "${REPORT}"
cat "${REPORT}"
log "report written to ${REPORT}"
