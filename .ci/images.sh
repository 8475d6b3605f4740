#!/usr/bin/env bash
# Build the Docker test images without any registry (nothing is ever pulled):
#   kohakuriver-test/busybox         busybox-static rootfs + `docker import`   (~0.1 s)
#   kohakuriver-test/debian:bookworm debootstrap minbase + python3 + openssh-server + import (~50 s)
#   kohakuriver-test/python          `docker build` FROM the Debian image (also the Docker VPS
#                                    test image: sshd present, host keys made at VPS start)
# An image that already exists is kept (pass --force to rebuild). Needs root, a running
# dockerd (.ci/docker.sh), and apt-get install busybox-static debootstrap.
# The Debian mirror is the one apt already uses (override: KR_DEBIAN_MIRROR=URL).
#   bash .ci/images.sh [--force] [busybox|python ...]
set -euo pipefail

FORCE=0
WANT=()
for arg in "$@"; do
    case $arg in
    --force) FORCE=1 ;;
    busybox | python) WANT+=("$arg") ;;
    *) echo "usage: $0 [--force] [busybox|python ...]" >&2 && exit 2 ;;
    esac
done
[[ ${#WANT[@]} -gt 0 ]] || WANT=(busybox python)

BUSYBOX_IMAGE=kohakuriver-test/busybox:latest
DEBIAN_IMAGE=kohakuriver-test/debian:bookworm
PYTHON_IMAGE=kohakuriver-test/python:latest

have_image() { [[ $FORCE == 0 ]] && docker image inspect "$1" >/dev/null 2>&1; }

WORK=$(mktemp -d /tmp/kohakuriver-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# ===== busybox =====
build_busybox() {
    if have_image "$BUSYBOX_IMAGE"; then
        echo "images: $BUSYBOX_IMAGE exists" >&2
        return 0
    fi
    local bb=/bin/busybox root=$WORK/busybox applet
    [[ -x $bb ]] || bb=$(command -v busybox) || {
        echo "images: no busybox (apt-get install busybox-static)" >&2
        return 1
    }
    if ldd "$bb" >/dev/null 2>&1; then
        echo "images: $bb is dynamically linked (apt-get install busybox-static)" >&2
        return 1
    fi
    mkdir -p "$root"/{bin,tmp,proc,sys,dev,etc,root}
    cp "$bb" "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    chmod 1777 "$root/tmp"
    tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - \
        "$BUSYBOX_IMAGE" >/dev/null
    echo "images: built $BUSYBOX_IMAGE" >&2
}

# ===== Debian + python3 =====
debian_mirror() { # the mirror apt uses for Debian itself (deb822 .sources or sources.list)
    if [[ -n ${KR_DEBIAN_MIRROR:-} ]]; then
        echo "$KR_DEBIAN_MIRROR"
        return
    fi
    local url
    url=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
    if [[ -z $url ]]; then
        url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }')
    fi
    [[ -n $url ]] || {
        echo "images: no Debian mirror in apt's sources; set KR_DEBIAN_MIRROR" >&2
        return 1
    }
    echo "$url"
}

build_python() {
    if have_image "$PYTHON_IMAGE"; then
        echo "images: $PYTHON_IMAGE exists" >&2
        return 0
    fi
    if ! have_image "$DEBIAN_IMAGE"; then
        command -v debootstrap >/dev/null || {
            echo "images: no debootstrap (apt-get install debootstrap)" >&2
            return 1
        }
        local mirror
        mirror=$(debian_mirror)
        echo "images: debootstrap bookworm (about 45 s)" >&2
        debootstrap --variant=minbase --include=python3,openssh-server bookworm "$WORK/debian" "$mirror" \
            >"$WORK/debootstrap.log" 2>&1 || {
            tail -n 20 "$WORK/debootstrap.log" >&2
            return 1
        }
        rm -rf "$WORK/debian/var/cache/apt/archives"/*.deb "$WORK/debian/var/lib/apt/lists"/*
        tar -C "$WORK/debian" -c . | docker import -c 'CMD ["/usr/bin/python3"]' - \
            "$DEBIAN_IMAGE" >/dev/null
        echo "images: built $DEBIAN_IMAGE" >&2
    fi
    mkdir -p "$WORK/python"
    cat >"$WORK/python/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
ENV PYTHONUNBUFFERED=1 LANG=C.UTF-8
RUN python3 -c 'import sys; assert sys.version_info >= (3, 11)' && ln -sf python3 /usr/bin/python \\
    && rm -f /etc/ssh/ssh_host_*_key* && mkdir -p /run/sshd && test -x /usr/sbin/sshd
WORKDIR /root
CMD ["/usr/bin/python3"]
EOF
    DOCKER_BUILDKIT=0 docker build -q -t "$PYTHON_IMAGE" "$WORK/python" >"$WORK/build.log" 2>&1 || {
        cat "$WORK/build.log" >&2
        return 1
    }
    echo "images: built $PYTHON_IMAGE" >&2
}

for image in "${WANT[@]}"; do
    "build_$image"
done
