#!/bin/sh
# Drains a webapp as the seed demo does, from the host: `on` creates /tmp/drain inside its container,
# `off` removes it. The agent there watches that file and reports the drain at once; nginx keeps
# serving. (No API override: the point is that the agent, with its inside knowledge, decides.)
set -eu
usage() {
    echo "usage: $0 webapp1|webapp2|webapp3 on|off" >&2
    exit 2
}
[ $# -eq 2 ] || usage
case $1 in
    webapp1 | webapp2 | webapp3) ;;
    *) usage ;;
esac
case $2 in
    on)
        docker exec "$1" touch /tmp/drain
        echo "$1: drain on (/tmp/drain created; its nginx keeps serving)"
        ;;
    off)
        docker exec "$1" rm -f /tmp/drain
        echo "$1: drain off (/tmp/drain removed)"
        ;;
    *) usage ;;
esac
