#!/usr/bin/env bash
# How many share requests (the statements a node runs to lease its share of a fleet-wide
# limit) one PostgreSQL sustains: pgbench runs the exact statements of
# store::leases::acquire_statements (printed by `cargo run -p store --example lease_sql`) in a
# schema of its own, on one hot limit (every node contending for one row) and on 10,000
# limits, with 1, 4 and 16 clients (connections, as nodes' pools would open).
#
# Usage: bash perf/leases.sh            (DATABASE_URL, else scripts/ensure-postgres.sh)
#        LEASE_SECONDS=10 bash perf/leases.sh
# Prints a markdown table; about 1 minute. Loopback only; the schema is dropped at the end.
set -euo pipefail
command -v pgbench >/dev/null || { echo "pgbench is needed (Debian: postgresql-client)" >&2; exit 1; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
URL="${DATABASE_URL:-$(bash scripts/ensure-postgres.sh)}"
SCHEMA="perf_leases_$$" WORK="$(mktemp -d)" SECONDS_EACH="${LEASE_SECONDS:-10}"
trap 'psql "$URL" -Xq -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
psql "$URL" -Xq -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA" >/dev/null
for m in store/migrations/postgres/*.sql; do
    PGOPTIONS="-c search_path=$SCHEMA" psql "$URL" -Xq -v ON_ERROR_STOP=1 -f "$m" >/dev/null
done

{
    echo '\set p2 random(1, :limits)'
    echo '\set node random(1, :nodes)'
    echo 'BEGIN;'
    cargo run -q -p store --example lease_sql
    echo 'COMMIT;'
} > "$WORK/acquire.sql"

echo "| limits | clients | share requests/s | avg latency (ms) |"
echo "|---:|---:|---:|---:|"
for limits in 1 10000; do
    for clients in 1 4 16; do
        out="$(PGOPTIONS="-c search_path=$SCHEMA" pgbench "$URL" -n -M prepared \
            -f "$WORK/acquire.sql" -c "$clients" -j 2 -T "$SECONDS_EACH" \
            -D p1=key -D p3=rpm -D p4="$(date +%s)" -D p5=1000000000000000 -D p6=0 \
            -D p7=1 -D p8=100 -D p9=4 -D limits="$limits" -D nodes=64 2>&1)"
        tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)"
        lat="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
        [[ -n "$tps" ]] || { echo "$out" >&2; exit 1; }
        printf '| %s | %s | %.0f | %s |\n' "$limits" "$clients" "$tps" "$lat"
    done
done
