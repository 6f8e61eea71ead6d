#!/usr/bin/env bash
# Every test: installs what the tests need that cargo does not fetch (Debian's Chromium, for
# the dashboard's browser test, skipped when FERRY_CHROMIUM names one already; Debian's
# PostgreSQL server and SeaweedFS, which the store's tests start servers of; Debian's
# Prometheus, which scrapes a coordinator in a test; pytest and the Python client), then runs the whole workspace's tests, end-to-end ones included, and the
# Python client's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FERRY_CHROMIUM:-}" ]; then
    scripts/install-chromium.sh
fi
scripts/install-postgres.sh >/dev/null
scripts/install-seaweedfs.sh >/dev/null
scripts/install-prometheus.sh >/dev/null
cargo test --workspace --all-targets "$@"
# The Python client's tests, against the coordinator, ferryctl and agent built here.
tools=$(scripts/install-python-client.sh)
cargo build --workspace --bins
FERRY_BIN_DIR="$PWD/target/debug" "$tools/bin/python" -m pytest -q -p no:cacheprovider python/tests
