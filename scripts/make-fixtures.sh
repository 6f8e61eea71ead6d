#!/usr/bin/env bash
# Writes the stores this build leaves behind into tests/fixtures/NAME, for every later
# build's upgrade test to open (tests/tests/upgrade.rs). Run it once before a change to a
# stored format lands, and commit the result; never regenerate an existing fixture: it stands
# for the build that wrote it.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-}
if [ -z "$name" ]; then
    echo "usage: scripts/make-fixtures.sh NAME   (e.g. v1: the formats of the current build)" >&2
    exit 2
fi
# Builds the coordinator, agent and ferryctl it runs (the binaries module does).
cargo run -p ferry-tests --bin ferry-fixture -- --out "tests/fixtures/$name"
