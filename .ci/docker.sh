# shellcheck shell=bash
# A Docker daemon for tests, started by hand (no systemd, no service scripts).
# Source this file, then: docker_start; ...; docker_stop.
# Used by .ci/run; developers can source it too (`source .ci/docker.sh && docker_start`).
#
# One daemon only: a second dockerd in the host network namespace deletes the first one's
# docker0 bridge. docker_start therefore reuses a daemon that already answers on the socket,
# and docker_stop only stops the daemon this shell started (by PID).
#
# dockerd sets the iptables FORWARD policy to DROP (and br_netfilter filters bridged frames),
# which silently breaks host-namespace bridges used by other tests (VXLAN, VM taps). The policy
# seen before the start is restored on stop; while dockerd runs, such a bridge needs
# `iptables -I DOCKER-USER -i BR -o BR -j ACCEPT`.
#
# Settings (environment, all optional):
#   KR_DOCKER_DIR     where dockerd.log and dockerd.pid go (default: a new temp dir)
#   KR_DOCKER_SOCKET  the daemon's socket (default /var/run/docker.sock)

KR_DOCKER_SOCKET=${KR_DOCKER_SOCKET:-/var/run/docker.sock}
KR_DOCKERD_PID=${KR_DOCKERD_PID:-}
_KR_FORWARD_POLICY=${_KR_FORWARD_POLICY:-}

docker_ready() {
    DOCKER_HOST="unix://$KR_DOCKER_SOCKET" docker version --format '{{.Server.Version}}' \
        >/dev/null 2>&1
}

_forward_policy() { # prints ACCEPT/DROP, or nothing without iptables
    command -v iptables >/dev/null || return 0
    iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3; exit }'
}

# Start dockerd unless one already answers; waits until it is ready (30 s at most).
docker_start() {
    if docker_ready; then
        echo "docker_start: reusing the daemon on $KR_DOCKER_SOCKET" >&2
        return 0
    fi
    if ! command -v dockerd >/dev/null; then
        echo "docker_start: no dockerd (apt-get install docker.io)" >&2
        return 1
    fi
    if [[ -z ${KR_DOCKER_DIR:-} ]]; then
        KR_DOCKER_DIR=$(mktemp -d /tmp/kohakuriver-docker.XXXXXX)
    fi
    export KR_DOCKER_DIR
    mkdir -p "$KR_DOCKER_DIR"
    _KR_FORWARD_POLICY=$(_forward_policy)
    nohup dockerd --host "unix://$KR_DOCKER_SOCKET" >"$KR_DOCKER_DIR/dockerd.log" 2>&1 &
    KR_DOCKERD_PID=$!
    echo "$KR_DOCKERD_PID" >"$KR_DOCKER_DIR/dockerd.pid"
    local i
    for i in $(seq 1 150); do
        docker_ready && return 0
        if ! kill -0 "$KR_DOCKERD_PID" 2>/dev/null; then
            echo "docker_start: dockerd exited" >&2
            tail -n 20 "$KR_DOCKER_DIR/dockerd.log" >&2
            KR_DOCKERD_PID=
            return 1
        fi
        sleep 0.2
    done
    echo "docker_start: dockerd not ready after 30 s" >&2
    tail -n 20 "$KR_DOCKER_DIR/dockerd.log" >&2
    return 1
}

# Stop the daemon docker_start started (TERM, then KILL after 20 s); restore FORWARD policy.
docker_stop() {
    [[ -n ${KR_DOCKERD_PID:-} ]] || return 0
    local i
    if kill -TERM "$KR_DOCKERD_PID" 2>/dev/null; then
        for i in $(seq 1 100); do
            kill -0 "$KR_DOCKERD_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$KR_DOCKERD_PID" 2>/dev/null || true
    fi
    KR_DOCKERD_PID=
    if [[ -n $_KR_FORWARD_POLICY && $(_forward_policy) != "$_KR_FORWARD_POLICY" ]]; then
        iptables -P FORWARD "$_KR_FORWARD_POLICY" || true
    fi
}
