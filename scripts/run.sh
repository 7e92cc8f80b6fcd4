#!/usr/bin/env bash
# The main job: build sealvol, create an encrypted store (once) and mount it.
#   store:      /var/lib/sealvol/demo      (override with SEALVOL_STORE)
#   key file:   /etc/sealvol/demo.key      (32 random bytes, mode 0600; SEALVOL_KEY)
#   mount:      /mnt/sealvol-demo          (SEALVOL_MNT)
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu

store=${SEALVOL_STORE:-/var/lib/sealvol/demo}
key=${SEALVOL_KEY:-/etc/sealvol/demo.key}
mnt=${SEALVOL_MNT:-/mnt/sealvol-demo}

cargo build --release --quiet -p sealvol
bin=${CARGO_TARGET_DIR:-target}/release/sealvol

if [ ! -f "$key" ]; then
    install -d -m 0700 "$(dirname "$key")"
    (umask 077; head -c 32 /dev/urandom > "$key")
    echo "run: created key file $key (keep it safe: without it the data is gone)"
fi
if [ ! -f "$store/keys.json" ]; then
    install -d -m 0700 "$(dirname "$store")"
    "$bin" init --store "$store" --keyfile "$key"
fi
mkdir -p "$mnt"
if grep -q " $mnt fuse" /proc/mounts; then
    echo "run: $mnt is already mounted"
else
    "$bin" mount --store "$store" --keyfile "$key" --log-file /var/log/sealvol-demo.log "$mnt"
fi
echo "run: files written under $mnt are stored encrypted in $store; '$bin umount $mnt' unmounts"
