# shellcheck shell=bash
# Throwaway PostgreSQL clusters for tests, started by hand (no systemd, no service scripts).
# Source this file, then: pg_cluster_start; pg_cluster_url; pg_cluster_stop.
# Used by .ci/run (one cluster per run) and scripts/dev-postgres.sh (a developer's cluster).
#
# Settings (environment, all optional):
#   KR_PG_DIR       cluster directory: data/, socket and server.log (default: a new temp dir)
#   KR_PG_PORT      TCP port on 127.0.0.1 (default 54329)
#   KR_PG_USER      role the tests connect as (default kohakuriver)
#   KR_PG_PASSWORD  its password (default kohakuriver)
#   KR_PG_DB        database it owns (default kohakuriver_test)

KR_PG_PORT=${KR_PG_PORT:-54329}
KR_PG_USER=${KR_PG_USER:-kohakuriver}
KR_PG_PASSWORD=${KR_PG_PASSWORD:-kohakuriver}
KR_PG_DB=${KR_PG_DB:-kohakuriver_test}

# The server binaries: Debian's newest /usr/lib/postgresql/N/bin, else pg_ctl on PATH.
pg_bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null \
        | sort -V | tail -n 1)
    if [[ -n $dir && -x $dir/pg_ctl ]]; then
        echo "$dir"
    elif command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
    else
        echo "pg_bindir: no PostgreSQL server binaries (apt-get install postgresql)" >&2
        return 1
    fi
}

# Run a command as the cluster owner: 'postgres' when we are root (initdb refuses root).
_pg_as_owner() {
    if [[ $(id -u) == 0 ]]; then
        (cd / && runuser -u postgres -- "$@")  # from /: postgres cannot enter root's dirs
    else
        "$@"
    fi
}

pg_cluster_running() {
    [[ -n ${KR_PG_DIR:-} && -f $KR_PG_DIR/data/postmaster.pid ]] \
        && _pg_as_owner "$(pg_bindir)/pg_ctl" -D "$KR_PG_DIR/data" status >/dev/null 2>&1
}

# Create (first time) and start the cluster, then make sure the role and database exist.
pg_cluster_start() {
    local bin
    bin=$(pg_bindir) || return 1
    if [[ -z ${KR_PG_DIR:-} ]]; then
        KR_PG_DIR=$(mktemp -d /tmp/kohakuriver-pg.XXXXXX)
    fi
    export KR_PG_DIR
    mkdir -p "$KR_PG_DIR"
    chmod 700 "$KR_PG_DIR"
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$KR_PG_DIR"
    fi
    if [[ ! -f $KR_PG_DIR/data/PG_VERSION ]]; then
        _pg_as_owner "$bin/initdb" -D "$KR_PG_DIR/data" -U postgres -E UTF8 --no-sync \
            --auth-local=trust --auth-host=scram-sha-256 >"$KR_PG_DIR/initdb.log" \
            || { cat "$KR_PG_DIR/initdb.log" >&2; return 1; }
    fi
    if ! pg_cluster_running; then
        _pg_as_owner "$bin/pg_ctl" -D "$KR_PG_DIR/data" -l "$KR_PG_DIR/server.log" -w -t 60 \
            -o "-k $KR_PG_DIR -p $KR_PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off" start \
            >/dev/null || { tail -n 20 "$KR_PG_DIR/server.log" >&2; return 1; }
    fi
    local i
    for i in $(seq 1 60); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$KR_PG_PORT" && break
        [[ $i == 60 ]] && { echo "PostgreSQL did not become ready" >&2; return 1; }
        sleep 0.5
    done
    _pg_as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$KR_PG_DIR" -p "$KR_PG_PORT" \
        -U postgres -d postgres \
        -v user="$KR_PG_USER" -v password="$KR_PG_PASSWORD" -v db="$KR_PG_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# The SQLAlchemy URL of the test database.
pg_cluster_url() {
    echo "postgresql+psycopg://$KR_PG_USER:$KR_PG_PASSWORD@127.0.0.1:$KR_PG_PORT/$KR_PG_DB"
}

# Stop the server (pg_ctl signals the PID in postmaster.pid); with --remove, delete the cluster.
pg_cluster_stop() {
    [[ -n ${KR_PG_DIR:-} && -d $KR_PG_DIR ]] || return 0
    if pg_cluster_running; then
        _pg_as_owner "$(pg_bindir)/pg_ctl" -D "$KR_PG_DIR/data" -m fast -w -t 60 stop >/dev/null
    fi
    if [[ ${1:-} == --remove ]]; then
        rm -rf "$KR_PG_DIR"
    fi
}
