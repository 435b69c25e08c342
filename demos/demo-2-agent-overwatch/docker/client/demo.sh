#!/bin/bash
# Demo 2's guided walkthrough, run on the client (`ssh -p 2222 root@localhost`, then ./demo.sh).
#
# Scenario 1, the reactive way: nginx on webapp2 stops, health checks notice, DNS drops it.
# Scenario 2, the agent's way: webapp2 is drained while its nginx stays healthy, and DNS drops it at once.
#
# Commands for the host are printed on lines starting `host$ ` (run them in demos/demo-2-agent-overwatch);
# the script then waits for Enter and watches DNS and the API. Every wait is bounded: DEMO_WAIT seconds
# for a change to show (default 60), DEMO_PROMPT seconds for Enter (default 600).
set -u

DNS=10.20.0.10
API=http://10.20.0.10:8080/api/v1
NAME=app.demo.local
WEBAPP2=10.20.0.22
ALL="10.20.0.21 10.20.0.22 10.20.0.23"
WAIT=${DEMO_WAIT:-60}
PROMPT=${DEMO_PROMPT:-600}
failed=0

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
title() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}
secs() { printf '%d.%d s' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# Prints what to run on the host, then waits for Enter.
host() {
    echo
    echo "On the host, in demos/demo-2-agent-overwatch, run:"
    echo "host\$ $1"
    if ! read -r -t "$PROMPT" -p "Then press Enter here. "; then
        echo "(no Enter within $PROMPT s: going on)"
    fi
}

# webapp2 as the API sees it: status, the rule that decided it, and the overwatch's own probe.
api_webapp2() {
    curl -s --max-time 2 "$API/overwatch/backends?service=$NAME" | jq -r --arg a "$WEBAPP2" \
        '.backends[] | select(.address == $a) |
         "\(.address): \(.effective_status), reason \(.reason), agent_status \(.agent_status // "-"), validation_healthy \(.validation_healthy)"'
}

# Watches DNS until webapp2 is `out` of the answers or back `in`; prints each change and the time since
# the call (the Enter). Fails after WAIT seconds.
watch_dns() {
    local want=$1 start seen last=
    start=$(now_ms)
    while (($(now_ms) - start < WAIT * 1000)); do
        seen=$(dns-answers)
        if [[ $seen != "$last" ]]; then
            printf '  +%s  dig @%s %s -> %s\n' "$(secs $(($(now_ms) - start)))" "$DNS" "$NAME" "${seen:-(nothing)}"
            last=$seen
        fi
        case "$want $seen " in
            out*" $WEBAPP2 "*) ;;
            out*) echo "webapp2 out of DNS after $(secs $(($(now_ms) - start)))"; return 0 ;;
            in*" $WEBAPP2 "*) echo "webapp2 back in DNS after $(secs $(($(now_ms) - start)))"; return 0 ;;
        esac
        sleep 0.5
    done
    echo "webapp2 not $want of DNS after $WAIT s (see README.md, Troubleshooting)"
    failed=1
    return 1
}

# Waits (bounded) until webapp2's API line matches a pattern, then prints it.
wait_api() {
    local pattern=$1 start line
    start=$(now_ms)
    while (($(now_ms) - start < WAIT * 1000)); do
        line=$(api_webapp2)
        if [[ $line == *$pattern* ]]; then
            echo "  API: $line"
            return 0
        fi
        sleep 0.5
    done
    echo "  API: $line (expected $pattern within $WAIT s)"
    failed=1
    return 1
}

health_code() { curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://$WEBAPP2/health"; }

title "Demo 2: agents beside the apps, the overwatch answering DNS"
echo "DNS answers (dns-answers: nine queries of 'dig @$DNS $NAME +short', one address each):"
echo "  $(dns-answers)"
if [[ $(dns-answers) != "$ALL" ]]; then
    echo "Not all three webapps are answered yet; waiting up to $WAIT s."
    start=$(now_ms)
    until [[ $(dns-answers) == "$ALL" ]] || (($(now_ms) - start > WAIT * 1000)); do sleep 1; done
    echo "  $(dns-answers)"
fi
echo "The agents (curl $API/overwatch/agents):"
curl -s --max-time 2 "$API/overwatch/agents" | jq -r '.agents[] | "  \(.name) \(.state) at \(.address)"'

title "Scenario 1: nginx stops; the health checks notice (the traditional, reactive way)"
echo "webapp2's nginx will stop. Its agent checks it every 2 s and needs 2 failures; the overwatch's own"
echo "probe checks every 5 s. Until then, DNS still sends clients to a dead server."
host "docker exec webapp2 nginx -s stop"
echo "curl http://$WEBAPP2/health -> $(health_code) (000: nothing answers)"
watch_dns out
api_webapp2 | sed 's/^/  API: /'
host "docker exec webapp2 nginx"
watch_dns in
wait_api "healthy, reason healthy"

title "Scenario 2: drain; the agent signals first (the point of agents)"
echo "The drain file tells webapp2's agent to report its backend draining. nginx keeps serving."
host "./scripts/drain.sh webapp2 on"
watch_dns out
echo "curl http://$WEBAPP2/health -> $(health_code): nginx still serves, yet DNS no longer sends anyone"
wait_api "draining, reason agent_draining, agent_status draining, validation_healthy true"
echo "The overwatch's own probe passes (validation_healthy true); the agent's word wins."
host "./scripts/drain.sh webapp2 off"
watch_dns in
wait_api "healthy, reason healthy"

title "Done"
if ((failed)); then
    echo "Some step did not show what it should (above). docker logs overwatch / webapp2 say more."
    exit 1
fi
echo "Both scenarios ran. More: README.md's cheat sheet; 'exit' leaves the client."
