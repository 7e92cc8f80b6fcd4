#!/usr/bin/env bash
# Apply throughput of the replication core (docs/benchmarks.md, "Replication"): a history of
# N mixed operations (default 100,000) made on one replica, applied by a new replica into the
# memory engine and into RocksDB, ROUNDS times (default 3); min, median and max of each.
#   scripts/bench-replica.sh            # 100,000 entries, 3 rounds
#   N=20000 ROUNDS=5 scripts/bench-replica.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=${ROCKSDB_LIB_DIR:-/usr/lib/x86_64-linux-gnu}
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
cargo build --release --quiet -p sealvol-replica --bin sealvol-sim
bin="${CARGO_TARGET_DIR:-target}/release/sealvol-sim"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$ROUNDS"); do
    dir=$(mktemp -d /var/tmp/sealvol-replica-bench.XXXXXX)
    "$bin" bench "$N" "$dir/db" | tee -a "$out"
    rm -rf "$dir"
done
echo "== $N entries, $ROUNDS rounds (entries/s: min / median / max)"
for engine in memory rocksdb; do
    grep "^$engine:" "$out" | sed 's/.*= \([0-9]*\) entries\/s.*/\1/' | sort -n |
        awk -v e="$engine" '{a[NR]=$1} END {printf "%-8s %7d / %7d / %7d\n", e, a[1], a[int((NR+1)/2)], a[NR]}'
done
echo "(longest batch of 64, ms: $(grep '^rocksdb:' "$out" | sed 's/.*batch of 64 \([0-9.]*\) ms.*/\1/' | sort -n | tr '\n' ' ')into RocksDB)"
