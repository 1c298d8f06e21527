#!/usr/bin/env bash
# ringgate-only scenarios, each compared with a baseline in the same run and placement as
# perf/run.sh (ringgate on cpu0; mock-llm and wrk on cpu1):
#   governance  — a governed request (virtual key, rpm + tpm + budget limits, usage flushed
#                 to SQLite) vs the same request with governance off;
#   failures    — a provider failing 20% of requests with a healthy fallback vs no faults;
#   balance     — how SO_REUSEPORT spreads connections over 2 shards (per-shard responses
#                 from /metrics) with few and with many connections.
# Usage: bash perf/scenarios.sh     (~2 minutes; loopback only; stops everything it started)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/.." && pwd)"
PROXY_CPUS="${PROXY_CPUS:-0}"
SIDE_CPUS="${SIDE_CPUS:-1}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-64}"
PORT_BASE="${PORT_BASE:-18300}"
RINGGATE_BIN="${RINGGATE_BIN:-${ROOT}/target/release/ringgate}"
MOCK_BIN="${MOCK_BIN:-${ROOT}/target/release/mock-llm}"
[[ -x "${RINGGATE_BIN}" && -x "${MOCK_BIN}" ]] || (cd "${ROOT}" && cargo build --release --workspace --bins)
TMP="$(mktemp -d /tmp/ringgate-scenarios.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "${TMP}"; }
trap cleanup EXIT
MOCK_A=$((PORT_BASE + 1)); MOCK_B=$((PORT_BASE + 2)); GW=$((PORT_BASE + 3)); CTL=$((PORT_BASE + 4))
export RG_SCENARIO_ADMIN="scenario-admin-token-0123456789"

start_mock() {  # port args...
    local port=$1; shift
    taskset -c "${SIDE_CPUS}" "${MOCK_BIN}" --listen "127.0.0.1:${port}" --workers 1 "$@" > "${TMP}/mock-${port}.log" 2>&1 &
    PIDS+=($!)
}
start_gateway() {  # shards config-body -> GW_PID
    cat > "${TMP}/gw.yaml" <<YAML
listen: 127.0.0.1:${GW}
control: {listen: "127.0.0.1:${CTL}"}
shards: $1
pin_cores: true
$2
YAML
    RUST_LOG=warn taskset -c "${PROXY_CPUS}" "${RINGGATE_BIN}" serve --config "${TMP}/gw.yaml" > "${TMP}/gw.log" 2>&1 &
    GW_PID=$!
    PIDS+=("${GW_PID}")
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:${GW}/health" > /dev/null && return; sleep 0.05; done
    echo "gateway did not start:"; cat "${TMP}/gw.log"; exit 1
}
stop_gateway() { kill "${GW_PID}"; wait "${GW_PID}" 2>/dev/null || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# wrk with a key; prints "req/s cpu_us_per_req non2xx"
load() {  # key body conns
    local before after out
    before=$(cpu_ticks "${GW_PID}")
    out=$(KEY="$1" BODY_FILE="$2" taskset -c "${SIDE_CPUS}" wrk -t1 -c"$3" -d"${DURATION}s" -s "${HERE}/wrk/keyed.lua" \
        "http://127.0.0.1:${GW}/v1/chat/completions")
    after=$(cpu_ticks "${GW_PID}")
    local reqs non2xx
    reqs=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<< "${out}")
    non2xx=$(sed -n 's/.*"err_status":\([0-9]*\).*/\1/p' <<< "${out}")
    echo "$((reqs / DURATION)) $(( (after - before) * 1000000 / (reqs > 0 ? reqs : 1) )) ${non2xx}"
}
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5"; }

echo "# ringgate scenarios — $(date -u +%Y%m%dT%H%M%SZ)"
echo
echo "Command: \`bash perf/scenarios.sh\` (wrk -t1 -c${CONNS} -d${DURATION}s; ringgate on cpu ${PROXY_CPUS}, mock-llm and wrk on cpu ${SIDE_CPUS}; $(uname -r))"
echo

start_mock "${MOCK_A}"
start_mock "${MOCK_B}" --fail-rate 0.2 --fail-status 503
sleep 0.3
PLAIN="${HERE}/bodies/chat.json"

