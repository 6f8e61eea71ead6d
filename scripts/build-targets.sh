#!/usr/bin/env bash
# Builds the agent for device targets without containers (scripts/lib/cross-env.sh says with
# what): installs what it needs (idempotent; run as root or with sudo), builds each TARGET
# (default: aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl)
# with the `device` profile into target/cross/<triple>/device/ferry-agent, and prints a table
# of stripped sizes.
# Usage: scripts/build-targets.sh [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."


source scripts/lib/cross-env.sh
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${DEVICE_TARGETS[@]}")
cross_setup "${targets[@]}"

rows=()
for target in "${targets[@]}"; do
    start=$(date +%s)
    cross_cargo "$target" build --quiet --locked --profile device -p ferry-agent --target "$target"
    bin="target/cross/$target/device/ferry-agent"
    size=$(stat -c %s "$bin")
    rows+=("| $target | $(awk -v b="$size" 'BEGIN { printf "%.2f", b / 1048576 }') MiB | $(( $(date +%s) - start )) s | \`$bin\` |")
done
echo "| target | stripped size | build time | binary |"
echo "|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
