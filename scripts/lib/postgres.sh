# shellcheck shell=bash
# PostgreSQL for tests, benchmarks and CI. Source this file, then:
#
#   pg_provision [DIR]   exports INMAIL__DATABASE__URL and DATABASE_URL (sqlx::test
#                        reads the latter) pointing to a server that answers:
#                        1. the URL already in INMAIL__DATABASE__URL / DATABASE_URL, if it answers;
#                        2. else a server on 127.0.0.1:5432 as user postgres (database
#                           "inmail", created if missing) — skipped when INMAIL_PG_PRIVATE=1;
#                        3. else a private cluster under DIR (default target/pg): installs the
#                           Debian "postgresql" package with apt-get only when no
#                           /usr/lib/postgresql/*/bin/initdb exists, initdb as the "postgres"
#                           OS user when run as root, trust auth on 127.0.0.1 and a socket
#                           in DIR, a free port, started and waited for.
#   pg_stop [DIR]        stops the private cluster under DIR (never any other server).
#
# Both are idempotent: a private cluster already running is reused.

# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

_pg_log() { echo "postgres.sh: $*" >&2; }

_pg_default_dir() { echo "${1:-${INMAIL_PG_DIR:-$PWD/target/pg}}"; }

# The newest installed server's bin directory, or nothing.
_pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

_pg_psql() {
    if command -v psql >/dev/null 2>&1; then
        psql "$@"
    elif [ -n "$(_pg_bindir)" ]; then
        "$(_pg_bindir)/psql" "$@"
    else
        return 127
    fi
}

# True when URL accepts a query. Without any client installed, falls back to
# a TCP probe of the URL's host and port.
_pg_answers() {
    local url=$1 rc
    PGCONNECT_TIMEOUT=3 _pg_psql "$url" -Atqc 'select 1' >/dev/null 2>&1
    rc=$?
    [ "$rc" = 0 ] && return 0
    [ "$rc" != 127 ] && return 1
    local hostport host port
    hostport=${url#*://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
    host=${hostport%:*}; port=${hostport##*:}
    [ "$port" = "$hostport" ] && port=5432
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

_pg_export() {
    export INMAIL__DATABASE__URL="$1" DATABASE_URL="$1"
    _pg_log "using $1"
}

_pg_install() {
    [ -n "$(_pg_bindir)" ] && return 0
    _pg_log "installing the postgresql package"
    apt_install --no-install-recommends postgresql || return 1
    [ -n "$(_pg_bindir)" ]
}

# Runs a command as the user owning the cluster: "postgres" when we are root
# (initdb and postgres refuse to run as root), ourselves otherwise.
_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_pg_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_pg_free_port() {
    local p
    for p in $(seq 55432 55532); do
        _pg_port_free "$p" && { echo "$p"; return 0; }
    done
    return 1
}

# The directory the cluster really lives in. As root, the "postgres" user
# must be able to reach it; a checkout under /root is not, so the cluster
# goes to /tmp and DIR gets a symlink to it.
_pg_cluster_dir() {
    local dir=$1
    mkdir -p "$(dirname "$dir")"
    if [ "$(id -u)" != 0 ]; then
        mkdir -p "$dir" && echo "$dir"
        return
    fi
    if [ -L "$dir" ]; then
        readlink -f "$dir"
        return
    fi
    mkdir -p "$dir" && chown postgres:postgres "$dir"
    if runuser -u postgres -- test -w "$dir"; then
        echo "$dir"
        return
    fi
    rmdir "$dir" 2>/dev/null
    local real
    real=$(mktemp -d /tmp/inmail-pg.XXXXXX) && chown postgres:postgres "$real" && ln -s "$real" "$dir"
    _pg_log "$dir is not reachable by the postgres user: cluster in $real"
    echo "$real"
}

_pg_private() {
    local dir bin port url
    _pg_install || return 1
    bin=$(_pg_bindir)
    dir=$(_pg_cluster_dir "$1") || return 1
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        _pg_log "initdb in $dir/data"
        _pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; return 1; }
    fi
    if _pg_as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        port=$(cat "$dir/port")
    else
        port=$(cat "$dir/port" 2>/dev/null || true)
        if [ -z "$port" ] || ! _pg_port_free "$port"; then
            port=$(_pg_free_port) || { _pg_log "no free port"; return 1; }
        fi
        echo "$port" >"$dir/port"
        _pg_log "starting a private cluster on 127.0.0.1:$port"
        _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null ||
            { tail -n 20 "$dir/server.log" >&2; return 1; }
    fi
    url="postgres://postgres@127.0.0.1:$port"
    local i
    for i in $(seq 1 60); do
        _pg_answers "$url/postgres" && break
        [ "$i" = 60 ] && { _pg_log "the private cluster does not answer"; return 1; }
        sleep 0.5
    done
    _pg_create_db "$url" && _pg_export "$url/inmail"
}

_pg_create_db() {
    local base=$1
    [ "$(_pg_psql "$base/postgres" -Atqc "select 1 from pg_database where datname = 'inmail'")" = 1 ] ||
        _pg_psql "$base/postgres" -qc 'create database inmail' >/dev/null
}

pg_provision() {
    local dir url
    dir=$(_pg_default_dir "${1:-}")
    for url in "${INMAIL__DATABASE__URL:-}" "${DATABASE_URL:-}"; do
        if [ -n "$url" ] && _pg_answers "$url"; then
            _pg_export "$url"
            return 0
        fi
    done
    if [ "${INMAIL_PG_PRIVATE:-0}" != 1 ] && _pg_answers "postgres://postgres@127.0.0.1:5432/postgres"; then
        _pg_create_db "postgres://postgres@127.0.0.1:5432" && _pg_export "postgres://postgres@127.0.0.1:5432/inmail"
        return
    fi
    _pg_private "$dir"
}

pg_stop() {
    local dir bin
    dir=$(_pg_default_dir "${1:-}")
    [ -L "$dir" ] && dir=$(readlink -f "$dir")
    bin=$(_pg_bindir)
    [ -n "$bin" ] && [ -f "$dir/data/PG_VERSION" ] || return 0
    if _pg_as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null && _pg_log "stopped the cluster in $dir"
    fi
}
