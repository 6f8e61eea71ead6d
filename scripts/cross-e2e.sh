#!/usr/bin/env bash
# The agent on device targets against a real x86_64 coordinator: builds each TARGET with
# scripts/build-targets.sh (default: aarch64, armv7 and x86_64-musl), runs the agent's unit
# tests for it (under qemu-user-static for the ARM ones; the static musl build runs
# natively), then the end-to-end tests that install, update, roll back on a failed health
# check, roll back by hand offline and survive a kill mid-install, with that agent binary
# (FERRY_AGENT_BIN; for ARM through a qemu wrapper, as this machine has no binfmt_misc).
# Usage: scripts/cross-e2e.sh [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/cross-env.sh
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${DEVICE_TARGETS[@]}")
apt_install qemu-user-static
scripts/build-targets.sh "${targets[@]}"

for target in "${targets[@]}"; do
    # The musl build is x86_64: it runs here natively, without qemu.
    qemu=$(target_runner "$target")
    echo "== $target: the agent's unit tests${qemu:+ under ${qemu%% *}}"
    cross_cargo "$target" test --quiet --locked -p ferry-agent --lib --target "$target" \
        ${qemu:+--config "target.$target.runner='$qemu'"}

    echo "== $target: end to end, this agent against the x86_64 coordinator"
    agent="$PWD/target/cross/$target/device/ferry-agent"
    if [ -n "$qemu" ]; then
        agent="$PWD/target/cross/agent-$target.sh"
        printf '#!/bin/sh\nexec %s %s "$@"\n' "$qemu" \
            "$PWD/target/cross/$target/device/ferry-agent" > "$agent"
        chmod +x "$agent"
    fi
    FERRY_AGENT_BIN="$agent" cargo test --quiet -p ferry-tests --test e2e -- \
        a_fleet_installs_v1_then_v2_and_rolls_back_a_release_that_fails_its_health_check \
        local_rollback_works_with_the_coordinator_stopped_and_is_reported_later \
        an_agent_killed_in_the_middle_of_an_install_comes_back_on_its_old_version
done
