#!/usr/bin/env bash
# Installs Debian's Prometheus (the server and promtool) for the test that has a real
# Prometheus scrape a coordinator and checks the shipped alert rules
# (tests/tests/prometheus.rs), if it is not there yet. The test starts its own server in a
# temporary directory; nothing here starts one. Needs root (or sudo) and Debian's archive.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    # shellcheck source=lib/cross-env.sh
    . "$(dirname "$0")/lib/cross-env.sh"
    export DEBIAN_FRONTEND=noninteractive
    apt_update >/dev/null
    as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v prometheus
