#!/usr/bin/env bash
# Run every ringgate test: Rust unit + integration tests, then the Python
# end-to-end client tests (openai SDK -> ringgate -> mock-llm).
# Usage: bash scripts/test.sh   (from any directory)
#
# Needs a Rust toolchain and python3; everything else it sets up itself:
#   - a virtual environment in .venv (gitignored) with tests/python/requirements.txt
#     installed, because Debian's python3 refuses `pip install` into the system Python
#     (PEP 668); as root it installs python3-venv with apt-get when venv is missing;
#   - a PostgreSQL for the storage tests (scripts/ensure-postgres.sh).
# The last line of output says PASSED or FAILED with the test counts.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

PYTHON="${PYTHON:-python3}"
VENV="${REPO_ROOT}/.venv"
LOGS="$(mktemp -d)"
STAGE="setup"
CARGO_COUNTS="not run"
PYTEST_COUNTS="not run"

section() {
    STAGE="$*"
    printf '\n==================== %s ====================\n' "$*"
}

die() {
    printf 'test.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# Runs on every exit, so the last line always says how it went and how many tests ran.
summary() {
    local status=$?
    rm -rf "${LOGS}"
    local elapsed
    elapsed="$((SECONDS / 60))m$((SECONDS % 60))s"
    if [[ $status -eq 0 ]]; then
        printf '\nPASSED in %s: cargo test: %s; pytest: %s\n' "${elapsed}" "${CARGO_COUNTS}" "${PYTEST_COUNTS}"
    else
        printf '\nFAILED in "%s" after %s (exit %d): cargo test: %s; pytest: %s\n' \
            "${STAGE}" "${elapsed}" "${status}" "${CARGO_COUNTS}" "${PYTEST_COUNTS}"
    fi
}
trap summary EXIT

section "environment"
echo "repo:   ${REPO_ROOT}"
cargo --version
rustc --version
"${PYTHON}" --version

section "python virtual environment (.venv)"
# A usable environment has a python that runs and a pip; anything else is rebuilt.
if ! { "${VENV}/bin/python" -m pip --version >/dev/null 2>&1; }; then
    # `python3 -m venv` needs ensurepip, which Debian ships separately in python3-venv.
    if ! "${PYTHON}" -c 'import ensurepip, venv' 2>/dev/null; then
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "installing python3-venv with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q python3-venv \
                || { apt-get update -q && apt-get install -y -q python3-venv; } \
                || die "apt-get install python3-venv failed"
        else
            die "${PYTHON} cannot create virtual environments (no ensurepip/venv module); \
install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv) and rerun"
        fi
    fi
    rm -rf "${VENV}"
    "${PYTHON}" -m venv "${VENV}" || die "${PYTHON} -m venv ${VENV} failed"
    echo "created ${VENV}"
fi
VENV_PY="${VENV}/bin/python"
"${VENV_PY}" --version

# Installing takes a while even when nothing changes: skip it when every requirement is
# already met (checked with `packaging`, which pytest depends on).
if "${VENV_PY}" - <<'PY' 2>/dev/null
import importlib.metadata as md, pathlib, sys
from packaging.requirements import Requirement
for line in pathlib.Path("tests/python/requirements.txt").read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        sys.exit(1)
PY
then
    echo "requirements already satisfied"
else
    "${VENV_PY}" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
fi

section "postgresql"
# Storage tests run against a real PostgreSQL: $DATABASE_URL when set, else the local
# server on 127.0.0.1:5432, else a throwaway cluster (scripts/ensure-postgres.sh says which).
DATABASE_URL="$(bash scripts/ensure-postgres.sh)"
export DATABASE_URL
echo "DATABASE_URL=${DATABASE_URL}"

section "cargo build --workspace --bins"
cargo build --workspace --bins

section "cargo test --workspace"
CARGO_STATUS=0
cargo test --workspace 2>&1 | tee "${LOGS}/cargo-test.log" || CARGO_STATUS=$?
# One "test result: ok. N passed; M failed; K ignored; ..." line per test binary.
CARGO_COUNTS="$(awk '/^test result:/ { p += $4; f += $6; i += $8; n++ }
    END { printf "%d passed, %d failed, %d ignored in %d test binaries", p, f, i, n }' \
    "${LOGS}/cargo-test.log")"
[[ ${CARGO_STATUS} -eq 0 ]] || die "cargo test failed (exit ${CARGO_STATUS})"

section "pytest tests/python"
export RINGGATE_BIN="${RINGGATE_BIN:-${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/debug/ringgate}"
export MOCK_BIN="${MOCK_BIN:-${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/debug/mock-llm}"
PYTEST_STATUS=0
"${VENV_PY}" -m pytest -q -p no:cacheprovider tests/python 2>&1 | tee "${LOGS}/pytest.log" \
    || PYTEST_STATUS=$?
# pytest -q ends with a line such as "61 passed in 12.34s" or "1 failed, 60 passed in 13.0s".
PYTEST_COUNTS="$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "${LOGS}/pytest.log" \
    | tail -n 1 | sed -E 's/^[= ]+|[= ]+$//g' || true)"
PYTEST_COUNTS="${PYTEST_COUNTS:-no summary line}"
if [[ ${PYTEST_STATUS} -eq 5 ]]; then
    die "pytest collected no tests (exit 5): the Python suite did not run"
elif [[ ${PYTEST_STATUS} -ne 0 ]]; then
    die "pytest failed (exit ${PYTEST_STATUS})"
fi
