#!/usr/bin/env bash
# Local PostgreSQL 15 and MariaDB for the connector tests (and `make dev`).
#
#   scripts/databases.sh start   install if missing, initialise, start, create ds_test
#   scripts/databases.sh stop    stop both servers
#   scripts/databases.sh status  say what is running
#   scripts/databases.sh env     print the connection settings as shell exports
#
# Idempotent and quick when both servers already answer. Both listen on 127.0.0.1
# only, on ports that do not clash with a system server (55432, 53306). Data lives
# under .local-data/ in the repository (git-ignored). Needs root for the first
# install (apt-get) and to run PostgreSQL as the `postgres` OS user.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${DS_LOCAL_DATA:-$REPO/.local-data}"
PG_PORT="${DS_TEST_PG_PORT:-55432}"
MY_PORT="${DS_TEST_MYSQL_PORT:-53306}"
HOST=127.0.0.1
USER_NAME=ds_test
USER_PW=ds_test_pw
DB_NAME=ds_test
# The Debian binaries, named explicitly: another postgres may come first on PATH.
PG_BIN=/usr/lib/postgresql/15/bin
PG_DATA="$DATA/pg" # see pg_data_dir: may move if the postgres user cannot reach it
MY_DATA="$DATA/mariadb"
MY_SOCK="$MY_DATA/mysqld.sock"

log() { printf '[databases] %s\n' "$*" >&2; }

# From /: the caller's folder may be one the postgres user cannot enter.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_ready() { "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 1 >/dev/null 2>&1; }

my_ready() {
    command -v mariadb-admin >/dev/null 2>&1 &&
        mariadb-admin --no-defaults -h "$HOST" -P "$MY_PORT" -u "$USER_NAME" -p"$USER_PW" \
            --connect-timeout=1 ping >/dev/null 2>&1
}

