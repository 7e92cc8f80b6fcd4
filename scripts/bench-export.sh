#!/usr/bin/env bash
# Export and import against restic and `tar c | age`, on the same data, in one run. Needs root
# (FUSE, drop_caches), restic and age (apt-get install restic age).
#
#   scripts/bench-export.sh [WORKDIR]          (default /var/tmp/sealvol-bench-export)
#   BIG_MIB=1024 SMALL_FILES=3000 scripts/bench-export.sh
#
# Data: BIG_MIB MiB of random data in one file plus SMALL_FILES files of 1-64 KiB, as a
# plaintext tree on the work directory's disk and copied into a sealvol store. Each timed step
# starts with caches dropped (sync; echo 3 > /proc/sys/vm/drop_caches):
#   sealvol export (native, to a directory, volume key), sealvol import of it into a new store,
#   sealvol export --format tar.age (X25519 recipient), restic backup of the plaintext tree to a
#   local repository and restic restore of it, tar c of the plaintext tree | age -r.
# Then 1 MiB inside the big file is overwritten (in the store and in the plaintext tree) and the
# incremental sealvol export and restic backup measured: seconds and bytes added to the target.
# MB/s = logical bytes of the tree / seconds (decimal MB).
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu

work=${1:-/var/tmp/sealvol-bench-export}
big_mib=${BIG_MIB:-1024}
small=${SMALL_FILES:-3000}
for t in restic age age-keygen; do
    command -v "$t" >/dev/null || { echo "bench-export: needs $t (apt-get install restic age)" >&2; exit 1; }
done
if [ -e "$work" ] && [ ! -f "$work/.sealvol-bench" ]; then
    echo "bench-export: $work exists and is not a sealvol-bench scratch directory; name another" >&2
    exit 1
fi
cargo build --release --quiet -p sealvol
bin=${CARGO_TARGET_DIR:-$(pwd)/target}/release/sealvol

mnt=$work/mnt
cleanup() { "$bin" umount "$mnt" >/dev/null 2>&1 || fusermount3 -uz "$mnt" 2>/dev/null || true; }
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work" "$mnt"
touch "$work/.sealvol-bench"
head -c 32 /dev/urandom >"$work/key"
chmod 600 "$work/key"
echo "bench-export restic password" >"$work/restic-pass"
chmod 600 "$work/restic-pass"
age-keygen -o "$work/id.txt" 2>"$work/id.pub"
recipient=$(sed 's/^Public key: //' "$work/id.pub")

echo "making the data: ${big_mib} MiB random + $small small files"
plain=$work/plain
mkdir -p "$plain/small"
head -c $((big_mib << 20)) /dev/urandom >"$plain/big"
python3 - "$plain/small" "$small" <<'EOF'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(12)
for i in range(n):
    sub = os.path.join(d, f"d{i % 50:02d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:05d}"), "wb") as f:
        f.write(os.urandom(r.randint(1024, 65536)))
EOF
logical=$(du -sb --apparent-size "$plain" | cut -f1)
"$bin" init --store "$work/store" --keyfile "$work/key" >/dev/null
"$bin" mount --store "$work/store" --keyfile "$work/key" "$mnt" >/dev/null
cp -a "$plain/." "$mnt/"
"$bin" umount "$mnt" >/dev/null

cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# run NAME CMD...: time CMD with cold caches; prints and records "NAME seconds".
declare -A secs
run() {
    local name=$1
    shift
    cold
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$work/$name.log" 2>&1
    t1=$(date +%s.%N)
    secs[$name]=$(echo "$t1 - $t0" | bc -l)
    printf '%-28s %8.2f s\n' "$name" "${secs[$name]}"
}
size() { du -sb "$1" | cut -f1; }

run "sealvol export" "$bin" export --store "$work/store" --keyfile "$work/key" "$work/exp"
run "sealvol import" "$bin" import --keyfile "$work/key" "$work/exp" --store "$work/imported"
run "sealvol export tar.age" "$bin" export --store "$work/store" --keyfile "$work/key" --format tar.age --recipient "$recipient" "$work/exp.tar.age"
export RESTIC_PASSWORD_FILE=$work/restic-pass RESTIC_REPOSITORY=$work/restic
restic init >/dev/null
run "restic backup" restic backup "$plain"
run "restic restore" restic restore latest --target "$work/restic-restored"
run "tar c | age" bash -c "tar c -C '$plain' . | age -r '$recipient' > '$work/plain.tar.age'"

# A 1 MiB change in the middle of the big file, on both sides.
change=$work/change
head -c $((1 << 20)) /dev/urandom >"$change"
half=$((big_mib / 2))
"$bin" mount --store "$work/store" --keyfile "$work/key" "$mnt" >/dev/null
dd if="$change" of="$mnt/big" bs=1M seek="$half" conv=notrunc status=none
"$bin" umount "$mnt" >/dev/null
dd if="$change" of="$plain/big" bs=1M seek="$half" conv=notrunc status=none
exp_before=$(size "$work/exp")
restic_before=$(size "$work/restic")
run "sealvol export (1 MiB chg)" "$bin" export --store "$work/store" --keyfile "$work/key" "$work/exp"
run "restic backup (1 MiB chg)" restic backup "$plain"
exp_added=$(($(size "$work/exp") - exp_before))
restic_added=$(($(size "$work/restic") - restic_before))

mbps() { echo "scale=1; $logical / ${secs[$1]} / 1000000" | bc -l; }
echo
echo "logical bytes: $logical"
printf '| step | s | MB/s | target bytes |\n|---|---|---|---|\n'
printf '| sealvol export (native) | %.2f | %s | %s |\n' "${secs[sealvol export]}" "$(mbps 'sealvol export')" "$exp_before"
printf '| sealvol import (native) | %.2f | %s | |\n' "${secs[sealvol import]}" "$(mbps 'sealvol import')"
printf '| sealvol export tar.age | %.2f | %s | %s |\n' "${secs[sealvol export tar.age]}" "$(mbps 'sealvol export tar.age')" "$(size "$work/exp.tar.age")"
printf '| restic backup | %.2f | %s | %s |\n' "${secs[restic backup]}" "$(mbps 'restic backup')" "$restic_before"
printf '| restic restore | %.2f | %s | |\n' "${secs[restic restore]}" "$(mbps 'restic restore')"
printf '| tar c \\| age | %.2f | %s | %s |\n' "${secs[tar c | age]}" "$(mbps 'tar c | age')" "$(size "$work/plain.tar.age")"
printf '| sealvol export, 1 MiB changed | %.2f | | +%s |\n' "${secs[sealvol export (1 MiB chg)]}" "$exp_added"
printf '| restic backup, 1 MiB changed | %.2f | | +%s |\n' "${secs[restic backup (1 MiB chg)]}" "$restic_added"
