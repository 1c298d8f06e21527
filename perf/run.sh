#!/usr/bin/env bash
# ringgate load test: wrk/oha -> mock-llm directly, -> nginx (proxy_pass + upstream keepalive),
# -> ringgate, and -> ringgate with governance on (a virtual key on every request, usage and a
# log row per request in SQLite), in one run, with the same core budget. See perf/README.md and
# docs/perf.md.
#
# Usage: bash perf/run.sh            (from any directory; ~12 minutes with the defaults)
# The markdown report goes to stdout and to perf/results/<UTC stamp>.md; raw wrk/oha output,
# /proc samples and process logs to perf/results/<UTC stamp>/. Progress goes to stderr. When
# perf/baseline.json exists, perf/check.py's comparison with it is appended to the report.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=perf/common.sh
source "${HERE}/common.sh"
ROOT="$(cd "${HERE}/.." && pwd)"
export PATH="${HOME}/.cargo/bin:${PATH}"

# ---------------------------------------------------------------------------------------------
# Settings (every one can be overridden from the environment)
# ---------------------------------------------------------------------------------------------
KNOBS=(PROXY_CPUS COORDINATOR_CPUS MOCK_CPUS LOADGEN_CPUS DIRECT_MOCK_CPUS DURATION OPEN_ROUNDS SAT_DURATION SAT_ROUNDS
       WARMUP CONNS WRK_THREADS OHA_THREADS RATES IDLE_CONNS IDLE_HOLD PORT_BASE TARGETS PERF_SKIP_BUILD QUIET_WAIT
       NOISE_THRESHOLD NOISE_RETRIES NOISE_RETRY_BUDGET QUIET_RETRY_WAIT
       RINGGATE_BIN MOCK_BIN FLOOR_BIN NGINX_BIN PYTHON)
OVERRIDES=""
for k in "${KNOBS[@]}"; do
    if [[ -n "${!k+x}" ]]; then OVERRIDES+="${k}='${!k}' "; fi
done

PROXY_CPUS="${PROXY_CPUS:-0}"            # nginx / ringgate
# Extra CPUs for ringgate's coordinator (store writes, lease desk): its shards stay on
# PROXY_CPUS, pinned, and the coordinator runs on these. Empty: everything on PROXY_CPUS.
COORDINATOR_CPUS="${COORDINATOR_CPUS:-}"
MOCK_CPUS="${MOCK_CPUS:-1}"              # mock-llm behind a proxy
LOADGEN_CPUS="${LOADGEN_CPUS:-1}"        # wrk, oha, the idle-connection client
DIRECT_MOCK_CPUS="${DIRECT_MOCK_CPUS:-${PROXY_CPUS}}"  # mock-llm when the load hits it directly
DURATION="${DURATION:-8}"                # seconds per open-loop run (one per target, rate and round)
# The open loop runs in alternated rounds too: a target's percentile is the median of its rounds,
# its added latency the median of the rounds' differences to direct.
OPEN_ROUNDS="${OPEN_ROUNDS:-3}"
SAT_DURATION="${SAT_DURATION:-6}"        # seconds per saturation run (one per target, scenario and round)
# Saturation runs in alternated rounds (see "Saturation in alternated rounds" below): each ratio
# of two targets is the median of its rounds' ratios.
SAT_ROUNDS="${SAT_ROUNDS:-3}"
WARMUP="${WARMUP:-2}"                    # seconds of unmeasured wrk per target
CONNS="${CONNS:-64}"
WRK_THREADS="${WRK_THREADS:-1}"
OHA_THREADS="${OHA_THREADS:-$(taskset -c "${LOADGEN_CPUS}" nproc)}"
RATES="${RATES:-1000 2500 5000}"
IDLE_CONNS="${IDLE_CONNS:-1000}"
IDLE_HOLD="${IDLE_HOLD:-2}"              # seconds the idle connections are held after measuring
PORT_BASE="${PORT_BASE:-18100}"
TARGETS="${TARGETS:-}"                  # default below: it depends on the proxy's cores
PERF_SKIP_BUILD="${PERF_SKIP_BUILD:-0}"
QUIET_WAIT="${QUIET_WAIT:-60}"           # max seconds to wait for a quiet machine before starting
NOISE_THRESHOLD="${NOISE_THRESHOLD:-10}" # other processes' CPU, % of one core, above which a run is redone
NOISE_RETRIES="${NOISE_RETRIES:-2}"      # redo a noisy measurement at most this often...
NOISE_RETRY_BUDGET="${NOISE_RETRY_BUDGET:-6}"  # ...and at most this many redos in the whole run
QUIET_RETRY_WAIT="${QUIET_RETRY_WAIT:-30}"     # max seconds to wait for quiet before a redo
TARGET_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}"
RINGGATE_BIN="${RINGGATE_BIN:-${TARGET_DIR}/release/ringgate}"
MOCK_BIN="${MOCK_BIN:-${TARGET_DIR}/release/mock-llm}"
FLOOR_BIN="${FLOOR_BIN:-${TARGET_DIR}/release/floor-uring}"
NGINX_BIN="${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}"
PYTHON="${PYTHON:-python3}"

