#!/bin/sh
# A webapp's PID 1: starts nginx (as a daemon, so `docker exec webapp2 nginx -s stop` and `docker exec
# webapp2 nginx` stop and start it), then runs the agent (the CMD) and restarts it when it exits. Neither
# stopping nginx nor killing the agent takes the container down; `docker stop` lets the agent leave the
# cluster before nginx quits.
set -u
nginx || echo "webapp-entrypoint: nginx did not start" >&2
agent=
stop() {
    if [ -n "$agent" ]; then
        kill -TERM "$agent" 2>/dev/null
        wait "$agent"
    fi
    nginx -s quit 2>/dev/null
    exit 0
}
trap stop TERM INT
while :; do
    "$@" &
    agent=$!
    wait "$agent"
    echo "webapp-entrypoint: the agent exited ($?); restarting it in 3 s" >&2
    agent=
    # In the background, so that a TERM during the pause is handled at once.
    sleep 3 &
    wait $!
done
