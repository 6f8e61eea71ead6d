#!/usr/bin/env bash
# Builds the agent for device targets without containers, from Debian's packages: the Rust
# 1.96 toolchain of bookworm's rustc-web/cargo-web with multiarch standard libraries, and the
# Debian cross linkers. Installs what it needs (apt, idempotent; run as root or with sudo),
# builds each TARGET (default: aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf) with
# the `device` profile into target/cross/<triple>/device/ferry-agent, and prints a table of
# stripped sizes. x86_64-unknown-linux-musl is not built by this script yet (see
# cross-targets/README.md).
# Usage: scripts/build-targets.sh [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

# Debian's toolchain installs as /usr/bin/cargo and /usr/bin/rustc; a rustup toolchain may
# come first on PATH, so both are named in full below.
need=(rustc-web cargo-web)
for target in "${targets[@]}"; do
    case "$target" in
        aarch64-unknown-linux-gnu) need+=(gcc-aarch64-linux-gnu libstd-rust-web-dev:arm64) ;;
        armv7-unknown-linux-gnueabihf) need+=(gcc-arm-linux-gnueabihf libstd-rust-web-dev:armhf) ;;
        *) echo "build-targets: $target is not built by this script" >&2; exit 2 ;;
    esac
done
missing=()
for pkg in "${need[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    foreign=$(dpkg --print-foreign-architectures)
    for arch in arm64 armhf; do
        grep -qx "$arch" <<<"$foreign" || $sudo dpkg --add-architecture "$arch"
    done
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR=target/cross
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc

rows=()
for target in "${targets[@]}"; do
    start=$(date +%s)
    /usr/bin/cargo build --quiet --locked --profile device -p ferry-agent --target "$target"
    bin="$CARGO_TARGET_DIR/$target/device/ferry-agent"
    size=$(stat -c %s "$bin")
    rows+=("| $target | $(awk -v b="$size" 'BEGIN { printf "%.2f", b / 1048576 }') MiB | $(( $(date +%s) - start )) s | \`$bin\` |")
done
echo "| target | stripped size | build time | binary |"
echo "|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