# Every target runs from the start to its last measurement, so each has its own port.
MOCK_PORT=$((PORT_BASE + 1))             # the mock behind the proxies
NGINX_PORT=$((PORT_BASE + 2))
RINGGATE_PORT=$((PORT_BASE + 3))
CONTROL_PORT=$((PORT_BASE + 4))          # ringgate's control port (metrics/admin), if the build has one
FLOOR_PORT=$((PORT_BASE + 5))
DIRECT_MOCK_PORT=$((PORT_BASE + 6))      # the mock the direct target loads
GOVERNED_PORT=$((PORT_BASE + 7))
GOVERNED_CONTROL_PORT=$((PORT_BASE + 8))
# The governed target's admin API token: random per run (the admin API needs ≥ 16 characters).
RG_PERF_ADMIN_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export RG_PERF_ADMIN_TOKEN
PROXY_CORES="$(taskset -c "${PROXY_CPUS}" nproc)"
# The floor (perf/floor's floor-uring, one thread) runs when the proxies have one core.
if [[ -z "${TARGETS}" ]]; then
    TARGETS="mock nginx ringgate governed"
    (( PROXY_CORES == 1 )) && TARGETS="mock floor nginx ringgate governed"
fi
MOCK_WORKERS="$(taskset -c "${MOCK_CPUS}" nproc)"
DIRECT_MOCK_WORKERS="$(taskset -c "${DIRECT_MOCK_CPUS}" nproc)"
BODY_PLAIN="${HERE}/bodies/chat.json"
BODY_STREAM="${HERE}/bodies/chat_stream.json"
PATH_CHAT="/v1/chat/completions"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="${HERE}/results"
RAW="${RESULTS}/${STAMP}"
REPORT="${RESULTS}/${STAMP}.md"
mkdir -p "${RAW}"
TMP="$(mktemp -d /tmp/ringgate-perf.XXXXXX)"

