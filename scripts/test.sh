#!/usr/bin/env bash
# Runs every check and test of sealvol. Needs root (FUSE mounts, chown, setpriv) and what
# `scripts/setup.sh --test` installs.
set -euo pipefail
cd "$(dirname "$0")/.."

export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
if command -v cargo-deny >/dev/null 2>&1; then
    echo "== cargo deny check bans licenses sources"
    cargo deny --log-level error check bans licenses sources
else
    echo "== cargo deny: not installed (scripts/setup.sh --test installs it)" >&2
    exit 1
fi
echo "== cargo test"
# FUSE end-to-end tests each mount their own store; two at a time keep a 2-core machine busy
# without starving the mount processes.
cargo test --workspace -- --test-threads 2
echo "== docker end-to-end (scripts/test-docker.sh)"
scripts/test-docker.sh
