#!/bin/bash
# Runs inside the booted Debian container of scripts/systemd-e2e.sh, as the oneshot unit
# ferry-e2e.service, under the container's real systemd. /e2e holds the packages (read-only);
# every step is logged to /e2e-out/log and the verdict written to /e2e-out/result ("pass" or
# "fail: STEP"). Powers the container off at the end either way.
set -uo pipefail
exec >>/e2e-out/log 2>&1
step="start"
finish() {
    if [ "$1" = pass ]; then echo pass >/e2e-out/result; else echo "fail: $step" >/e2e-out/result; fi
    journalctl --no-pager -o short-monotonic -u ferry-agent -u ferry-coordinator >/e2e-out/journal 2>&1
    systemctl --no-block poweroff
    exit 0
}
trap 'echo "failed at line $LINENO: $BASH_COMMAND"; finish fail' ERR
set -E
say() { step="$*"; echo; echo "== $(date +%T) $*"; }
# Waits up to $1 seconds for the shell condition $2 (evaluated afresh each time) to hold.
wait_for() {
    local limit=$1 condition=$2
    local until=$((SECONDS + limit))
    until eval "$condition" >/dev/null 2>&1; do
        [ $SECONDS -lt $until ] || { echo "timed out after ${limit}s: $condition"; return 1; }
        sleep 0.5
    done
}
# Fails (and so trips the ERR trap) when the command succeeds.
refused() {
    if "$@" >/dev/null 2>&1; then echo "should have been refused: $*"; return 1; fi
}
prop() { systemctl show -P "$2" "$1"; }
# Whether the agent runs version $1, its switch confirmed (health check passed).
agent_on() {
    local status
    status=$(ferry-agent --config /etc/ferry/agent.toml status --json | tr -d ' \n') || return 1
    grep -q "\"current\":\"$1\"" <<<"$status" && grep -q '"in_probation":null' <<<"$status"
}
export FERRY_URL=http://127.0.0.1:7401

say "dpkg -i of both packages on a clean Debian"
dpkg -i /e2e/debs/ferry-coordinator_*-1_amd64.deb /e2e/debs/ferry-agent_*-1_amd64.deb
getent passwd ferry
getent group ferry-models
[ "$(stat -c '%U:%G %a' /etc/ferry/agent.toml)" = "root:ferry 640" ]
[ "$(systemctl is-enabled ferry-agent)" = enabled ]
[ "$(systemctl is-active ferry-agent || true)" = inactive ]   # waits for its configuration
# Started with the packaged example configuration, the unit is skipped by its ExecCondition
# (`ferry-agent check`), not failed and restarted.
systemctl start ferry-agent
[ "$(prop ferry-agent ConditionResult)" = no ]
[ "$(prop ferry-agent ActiveState)" = inactive ]
[ "$(prop ferry-agent NRestarts)" = 0 ]

say "the coordinator's unit is up (Type=notify: READY=1 after both listeners are bound), not as root"
wait_for 60 '[ "$(prop ferry-coordinator ActiveState)" = active ]'
[ "$(ps -o user= -p "$(prop ferry-coordinator MainPID)")" = ferry ]
systemd-analyze security ferry-coordinator.service | tail -n 1
export FERRY_TOKEN; FERRY_TOKEN=$(cat /var/lib/ferry-coordinator/admin.token)
fingerprint=$(journalctl -u ferry-coordinator -o cat | sed -n 's/^ *fingerprint *\(sha256:[0-9a-f]*\).*/\1/p' | tail -n 1)
[ -n "$fingerprint" ]
mkdir -p /root/publisher
ferryctl keys generate --out /root/publisher/ci.key
ferryctl keys trust /root/publisher/ci.key.pub --name ci

say "configure the agent, start it: READY=1, user ferry, group ferry-models"
install -m 0640 -g ferry /var/lib/ferry-coordinator/enrollment.token /etc/ferry/enrollment.token
cat >/etc/ferry/agent.toml <<TOML
coordinator = "127.0.0.1:7400"
server_name = "localhost"
coordinator_fingerprint = "$fingerprint"
enrollment_token_file = "enrollment.token"
state_dir = "/var/lib/ferry"
model = "demo"
alias = "prod"
trusted_keys = ["$(cat /root/publisher/ci.key.pub)"]
poll_interval_secs = 2