log() { printf '[perf %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
pk() { taskset -c "${LOADGEN_CPUS}" "${PYTHON}" "${HERE}/perfkit.py" "$@"; }

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every child we start is recorded and stopped on exit.
# ---------------------------------------------------------------------------------------------
PIDS=()
stop_pid() {
    local pid="$1" i
    kill -TERM "${pid}" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    local pid
    for pid in "${PIDS[@]:-}"; do
        [[ -n "${pid}" ]] && stop_pid "${pid}"
    done
    rm -rf "${TMP}"
    if [[ ${rc} -ne 0 ]]; then log "failed (exit ${rc}); partial raw output in ${RAW}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

anomaly() { printf '%s\n' "$*" >> "${RAW}/anomalies.txt"; log "ANOMALY: $*"; }

check_alive() {  # phase   (the current target's processes, see select_target)
    local name pid logf ok=0
    for name in proxy mock; do
        if [[ "${name}" == proxy ]]; then pid="${PROXY_PID}"; logf="${DIR}/${T}.stderr.log"
        else pid="${MOCK_PID}"; logf="${MOCK_DIR}/mock.stderr.log"; fi
        [[ -n "${pid}" ]] || continue
        if ! kill -0 "${pid}" 2>/dev/null; then
            [[ "${name}" == proxy ]] && name="${T}"
            [[ "${name}" == mock ]] && name="mock-llm"
            anomaly "${T}: ${name} (pid ${pid}) stopped during ${1}; its last log lines: $(tail -3 "${logf}" 2>/dev/null | tr '\n' ' ' | cut -c1-400) (remaining measurements of this target skipped)"
            ok=1
        fi
    done
    return "${ok}"
}


port_free() { [[ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }
is_ringgate() { [[ "$1" == ringgate || "$1" == governed ]]; }  # the targets that run the ringgate binary
is_running() { [[ " ${RUNNING} " == *" $1 "* ]]; }  # started, and neither done nor found dead

# ---------------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------------
for t in ${TARGETS}; do
    case "${t}" in mock|floor|nginx|ringgate|governed) ;; *) die "unknown target '${t}' in TARGETS" ;; esac
done
for k in SAT_ROUNDS OPEN_ROUNDS; do
    [[ "${!k}" =~ ^[1-9][0-9]*$ ]] || die "${k} must be a whole number of rounds, at least 1 (got '${!k}')"
done
[[ " ${TARGETS} " == *" floor "* ]] && (( PROXY_CORES != 1 )) \
    && die "the floor target runs one thread: it needs PROXY_CPUS of one core (this run has ${PROXY_CORES})"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v taskset >/dev/null || die "taskset is not installed (util-linux)"
[[ " ${TARGETS} " == *" nginx "* ]] && { [[ -x "${NGINX_BIN}" ]] || die "nginx not found at ${NGINX_BIN} (apt-get install nginx)"; }
if ! command -v oha >/dev/null; then
    log "oha not found: cargo install oha --locked (perf only, a few minutes)"
    cargo install oha --locked >&2
fi

if [[ "${PERF_SKIP_BUILD}" != 1 ]]; then
    log "cargo build --release --workspace --bins (no-op when up to date)"
    (cd "${ROOT}" && cargo build --release --workspace --bins) >&2
fi
[[ -x "${RINGGATE_BIN}" ]] || die "no ringgate binary at ${RINGGATE_BIN}"
[[ -x "${MOCK_BIN}" ]] || die "no mock-llm binary at ${MOCK_BIN}"
[[ " ${TARGETS} " != *" floor "* || -x "${FLOOR_BIN}" ]] || die "no floor-uring binary at ${FLOOR_BIN}"
# Run copies, so that a rebuild in the work tree during the run cannot swap a binary under us.
export PERF_RINGGATE_BIN_SRC="${RINGGATE_BIN}" PERF_MOCK_BIN_SRC="${MOCK_BIN}"
cp "${RINGGATE_BIN}" "${TMP}/ringgate"; RINGGATE_BIN="${TMP}/ringgate"
cp "${MOCK_BIN}" "${TMP}/mock-llm"; MOCK_BIN="${TMP}/mock-llm"
if [[ " ${TARGETS} " == *" floor "* ]]; then cp "${FLOOR_BIN}" "${TMP}/floor-uring"; FLOOR_BIN="${TMP}/floor-uring"; fi

# The machine may be shared: wait (bounded) for it to be quiet before starting.
log "waiting for a quiet machine (< ${NOISE_THRESHOLD}% of a core busy; at most ${QUIET_WAIT}s)"
log "$(pk quiet --max-wait "${QUIET_WAIT}" --threshold "${NOISE_THRESHOLD}")"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE="$(ulimit -n)"
(( NOFILE >= IDLE_CONNS + 1024 )) || die "open-file limit ${NOFILE} is too low for ${IDLE_CONNS} idle connections"

for p in "${MOCK_PORT}" "${NGINX_PORT}" "${RINGGATE_PORT}" "${CONTROL_PORT}" "${FLOOR_PORT}" "${DIRECT_MOCK_PORT}" \
         "${GOVERNED_PORT}" "${GOVERNED_CONTROL_PORT}"; do
    port_free "${p}" || die "port ${p} is in use (set PORT_BASE)"
done

GIT_DESC="$(git -C "${ROOT}" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "${ROOT}" status --porcelain -- . ':!perf' ':!docs/perf.md' 2>/dev/null)" ]]; then
    GIT_DESC+=" (+ uncommitted changes)"
fi

