#!/bin/sh
# Installs Debian's Chromium for the dashboard's browser test, if it is not there yet.
# Needs root (or sudo) and Debian's package archive; nothing else installs it by hand.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