[health_check]
command = ["/bin/sh", "-c", "head -c 7 \"\$FERRY_MODEL_FILE\" | grep -q healthy"]
timeout_secs = 30
TOML
# A short watchdog, so that the test sees it bite in seconds rather than the shipped 30 s. A
# stopped process ignores the watchdog's SIGABRT until the SIGKILL that follows after
# TimeoutAbortSec (the shipped TimeoutStopSec, 30 s), so shorten that too.
mkdir -p /etc/systemd/system/ferry-agent.service.d
printf '[Service]\nWatchdogSec=4s\nTimeoutAbortSec=3s\nRestartSec=1s\n' \
    >/etc/systemd/system/ferry-agent.service.d/e2e.conf
systemctl daemon-reload
systemctl start ferry-agent     # returns once the agent sent READY=1 (Type=notify)
[ "$(prop ferry-agent ActiveState)/$(prop ferry-agent SubState)" = active/running ]
agent_pid=$(prop ferry-agent MainPID)
ps -o user=,group=,supgrp= -p "$agent_pid"
[ "$(ps -o user= -p "$agent_pid")" = ferry ]
[ "$(ps -o group= -p "$agent_pid")" = ferry-models ]
systemd-analyze security ferry-agent.service | tail -n 1

say "publish 1.0.0; the agent installs it"
make_model() { { printf healthy; head -c "$2" /dev/urandom; } >"/root/publisher/$1.bin"; }
make_model 1.0.0 1048576
ferryctl publish demo 1.0.0 /root/publisher/1.0.0.bin --key /root/publisher/ci.key --file-name model.bin
ferryctl alias set demo prod 1.0.0 --reason e2e
wait_for 120 'agent_on 1.0.0'
cmp /root/publisher/1.0.0.bin /var/lib/ferry/models/demo/current/model.bin

say "a model server running as another user of ferry-models reads the model and reports metrics"
useradd --system --no-create-home --groups ferry-models modelsrv
as_modelsrv() { setpriv --reuid=modelsrv --regid=modelsrv --init-groups -- "$@"; }
as_modelsrv cat /var/lib/ferry/models/demo/current/model.bin | cmp /root/publisher/1.0.0.bin -
as_modelsrv test -w /var/lib/ferry/metrics.sock
refused as_modelsrv cat /var/lib/ferry/identity.key
refused as_modelsrv cat /var/lib/ferry/state.json
refused as_modelsrv cat /etc/ferry/agent.toml
refused as_modelsrv cat /etc/ferry/enrollment.token
ls -l /var/lib/ferry /var/lib/ferry/versions/demo/1.0.0

say "the watchdog kills a stopped agent and systemd restarts it"
restarts=$(prop ferry-agent NRestarts)
kill -STOP "$agent_pid"
wait_for 60 '[ "$(prop ferry-agent NRestarts)" -gt "$restarts" ]'
wait_for 30 '[ "$(prop ferry-agent ActiveState)" = active ]'
[ "$(prop ferry-agent MainPID)" != "$agent_pid" ]
journalctl -u ferry-agent -o cat | grep -i watchdog | tail -n 2
wait_for 60 'agent_on 1.0.0'

say "kill -9 in the middle of an install: systemd restarts it on a verified version, then it finishes"
make_model 2.0.0 268435456
ferryctl publish demo 2.0.0 /root/publisher/2.0.0.bin --key /root/publisher/ci.key --file-name model.bin
ferryctl alias set demo prod 2.0.0 --reason e2e
wait_for 120 'ls /var/lib/ferry/staging/demo/2.0.0/ | grep -q .'
agent_pid=$(prop ferry-agent MainPID)
kill -9 "$agent_pid"
wait_for 30 '[ "$(prop ferry-agent MainPID)" != "$agent_pid" ]'
wait_for 30 '[ "$(prop ferry-agent ActiveState)" = active ]'
ferry-agent --config /etc/ferry/agent.toml status
current=$(readlink -f /var/lib/ferry/models/demo/current/model.bin)
case "$current" in
    */versions/demo/1.0.0/model.bin) cmp /root/publisher/1.0.0.bin "$current" ;;
    */versions/demo/2.0.0/model.bin) cmp /root/publisher/2.0.0.bin "$current" ;;
    *) echo "current is $current"; false ;;
