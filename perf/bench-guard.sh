#!/usr/bin/env bash
# Regression guard for the hot path's criterion benches (benches/hot_path.rs).
#
#   bash perf/bench-guard.sh save    run the benches; write each one's mean and median (ns), the
#                                    machine facts and the git commit to benches/baselines/hot_path.json
#   bash perf/bench-guard.sh check   run them; list those whose median moved more than the tolerance
#                                    (20 %, or CHECK_TOLERANCE percent) either way; exit 3 if one got slower
#
# check measures a bench that looks slower a second time before it fails: on the shared virtual
# machine a single bench can come out 20-25 % slow with unchanged code (seen on
# observe/record_series), and a regression that is real is slow twice.
# BENCH_ARGS is passed to criterion (e.g. "--warm-up-time 1 --measurement-time 3" for a quicker,
# noisier pass; save and check should use the same). CARGO_TARGET_DIR is honoured. On a shared
# machine run it under the same lock as other measurements (flock), as docs/perf.md says.
set -euo pipefail
shopt -s inherit_errexit  # a failing cargo bench inside $(bench) stops the script
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/.." && pwd)"
MODE="${1:-}"
[[ "${MODE}" == save || "${MODE}" == check ]] || { echo "usage: bash perf/bench-guard.sh save|check" >&2; exit 2; }
TARGET_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}"
read -ra CRITERION_ARGS <<< "${BENCH_ARGS:-}"
SLOWER="$(mktemp /tmp/bench-guard.XXXXXX)"
trap 'rm -f "${SLOWER}"' EXIT

bench() {  # [criterion filter] -> the Unix time the run started, on stdout
    local started
    # Only estimates written after this instant count: target/criterion also holds benches
    # that were renamed or removed since, and the ones a filtered run skips.
    started="$(date +%s)"
    (cd "${ROOT}" && CARGO_TARGET_DIR="${TARGET_DIR}" cargo bench --bench hot_path -- "${CRITERION_ARGS[@]}" "$@") >&2
    echo "${started}"
}
guard() {  # since [check.py options...]
    python3 "${HERE}/check.py" bench "${TARGET_DIR}/criterion" --since "$@"
}

if [[ "${MODE}" == save ]]; then
    since="$(bench)"
    guard "${since}" --save
    exit 0
fi
since="$(bench)"
rc=0
guard "${since}" --slower-out "${SLOWER}" || rc=$?
[[ "${rc}" == 3 && -s "${SLOWER}" ]] || exit "${rc}"
echo
echo "Measuring the slower ones again ($(cat "${SLOWER}")):"
echo
since="$(bench "$(cat "${SLOWER}")")"
guard "${since}" --partial
