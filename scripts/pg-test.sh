#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite.
#
#   eval "$(scripts/pg-test.sh start)"   # prints: export COMPANION_TEST_DATABASE_URL=postgresql://...
#   scripts/pg-test.sh url               # the URL of the running server
#   scripts/pg-test.sh restart           # restarts it (fault tests: every connection is cut)
#   scripts/pg-test.sh stop              # stops it and deletes its data directory
#
# The server runs as a non-root user (PostgreSQL refuses root): when we are root that is the
# `postgres` user the Debian package creates (or `companion-pg`, created here, if it is missing);
# otherwise the current user. Data lives in a fresh temporary directory, the server listens only
# on 127.0.0.1 on a free port, with trust authentication for loopback (test data only).
# Status messages go to stderr so that stdout can be eval'd.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
state_dir="$here/.tmp"
state="$state_dir/pg-test.env"
db_name="companion_test"
db_user="companion"

say() { echo "pg-test: $*" >&2; }

find_bin() {
    local initdb
    initdb="$(ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -z "$initdb" ]; then
        initdb="$(command -v initdb || true)"
    fi
    if [ -z "$initdb" ]; then
        say "initdb not found; install PostgreSQL (scripts/system-deps.sh does)"
        exit 1
    fi
    dirname "$initdb"
}

run_as=()
pick_user() {
    if [ "$(id -u)" -ne 0 ]; then
        run_as=()
        return
    fi
    local user=postgres
    if ! id "$user" >/dev/null 2>&1; then
        user=companion-pg
        if ! id "$user" >/dev/null 2>&1; then
            say "creating system user $user"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
        fi
    fi
    run_as=(runuser -u "$user" --)
    pg_owner="$user"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    if [ -f "$state" ]; then
        # shellcheck disable=SC1090
        . "$state"
        if [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
            say "already running on port $PG_PORT"
            echo "export COMPANION_TEST_DATABASE_URL=$PG_URL"
            return
        fi
    fi
    local bin data port url
    bin="$(find_bin)"
    pick_user
    data="$(mktemp -d /tmp/companion-pg.XXXXXX)"
    if [ ${#run_as[@]} -gt 0 ]; then
        chown "$pg_owner" "$data"
    fi
    chmod 700 "$data"
    "${run_as[@]}" "$bin/initdb" -D "$data" -U "$db_user" --auth=trust -E UTF8 --locale=C \
        >"$data.initdb.log" 2>&1 || { cat "$data.initdb.log" >&2; exit 1; }
    port="$(free_port)"
    # fsync off: the data is thrown away, and it makes the suite much faster on slow disks.
    "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $data -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || { cat "$data/server.log" >&2; exit 1; }
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$db_user" "$db_name"
    url="postgresql://$db_user@127.0.0.1:$port/$db_name"
    mkdir -p "$state_dir"
    cat >"$state" <<STATE
PG_BIN=$bin
PG_DATA=$data
PG_PORT=$port
PG_URL=$url
PG_RUN_AS="${run_as[*]}"
STATE
    rm -f "$data.initdb.log"
    say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $data)"
    echo "export COMPANION_TEST_DATABASE_URL=$url"
}

stop() {
    if [ ! -f "$state" ]; then
        say "not running"
        return
    fi
    # shellcheck disable=SC1090
    . "$state"
    local -a as=()
    if [ -n "$PG_RUN_AS" ]; then
        read -r -a as <<<"$PG_RUN_AS"
    fi
    if [ -f "$PG_DATA/postmaster.pid" ]; then
        "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >&2 || true
    fi
    rm -rf "$PG_DATA"
    rm -f "$state"
    say "stopped"
}

restart() {
    # For fault tests: the server goes away (every connection is cut) and comes back.
    [ -f "$state" ] || { say "not running"; exit 1; }
    # shellcheck disable=SC1090
    . "$state"
    local -a as=()
    if [ -n "$PG_RUN_AS" ]; then
        read -r -a as <<<"$PG_RUN_AS"
    fi
    "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -m fast -w -t 60 restart >&2
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) restart ;;
    url)
        [ -f "$state" ] || { say "not running"; exit 1; }
        # shellcheck disable=SC1090
        . "$state"
        echo "$PG_URL"
        ;;
    *)
        echo "usage: $0 start|stop|restart|url" >&2
        exit 2
        ;;
esac
