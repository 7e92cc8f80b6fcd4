#!/usr/bin/env bash
# Run N seeds of sealvol's deterministic replication simulation (release build), from
# SIM_FIRST_SEED (default 0). Exits non-zero on the first failing seed and prints the command
# that replays it. Extra arguments go to sealvol-sim (--steps S, --fault NAME).
#   scripts/sim.sh 10000
#   SIM_FIRST_SEED=123 scripts/sim.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=${ROCKSDB_LIB_DIR:-/usr/lib/x86_64-linux-gnu}
n=${1:-1000}
shift || true
cargo build --release --quiet -p sealvol-replica --bin sealvol-sim
exec "${CARGO_TARGET_DIR:-target}/release/sealvol-sim" "$n" "$@"
