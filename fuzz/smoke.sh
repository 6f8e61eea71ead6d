#!/usr/bin/env bash
# Builds every fuzz target and runs each for FUZZ_SECONDS (default 10): CI's smoke run.
# Installs cargo-fuzz when missing. `-s none`: AddressSanitizer needs a nightly toolchain,
# which this project does not use; coverage-guided fuzzing works on stable without it.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
seconds="${FUZZ_SECONDS:-10}"
for target in $(cargo fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run -s none "$target" -- -max_total_time="$seconds" -rss_limit_mb=1024 2>&1 | grep -E "^Done|DONE|ERROR|panicked|deadly" || true
  # A crash leaves an artifact; fail loudly if one appeared.
  if compgen -G "artifacts/$target/*" >/dev/null; then
    echo "fuzz: $target found a failing input in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
