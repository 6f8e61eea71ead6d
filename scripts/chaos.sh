#!/usr/bin/env bash
# Crash loops on real processes, outside CI's time budget (about an hour on 2 cores with
# the defaults): agents killed with SIGKILL while downloading, installing and switching
# (1,000 kills), and the coordinator killed mid-rollout (100 kills), with a fixed seed.
# Prints a table: devices without a complete verified version, healthy releases rolled
# back, audit entries lost, each of which must be 0. Exit 1 when any is not.
# Flags go to the binary: scripts/chaos.sh --seed 7 --agent-kills 200 (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# --build: the agent and coordinator it kills are built first, in the same profile.
cargo run --quiet -p ferry-tests --bin ferry-chaos -- --build "$@"
