#!/usr/bin/env bash
# Instructions per proxied request, whole gateway: ringgate runs under callgrind (valgrind),
# serves warm-up requests, its counters are zeroed, then it serves COUNT more and the counts
# are dumped. Instructions do not drift with a shared machine's speed the way CPU time does,
# so this resolves changes of a few percent where perf/ab.sh cannot (docs/perf.md, ninth
# session). User space only: the kernel's TCP and the ring are not counted, and callgrind
# has no io_uring, so the shard runs on its epoll driver (`runtime.driver: epoll`) — the
# request path's own code is the same; the I/O calls differ.
#
# Usage: bash perf/instructions.sh [BINARY|nginx]   (default target/release/ringgate)
#   nginx: the same count for one nginx worker (perf/common.sh's nginx_conf, master process
#   off) in front of the same mock — user space against user space, whatever the machine.
#   MODE=plain|stream|governed|governed_stream (default plain; nginx takes plain and stream),
#   COUNT (1000), CONNS (4),
#   TOP (25: functions listed, by their own instructions).
# Prints instructions per request, then the top functions, each per request; the raw
# callgrind file stays in perf/results/instructions-<stamp>/ for callgrind_annotate.
# Needs valgrind (Debian package) and oha.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "${HERE}")"
# shellcheck source=perf/common.sh
source "${HERE}/common.sh"

BIN="${1:-${ROOT}/target/release/ringgate}"
MODE="${MODE:-plain}"
COUNT="${COUNT:-1000}"
CONNS="${CONNS:-4}"
TOP="${TOP:-25}"
MOCK_BIN="${MOCK_BIN:-${ROOT}/target/release/mock-llm}"
PORT=18480 MOCK_PORT=18481 CONTROL=18482
OUT="${ROOT}/perf/results/instructions-$(date -u +%Y%m%dT%H%M%SZ)"
body="$(body_of "${MODE}")" || exit 2
if [[ "${BIN}" == nginx && "${MODE}" == governed* ]]; then
    echo "perf/instructions.sh: nginx has no governed mode" >&2
    exit 2
fi
mkdir -p "${OUT}"
command -v valgrind > /dev/null || { echo "perf/instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "${p}" 2> /dev/null || true; done; wait 2> /dev/null || true; }
trap cleanup EXIT

"${MOCK_BIN}" --listen "127.0.0.1:${MOCK_PORT}" --workers 1 > "${OUT}/mock.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:${MOCK_PORT}/v1/models" 20 || { echo "mock-llm did not start" >&2; exit 1; }

export RG_INSTR_TOKEN="instructions-token-$$-${RANDOM}"
if [[ "${BIN}" == nginx ]]; then
    nginx_conf "${OUT}/nginx" 1 1024 "${PORT}" "${MOCK_PORT}" "${OUT}/nginx/error.log" "$(ulimit -n)"
    ready="http://127.0.0.1:${PORT}/v1/models"
    server=(nginx -p "${OUT}/nginx" -c "${OUT}/nginx/nginx.conf" -g 'daemon off; master_process off;')
else
    ringgate_conf "${OUT}/rg.yaml" "${PORT}" 1 "${CONTROL}" "${MOCK_PORT}"
    sed -i 's/^pin_cores: true/pin_cores: false/' "${OUT}/rg.yaml"
    printf 'runtime:\n  driver: epoll\n' >> "${OUT}/rg.yaml"
    if [[ "${MODE}" == governed* ]]; then
        governance_conf "${OUT}/rg.yaml" RG_INSTR_TOKEN
        printf '  database: %s\n' "${OUT}/gov.db" >> "${OUT}/rg.yaml"
    fi
    ready="http://127.0.0.1:${CONTROL}/health"
    server=("${BIN}" serve --config "${OUT}/rg.yaml")
fi
RUST_LOG=warn valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="${OUT}/callgrind.out" \
    "${server[@]}" > "${OUT}/server.log" 2>&1 &
PIDS+=($!)
SERVER_PID=$!
wait_http "${ready}" 120 || {
    echo "${BIN} did not start under valgrind (${OUT}/server.log):" >&2
    grep -v '^==' "${OUT}/server.log" | head -5 >&2
    exit 1
}

auth=()
if [[ "${MODE}" == governed* ]]; then
    key="$(create_perf_key "${CONTROL}" "${RG_INSTR_TOKEN}")"
    auth=(-H "authorization: Bearer ${key}")
    # The key reaches the shard with the next snapshot: wait until it is admitted.
    for _ in $(seq 1 100); do
        code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "${auth[@]}" -H 'content-type: application/json' \
            --data-binary @"${body}" "http://127.0.0.1:${PORT}/v1/chat/completions" || true)"
        [[ "${code}" == 200 ]] && break
        sleep 0.1
    done
fi

load() {  # requests
    oha --no-tui -n "$1" -c "${CONNS}" -m POST -H 'content-type: application/json' "${auth[@]}" \
        -D "${body}" "http://127.0.0.1:${PORT}/v1/chat/completions" > "${OUT}/oha.txt" 2>&1
    grep -q "\[200\] $1 responses" "${OUT}/oha.txt" || { echo "not every request got a 200:" >&2; cat "${OUT}/oha.txt" >&2; exit 1; }
}
load 200
callgrind_control -z "${SERVER_PID}" > /dev/null 2>&1
load "${COUNT}"
callgrind_control -d "${SERVER_PID}" > /dev/null 2>&1
# One file per thread: the shard's (nginx: its one thread) is the one that did the most; the others (coordinator,
# store writer, lease desk, timers) are summed apart, as their periodic work grows with the
# wall time a slow valgrind run takes, not with the requests.
thread_total() {  # a thread that ran nothing since the zeroing reports "." : 0
    callgrind_annotate "$1" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print ($1 ~ /^[0-9]+$/) ? $1 : 0}'
}
dump="" total=0 others=0
for f in "${OUT}"/callgrind.out.*-*; do
    t="$(thread_total "${f}")"
    if (( t > total )); then
        others=$((others + total)); total="${t}"; dump="${f}"
    else
        others=$((others + t))
    fi
done
echo "# perf/instructions.sh ${BIN} MODE=${MODE} COUNT=${COUNT} CONNS=${CONNS} (epoll driver, user space)"
thread=shard
[[ "${BIN}" == nginx ]] && thread=worker
echo "instructions per request: ${thread} $((total / COUNT)), other threads $((others / COUNT))"
echo "the ${thread}'s top functions by their own instructions, per request:"
callgrind_annotate --inclusive=no --threshold=100 "${dump}" 2> /dev/null \
    | awk -v n="${COUNT}" -v top="${TOP}" -v total="${total}" '
        /file:function/ { on = 1; next }
        on && /^ *[0-9,]+ / {
            if (shown >= top) next  # read on: an early exit would break the pipe
            ir = $1; gsub(",", "", ir); ir += 0
            # Thread entry frames callgrind reports with the whole count are not work.
            if (ir / n < 1 || ir >= 0.99 * total) next
            line = $0
            sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
            printf "%9.0f  %s\n", ir / n, substr(line, 1, 150)
            shown++
        }'
echo "raw: ${dump}"
