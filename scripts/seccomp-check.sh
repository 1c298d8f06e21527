#!/usr/bin/env bash
# Runs ringgate in a runc container under helm/ringgate/seccomp/ringgate-io-uring.json, the
# way the chart runs it (uid 65532, no capabilities, no_new_privs, read-only root), once
# with the profile as shipped and once with the io_uring syscalls taken out, with
# `runtime.driver: io_uring`: the first must start on io_uring, the second must refuse.
# Needs root and runc (Debian: apt-get install runc); not part of scripts/test.sh.
# Usage: sudo bash scripts/seccomp-check.sh [RINGGATE_BIN]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${1:-${RINGGATE_BIN:-target/debug/ringgate}}"
PROFILE=helm/ringgate/seccomp/ringgate-io-uring.json
WORK="$(mktemp -d)"
trap 'runc delete -f rg-seccomp-check >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

ROOT="$WORK/rootfs"
mkdir -p "$ROOT"/{usr/local/bin,etc/ringgate,tmp,proc,dev,sys}
cp "$BIN" "$ROOT/usr/local/bin/ringgate"
# The binary's shared libraries (glibc, libgcc), as distroless/cc provides them.
ldd "$BIN" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")" && cp "$lib" "$ROOT$lib"
done
cat > "$ROOT/etc/ringgate/config.yaml" <<'YAML'
listen: 0.0.0.0:8080
control:
  listen: 0.0.0.0:9090
shards: 1
runtime:
  driver: io_uring
providers:
  local:
    base_url: http://127.0.0.1:9/v1
YAML
(cd "$WORK" && runc spec)

run() { # $1: profile file. Status 124: still running after 3 s (it started); else its exit.
    python3 - "$WORK/config.json" "$1" <<'PY'
import json, sys
path, profile = sys.argv[1], sys.argv[2]
c = json.load(open(path))
p = c["process"]
p.update(args=["/usr/local/bin/ringgate", "serve", "--config", "/etc/ringgate/config.yaml"],
         terminal=False, user={"uid": 65532, "gid": 65532}, noNewPrivileges=True,
         capabilities={k: [] for k in ("bounding", "effective", "permitted", "ambient")})
c["root"]["readonly"] = True
c["linux"]["seccomp"] = json.load(open(profile))
json.dump(c, open(path, "w"))
PY
    local status=0
    (cd "$WORK" && timeout -s TERM 3 runc run rg-seccomp-check >"$WORK/log" 2>&1) || status=$?
    runc delete -f rg-seccomp-check >/dev/null 2>&1 || true
    return "$status"
}

python3 -c "
import json, sys
p = json.load(open('$PROFILE'))
p['syscalls'][0]['names'] = [n for n in p['syscalls'][0]['names'] if not n.startswith('io_uring')]
json.dump(p, open('$WORK/without.json', 'w'))"

# `runtime.driver: io_uring` makes ringgate exit at once when it cannot set up a ring.
status=0; run "$PROFILE" || status=$?
[[ $status == 124 ]] || { echo "FAIL: exited ($status) under $PROFILE"; cat "$WORK/log"; exit 1; }
status=0; run "$WORK/without.json" || status=$?
[[ $status != 124 && $status != 0 ]] \
    || { echo "FAIL: kept running without the io_uring syscalls"; cat "$WORK/log"; exit 1; }
echo "ok: io_uring under $PROFILE; refused without its io_uring syscalls"