esac
wait_for 300 'agent_on 2.0.0'
cmp /root/publisher/2.0.0.bin /var/lib/ferry/models/demo/current/model.bin

say "upgrade to the next package revision keeps configuration and state, restarts the agent"
key_before=$(sha256sum /var/lib/ferry/identity.key)
config_before=$(sha256sum /etc/ferry/agent.toml)
agent_pid=$(prop ferry-agent MainPID)
dpkg -i /e2e/debs/ferry-coordinator_*-2_amd64.deb /e2e/debs/ferry-agent_*-2_amd64.deb
dpkg-query -W ferry-agent ferry-coordinator
[ "$(sha256sum /var/lib/ferry/identity.key)" = "$key_before" ]
[ "$(sha256sum /etc/ferry/agent.toml)" = "$config_before" ]
wait_for 30 '[ "$(prop ferry-agent ActiveState)" = active ]'
[ "$(prop ferry-agent MainPID)" != "$agent_pid" ]
wait_for 60 '[ "$(prop ferry-coordinator ActiveState)" = active ]'
wait_for 60 'agent_on 2.0.0'
ferryctl releases list demo

say "the agent updates itself: a good agent release takes over in the same process"
agent_model_on() {
    local status
    status=$(ferry-agent --config /etc/ferry/agent.toml status --json | tr -d ' \n') || return 1
    grep -q "\"model\":\"ferry-agent\",\"current\":\"$1\"" <<<"$status"
}
printf '\n[self_update]\nmodel = "ferry-agent"\nprove_within_secs = 60\n' >>/etc/ferry/agent.toml
systemctl restart ferry-agent
cp /usr/bin/ferry-agent /root/publisher/ferry-agent-9.0.0
ferryctl publish ferry-agent 9.0.0 /root/publisher/ferry-agent-9.0.0 --key /root/publisher/ci.key --file-name ferry-agent
ferryctl alias set ferry-agent prod 9.0.0 --reason e2e
agent_pid=$(prop ferry-agent MainPID)
wait_for 120 'agent_model_on 9.0.0 && [ ! -e /var/lib/ferry/handover.json ]'
[ "$(prop ferry-agent MainPID)" = "$agent_pid" ]
[ "$(readlink /proc/"$agent_pid"/exe)" = /var/lib/ferry/versions/ferry-agent/9.0.0/ferry-agent ]
[ "$(prop ferry-agent ActiveState)" = active ]

say "a bad agent release (exits at start, status 0) is undone by systemd's restart of the packaged agent"
printf '#!/bin/sh\necho "bad agent: exits at start" >&2\nexit 0\n' >/root/publisher/ferry-agent-10.0.0
restarts=$(prop ferry-agent NRestarts)
ferryctl publish ferry-agent 10.0.0 /root/publisher/ferry-agent-10.0.0 --key /root/publisher/ci.key --file-name ferry-agent
ferryctl alias set ferry-agent prod 10.0.0 --reason e2e
wait_for 120 '[ "$(prop ferry-agent NRestarts)" -gt "$restarts" ]'
wait_for 60 '[ "$(readlink /proc/"$(prop ferry-agent MainPID)"/exe)" = /var/lib/ferry/versions/ferry-agent/9.0.0/ferry-agent ]'
wait_for 60 'agent_model_on 9.0.0'
[ "$(prop ferry-agent ActiveState)" = active ]
ferry-agent --config /etc/ferry/agent.toml status | sed -n '/model ferry-agent/,$p'
ferry-agent --config /etc/ferry/agent.toml status --json | tr -d ' \n' | grep -q '"holds":\[{"version":"10.0.0"'
journalctl -u ferry-agent -o cat | grep -E "handing over|on trial|proved itself|did not prove itself|bad agent" | tail -n 8
agent_on 2.0.0

say "purge removes configuration and state, stops and disables the units"
dpkg --purge ferry-agent ferry-coordinator
refused test -e /var/lib/ferry
refused test -e /var/lib/ferry-coordinator
refused test -e /etc/ferry
refused test -e /etc/systemd/system/multi-user.target.wants/ferry-agent.service
refused pgrep -x ferry-agent
refused pgrep -x ferry-coordinator
finish pass