export PERF_STAMP="${STAMP}" PERF_COMMAND="${OVERRIDES}bash perf/run.sh" PERF_GIT="${GIT_DESC}"
export PERF_TARGETS="${TARGETS}" PERF_RATES="${RATES}" PERF_DURATION="${DURATION}s" PERF_OPEN_ROUNDS="${OPEN_ROUNDS}"
export PERF_SAT_DURATION="${SAT_DURATION}s" PERF_SAT_ROUNDS="${SAT_ROUNDS}"
export PERF_WARMUP="${WARMUP}s" PERF_CONNS="${CONNS}" PERF_WRK_THREADS="${WRK_THREADS}"
export PERF_OHA_THREADS="${OHA_THREADS}" PERF_IDLE_CONNS="${IDLE_CONNS}" PERF_IDLE_HOLD="$((IDLE_HOLD + 1))"
export PERF_PROXY_CPUS="${PROXY_CPUS}" PERF_MOCK_CPUS="${MOCK_CPUS}" PERF_LOADGEN_CPUS="${LOADGEN_CPUS}"
export PERF_DIRECT_MOCK_CPUS="${DIRECT_MOCK_CPUS}" PERF_PROXY_CORES="${PROXY_CORES}"
export PERF_COORDINATOR_CPUS="${COORDINATOR_CPUS}"
export PERF_MOCK_WORKERS="${MOCK_WORKERS}" PERF_DIRECT_MOCK_WORKERS="${DIRECT_MOCK_WORKERS}"
export PERF_NOISE_THRESHOLD="${NOISE_THRESHOLD}"
export PERF_BODY_BYTES="$(wc -c < "${BODY_PLAIN}")" PERF_NGINX_BIN="${NGINX_BIN}" PERF_NOFILE="${NOFILE}"
pk meta "${RAW}/meta.json"

log "results: ${REPORT}"
log "placement: proxy cpu ${PROXY_CPUS} (${PROXY_CORES} core(s)); mock cpu ${MOCK_CPUS} (${MOCK_WORKERS} worker(s)); load generator cpu ${LOADGEN_CPUS}; direct mock cpu ${DIRECT_MOCK_CPUS}"


# ---------------------------------------------------------------------------------------------
# Starting the processes under test. Every target is started before the first measurement and
# runs until its last, so that the saturation runs can alternate between the targets (below);
# a target waiting for its turn is idle and costs no CPU (the report shows what it used).
# ---------------------------------------------------------------------------------------------
declare -A TARGET_PID=()  # target -> the process measured as it: the proxy, or the direct target's mock
UPSTREAM_MOCK_PID=""      # the mock behind every proxy (start_upstream_mock)
GOVERNED_KEY=""           # the governed target's virtual key (create_key)
RUNNING=""                # targets started and neither done nor found dead

start_mock() {  # cpus workers port logdir -> MOCK_PID
    local cpus="$1" workers="$2" port="$3" dir="$4" deadline
    mkdir -p "${dir}"
    taskset -c "${cpus}" "${MOCK_BIN}" --listen "127.0.0.1:${port}" --workers "${workers}" \
        > "${dir}/mock.stdout.log" 2> "${dir}/mock.stderr.log" &
    MOCK_PID=$!
    PIDS+=("${MOCK_PID}")
    deadline=$((SECONDS + 10))
    until grep -q "listening on" "${dir}/mock.stdout.log" 2>/dev/null; do
        kill -0 "${MOCK_PID}" 2>/dev/null || die "mock-llm exited at startup: $(tail -5 "${dir}/mock.stderr.log")"
        (( SECONDS < deadline )) || die "mock-llm did not start within 10 s"
        sleep 0.05
    done
}

# One mock behind all the proxies, on MOCK_CPUS. The targets take turns, so it serves one proxy
# at a time; and the drift correction (perf/report.py) divides a proxy's CPU per request by the
# mock's behind it, which is then the same process behind every proxy — the same heap, threads
# and history — rather than a sibling whose own state could differ. The direct target's mock is
# a second process, on DIRECT_MOCK_CPUS and its own port.
start_upstream_mock() {
    start_mock "${MOCK_CPUS}" "${MOCK_WORKERS}" "${MOCK_PORT}" "${RAW}/upstream-mock"
    UPSTREAM_MOCK_PID="${MOCK_PID}"
}

start_nginx() {  # logdir -> PROXY_PID
    local dir="$1" conf="${TMP}/nginx"
    nginx_conf "${conf}" "${PROXY_CORES}" "$((IDLE_CONNS + 2 * CONNS + 512))" "${NGINX_PORT}" \
        "${MOCK_PORT}" "${dir}/nginx.stderr.log" "${NOFILE}"
    cp "${conf}/nginx.conf" "${dir}/nginx.conf"
    taskset -c "${PROXY_CPUS}" "${NGINX_BIN}" -p "${conf}" -c "${conf}/nginx.conf" -e "${dir}/nginx.stderr.log" \
        -g 'daemon off;' > "${dir}/nginx.stdout.log" 2>> "${dir}/nginx.stderr.log" &
    PROXY_PID=$!
    PIDS+=("${PROXY_PID}")
    wait_http "http://127.0.0.1:${NGINX_PORT}/v1/models" 10 \
        || die "nginx did not come up: $(tail -5 "${dir}/nginx.stderr.log")"
}

