#!/usr/bin/env bash
# Times `ferry-coordinator backup` and `restore` of a data directory holding GIB GiB of
# chunks (default 10): a real data directory (database, keys, token hashes) made by starting
# the coordinator once, its chunk store filled with 4 MiB incompressible files (as stored
# zstd frames of model weights are). Page caches are dropped before each step when this
# runs as root, so the figures are from disk. Prints a table; asserts nothing.
# Usage: scripts/backup-figures.sh [GIB]   (work files in target/backup-figures, removed after)
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${1:-10}
work=target/backup-figures
cargo build --quiet -p ferry-coordinator --bin ferry-coordinator
bin=target/debug/ferry-coordinator
rm -rf "$work"
mkdir -p "$work"
data="$work/data"

"$bin" --data-dir "$data" --quic-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    > "$work/start.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^ready ' "$work/start.log" && break
    sleep 0.1
done
kill "$pid"
wait "$pid" || true

chunks=$((gib * 256))
for i in $(seq 1 "$chunks"); do
    name=$(printf '%064x' "$i")
    mkdir -p "$data/chunks/${name:0:2}"
    head -c 4194304 /dev/urandom > "$data/chunks/${name:0:2}/$name.zst"
done
sync

drop_caches() {
    if [ -w /proc/sys/vm/drop_caches ]; then
        sync
        echo 3 > /proc/sys/vm/drop_caches
        echo "cold"
    else
        echo "warm (not root: page cache kept)"
    fi
}

cache=$(drop_caches)
start=$(date +%s.%N)
"$bin" --data-dir "$data" backup --to "$PWD/$work/backup" > "$work/backup.log"
backup_secs=$(echo "$(date +%s.%N) - $start" | bc)

drop_caches > /dev/null
start=$(date +%s.%N)
"$bin" --data-dir "$work/restored" restore --from "$PWD/$work/backup" > "$work/restore.log"
restore_secs=$(echo "$(date +%s.%N) - $start" | bc)

bytes=$(du -sb "$work/backup" | cut -f1)
echo "| step | store | chunk files | seconds | MiB/s | page cache |"
echo "|---|---:|---:|---:|---:|---|"
for step in backup restore; do
    secs=$([ "$step" = backup ] && echo "$backup_secs" || echo "$restore_secs")
    printf '| %s | %s GiB | %s | %.1f | %.0f | %s |\n' "$step" "$gib" "$chunks" \
        "$secs" "$(echo "$bytes / 1048576 / $secs" | bc -l)" "$cache"
done
rm -rf "$work"
