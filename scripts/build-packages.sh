#!/usr/bin/env bash
# Builds the Debian packages of the agent and the coordinator for each ARCH (amd64, arm64,
# armhf; default all three) into target/debian/, with Debian bookworm's own Rust toolchain
# and cross linkers (scripts/lib/cross-env.sh installs them) and cargo-deb (installed with
# `cargo install` if missing). The agent is built with the `device` profile, the coordinator
# and ferryctl with `release`. Prints a table of the packages and their sizes.
# Usage: scripts/build-packages.sh [--revision N] [ARCH…]
#   --revision N   the Debian revision (default 1), e.g. to make an upgrade of the same code
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
revision=1
arches=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --revision) revision="${2:?--revision needs a number}"; shift 2 ;;
        amd64|arm64|armhf) arches+=("$1"); shift ;;
        *) echo "build-packages: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ ${#arches[@]} -eq 0 ] && arches=(amd64 arm64 armhf)

source scripts/lib/cross-env.sh
CARGO_DEB_VERSION=3.8.0
if ! cargo-deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi

triple_of() {
    case "$1" in
        amd64) echo x86_64-unknown-linux-gnu ;;
        arm64) echo aarch64-unknown-linux-gnu ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
    esac
}
triples=()
for arch in "${arches[@]}"; do triples+=("$(triple_of "$arch")"); done
cross_setup "${triples[@]}"
apt_install dpkg-dev

mkdir -p target/debian
rows=()
for arch in "${arches[@]}"; do
    triple=$(triple_of "$arch")
    cross_cargo "$triple" build --quiet --locked --profile device -p ferry-agent --target "$triple"
    cross_cargo "$triple" build --quiet --locked --profile release -p ferry-coordinator --target "$triple"
    for spec in ferry-agent:device ferry-coordinator:release; do
        package=${spec%%:*}
        profile=${spec#*:}
        deb=$(CARGO_TARGET_DIR=target/cross cargo-deb --quiet --no-build --no-strip --deb-revision "$revision" \
            -p "$package" --target "$triple" --profile "$profile" -o target/debian/)
        rows+=("| $package | $arch | $(awk -v b="$(stat -c %s "$deb")" 'BEGIN { printf "%.2f", b / 1048576 }') MiB | \`$deb\` |")
    done
done
echo "| package | architecture | size | file |"
echo "|---|---|---:|---|"
printf '%s\n' "${rows[@]}"