install_packages() {
    local need=()
    [[ -x "$PG_BIN/postgres" && -x "$PG_BIN/psql" ]] || need+=(postgresql-15 postgresql-client-15)
    command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server mariadb-client)
    ((${#need[@]})) || return 0
    if [[ $EUID -ne 0 ]]; then
        log "missing packages (${need[*]}) and not root: install them or run as root"
        exit 1
    fi
    log "installing ${need[*]}"
    # Package scripts must not start their own system-wide servers on 5432/3306:
    # policy-rc.d exit 101 tells invoke-rc.d "not now". Keep one that already exists.
    local own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    ((own_policy)) && rm -f /usr/sbin/policy-rc.d
    return 0
}

ensure_postgres_user() {
    id postgres >/dev/null 2>&1 && return 0
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
}

pg_data_dir() {
    # PostgreSQL runs as `postgres`, which must traverse every folder above its data
    # directory. A checkout under a private home (CI clones anywhere) may not allow it:
    # then the data goes to a per-checkout folder under /var/tmp instead.
    if [[ -n "${DS_LOCAL_DATA:-}" ]] || runuser -u postgres -- test -x "$REPO" 2>/dev/null; then
        PG_DATA="$DATA/pg"
    else
        PG_DATA="/var/tmp/ds-local-data-$(printf '%s' "$REPO" | md5sum | cut -c1-12)/pg"
        mkdir -p "$(dirname "$PG_DATA")"
        log "postgres cannot reach $REPO: PostgreSQL data goes to $PG_DATA"
    fi
}

wait_for() { # wait_for <seconds> <command...>
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

start_postgres() {
    if pg_ready; then
        log "PostgreSQL already running on $HOST:$PG_PORT"
    else
        ensure_postgres_user
        pg_data_dir
        mkdir -p "$DATA"
        if [[ ! -s "$PG_DATA/PG_VERSION" ]]; then
            log "initialising PostgreSQL data directory"
            rm -rf "$PG_DATA"
            install -d -o postgres -g postgres -m 700 "$PG_DATA"
            local pwfile
            pwfile="$(mktemp)"
            printf '%s\n' "$USER_PW" >"$pwfile"
            chown postgres "$pwfile"
            # ds_test is the bootstrap superuser; every login needs its password (the
            # tests prove a wrong one fails at the auth stage).
            as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U "$USER_NAME" --pwfile="$pwfile" \
                --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
            rm -f "$pwfile"
        fi
        chown -R postgres:postgres "$PG_DATA"
        if ! as_postgres test -w "$PG_DATA"; then
            log "the postgres user cannot reach $PG_DATA (a parent folder is not"
            log "traversable); set DS_LOCAL_DATA to a folder it can reach"
            exit 1
        fi
        log "starting PostgreSQL on $HOST:$PG_PORT"
        # No unix socket: its default folder may not exist, and everything uses TCP.
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start \
            -o "-c listen_addresses=$HOST -p $PG_PORT -c unix_socket_directories='' \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                -c max_connections=100 -c shared_buffers=128MB" >/dev/null ||
            { tail -n 30 "$PG_DATA/server.log" >&2; exit 1; }
        wait_for 30 pg_ready || { log "PostgreSQL did not come up"; exit 1; }
    fi
    PGPASSWORD="$USER_PW" "$PG_BIN/psql" -X -q -h "$HOST" -p "$PG_PORT" -U "$USER_NAME" \
        -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1 ||
        PGPASSWORD="$USER_PW" "$PG_BIN/psql" -X -q -h "$HOST" -p "$PG_PORT" -U "$USER_NAME" \
            -d postgres -c "CREATE DATABASE $DB_NAME"
}

my_running() {
    [[ -s "$MY_DATA/mysqld.pid" ]] && kill -0 "$(cat "$MY_DATA/mysqld.pid")" 2>/dev/null
}

start_mariadb() {
    if my_ready; then
        log "MariaDB already running on $HOST:$MY_PORT"
        return 0
    fi
    if my_running; then
        log "MariaDB is running; (re)creating the $USER_NAME user"
        create_mariadb_user
        return 0
    fi
    mkdir -p "$DATA"
    if [[ ! -d "$MY_DATA/mysql" ]]; then
        log "initialising MariaDB data directory"
        rm -rf "$MY_DATA"
        mkdir -p "$MY_DATA"
        mariadb-install-db --no-defaults --user=root --datadir="$MY_DATA" \
            --auth-root-authentication-method=socket --skip-test-db >/dev/null
    fi
    log "starting MariaDB on $HOST:$MY_PORT"
    rm -f "$MY_SOCK" # left by a server that did not stop cleanly
    # Run as root on purpose (--user=root): the data folder is the caller's, and the
    # server only listens on loopback. setsid detaches it from this shell.
    setsid mariadbd --no-defaults --user=root --datadir="$MY_DATA" --port="$MY_PORT" \
        --bind-address="$HOST" --socket="$MY_SOCK" --pid-file="$MY_DATA/mysqld.pid" \
        --log-error="$MY_DATA/error.log" --skip-name-resolve \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 \
        --max-connections=200 </dev/null >/dev/null 2>&1 &
    wait_for 60 test -S "$MY_SOCK" || { tail -n 30 "$MY_DATA/error.log" >&2; exit 1; }
    create_mariadb_user
}

create_mariadb_user() {
    wait_for 30 mariadb-admin --no-defaults -S "$MY_SOCK" -u root ping >/dev/null 2>&1
    mariadb --no-defaults -S "$MY_SOCK" -u root <<SQL
CREATE USER IF NOT EXISTS '$USER_NAME'@'%' IDENTIFIED BY '$USER_PW';
ALTER USER '$USER_NAME'@'%' IDENTIFIED BY '$USER_PW';
GRANT ALL PRIVILEGES ON *.* TO '$USER_NAME'@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS $DB_NAME CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
SQL
    wait_for 30 my_ready || { log "MariaDB did not accept ds_test"; exit 1; }
}

stop_postgres() {
    id postgres >/dev/null 2>&1 || return 0
    pg_data_dir
    if [[ -s "$PG_DATA/postmaster.pid" ]]; then
        log "stopping PostgreSQL"
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null || true
    fi
}

stop_mariadb() {
    local pidfile="$MY_DATA/mysqld.pid"
    if [[ -s "$pidfile" ]]; then
        local pid
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping MariaDB"
            kill "$pid"
            wait_for 60 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid"
        fi
    fi
}

print_env() {
    cat <<ENV
export DS_TEST_DB_HOST=$HOST
export DS_TEST_PG_PORT=$PG_PORT
export DS_TEST_MYSQL_PORT=$MY_PORT
export DS_TEST_DB_USER=$USER_NAME
export DS_TEST_DB_PASSWORD=$USER_PW
export DS_TEST_DB_NAME=$DB_NAME
ENV
}

case "${1:-start}" in
    start)
        install_packages
        start_postgres
        start_mariadb
        print_env
        ;;
    stop)
        stop_postgres
        stop_mariadb
        ;;
    status)
        pg_ready && echo "postgresql: running on $HOST:$PG_PORT" || echo "postgresql: stopped"
        my_ready && echo "mariadb: running on $HOST:$MY_PORT" || echo "mariadb: stopped"
        ;;
    env) print_env ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