# The floor (docs/perf.md, "The floor"): bytes relayed with no HTTP on a bare io_uring ring with
# multishot receive, provided buffers, fixed files and DEFER_TASKRUN — the least any proxy over
# this loopback can cost, measured in the same run as the proxies.
start_floor() {  # logdir -> PROXY_PID
    local dir="$1"
    taskset -c "${PROXY_CPUS}" "${FLOOR_BIN}" "127.0.0.1:${FLOOR_PORT}" "127.0.0.1:${MOCK_PORT}" \
        > "${dir}/floor.stdout.log" 2> "${dir}/floor.stderr.log" &
    PROXY_PID=$!
    PIDS+=("${PROXY_PID}")
    wait_http "http://127.0.0.1:${FLOOR_PORT}/v1/models" 10 \
        || die "the floor did not come up: $(tail -5 "${dir}/floor.stderr.log")"
}

port_of() {  # target -> the port its load goes to
    case "$1" in
        mock) echo "${DIRECT_MOCK_PORT}" ;;
        floor) echo "${FLOOR_PORT}" ;;
        nginx) echo "${NGINX_PORT}" ;;
        ringgate) echo "${RINGGATE_PORT}" ;;
        governed) echo "${GOVERNED_PORT}" ;;
    esac
}

control_port_of() {  # ringgate target -> its control port
    if [[ "$1" == governed ]]; then echo "${GOVERNED_CONTROL_PORT}"; else echo "${CONTROL_PORT}"; fi
}

start_ringgate() {  # target logdir -> PROXY_PID; for governed also GOVERNED_KEY
    local t="$1" dir="$2" port control
    port="$(port_of "${t}")" control="$(control_port_of "${t}")"
    ringgate_conf "${dir}/ringgate.yaml" "${port}" "${PROXY_CORES}" "${control}" "${MOCK_PORT}"
    if [[ "${t}" == governed ]]; then
        # require_virtual_key: a request the harness sent without the key is a 401 in the report,
        # not a request that silently skipped governance.
        governance_conf "${dir}/ringgate.yaml" RG_PERF_ADMIN_TOKEN
        printf '  database: %s\n' "${TMP}/gov.db" >> "${dir}/ringgate.yaml"
    fi
    # Builds without a control port reject the `control` section: drop it for them (not for
    # governed, whose key is created through the admin API on that port).
    if [[ "${t}" == ringgate ]] && ! RUST_BACKTRACE=0 "${RINGGATE_BIN}" check-config "${dir}/ringgate.yaml" > /dev/null 2>&1; then
        sed -i '/^control:/,+1d' "${dir}/ringgate.yaml"
        RUST_BACKTRACE=0 "${RINGGATE_BIN}" check-config "${dir}/ringgate.yaml" > /dev/null 2> "${dir}/check-config.log" \
            || die "ringgate rejects the generated config: $(head -3 "${dir}/check-config.log")"
    fi
    # warn for the data plane; the binary's own info lines ("listening", "stopping signal=N") are kept
    # so that a ringgate that stops mid-run says why.
    RUST_LOG="${RUST_LOG:-warn,ringgate=info}" taskset -c "${PROXY_CPUS}${COORDINATOR_CPUS:+,${COORDINATOR_CPUS}}" "${RINGGATE_BIN}" serve --config "${dir}/ringgate.yaml" \
        > "${dir}/${t}.stdout.log" 2> "${dir}/${t}.stderr.log" &
    PROXY_PID=$!
    PIDS+=("${PROXY_PID}")
    wait_http "http://127.0.0.1:${port}/health" 10 \
        || die "${t} did not come up: $(tail -5 "${dir}/${t}.stderr.log")"
    if [[ "${t}" == governed ]]; then create_key "${dir}"; fi
}

# The perf key (perf/common.sh): every request takes the whole governed path and none is
# refused. The secret stays in TMP; the run directory gets only the key's public record.
create_key() {  # logdir -> GOVERNED_KEY
    GOVERNED_KEY="$(create_perf_key "${GOVERNED_CONTROL_PORT}" "${RG_PERF_ADMIN_TOKEN}" "${TMP}/key.json")" \
        || die "governed: POST /admin/keys failed"
    "${PYTHON}" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["key"], indent=1))' \
        "${TMP}/key.json" > "$1/key.json"
}

