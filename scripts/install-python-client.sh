#!/usr/bin/env bash
# Installs the Python client (python/, with what its tests need: pytest, and MLflow for the
# import tests, pinned in python/tests/requirements.txt) into the tools' virtual
# environment, /opt/ferry-tools (as root) or ~/.local/share/ferry-tools (otherwise), the one
# scripts/install-seaweedfs.sh also uses; prints the environment's directory. Reinstalled on
# every run: the package is this checkout's. Needs Python 3 with venv and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    TOOLS=/opt/ferry-tools
else
    TOOLS="$HOME/.local/share/ferry-tools"
fi
[ -x "$TOOLS/bin/pip" ] || python3 -m venv "$TOOLS"
# A retry: a registry caught mid-sync fails one attempt.
for attempt in 1 2 3; do
    if "$TOOLS/bin/pip" install --quiet --disable-pip-version-check \
        -r python/tests/requirements.txt ./python >&2; then
        echo "$TOOLS"
        exit 0
    fi
    echo "pip install failed (attempt $attempt of 3)" >&2
    sleep "${FERRY_PIP_RETRY_PAUSE:-15}"
done
exit 1
