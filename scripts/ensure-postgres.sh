#!/usr/bin/env bash
# Print a usable PostgreSQL DATABASE_URL on stdout (and nothing else there);
# diagnostics go to stderr. Idempotent, and fast when a server is already up.
#
#   export DATABASE_URL=$(scripts/ensure-postgres.sh)
#
# Order of attempts:
#   1. $DATABASE_URL, if set and reachable;
#   2. postgres://postgres@127.0.0.1:5432/test (trust auth), creating the
#      database `test` if the server answers but lacks it;
#   3. a throwaway cluster in $RINGGATE_PG_DIR (default /tmp/ringgate-pg),
#      reused if it already exists: initdb with trust auth on a free port,
#      started with pg_ctl (log: $RINGGATE_PG_DIR/postgres.log), database
#      `test` created. initdb/pg_ctl are looked up on PATH and under
#      /usr/lib/postgresql/*/bin; as root on Debian/Ubuntu without them,
#      `apt-get install -y postgresql` is run first.
# Stop a throwaway cluster with:
#   pg_ctl -D /tmp/ringgate-pg/data stop   (as its owner)
#
# Options (for tests that take a database down, e.g. tests/cluster_outage.rs):
#   --own    skip 1 and 2: always the throwaway cluster in $RINGGATE_PG_DIR
#   --stop   stop the throwaway cluster in $RINGGATE_PG_DIR (fast shutdown) and exit
set -euo pipefail

OWN=0
STOP=0
for arg in "$@"; do
    case "$arg" in
        --own) OWN=1 ;;
        --stop) STOP=1; OWN=1 ;;
        *) printf 'ensure-postgres: unknown option %s\n' "$arg" >&2; exit 2 ;;
    esac
done

DEFAULT_URL="${ENSURE_PG_DEFAULT_URL:-postgres://postgres@127.0.0.1:5432/test}"
PG_DIR="${RINGGATE_PG_DIR:-/tmp/ringgate-pg}"

log() { printf 'ensure-postgres: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Directory holding initdb/pg_ctl, or empty.
find_pg_bin() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return
    fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
        if [[ -x "$d/pg_ctl" && -x "$d/initdb" ]]; then
            echo "$d"
            return
        fi
    done
}

PG_BIN="$(find_pg_bin)"
psql_cmd() {
    if command -v psql >/dev/null 2>&1; then
        echo psql
    elif [[ -n "$PG_BIN" && -x "$PG_BIN/psql" ]]; then
        echo "$PG_BIN/psql"
    fi
}

# reachable URL -> 0 if a query succeeds (or, without psql, the server answers).
reachable() {
    local url="$1" psql
    psql="$(psql_cmd)"
    if [[ -n "$psql" ]]; then
        PGCONNECT_TIMEOUT=3 "$psql" "$url" -XAtqc 'SELECT 1' >/dev/null 2>&1
    elif command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -t 3 -d "$url"
    else
        return 1
    fi
}

# URL with its database replaced by `postgres`.
maintenance_url() { echo "${1%/*}/postgres"; }

# Creates database `test` on the server of URL if it answers without it.
create_test_db() {
    local url="$1" psql
    psql="$(psql_cmd)"
    [[ -n "$psql" ]] || return 1
    local admin
    admin="$(maintenance_url "$url")"
    PGCONNECT_TIMEOUT=3 "$psql" "$admin" -XAtqc 'SELECT 1' >/dev/null 2>&1 || return 1
    log "creating database test via $admin"
    PGCONNECT_TIMEOUT=3 "$psql" "$admin" -XAtqc 'CREATE DATABASE test' >/dev/null 2>&1 || true
    reachable "$url"
}

# 1. DATABASE_URL
if [[ $OWN -eq 0 && -n "${DATABASE_URL:-}" ]]; then
    if reachable "$DATABASE_URL"; then
        echo "$DATABASE_URL"
        exit 0
    fi
    log "DATABASE_URL is set but not reachable; trying the defaults"
fi

# 2. The machine's server on 127.0.0.1:5432.
if [[ $OWN -eq 0 ]]; then
    if reachable "$DEFAULT_URL" || create_test_db "$DEFAULT_URL"; then
        echo "$DEFAULT_URL"
        exit 0
    fi
    log "no server answers at $DEFAULT_URL"
fi

# 3. A throwaway cluster of our own.
# A port is taken if anything listens there or any socket (even TIME-WAIT)
# uses it locally. Candidates lie below the kernel's ephemeral range.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]] && return 0
    fi
    return 1
}

if [[ -z "$PG_BIN" ]]; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing PostgreSQL with apt-get (this takes a minute)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q postgresql >&2 \
            || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; } \
            || die "apt-get install postgresql failed"
        PG_BIN="$(find_pg_bin)"
    fi
    [[ -n "$PG_BIN" ]] || die "no PostgreSQL server reachable and no initdb/pg_ctl found; \
install PostgreSQL (Debian: apt-get install -y postgresql) or set DATABASE_URL"
fi

# initdb refuses to run as root: run the cluster as an unprivileged user.
RUN=()
OWNER="$(id -un)"
if [[ $EUID -eq 0 ]]; then
    if id postgres >/dev/null 2>&1; then
        OWNER=postgres
    else
        OWNER=ringgate-pg
        id "$OWNER" >/dev/null 2>&1 \
            || useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER" \
            || die "cannot create user $OWNER to run PostgreSQL"
    fi
    if command -v runuser >/dev/null 2>&1; then
        RUN=(runuser -u "$OWNER" --)
    else
        RUN=(su -s /bin/sh "$OWNER" -c)
    fi
fi
as_owner() {
    if [[ ${#RUN[@]} -eq 0 ]]; then
        "$@"
    elif [[ "${RUN[0]}" == su ]]; then
        "${RUN[@]}" "$(printf '%q ' "$@")"
    else
        "${RUN[@]}" "$@"
    fi
}

DATA="$PG_DIR/data"
if [[ $STOP -eq 1 ]]; then
    as_owner "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || die "pg_ctl stop failed"
    exit 0
fi
mkdir -p "$PG_DIR"
[[ $EUID -eq 0 ]] && chown "$OWNER" "$PG_DIR"
chmod 700 "$PG_DIR"

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    log "initdb in $DATA (owner $OWNER)"
    rm -rf "$DATA"
    as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >&2 \
        || die "initdb failed"
fi

PORT=""
[[ -f "$PG_DIR/port" ]] && PORT="$(cat "$PG_DIR/port")"
if ! as_owner "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    # --own keeps its port across restarts (clients are configured with it); PostgreSQL
    # binds with SO_REUSEADDR, so its own TIME-WAIT sockets do not stop it.
    if [[ -z "$PORT" ]] || { [[ $OWN -eq 0 ]] && port_in_use "$PORT"; }; then
        PORT=""
        for p in $(seq 25432 25532); do
            if ! port_in_use "$p"; then PORT="$p"; break; fi
        done
        [[ -n "$PORT" ]] || die "no free port in 25432-25532"
    fi
    log "starting throwaway PostgreSQL on 127.0.0.1:$PORT (log: $PG_DIR/postgres.log)"
    as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-p $PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >&2 \
        || die "pg_ctl start failed; see $PG_DIR/postgres.log"
    echo "$PORT" > "$PG_DIR/port"
fi

URL="postgres://postgres@127.0.0.1:$PORT/test"
if reachable "$URL" || create_test_db "$URL"; then
    echo "$URL"
    exit 0
fi
die "started a cluster in $PG_DIR but cannot connect to $URL; see $PG_DIR/postgres.log"