latency_snapshot() {  # out: the current ringgate target's GET /latency (older builds without it: no file)
    curl -sf "http://127.0.0.1:$(control_port_of "${T}")/latency" -o "$1" || rm -f "$1"
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]:-}"; do [[ -n "${p}" && "${p}" != "$1" ]] && keep+=("${p}"); done
    PIDS=("${keep[@]:-}")
}

# The current target: what the measurements below load, watch, snapshot and write into.
select_target() {  # target -> T DIR PORT URL KEY AUTH PROXY_PID MOCK_PID MOCK_DIR ROLES SNAP_ROLES
    local u
    T="$1" DIR="${RAW}/$1" PORT="$(port_of "$1")"
    URL="http://127.0.0.1:${PORT}${PATH_CHAT}"
    KEY="" AUTH=()
    if [[ "${T}" == governed ]]; then KEY="${GOVERNED_KEY}"; AUTH=(-H "authorization: Bearer ${KEY}"); fi
    if [[ "${T}" == mock ]]; then
        PROXY_PID="" MOCK_PID="${TARGET_PID[mock]}" MOCK_DIR="${DIR}"
        ROLES=("mock=${MOCK_PID}")
    else
        PROXY_PID="${TARGET_PID[${T}]}" MOCK_PID="${UPSTREAM_MOCK_PID}" MOCK_DIR="${RAW}/upstream-mock"
        ROLES=("proxy=${PROXY_PID}" "mock=${MOCK_PID}")
    fi
    # The CPU snapshots also hold the other targets' processes, idle meanwhile: the noise
    # accounting (perfkit.py foreign_pct) counts them as the test's own, not as other load, and
    # the report shows how little they used.
    SNAP_ROLES=("${ROLES[@]}")
    for u in ${RUNNING}; do
        if [[ "${u}" != "${T}" ]]; then SNAP_ROLES+=("idle.${u}=${TARGET_PID[${u}]}"); fi
    done
    if [[ "${T}" == mock && -n "${UPSTREAM_MOCK_PID}" ]]; then SNAP_ROLES+=("idle.upstream-mock=${UPSTREAM_MOCK_PID}"); fi
}

# ---------------------------------------------------------------------------------------------
# One measurement = /proc snapshot, load, /proc snapshot. If other processes on this shared
# machine used more than NOISE_THRESHOLD % of a core meanwhile, wait for quiet and redo it
# (bounded by NOISE_RETRIES per measurement and NOISE_RETRY_BUDGET per run).
# ---------------------------------------------------------------------------------------------
RETRIES_USED=0
measure() {  # name command...   (into the current target's DIR, snapshotting its SNAP_ROLES)
    local name="$1" attempt=0 foreign
    shift
    while :; do
        pk snap "${DIR}/${name}.cpu_before.json" --shell $$ "${SNAP_ROLES[@]}"
        "$@"
        pk snap "${DIR}/${name}.cpu_after.json" --shell $$ "${SNAP_ROLES[@]}"
        foreign="$(pk noise "${DIR}/${name}.cpu_before.json" "${DIR}/${name}.cpu_after.json")"
        echo "${name} attempt $((attempt + 1)): other processes used ${foreign}% of a core" >> "${DIR}/noise.log"
        if awk -v f="${foreign}" -v t="${NOISE_THRESHOLD}" 'BEGIN { exit !(f <= t) }'; then
            break
        fi
        if (( attempt >= NOISE_RETRIES || RETRIES_USED >= NOISE_RETRY_BUDGET )); then
            log "${T} ${name}: other processes used ${foreign}% of a core; keeping this result (retry budget spent)"
            break
        fi
        attempt=$((attempt + 1))
        RETRIES_USED=$((RETRIES_USED + 1))
        log "${T} ${name}: other processes used ${foreign}% of a core; waiting for quiet, then redoing it"
        log "$(pk quiet --max-wait "${QUIET_RETRY_WAIT}" --threshold "${NOISE_THRESHOLD}")"
    done
}

run_wrk() {  # seconds body out   (closed loop on the current target)
    KEY="${KEY}" BODY_FILE="$2" taskset -c "${LOADGEN_CPUS}" timeout $(($1 + 30)) \
        wrk -t"${WRK_THREADS}" -c"${CONNS}" -d"$1s" --latency -s "${HERE}/wrk/post.lua" "${URL}" \
        > "$3" 2>&1 || anomaly "wrk exited non-zero (see ${3#"${RAW}/"})"
}

