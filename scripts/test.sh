#!/usr/bin/env bash
# Every test: installs what the tests need that cargo does not fetch (Debian's Chromium, for
# the dashboard's browser test; skipped when FERRY_CHROMIUM names one already), then runs the
# whole workspace's tests, end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FERRY_CHROMIUM:-}" ]; then
    scripts/install-chromium.sh
fi
cargo test --workspace --all-targets "$@"
