#!/bin/sh
# Builds the demo's base image, opengslb-demo-base:bookworm: Debian bookworm with every package the roles
# need, so that their Dockerfiles only copy files. Built once: while an image under that tag holds this
# package list, later runs return at once (--rebuild builds it again).
#
# From debian:bookworm-slim plus apt-get when an image registry answers; otherwise (no registry, as on
# air-gapped or mirror-only machines) from a rootfs made by debootstrap, which needs only a Debian mirror
# (DEBIAN_MIRROR, default deb.debian.org), and `docker import`. Needs root and docker; debootstrap for
# the second way.
set -eu

IMAGE=opengslb-demo-base:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES="nginx-light openssh-server dnsutils curl jq iproute2 iputils-ping procps net-tools ca-certificates"
LABEL=org.opengslb.demo.packages
# How long the registry may take to say whether it is there: pulling the slim image takes seconds where
# one answers, and where none does the name lookup fails at once.
PULL_TIMEOUT=${PULL_TIMEOUT:-120}

rebuild=
case ${1:-} in
    "") ;;
    --rebuild) rebuild=1 ;;
    *)
        echo "usage: $0 [--rebuild]" >&2
        exit 2
        ;;
esac

say() { echo "base-image: $*" >&2; }

if [ -z "$rebuild" ] &&
    have=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null); then
    if [ "$have" = "$PACKAGES" ]; then
        say "$IMAGE is present"
        exit 0
    fi
    say "$IMAGE has another package list; building it again"
fi

if timeout "$PULL_TIMEOUT" docker pull debian:bookworm-slim >/dev/null 2>&1; then
    say "a registry answered: $IMAGE from debian:bookworm-slim plus apt-get"
    # No build context: the Dockerfile comes on stdin.
    docker build --label "$LABEL=$PACKAGES" -t "$IMAGE" - <<EOF
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES \
 && rm -rf /var/lib/apt/lists/*
EOF
    exit 0
fi

say "no image registry answered: $IMAGE from debootstrap ($MIRROR) and docker import"
if ! command -v debootstrap >/dev/null 2>&1; then
    say "debootstrap is missing: apt-get install debootstrap (cargo xtask setup installs it)"
    exit 1
fi
rootfs=$(mktemp -d /var/tmp/opengslb-demo-base.XXXXXX)
cleanup() {
    # debootstrap mounts proc and sys (and may bind /dev) while it works: never delete through a mount.
    for m in dev/pts dev sys proc; do
        umount "$rootfs/$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start=$(date +%s)
say "debootstrap into $rootfs (one to two minutes)"
debootstrap --variant=minbase --include="$(echo "$PACKAGES" | tr ' ' ,)" \
    bookworm "$rootfs" "$MIRROR" >&2
# What a container never uses: package lists and archives, docs, man pages, translations (about 150 MB).
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
say "importing into docker"
tar --numeric-owner -C "$rootfs" -c . |
    docker import -c "LABEL $LABEL=\"$PACKAGES\"" -c 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
say "$IMAGE built in $(($(date +%s) - start)) s ($(docker image inspect -f '{{.Size}}' "$IMAGE" |
    awk '{ printf "%d MB", $1 / 1000000 }'))"
