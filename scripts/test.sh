#!/usr/bin/env bash
# Run every ringgate test: Rust unit + integration tests, then the Python
# end-to-end client tests (openai SDK -> ringgate -> mock-llm).
# Usage: bash scripts/test.sh   (from any directory)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

section() {
    printf '\n==================== %s ====================\n' "$*"
}

PYTHON="${PYTHON:-python3}"

section "environment"
echo "repo:   ${REPO_ROOT}"
cargo --version
rustc --version
"${PYTHON}" --version

section "python dependencies"
if "${PYTHON}" - <<'PY' 2>/dev/null
import importlib.metadata as md, pathlib, re, sys
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
    echo "already satisfied"
else
    "${PYTHON}" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        -r tests/python/requirements.txt \
        || "${PYTHON}" -m pip install -q --disable-pip-version-check \
            -r tests/python/requirements.txt
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
cargo test --workspace

section "pytest tests/python"
export RINGGATE_BIN="${RINGGATE_BIN:-${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/debug/ringgate}"
export MOCK_BIN="${MOCK_BIN:-${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/debug/mock-llm}"
"${PYTHON}" -m pytest -q -p no:cacheprovider tests/python

section "all tests passed"
