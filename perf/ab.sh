#!/usr/bin/env bash
# A/B test of two ringgate binaries: CPU time per proxied request at saturation, alternating
# the binaries (A B B A A B …) so that the shared machine's drift lands on both sides.
#
# Usage: A=path/to/ringgate-a B=path/to/ringgate-b bash perf/ab.sh
#   A or B may be the word nginx: one nginx worker, proxy_pass with upstream keepalive, as in
#   perf/run.sh; or a floor, a byte relay with no HTTP (one upstream connection per client
#   connection): nginx-stream (nginx's stream module, epoll; needs libnginx-mod-stream) or
#   floor (perf/floor on ringgate's runtime and ring, FLOOR_BIN) or floor-uring (the same
#   relay on a bare ring with multishot receive, provided buffers, fixed files and
#   DEFER_TASKRUN, FLOOR_URING_BIN; A_FLOOR_WITHOUT / B_FLOOR_WITHOUT turn its features off
#   per side, e.g. A=B=floor-uring B_FLOOR_WITHOUT=fixed; docs/perf.md, "The floor").
#   MODE=plain|governed|stream|governed_stream (default plain), ROUNDS (4), DURATION (6 s), CONNS (64),
#   PROXY_CPUS (0), MOCK_CPUS (1: the mock and wrk), EXTRA_YAML (lines appended to the config),
#   GOV_DATABASE (governed: a postgres:// URL instead of an SQLite file, a fresh schema per
#   run; the database server's CPU is not the gateway's and is not counted),
#   MOCK_BIN (target/release/mock-llm), PERF_RECORD=1 (a `perf record -g` of the last round
#   of each side into perf/results/ab-<stamp>/; PERF_RECORD=dwarf for DWARF call graphs,
#   which Rust code without frame pointers needs; the profiler's cost lands in that round's
#   figure on both sides). perf/breakdown.py turns such a profile into µs per request.
# PROXY_QUOTA=50: each side runs in a CPU cgroup allowed 50 % of one CPU (root), so that the
# proxy is the bottleneck and its CPU per request holds no idle wake-ups (see throttle below).
# A_HOOK / B_HOOK: a command run with the side's pid appended once it answers, e.g.
# B_HOOK='python3 perf/sched.py idle coordinator tokio' (perf/sched.py: a thread's scheduling
# policy or slice, by thread name; the command's words are split on spaces), to try a
# placement or policy without rebuilding.
# RATE=5000: instead of saturating with wrk, offer RATE req/s with oha (open loop, latency
# corrected) and report each side's p99 latency as well (for changes aimed at tail latency).
# Prints one line per run (side, µs/req, req/s, the database server's µs/req, p99 µs or 0,
# peak RSS in KiB) and a summary:
# mean ± standard deviation of µs of the ringgate process's CPU (all threads, user + system,
# /proc) per completed request, req/s, and with GOV_DATABASE the PostgreSQL server's CPU per
# request (all its processes), and the process's peak RSS (VmHWM) at the end of the run.
# Each change to the hot path is kept only if this shows it (docs/perf.md).
# COUNTS=1: ringgate sides also count, over each load run, its clock reads, allocations, ring
# submissions, system calls and context switches per request (perf/counts.py; uprobes, root):
# work that a noisy machine's CPU times hide. The probes slow both sides alike.
# SEGMENTS=1: every side (nginx too) also counts the TCP segments the host sent over each load
# run, per request (/proc/net/snmp's OutSegs: on loopback each segment of every hop — client,
# proxy, mock, and PostgreSQL with GOV_DATABASE — is sent once): a proxy that splits a
# response or sends pure ACKs shows here (docs/perf.md, "The loopback's segments, counted").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/.." && pwd)"
# shellcheck source=perf/common.sh
source "${HERE}/common.sh"
A="${A:?set A to the first ringgate binary}"
B="${B:?set B to the second ringgate binary}"
MODE="${MODE:-plain}"
# Each side's mode (default MODE): A_MODE=plain B_MODE=governed A=B=<binary> measures what
# governance costs with the same binary, alternated like any A/B, so that the shared machine's
# drift lands on both (perf/run.sh measures its targets one after the other).
A_MODE="${A_MODE:-${MODE}}"
B_MODE="${B_MODE:-${MODE}}"
ROUNDS="${ROUNDS:-4}"
DURATION="${DURATION:-6}"
CONNS="${CONNS:-64}"
PROXY_CPUS="${PROXY_CPUS:-0}"
MOCK_CPUS="${MOCK_CPUS:-1}"
MOCK_BIN="${MOCK_BIN:-${ROOT}/target/release/mock-llm}"
FLOOR_BIN="${FLOOR_BIN:-${ROOT}/target/release/floor-proxy}"
FLOOR_URING_BIN="${FLOOR_URING_BIN:-${ROOT}/target/release/floor-uring}"
EXTRA_YAML="${EXTRA_YAML:-}"
GOV_DATABASE="${GOV_DATABASE:-}"
RATE="${RATE:-}"
PROXY_QUOTA="${PROXY_QUOTA:-}"
PORT=18203 MOCK_PORT=18201 CONTROL=18204
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${HERE}/results/ab-${STAMP}"
TMP="$(mktemp -d /tmp/ringgate-ab.XXXXXX)"
mkdir -p "${OUT}"
export RG_AB_TOKEN="ab-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

