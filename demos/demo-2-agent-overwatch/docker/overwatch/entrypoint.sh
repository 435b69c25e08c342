#!/bin/sh
# The overwatch pins its XDP program's maps under /sys/fs/bpf (where `opengslb xdp counters` reads them).
# A container's /sys has no bpffs: mount one. Each mount is a fresh instance, so these pins never mix with
# the host's. Without CAP_SYS_ADMIN the mount fails; the overwatch then logs why XDP is off and answers
# every query from userspace.
set -u
if ! grep -qs '^[^ ]* /sys/fs/bpf bpf ' /proc/mounts; then
    mount -t bpf bpf /sys/fs/bpf ||
        echo "overwatch-entrypoint: cannot mount bpffs at /sys/fs/bpf (no CAP_SYS_ADMIN?)" >&2
fi
exec "$@"
