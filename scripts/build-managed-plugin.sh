#!/usr/bin/env bash
# Build sealvol as a managed (v2) Docker plugin and install it into the local engine:
#   scripts/build-managed-plugin.sh [NAME] [SEALVOL_BINARY]
# The rootfs holds the binary, the shared libraries it links (ldd), fusermount3, and the folders
# the plugin needs; config.json is scripts/managed-plugin/config.json. Key files must live in the
# host's /etc/sealvol (bound read-only into the plugin). Then:
#   docker volume create --driver NAME -o keyfile=/etc/sealvol/app.key appdata
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu
name=${1:-sealvol-managed}
bin=${2:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet -p sealvol
    bin=${CARGO_TARGET_DIR:-$(pwd)/target}/release/sealvol
fi
work=$(mktemp -d /var/tmp/sealvol-plugin-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{usr/bin,run/docker/plugins,run/sealvol,var/lib/sealvol,mnt/volumes,etc/sealvol,tmp,dev,proc,sys}
install -m 0755 "$bin" "$root/usr/bin/sealvol"
install -m 4755 "$(command -v fusermount3)" "$root/usr/bin/fusermount3"
for exe in "$bin" "$(command -v fusermount3)"; do
    ldd "$exe" | awk '/=>/ {print $3} /^[ \t]*\// {print $1}' | while read -r lib; do
        [ -f "$lib" ] || continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
echo "user_allow_other" > "$root/etc/fuse.conf"
# A unique file, so that re-creating the plugin never meets "content already exists".
date +%s%N > "$root/etc/sealvol-build-id"
cp scripts/managed-plugin/config.json "$work/config.json"
mkdir -p /var/lib/sealvol-plugin /etc/sealvol
chmod 0700 /etc/sealvol
docker plugin disable -f "$name" >/dev/null 2>&1 || true
docker plugin rm -f "$name" >/dev/null 2>&1 || true
docker plugin create "$name" "$work" >/dev/null
docker plugin enable "$name"
docker plugin ls --filter enabled=true | grep -q "$name" && echo "managed plugin $name is enabled"
