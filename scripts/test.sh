#!/usr/bin/env bash
# Every test: installs what the tests need that cargo does not fetch (Debian's Chromium, for
# the dashboard's browser test, skipped when FERRY_CHROMIUM names one already; Debian's
# PostgreSQL server and SeaweedFS, which the store's tests start servers of), then runs the
# whole workspace's tests, end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FERRY_CHROMIUM:-}" ]; then
    scripts/install-chromium.sh
fi
scripts/install-postgres.sh >/dev/null
scripts/install-seaweedfs.sh >/dev/null
cargo test --workspace --all-targets "$@"