# --- governance on vs off ------------------------------------------------------------------
start_gateway 1 "providers:
  mock: {base_url: \"http://127.0.0.1:${MOCK_A}/v1\"}"
read -r off_rps off_cpu off_err <<< "$(load "" "${PLAIN}" "${CONNS}")"
stop_gateway
governed() {  # request_logs -> "req/s cpu non2xx"
    rm -rf "${TMP}/gov.db"*
    start_gateway 1 "governance:
  database: ${TMP}/gov.db
  admin_token: env.RG_SCENARIO_ADMIN
  request_logs: $1
providers:
  mock: {base_url: \"http://127.0.0.1:${MOCK_A}/v1\"}" >&2
    local key
    key=$(curl -sf -XPOST "http://127.0.0.1:${CTL}/admin/keys" -H "authorization: Bearer ${RG_SCENARIO_ADMIN}" \
        -d '{"name":"perf","limits":{"rpm":100000000,"tpm":100000000000},"budget":{"limit_nanos":1000000000000000,"period":"daily"},"active":true}' \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
    sleep 0.2
    load "${key}" "${PLAIN}" "${CONNS}"
    stop_gateway
}
read -r on_rps on_cpu on_err <<< "$(governed all)"
read -r nolog_rps nolog_cpu nolog_err <<< "$(governed none)"
echo "## Governance on vs off"
echo
echo "| case | req/s | CPU µs/req (ringgate) | non-2xx | |"
echo "|---|--:|--:|--:|---|"
row "governance off" "${off_rps}" "$(awk "BEGIN{printf \"%.1f\", ${off_cpu}/100}")" "${off_err}" ""
row "governance on (key, rpm+tpm+budget), every request logged to SQLite" "${on_rps}" "$(awk "BEGIN{printf \"%.1f\", ${on_cpu}/100}")" "${on_err}" \
    "throughput $(awk "BEGIN{printf \"%.2f\", ${on_rps}/${off_rps}}")×, CPU $(awk "BEGIN{printf \"%.2f\", ${on_cpu}/${off_cpu}}")×"
row "governance on, request_logs: none (usage still persisted)" "${nolog_rps}" "$(awk "BEGIN{printf \"%.1f\", ${nolog_cpu}/100}")" "${nolog_err}" \
    "throughput $(awk "BEGIN{printf \"%.2f\", ${nolog_rps}/${off_rps}}")×, CPU $(awk "BEGIN{printf \"%.2f\", ${nolog_cpu}/${off_cpu}}")×"
echo

# --- injected failures ---------------------------------------------------------------------
start_gateway 1 "fallbacks:
  flaky/gpt-4o-mini: [healthy/gpt-4o-mini]
providers:
  healthy: {base_url: \"http://127.0.0.1:${MOCK_A}/v1\"}
  flaky:
    base_url: \"http://127.0.0.1:${MOCK_B}/v1\"
    retry: {max_retries: 1, initial_delay_ms: 1, max_delay_ms: 5}
    breaker: {consecutive_failures: 1000, min_requests: 1000000}"
sed 's#"model": *"[^"]*"#"model": "healthy/gpt-4o-mini"#' "${PLAIN}" > "${TMP}/healthy.json"
sed 's#"model": *"[^"]*"#"model": "flaky/gpt-4o-mini"#' "${PLAIN}" > "${TMP}/flaky.json"
read -r ok_rps ok_cpu ok_err <<< "$(load "" "${TMP}/healthy.json" "${CONNS}")"
read -r f_rps f_cpu f_err <<< "$(load "" "${TMP}/flaky.json" "${CONNS}")"
stop_gateway
echo "## Injected failures (20% of the primary's answers are 503; 1 retry, then a fallback)"
echo
echo "| case | req/s | CPU µs/req (ringgate) | client-visible non-2xx | |"
echo "|---|--:|--:|--:|---|"
row "healthy provider" "${ok_rps}" "$(awk "BEGIN{printf \"%.1f\", ${ok_cpu}/100}")" "${ok_err}" ""
row "20% failing + retry + fallback" "${f_rps}" "$(awk "BEGIN{printf \"%.1f\", ${f_cpu}/100}")" "${f_err}" \
    "throughput $(awk "BEGIN{printf \"%.2f\", ${f_rps}/${ok_rps}}")×"
echo

# --- SO_REUSEPORT balance over 2 shards -----------------------------------------------------
echo "## SO_REUSEPORT: responses per shard (2 shards, both on cpu ${PROXY_CPUS})"
echo
echo "| connections | run | shard 0 | shard 1 | larger share |"
echo "|--:|--:|--:|--:|--:|"
for conns in 4 64; do
    for run in 1 2 3; do
        start_gateway 2 "providers:
  mock: {base_url: \"http://127.0.0.1:${MOCK_A}/v1\"}"
        DURATION=3 load "" "${PLAIN}" "${conns}" > /dev/null
        m=$(curl -s "http://127.0.0.1:${CTL}/metrics")
        s0=$(sed -n 's/^ringgate_responses_total{class="2xx",shard="0"} //p' <<< "$m")
        s1=$(sed -n 's/^ringgate_responses_total{class="2xx",shard="1"} //p' <<< "$m")
        echo "| ${conns} | ${run} | ${s0} | ${s1} | $(awk "BEGIN{a=${s0};b=${s1};m=(a>b)?a:b; printf \"%.0f%%\", 100*m/(a+b)}") |"
        stop_gateway
    done
done
