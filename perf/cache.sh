#!/usr/bin/env bash
# perf/cache.sh — the response cache under load: the same ringgate (release, 1 shard pinned,
# the cache on for mock/gpt-4o-mini) driven by wrk through one per-request Lua script
# (perf/wrk/cache.lua) in three cases of one run:
#   no-cache   every request says `x-ringgate-cache: no-store` (the cache plays no part)
#   hit-50     half the requests repeat one prompt (hits), half are new (misses, then kept)
#   hit-100    every request repeats one prompt
# It reports req/s, p50/p90/p99 and ratios to no-cache, and the node's cache metrics.
#
# Usage: bash perf/cache.sh           (DURATION=10 s per case; MOCK_LATENCY_MS=0)
#        MOCK_LATENCY_MS=200 bash perf/cache.sh   (a provider that takes 200 ms: what a hit saves)
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/.." && pwd)"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
MOCK_LATENCY_MS="${MOCK_LATENCY_MS:-0}"
PORT_BASE="${PORT_BASE:-18600}"
TARGET_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}"
RINGGATE_BIN="${RINGGATE_BIN:-${TARGET_DIR}/release/ringgate}"
MOCK_BIN="${MOCK_BIN:-${TARGET_DIR}/release/mock-llm}"
if [[ -z "${PERF_SKIP_BUILD:-}" ]]; then
    (cd "${ROOT}" && cargo build --release --workspace --bins >&2)
fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "${WORK}"; }
trap cleanup EXIT

MOCK_PORT=$((PORT_BASE + 1)); RG_PORT=$((PORT_BASE + 2)); CTL_PORT=$((PORT_BASE + 3))
taskset -c 1 "${MOCK_BIN}" --listen "127.0.0.1:${MOCK_PORT}" --ready-file "${WORK}/mock.ready" \
    ${MOCK_LATENCY_MS:+--latency-ms "${MOCK_LATENCY_MS}"} >"${WORK}/mock.log" 2>&1 &
PIDS+=($!)
cat >"${WORK}/ringgate.yaml" <<YAML
listen: 127.0.0.1:${RG_PORT}
shards: 1
control: {listen: 127.0.0.1:${CTL_PORT}}
cache: {models: {mock/gpt-4o-mini: 3600}}
providers:
  mock: {base_url: "http://127.0.0.1:${MOCK_PORT}/v1", models: [gpt-4o-mini]}
YAML
"${RINGGATE_BIN}" serve --config "${WORK}/ringgate.yaml" --ready-file "${WORK}/rg.ready" >"${WORK}/ringgate.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [[ -s "${WORK}/rg.ready" && -s "${WORK}/mock.ready" ]] && break; sleep 0.05; done
[[ -s "${WORK}/rg.ready" ]] || { cat "${WORK}/ringgate.log" >&2; exit 1; }

URL="http://127.0.0.1:${RG_PORT}/v1/chat/completions"
run() { # name hit_percent header
    HIT_PERCENT="$2" CACHE_HEADER="$3" taskset -c 1 wrk -t1 -c"${CONNS}" -d"${DURATION}s" \
        -s "${HERE}/wrk/cache.lua" "${URL}" | grep '^WRKJSON' | sed "s/^WRKJSON /$1 /"
}
{
    run no-cache 50 no-store
    run hit-50 50 ""
    run hit-100 100 ""
} >"${WORK}/runs.txt"
echo "# perf/cache.sh $(date -u +%FT%TZ): 1 shard on CPU 0, mock + wrk on CPU 1, ${CONNS} connections, ${DURATION} s per case, mock latency ${MOCK_LATENCY_MS} ms"
echo
echo "| case | req/s | vs no-cache | p50 µs | p90 µs | p99 µs | non-2xx |"
echo "|---|--:|--:|--:|--:|--:|--:|"
python3 - "${WORK}/runs.txt" <<'PY'
import json, sys
rows = [(l.split(" ", 1)[0], json.loads(l.split(" ", 1)[1])) for l in open(sys.argv[1])]
base = None
for name, r in rows:
    rps = r["requests"] / (r["duration_us"] / 1e6)
    base = base or rps
    print(f"| {name} | {rps:,.0f} | {rps / base:.2f}× | {r['p50_us']} | {r['p90_us']} | {r['p99_us']} | {r['err_status']} |")
PY
echo
curl -s "http://127.0.0.1:${CTL_PORT}/metrics" | grep -E '^ringgate_cache_(requests_total|bytes|entries|evictions_total|saved_completion_tokens_total)' | sed 's/^/    /'
