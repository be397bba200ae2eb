#!/usr/bin/env bash
# Start (or find already running) a throwaway PostgreSQL for the store contract tests.
#
#   eval "$(scripts/ci_postgres.sh)"     # exports RECFUNNEL_TEST_PG_URL
#
# The cluster lives under $RECFUNNEL_PG_DIR (default /tmp/recfunnel-pg), listens on 127.0.0.1
# only (plus a Unix socket in that directory), on the first free port from $RECFUNNEL_PG_PORT
# (default 55432). As root, initdb and the server run as the `postgres` user (PostgreSQL
# refuses to run as root); otherwise as the calling user. fsync stays on: the durability the
# tests and benchmarks see is the real one. Running it again reuses the running cluster.
# The URL is printed as an export line and written to $RECFUNNEL_PG_DIR/url.
# Stop it with: pg_ctl -D "$RECFUNNEL_PG_DIR/data" stop  (as the same user).
set -euo pipefail

BASE=${RECFUNNEL_PG_DIR:-/tmp/recfunnel-pg}
PORT=${RECFUNNEL_PG_PORT:-55432}
DB=recfunnel
ROLE=recfunnel
PASSWORD=recfunnel
DATA=$BASE/data

die() { echo "ci_postgres.sh: $*" >&2; exit 1; }

find_bindir() {
    local dir
    if [[ -n "${PG_BINDIR:-}" ]]; then
        [[ -x $PG_BINDIR/initdb && -x $PG_BINDIR/pg_ctl ]] && { echo "$PG_BINDIR"; return; }
        return 1
    fi
    for dir in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -Vr); do
        [[ -x $dir/initdb && -x $dir/pg_ctl ]] && { echo "$dir"; return; }
    done
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir; return
    fi
    return 1
}

BIN=$(find_bindir) || die "no PostgreSQL server binaries (initdb, pg_ctl) found under \
/usr/lib/postgresql/*/bin; install PostgreSQL 15 (Debian/Ubuntu: apt-get install postgresql-15) \
or set PG_BINDIR"

if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run \
the server as (PostgreSQL refuses to run as root); create it or run this script as a normal user"
    as_pg() { runuser -u postgres -- "$@"; }
    OWNER=postgres
else
    as_pg() { "$@"; }
    OWNER=$(id -un)
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
url_for() { echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$1/$DB"; }

mkdir -p "$BASE"
chown "$OWNER" "$BASE"
chmod 755 "$BASE"

# Already running from an earlier call: reuse it.
if [[ -f $BASE/port ]] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    PORT=$(cat "$BASE/port")
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
        url_for "$PORT" >"$BASE/url"
        echo "export RECFUNNEL_TEST_PG_URL=$(cat "$BASE/url")"
        exit 0
    fi
fi

if [[ ! -f $DATA/PG_VERSION ]]; then
    rm -rf "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 \
        || as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 --locale=C >"$BASE/initdb.log" 2>&1 \
        || die "initdb failed; see $BASE/initdb.log: $(tail -n 5 "$BASE/initdb.log")"
fi

for _ in $(seq 0 40); do
    port_in_use "$PORT" || break
    PORT=$((PORT + 1))
done
port_in_use "$PORT" && die "no free port found from ${RECFUNNEL_PG_PORT:-55432} on"

as_pg "$BIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE -c max_connections=100" start \
    >/dev/null || die "the server did not start; see $BASE/server.log: \
$(tail -n 5 "$BASE/server.log" 2>/dev/null)"
echo "$PORT" >"$BASE/port"

psql_admin() { as_pg "$BIN/psql" -h "$BASE" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [[ -z $(psql_admin -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'") ]]; then
    psql_admin -d postgres -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [[ -z $(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    psql_admin -d postgres -c "CREATE DATABASE $DB OWNER $ROLE"
fi

url_for "$PORT" >"$BASE/url"
echo "export RECFUNNEL_TEST_PG_URL=$(cat "$BASE/url")"