run_oha() {  # rate out   (open loop on the current target)
    taskset -c "${LOADGEN_CPUS}" timeout $((DURATION + 30)) \
        oha -z "${DURATION}s" -c "${CONNS}" -q "$1" --latency-correction --no-tui \
        --output-format json --worker-threads "${OHA_THREADS}" \
        -m POST -H 'content-type: application/json' "${AUTH[@]}" -D "${BODY_PLAIN}" "${URL}" \
        > "$2" 2> "${2%.json}.stderr.log" || anomaly "oha exited non-zero (see ${2#"${RAW}/"})"
}

# ringgate's own view of its overhead: GET /latency just before and after the oha run (the report
# subtracts). Inside the measurement, so that a run redone for noise gets readings of its own
# (one request to the control port beside the run's tens of thousands).
run_oha_inside() {  # rate stem   (stem.oha.json; for ringgate targets also stem.latency_{before,after}.json)
    if is_ringgate "${T}"; then latency_snapshot "$2.latency_before.json"; fi
    run_oha "$1" "$2.oha.json"
    if is_ringgate "${T}"; then latency_snapshot "$2.latency_after.json"; fi
}

# ---------------------------------------------------------------------------------------------
# The phases: every target started and warmed up; saturation, then the open loop, in alternated
# rounds; then, one target after the other, memory and idle connections, and the target stopped.
# ---------------------------------------------------------------------------------------------
# The first request answered 200 is the readiness condition (for governed: the new key has
# reached the shards, which the coordinator applies asynchronously after POST /admin/keys).
await_smoke() {  # (the current target)
    local code deadline=$((SECONDS + 10))
    while :; do
        code="$(curl -s -o "${DIR}/smoke.json" -w '%{http_code}' -H 'content-type: application/json' "${AUTH[@]}" \
            --data-binary "@${BODY_PLAIN}" "${URL}")" || true
        [[ "${code}" == 200 ]] && return 0
        (( SECONDS < deadline )) || die "${T}: smoke request still answered HTTP ${code} after 10 s: $(head -c 300 "${DIR}/smoke.json")"
        sleep 0.1
    done
}

start_target() {  # target: its processes up and answering, their memory at start recorded
    local t="$1" dir="${RAW}/$1"
    mkdir -p "${dir}"
    case "${t}" in
        mock) start_mock "${DIRECT_MOCK_CPUS}" "${DIRECT_MOCK_WORKERS}" "${DIRECT_MOCK_PORT}" "${dir}"
              PROXY_PID="${MOCK_PID}" ;;
        nginx) start_nginx "${dir}" ;;
        floor) start_floor "${dir}" ;;
        ringgate|governed) start_ringgate "${t}" "${dir}" ;;
    esac
    TARGET_PID[${t}]="${PROXY_PID}"
    RUNNING+=" ${t}"
    select_target "${t}"
    await_smoke
    pk mem "${DIR}/mem_start.json" "${ROLES[@]}"
}

stop_target() {  # target: its own process (the mock behind the proxies serves the others on)
    stop_pid "${TARGET_PID[$1]}"
    forget_pid "${TARGET_PID[$1]}"
    RUNNING=" ${RUNNING} "
    RUNNING="${RUNNING/ $1 / }"
}

reversed() {  # words -> the same words in reverse order
    local w out=""
    for w in $1; do out="${w} ${out}"; done
    echo "${out}"
}

# A round runs every target still running once, in the order of TARGETS in odd rounds and in
# reverse in even ones: the two targets of a comparison run seconds apart (neighbours in TARGETS
# back to back), and a drift of the machine's speed across a round lands on either side of a
# pair in turn. perf/rundata.py takes each comparison as the median of its rounds', as
# perf/ab.sh does.
in_round() {  # label round command [args...]: `command target args... round` for each target
    local label="$1" round="$2" order="${TARGETS}" t
    shift 2
    if (( round % 2 == 0 )); then order="$(reversed "${TARGETS}")"; fi
    log "=== ${label}: ${order}"
    for t in ${order}; do
        if is_running "${t}"; then "$1" "${t}" "${@:2}" "${round}"; fi
    done
}

measured_run() {  # target name phase command...: one measured run, then the target's processes checked
    select_target "$1"
    sleep 1
    measure "$2" "${@:4}"
    check_alive "$3" || stop_target "${T}"
}

