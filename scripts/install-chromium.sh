#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test, if it is not there yet.
# Needs root (or sudo) and Debian's package archive; nothing else installs it by hand.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
# shellcheck source=lib/cross-env.sh
. "$(dirname "$0")/lib/cross-env.sh"
export DEBIAN_FRONTEND=noninteractive
apt_update >/dev/null
as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
