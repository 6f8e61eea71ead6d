#!/usr/bin/env bash
# The packages under a real systemd, on a clean Debian: builds the amd64 .debs (revisions 1
# and 2, scripts/build-packages.sh), makes a minimal Debian bookworm root with debootstrap
# (once, kept in target/systemd-e2e-root), boots it with systemd-nspawn --ephemeral (the
# root stays clean) and runs scripts/lib/systemd-e2e-inside.sh there as a oneshot unit:
# dpkg -i, the coordinator's and the agent's units up as user ferry (READY=1), an install, a
# model server of another user reading it, a watchdog kill and restart, kill -9 mid-install,
# upgrade to revision 2 keeping configuration and state, purge. Prints the log; exits 0 when
# every step passed. Needs root (or sudo) and apt access to the Debian mirrors.
# Usage: scripts/systemd-e2e.sh [--no-build]
#   --no-build   use the packages already in target/debian/
set -euo pipefail
cd "$(dirname "$0")/.."

build=yes
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --no-build) build=no ;;
        *) echo "systemd-e2e: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

source scripts/lib/cross-env.sh
apt_install systemd-container debootstrap
if [ "$build" = yes ]; then
    scripts/build-packages.sh amd64
    scripts/build-packages.sh --revision 2 amd64
fi

work=target/systemd-e2e
root=target/systemd-e2e-root
if [ ! -x "$root/usr/bin/dpkg" ] || [ ! -e "$root/lib/systemd/systemd" ] || [ ! -x "$root/usr/bin/ps" ]; then
    as_root rm -rf "$root"
    as_root debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
        bookworm "$root" http://deb.debian.org/debian
fi

rm -rf "$work/debs" "$work/out"
mkdir -p "$work/debs" "$work/out"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
for revision in 1 2; do
    for package in ferry-agent ferry-coordinator; do
        cp "target/debian/${package}_${version}-${revision}_amd64.deb" "$work/debs/"
    done
done
cp scripts/lib/systemd-e2e-inside.sh "$work/inside.sh"
cat >"$work/ferry-e2e.service" <<'UNIT'
[Unit]
Description=Ferry packages under systemd (scripts/systemd-e2e.sh)
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/e2e/inside.sh
UNIT

start=$(date +%s)
# --ephemeral: a throw-away snapshot of the root; --private-network: loopback of its own;
# --register=no --keep-unit: no machined or system bus needed on the host.
# systemd-firstboot would wait on the console for a locale and a root password: masked.
as_root timeout 1200 systemd-nspawn --quiet --ephemeral --private-network --register=no --keep-unit \
    --directory="$root" --machine=ferry-e2e --console=pipe \
    --bind-ro="$PWD/$work:/e2e" --bind="$PWD/$work/out:/e2e-out" \
    --bind-ro=/dev/null:/etc/systemd/system/systemd-firstboot.service \
    --bind-ro="$PWD/$work/ferry-e2e.service:/etc/systemd/system/ferry-e2e.service" \
    --boot -- systemd.wants=ferry-e2e.service </dev/null >"$work/console.log" 2>&1 || true
echo "== inside the container ($(( $(date +%s) - start )) s)"
cat "$work/out/log" 2>/dev/null || echo "(no log: see $work/console.log)"
result=$(cat "$work/out/result" 2>/dev/null || echo "fail: the container did not run the test (see $work/console.log)")
echo "== result: $result"
[ "$result" = pass ] || { echo "journal of the units: $work/out/journal"; exit 1; }
