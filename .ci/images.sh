#!/usr/bin/env bash
# Build the Docker test images without any registry (nothing is ever pulled):
#   kohakuriver-test/busybox         busybox-static rootfs + `docker import`   (~0.1 s)
#   kohakuriver-test/debian:bookworm debootstrap minbase + python3 + openssh-server + import (~50 s)
#   kohakuriver-test/python          `docker build` FROM the Debian image (also the Docker VPS
#                                    test image: sshd present, host keys made at VPS start)
#   kohakuriver-test/notebook        FROM python + the runtime of notebook jobs (`python -m
#                                    kohakuriver_lab.nbjob`): papermill, ipykernel, httpx,
#                                    pydantic, and kohakuriver_lab without server/runner
# An image that already exists is kept (pass --force to rebuild the named images; notebook
# builds python first only when that is missing). Needs root, a running dockerd
# (.ci/docker.sh), apt-get install busybox-static debootstrap, and for notebook the project's
# .venv (the image's Python 3.11; KR_PYTHON=path overrides) with PyPI reachable: nothing is
# fetched inside a container, so the packages are installed here (pip --target) and copied in.
# The Debian mirror is the one apt already uses (override: KR_DEBIAN_MIRROR=URL).
#   bash .ci/images.sh [--force] [busybox|python|notebook ...]
set -euo pipefail

FORCE=0
WANT=()
for arg in "$@"; do
    case $arg in
    --force) FORCE=1 ;;
    busybox | python | notebook) WANT+=("$arg") ;;
    *) echo "usage: $0 [--force] [busybox|python|notebook ...]" >&2 && exit 2 ;;
    esac
done
[[ ${#WANT[@]} -gt 0 ]] || WANT=(busybox python notebook)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BUSYBOX_IMAGE=kohakuriver-test/busybox:latest
DEBIAN_IMAGE=kohakuriver-test/debian:bookworm
PYTHON_IMAGE=kohakuriver-test/python:latest
NOTEBOOK_IMAGE=kohakuriver-test/notebook:latest

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

# ===== python + notebook jobs =====
# What `python -m kohakuriver_lab.nbjob` and glue() in its kernel import, at the .venv's
# versions (so the image runs what the host-side tests ran).
NOTEBOOK_PACKAGES=(papermill ipykernel nbformat nbclient jupyter_client httpx pydantic)

build_notebook() {
    if have_image "$NOTEBOOK_IMAGE"; then
        echo "images: $NOTEBOOK_IMAGE exists" >&2
        return 0
    fi
    docker image inspect "$PYTHON_IMAGE" >/dev/null 2>&1 || FORCE=0 build_python
    local py=${KR_PYTHON:-$ROOT/.venv/bin/python} dir=$WORK/notebook want have
    [[ -x $py ]] || {
        echo "images: no $py (make the .venv first, or set KR_PYTHON)" >&2
        return 1
    }
    want=$(docker run --rm --network none "$PYTHON_IMAGE" \
        python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    have=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ $want == "$have" ]] || {
        echo "images: $py is Python $have but the image has $want (set KR_PYTHON)" >&2
        return 1
    }
    mkdir -p "$dir/site"
    "$py" -m pip list --format=freeze --exclude-editable >"$dir/constraints.txt" 2>/dev/null
    "$py" -m pip install -q --disable-pip-version-check --target "$dir/site" --only-binary=:all: \
        -c "$dir/constraints.txt" "${NOTEBOOK_PACKAGES[@]}" >"$dir/pip.log" 2>&1 || {
        cat "$dir/pip.log" >&2
        return 1
    }
    rm -rf "$dir/site/bin" "$dir/site/share" # scripts name $py; the kernelspec is ipykernel's own
    # kohakuriver_lab without the host and runner (symlinks to ../server and ../runner)
    tar -C "$ROOT" -c --exclude=__pycache__ --exclude=kohakuriver_lab/server \
        --exclude=kohakuriver_lab/runner --exclude=kohakuriver_lab/labextension \
        --exclude=kohakuriver_lab/testing kohakuriver_lab | tar -C "$dir/site" -x
    "$py" -m compileall -q "$dir/site/kohakuriver_lab" >/dev/null
    cat >"$dir/Dockerfile" <<EOF
FROM $PYTHON_IMAGE
COPY site /usr/local/lib/python$want/dist-packages
RUN python3 -c 'import papermill, ipykernel.kernelapp, kohakuriver_lab.nbjob'
EOF
    DOCKER_BUILDKIT=0 docker build -q -t "$NOTEBOOK_IMAGE" "$dir" >"$WORK/build.log" 2>&1 || {
        cat "$WORK/build.log" >&2
        return 1
    }
    echo "images: built $NOTEBOOK_IMAGE" >&2
}

for image in "${WANT[@]}"; do
    "build_$image"
done
