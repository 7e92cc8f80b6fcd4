#!/usr/bin/env bash
# The longest local stall on a mounted replica while remote entries are applied (issue 11,
# "Applied to a live mount"; docs/benchmarks.md, "Replication"). A replica in RocksDB is mounted
# over FUSE; a second member's history of N mixed entries (default 10,000: directories, files
# created and written, renames, chmods) is applied to it while a local loop runs on the mount,
# ROUNDS times (default 3) per loop. The loop alone, in the same run, is the reference.
#   STALL_PROBE=read: list a directory and read a file with O_DIRECT (past the kernel's caches)
#   STALL_PROBE=write: create, write, read back and close a small file
# Needs root and /dev/fuse.
#   scripts/bench-replica-mount.sh
#   N=2000 ROUNDS=1 PROBES=write scripts/bench-replica-mount.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=${ROCKSDB_LIB_DIR:-/usr/lib/x86_64-linux-gnu}
N=${N:-10000}
ROUNDS=${ROUNDS:-3}
PROBES=${PROBES:-read write}
for probe in $PROBES; do
    for r in $(seq 1 "$ROUNDS"); do
        echo "== probe $probe, round $r"
        STALL_ENTRIES=$N STALL_PROBE=$probe cargo test --release --quiet -p sealvol-fuse \
            --test replica_mount -- --ignored --nocapture local_stall 2>&1 |
            grep -E '^(probe|applied|local loop)'
    done
done