saturate() {  # target scenario round: one closed-loop run
    local name="sat_$2.r$3" body="${BODY_PLAIN}"
    if [[ "$2" == stream ]]; then body="${BODY_STREAM}"; fi
    measured_run "$1" "${name}" "saturation $2, round $3" run_wrk "${SAT_DURATION}" "${body}" "${RAW}/$1/${name}.wrk.txt"
    log "round $3: $1: saturation $2: $(grep -E 'Requests/sec|Non-2xx|Socket errors' "${RAW}/$1/${name}.wrk.txt" | tr -s ' ' | paste -sd';' -)"
}

open_loop() {  # target rate round: one open-loop run
    local name="open_$2.r$3"
    measured_run "$1" "${name}" "open loop $2, round $3" run_oha_inside "$2" "${RAW}/$1/${name}"
    log "round $3: $1: open loop $2 req/s: $("${PYTHON}" -c 'import json,sys; d=json.load(open(sys.argv[1])); p=d["latencyPercentiles"]; print("p50 %.0fus p99 %.0fus p99.9 %.0fus codes %s errors %s" % (p["p50"]*1e6, p["p99"]*1e6, p["p99.9"]*1e6, d["statusCodeDistribution"], d["errorDistribution"]))' "${RAW}/$1/${name}.oha.json" 2>/dev/null || echo 'no result')"
}

finish_target() {  # target: memory and idle connections, then stopped
    select_target "$1"
    sleep 1
    pk mem "${DIR}/mem_after_load.json" "${ROLES[@]}"
    log "${T}: ${IDLE_CONNS} idle keep-alive connections (two rounds)"
    pk idle "${DIR}/idle.json" "${ROLES[@]}" --port "${PORT}" --n "${IDLE_CONNS}" --body "${BODY_PLAIN}" \
        --hold "${IDLE_HOLD}" "${AUTH[@]}" || anomaly "${T}: idle-connection test failed"
    check_alive "idle-connection test" || true
    stop_target "${T}"
}

for t in ${TARGETS}; do
    if [[ "${t}" != mock && -z "${UPSTREAM_MOCK_PID}" ]]; then start_upstream_mock; fi
    log "=== starting ${t}"
    start_target "${t}"
done
for t in ${TARGETS}; do
    select_target "${t}"
    log "${t}: warm-up ${WARMUP}s"
    run_wrk "${WARMUP}" "${BODY_PLAIN}" "${DIR}/warmup.wrk.txt"
done

# Saturation: a round is every target's plain run, then every target's streamed one.
for round in $(seq 1 "${SAT_ROUNDS}"); do
    for scen in plain stream; do
        in_round "saturation ${scen}, round ${round}/${SAT_ROUNDS}" "${round}" saturate "${scen}"
    done
done

# The open loop: OPEN_ROUNDS rounds at one rate, then at the next. The added latency of a target
# is its percentile minus direct's in the same round, and two proxies are compared round by round:
# each comparison is of one rate, so a rate's rounds come together and its runs span a few
# minutes (OPEN_ROUNDS × targets × DURATION); rates inside the rounds would stretch each one's
# rounds over the whole phase, with the machine's drift between them, for no closer pair.
for rate in ${RATES}; do
    for round in $(seq 1 "${OPEN_ROUNDS}"); do
        in_round "open loop ${rate} req/s, round ${round}/${OPEN_ROUNDS}" "${round}" open_loop "${rate}"
    done
done

for t in ${TARGETS}; do
    if is_running "${t}"; then
        log "=== memory and idle connections: ${t}"
        finish_target "${t}"
    fi
done
if [[ -n "${UPSTREAM_MOCK_PID}" ]]; then stop_pid "${UPSTREAM_MOCK_PID}"; forget_pid "${UPSTREAM_MOCK_PID}"; fi

taskset -c "${LOADGEN_CPUS}" "${PYTHON}" "${HERE}/report.py" "${RAW}" > "${REPORT}"
# The regression guard: this run's ratios against the saved ones (perf/check.py; exit 3 = a
# figure moved the wrong way beyond its tolerance, which the appended section says).
if [[ -f "${HERE}/baseline.json" ]]; then
    check_rc=0
    { echo; "${PYTHON}" "${HERE}/check.py" run "${RAW}"; } >> "${REPORT}" || check_rc=$?
    case "${check_rc}" in
        0) log "regression guard: every figure within tolerance of perf/baseline.json" ;;
        3) log "regression guard: figures got worse beyond tolerance (see the end of the report)" ;;
        *) log "regression guard: perf/check.py failed (exit ${check_rc})" ;;
    esac
fi
cat "${REPORT}"
log "report written to ${REPORT} (the run took $((SECONDS / 60)) min $((SECONDS % 60)) s)"
