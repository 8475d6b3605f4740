#!/usr/bin/env bash
# A developer's PostgreSQL for the DB tests: scripts/dev-postgres.sh start|stop|url|destroy
#   eval "$(scripts/dev-postgres.sh start)"   # starts it and exports KOHAKURIVER_TEST_PG_URL
# The cluster lives in $KR_PG_DIR (default /tmp/kohakuriver-dev-pg-$UID, port 54330) and survives
# stop/start; destroy deletes it.
set -euo pipefail
export KR_PG_DIR=${KR_PG_DIR:-/tmp/kohakuriver-dev-pg-$(id -u)}
export KR_PG_PORT=${KR_PG_PORT:-54330} # 54329 is .ci/run's
# shellcheck source=../.ci/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../.ci/postgres.sh"

case ${1:-} in
    start)
        pg_cluster_start >&2
        echo "export KOHAKURIVER_TEST_PG_URL='$(pg_cluster_url)'"
        ;;
    stop) pg_cluster_stop ;;
    destroy) pg_cluster_stop --remove ;;
    url) pg_cluster_url ;;
    status)
        if pg_cluster_running; then echo "running in $KR_PG_DIR"; else echo stopped; exit 1; fi
        ;;
    *)
        echo "usage: $0 start|stop|status|url|destroy" >&2
        exit 2
        ;;
esac