body_of "${A_MODE}" > /dev/null && body_of "${B_MODE}" > /dev/null || exit 2

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do [[ -n "${p}" ]] && kill "${p}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "${TMP}"
    [[ -n "${PROXY_QUOTA}" ]] && rmdir "${QUOTA_CGROUP}" 2>/dev/null
    return 0
}
trap cleanup EXIT

wait_port() {  # url: up to 10 s
    wait_http "$1" 10 || { echo "no answer from $1" >&2; return 1; }
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The PostgreSQL server's processes together (0 without GOV_DATABASE): with a PostgreSQL
# store, the request-log rows' indexing runs there, and is reported beside the gateway's.
db_ticks() {
    [[ -n "${GOV_DATABASE}" ]] || { echo 0; return; }
    local p total=0
    for p in $(pgrep -x postgres); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/${p}/stat" 2>/dev/null || echo 0)))
    done
    echo "${total}"
}

taskset -c "${MOCK_CPUS}" "${MOCK_BIN}" --listen "127.0.0.1:${MOCK_PORT}" --workers 1 > "${TMP}/mock.log" 2>&1 &
PIDS+=($!)
wait_port "http://127.0.0.1:${MOCK_PORT}/v1/models"

cat > "${TMP}/wrk.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local f = io.open(os.getenv("AB_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
local key = os.getenv("AB_KEY")
if key and #key > 0 then wrk.headers["authorization"] = "Bearer " .. key end
done = function(summary, latency, requests)
    local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    io.write(string.format("ABRESULT %d %d %d\n", summary.requests, summary.duration, bad))
end
EOF

start_nginx() {  # -> PID; one worker, configured as perf/run.sh configures it
    nginx_conf "${TMP}/nginx" 1 4096 "${PORT}" "${MOCK_PORT}" "${TMP}/nginx/error.log" "$(ulimit -n)"
    run_nginx
}

run_nginx() {  # -> PID; the configuration in TMP/nginx, one worker, no master
    taskset -c "${PROXY_CPUS}" nginx -p "${TMP}/nginx" -c "${TMP}/nginx/nginx.conf" \
        -g 'daemon off; master_process off;' > "${TMP}/nginx/out.log" 2>&1 &
    PID=$!
}

# The floors (docs/perf.md, "The floor"): byte relays with no HTTP, one upstream connection
# per client connection — nginx's stream module (epoll), perf/floor on ringgate's own runtime
# and ring, and perf/floor's floor-uring on a bare ring with io_uring's newer features.
start_nginx_stream() {  # -> PID
    nginx_stream_conf "${TMP}/nginx" "${PORT}" "${MOCK_PORT}" "${TMP}/nginx/error.log" "$(ulimit -n)"
    run_nginx
}

start_relay() {  # binary -> PID
    taskset -c "${PROXY_CPUS}" "$1" "127.0.0.1:${PORT}" "127.0.0.1:${MOCK_PORT}" \
        > "${TMP}/floor.log" 2>&1 &
    PID=$!
}
start_floor() { start_relay "${FLOOR_BIN}"; }
start_floor_uring() {  # A_FLOOR_WITHOUT / B_FLOOR_WITHOUT: the side's FLOOR_URING_WITHOUT
    local without="${label}_FLOOR_WITHOUT"
    FLOOR_URING_WITHOUT="${!without:-}" start_relay "${FLOOR_URING_BIN}"
}

# PROXY_QUOTA: the side's process (all its threads) runs in a CPU cgroup allowed PROXY_QUOTA %
# of one CPU (in 10-ms periods), so that it, not the mock's and wrk's CPU, limits throughput:
# it never waits for work, and its CPU per request is the work alone, without the cost of
# parking and waking that a proxy faster than its load pays (docs/perf.md, "The floor").
QUOTA_CGROUP=""
throttle() {  # pid
    if [[ -z "${QUOTA_CGROUP}" ]]; then
        if [[ -d /sys/fs/cgroup/cpu ]]; then  # cgroup v1
            QUOTA_CGROUP="/sys/fs/cgroup/cpu/ringgate-ab-$$"
            mkdir -p "${QUOTA_CGROUP}"
            echo 10000 > "${QUOTA_CGROUP}/cpu.cfs_period_us"
            echo $((PROXY_QUOTA * 100)) > "${QUOTA_CGROUP}/cpu.cfs_quota_us"
        else  # cgroup v2
            QUOTA_CGROUP="/sys/fs/cgroup/ringgate-ab-$$"
            echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
            mkdir -p "${QUOTA_CGROUP}"
            echo "$((PROXY_QUOTA * 100)) 10000" > "${QUOTA_CGROUP}/cpu.max"
        fi
    fi
    echo "$1" > "${QUOTA_CGROUP}/cgroup.procs"
}

is_ringgate() { [[ ! "$1" =~ ^(nginx|nginx-stream|floor|floor-uring)$ ]]; }

start_ringgate() {  # binary -> PID
    ringgate_conf "${TMP}/rg.yaml" "${PORT}" 1 "${CONTROL}" "${MOCK_PORT}"
    if [[ "${MODE}" == governed* ]]; then
        rm -rf "${TMP}"/gov.db* "${TMP}/spool"
        governance_conf "${TMP}/rg.yaml" RG_AB_TOKEN
        if [[ -n "${GOV_DATABASE}" ]]; then
            # A schema of its own per run: every run starts from an empty store.
            printf '  database: %s\n  database_schema: ab_%s_%s\n  spool_dir: %s\n' \
                "${GOV_DATABASE}" "${STAMP,,}" "$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" "${TMP}/spool" >> "${TMP}/rg.yaml"
        else
            printf '  database: %s\n' "${TMP}/gov.db" >> "${TMP}/rg.yaml"
        fi
    fi
    [[ -n "${EXTRA_YAML}" ]] && printf '%s\n' "${EXTRA_YAML}" >> "${TMP}/rg.yaml"
    RUST_LOG=warn taskset -c "${PROXY_CPUS}" "$1" serve --config "${TMP}/rg.yaml" > "${TMP}/rg.log" 2>&1 &
    PID=$!
}

tcp_out_segs() {  # TCP segments the host has sent so far
    awk '/^Tcp:/ { if (!col) { for (i = 1; i <= NF; i++) if ($i == "OutSegs") col = i } else print $col }' /proc/net/snmp
}

run_one() {  # label binary|nginx [last] -> prints "label us_per_req req_per_s"
    local label="$1" bin="$2" key="" pid
    # This side's mode, seen by start_ringgate too.
    local MODE="${A_MODE}" BODY
    [[ "${label}" == B ]] && MODE="${B_MODE}"
    BODY="$(body_of "${MODE}")"
    case "${bin}" in
        nginx | nginx-stream | floor | floor-uring)
            "start_${bin//-/_}"
            wait_port "http://127.0.0.1:${PORT}/v1/models"
            ;;
        *)
            start_ringgate "${bin}"
            wait_port "http://127.0.0.1:${PORT}/health"
            ;;
    esac
    pid="${PID}"
    [[ -n "${PROXY_QUOTA}" ]] && throttle "${pid}"
    local hook="${label}_HOOK"
    [[ -n "${!hook:-}" ]] && ${!hook} "${pid}"
    PIDS+=("${pid}")  # stopped by the exit trap too, should this run fail midway
    if [[ "${MODE}" == governed* ]] && is_ringgate "${bin}"; then
        key="$(create_perf_key "${CONTROL}" "${RG_AB_TOKEN}")"
    fi
    export AB_BODY="${BODY}" AB_KEY="${key}"
    local url="http://127.0.0.1:${PORT}/v1/chat/completions"
    taskset -c "${MOCK_CPUS}" wrk -t1 -c"${CONNS}" -d1s -s "${TMP}/wrk.lua" "${url}" > /dev/null
    local before after res db_before db_after stat=()
    if [[ "${COUNTS:-0}" != 0 ]] && is_ringgate "${bin}"; then
        local events; events="$(python3 "${HERE}/counts.py" events "${bin}" "rgab_${label,,}")"
        stat=(perf stat -x, -e "${events}" -p "${pid}" -o "${TMP}/counts.csv" --)
    fi
    before="$(cpu_ticks "${pid}")"
    db_before="$(db_ticks)"
    local segs_before; segs_before="$(tcp_out_segs)"
    if [[ "${PERF_RECORD:-0}" != 0 && "${3:-}" == last ]]; then
        local graph=(-g); [[ "${PERF_RECORD}" == dwarf ]] && graph=(--call-graph dwarf,16384)
        perf record -F 999 "${graph[@]}" -p "${pid}" -o "${OUT}/${label}.perf.data" \
            -- sleep "$((DURATION - 1))" > /dev/null 2>&1 &
    fi
    if [[ -n "${RATE}" ]]; then
        local auth=(); [[ -n "${key}" ]] && auth=(-H "authorization: Bearer ${key}")
        "${stat[@]}" taskset -c "${MOCK_CPUS}" oha --no-tui -c "${CONNS}" -q "${RATE}" -z "${DURATION}s" --latency-correction \
            --output-format json -m POST -H 'content-type: application/json' "${auth[@]}" -D "${BODY}" "${url}" \
            > "${TMP}/oha.json" 2> /dev/null
        res="$(python3 - "${TMP}/oha.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
