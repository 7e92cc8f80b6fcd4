#!/usr/bin/env bash
# Installs what sealvol needs on a fresh Debian machine. Idempotent. Needs root.
#
#   scripts/setup.sh            what building and running needs (the README's run command)
#   scripts/setup.sh --test     and what the tests need too (the README's test command, CI)
#   scripts/setup.sh --bench    and what the benchmarks compare against (fio, gocryptfs, securefs)
#                               and dmsetup for bench-slowdisk.sh's dm-delay
set -euo pipefail

mode=${1:-run}
case $mode in
run | --run) mode=run ;;
--test) mode=test ;;
--bench) mode=bench ;;
*) echo "usage: scripts/setup.sh [--test | --bench]" >&2; exit 2 ;;
esac

# Building (bindgen needs libclang; RocksDB links against Debian's library) and running (FUSE,
# the Docker engine the driver registers with).
need=(fuse3 libfuse3-dev libclang-dev librocksdb-dev pkg-config git ca-certificates curl docker.io)
# The tests: xattr tools, sqlite, setcap, Compose and a busybox for the test images; Debian's
# age, which restores a tar.age export with GNU tar and nothing else.
[ "$mode" = test ] && need+=(attr libcap2-bin sqlite3 python3 tar age coreutils util-linux docker-compose busybox-static)
# The benchmarks' peers and load generator, and dmsetup for the slow disk (bench-slowdisk.sh).
[ "$mode" = bench ] && need+=(fio gocryptfs securefs python3 busybox-static dmsetup)

missing=()
for p in "${need[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Containers run as any user: let every user of a FUSE mount in (sealvol mounts with
# allow_other and default_permissions, so the kernel still checks modes).
if [ -f /etc/fuse.conf ] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
    echo user_allow_other >> /etc/fuse.conf
fi

# cargo-deny checks licenses and sources in the test command; running does not need it.
if [ "$mode" = test ] && ! command -v cargo-deny >/dev/null 2>&1; then
    echo "setup: installing cargo-deny (a few minutes, once)"
    cargo install cargo-deny --locked --quiet
fi
# The S3 export tests run a real S3-compatible server, s3s-fs (0.14.1: later versions need a
# newer rustc than the project's).
if [ "$mode" = test ] && ! s3s-fs --version >/dev/null 2>&1; then
    echo "setup: installing s3s-fs (a few minutes, once)"
    cargo install --locked s3s-fs@0.14.1 --features binary --quiet
fi
echo "setup: done ($mode)"
