#!/usr/bin/env bash
# The agent on device targets, under qemu-user, against a real x86_64 coordinator: builds
# each TARGET with scripts/build-targets.sh (default: aarch64 and armv7), runs the agent's
# unit tests for it under qemu-user-static, then the end-to-end tests that install, update,
# roll back on a failed health check and roll back by hand offline, with that agent binary
# (FERRY_AGENT_BIN, through a qemu wrapper: this machine has no binfmt_misc). Outside CI's
# budget for now (each target builds in a few minutes on 2 cores, its tests run in about a
# minute under emulation).
# Usage: scripts/cross-e2e.sh [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
fi
dpkg -s qemu-user-static >/dev/null 2>&1 || {
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q qemu-user-static
}
scripts/build-targets.sh "${targets[@]}"

for target in "${targets[@]}"; do
    case "$target" in
        aarch64-unknown-linux-gnu) qemu=qemu-aarch64-static; arch=AARCH64_UNKNOWN_LINUX_GNU ;;
        armv7-unknown-linux-gnueabihf) qemu=qemu-arm-static; arch=ARMV7_UNKNOWN_LINUX_GNUEABIHF ;;
        *) echo "cross-e2e: no qemu for $target" >&2; exit 2 ;;
    esac
    echo "== $target: the agent's unit tests under $qemu"
    env RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/cross \
        "CARGO_TARGET_${arch}_RUNNER=$qemu" \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
        CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
        /usr/bin/cargo test --quiet --locked -p ferry-agent --lib --target "$target"

    echo "== $target: end to end, an emulated agent against the x86_64 coordinator"
    wrapper="$PWD/target/cross/agent-$target.sh"
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$qemu" \
        "$PWD/target/cross/$target/device/ferry-agent" > "$wrapper"
    chmod +x "$wrapper"
    FERRY_AGENT_BIN="$wrapper" cargo test --quiet -p ferry-tests --test e2e -- \
        a_fleet_installs_v1_then_v2_and_rolls_back_a_release_that_fails_its_health_check \
        local_rollback_works_with_the_coordinator_stopped_and_is_reported_later \
        an_agent_killed_in_the_middle_of_an_install_comes_back_on_its_old_version
done