codes = j.get("statusCodeDistribution") or {}
ok = codes.get("200", 0)
# Requests still in flight when -z expires are aborted by oha: not failures.
errors = sum(n for e, n in (j.get("errorDistribution") or {}).items() if "aborted due to deadline" not in e)
print(ok, int(j["summary"]["total"] * 1e6), sum(codes.values()) - ok + errors, round(j["latencyPercentiles"]["p99"] * 1e6))
EOF
)"
    else
        res="$("${stat[@]}" taskset -c "${MOCK_CPUS}" wrk -t1 -c"${CONNS}" -d"${DURATION}s" -s "${TMP}/wrk.lua" "${url}" | awk '/ABRESULT/ {print $2, $3, $4, 0}')"
    fi
    after="$(cpu_ticks "${pid}")"
    db_after="$(db_ticks)"
    if [[ "${SEGMENTS:-0}" != 0 ]]; then
        echo "${label} $(( $(tcp_out_segs) - segs_before )) ${res%% *}" >> "${OUT}/segments.txt"
    fi
    local peak_kib; peak_kib="$(awk '/^VmHWM/ {print $2}' "/proc/${pid}/status")"
    if (( ${#stat[@]} )); then
        python3 "${HERE}/counts.py" drop "rgab_${label,,}"
        echo "${label} $(python3 "${HERE}/counts.py" per-request "${TMP}/counts.csv" "${res%% *}")" >> "${OUT}/counts.txt"
    fi
    kill "${pid}"; wait "${pid}" 2>/dev/null || true
    local hz; hz="$(getconf CLK_TCK)"
    python3 - "${label}" "${before}" "${after}" "${hz}" $((db_after - db_before)) ${res} "${peak_kib}" <<'EOF'
import sys
label, before, after, hz, db, reqs, dur_us, bad, p99, peak = sys.argv[1], *map(int, sys.argv[2:11])
if bad:
    sys.exit(f"{label}: {bad} requests failed (non-2xx or socket errors)")
cpu_us = (after - before) * 1e6 / hz
print(f"{label} {cpu_us / reqs:.2f} {reqs / (dur_us / 1e6):.0f} {db * 1e6 / hz / reqs:.2f} {p99} {peak}")
EOF
}

echo "# perf/ab.sh A=${A} (${A_MODE}) B=${B} (${B_MODE}), ${ROUNDS} rounds of ${DURATION}s, $([[ -n "${RATE}" ]] && echo "oha -q ${RATE}" || echo wrk) -c${CONNS}" | tee "${OUT}/summary.txt"
for r in $(seq 1 "${ROUNDS}"); do
    last=""; [[ "${r}" == "${ROUNDS}" ]] && last=last
    if (( r % 2 )); then order="A B"; else order="B A"; fi
    for side in ${order}; do
        bin="${A}"; [[ "${side}" == B ]] && bin="${B}"
        # In this shell, not a pipeline's subshell: the processes it starts are in PIDS, which
        # the exit trap stops should a run fail midway.
        run_one "${side}" "${bin}" "${last}" > "${TMP}/run.txt"
        tee -a "${OUT}/runs.txt" < "${TMP}/run.txt"
    done
done
python3 - "${OUT}/runs.txt" <<'EOF' | tee -a "${OUT}/summary.txt"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for side in ("A", "B"):
    us = [float(r[1]) for r in rows if r[0] == side]
    rps = [float(r[2]) for r in rows if r[0] == side]
    db = [float(r[3]) for r in rows if r[0] == side]
    sd = statistics.stdev(us) if len(us) > 1 else 0.0
    p99 = [int(r[4]) for r in rows if r[0] == side]
    store = f"; database server {statistics.mean(db):.2f} µs/req" if any(db) else ""
    tail = f"; p99 {statistics.mean(p99):,.0f} µs ({', '.join(f'{p:,}' for p in p99)})" if any(p99) else ""
    peak = [int(r[5]) / 1024 for r in rows if r[0] == side]
    print(f"{side}: {statistics.mean(us):.2f} ± {sd:.2f} µs/req ({', '.join(f'{u:.2f}' for u in us)}), {statistics.mean(rps):,.0f} req/s{store}{tail}; "
          f"peak RSS {statistics.mean(peak):.1f} MiB ({', '.join(f'{p:.1f}' for p in peak)})")
a = statistics.mean(float(r[1]) for r in rows if r[0] == "A")
b = statistics.mean(float(r[1]) for r in rows if r[0] == "B")
print(f"B / A = {b / a:.3f}")
# Each round's A and B ran back to back: their ratio sees the least drift, and the median of
# the rounds' ratios is not moved by one disturbed run the way the means are.
rounds = [rows[i:i + 2] for i in range(0, len(rows) - 1, 2)]
paired = [float(next(r for r in pair if r[0] == "B")[1]) / float(next(r for r in pair if r[0] == "A")[1])
          for pair in rounds if {r[0] for r in pair} == {"A", "B"}]
if paired:
    print(f"B / A per round: {', '.join(f'{x:.3f}' for x in paired)}; median {statistics.median(paired):.3f}")
EOF
if [[ -f "${OUT}/counts.txt" ]]; then
    python3 - "${OUT}/counts.txt" "$(python3 "${HERE}/counts.py" labels)" <<'EOF' | tee -a "${OUT}/summary.txt"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f"per request (mean of rounds): {sys.argv[2]}")
for side in ("A", "B"):
    cols = list(zip(*[map(float, r[1:]) for r in rows if r[0] == side]))
    if cols:
        print(f"{side}: " + " | ".join(f"{statistics.mean(c):.2f}" for c in cols))
EOF
fi
if [[ -f "${OUT}/segments.txt" ]]; then
    python3 - "${OUT}/segments.txt" <<'EOF' | tee -a "${OUT}/summary.txt"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for side in ("A", "B"):
    runs = [int(r[1]) / int(r[2]) for r in rows if r[0] == side and int(r[2])]
    if runs:
        print(f"{side}: TCP segments sent per request {sum(runs) / len(runs):.2f} ({', '.join(f'{x:.2f}' for x in runs)})")
EOF
fi
echo "raw: ${OUT}"
