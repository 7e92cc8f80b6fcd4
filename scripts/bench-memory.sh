#!/usr/bin/env bash
# A mount's memory (VmRSS, VmHWM, VmLck of the mount process) through a 600 MB write, idle time
# and reads, and its sequential write throughput. Needs root (drop_caches, FUSE).
#
#   scripts/bench-memory.sh [WORKDIR]               (default /var/tmp/sealvol-bench-memory)
#   SEALVOL_BASELINE=/path/to/old/sealvol ROUNDS=3 scripts/bench-memory.sh
#   MOUNT_ARGS="--memory 512M" scripts/bench-memory.sh
#
# Memory, per build: a fresh mount; 600 MB of random data written with dd (the largest VmRSS
# sampled every 0.2 s meanwhile); after fsync; after 30 s idle; the file read twice in the same
# mount (1.2 GB, caches dropped between); 30 s idle; unmounted, mounted again and read twice;
# 30 s idle; four 150 MB files written at once; 30 s idle.
# Throughput: ROUNDS times, alternating the builds, 1 GiB of random data (from tmpfs) written
# with dd bs=1M conv=fsync to a fresh store; MB/s and the mount's VmHWM, then min/median/max.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu

work=${1:-/var/tmp/sealvol-bench-memory}
baseline=${SEALVOL_BASELINE:-}
rounds=${ROUNDS:-3}
read -r -a mount_args <<<"${MOUNT_ARGS:-}"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-memory: ROUNDS must be a positive number" >&2; exit 1; }
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    echo "bench-memory: SEALVOL_BASELINE=$baseline is not an executable" >&2
    exit 1
fi
if [ -e "$work" ] && [ ! -f "$work/.sealvol-bench" ]; then
    echo "bench-memory: $work exists and is not a sealvol-bench scratch directory; name another" >&2
    exit 1
fi
cargo build --release --quiet -p sealvol
bin=${CARGO_TARGET_DIR:-$(pwd)/target}/release/sealvol
builds=(new)
[ -n "$baseline" ] && builds+=(old)
binof() { if [ "$1" = old ]; then echo "$baseline"; else echo "$bin"; fi; }

mnt=$work/mnt
cleanup() { for b in "${builds[@]}"; do "$(binof "$b")" umount "$mnt" >/dev/null 2>&1 || true; done; fusermount3 -uz "$mnt" 2>/dev/null || true; }
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work"
touch "$work/.sealvol-bench"
head -c 32 /dev/urandom >"$work/key"
chmod 600 "$work/key"
rand=/dev/shm/sealvol-bench-memory.rand
head -c $((1 << 30)) /dev/urandom >"$rand"
trap 'cleanup; rm -f "$rand"' EXIT

# fresh BUILD: a new store, mounted on $mnt; sets $pid and $b.
fresh() {
    b=$1
    rm -rf "$work/store" "$mnt"
    mkdir -p "$mnt"
    "$(binof "$b")" init --store "$work/store" --keyfile "$work/key" >/dev/null
    mount_it
}
mount_it() {
    "$(binof "$b")" mount --store "$work/store" --keyfile "$work/key" "${mount_args[@]}" "$mnt" >/dev/null
    pid=$(head -1 "$work/store/mount.pid")
}
umount_it() { "$(binof "$b")" umount "$mnt" >/dev/null; }
kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$pid/status"; }
sample() {
    printf '%-4s %-38s VmRSS %5d MiB  VmHWM %5d MiB  VmLck %8d kB\n' "$b" "$1" \
        $(($(kib VmRSS) / 1024)) $(($(kib VmHWM) / 1024)) "$(kib VmLck)"
}
# Run the command in the background, sampling VmRSS; sets $peak (MiB).
watched() {
    "$@" &
    local job=$! most=0 r
    while kill -0 "$job" 2>/dev/null; do
        r=$(kib VmRSS)
        [ "$r" -gt "$most" ] && most=$r
        sleep 0.2
    done
    wait "$job"
    peak=$((most / 1024))
}
read_twice() { cat "$mnt/big" >/dev/null; echo 3 >/proc/sys/vm/drop_caches; cat "$mnt/big" >/dev/null; }
four_writers() {
    for i in 1 2 3 4; do dd if=/dev/urandom of="$mnt/p$i" bs=1M count=150 status=none & done
    wait
}

echo "== memory (${MOUNT_ARGS:-default budget})"
for b in "${builds[@]}"; do
    fresh "$b"
    sample "fresh mount"
    watched dd if=/dev/urandom of="$mnt/big" bs=1M count=600 status=none
    sample "wrote 600 MB (max VmRSS $peak MiB)"
    sync "$mnt/big"
    sample "after fsync"
    sleep 30
    sample "30 s idle"
    watched read_twice
    sample "read 1.2 GB (max VmRSS $peak MiB)"
    sleep 30
    sample "30 s idle"
    umount_it
    echo 3 >/proc/sys/vm/drop_caches
    mount_it
    watched read_twice
    sample "remounted, read 1.2 GB (max $peak MiB)"
    sleep 30
    sample "30 s idle"
    watched four_writers
    sample "4 x 150 MB at once (max VmRSS $peak MiB)"
    sleep 30
    sample "30 s idle"
    umount_it
done

echo "== sequential write, 1 GiB, bs=1M conv=fsync, $rounds round(s)"
declare -A speeds hwms
for r in $(seq 1 "$rounds"); do
    order=("${builds[@]}")
    if [ $((r % 2)) -eq 0 ]; then mapfile -t order < <(printf "%s\n" "${builds[@]}" | tac); fi
    echo "round $r, load: $(uptime | sed 's/.*load average: //')"
    for b in "${order[@]}"; do
        fresh "$b"
        cat "$rand" >/dev/null
        secs=$(dd if="$rand" of="$mnt/big" bs=1M conv=fsync 2>&1 | sed -nE 's/.* copied, ([0-9.]+) s.*/\1/p')
        mbs=$(echo "1073.741824 / $secs" | bc -l)
        hwm=$(($(kib VmHWM) / 1024))
        umount_it
        printf '  %-4s %7.1f MB/s  VmHWM %4d MiB\n' "$b" "$mbs" "$hwm"
        speeds[$b]+="$mbs "
        hwms[$b]+="$hwm "
    done
done
stats() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {printf "min %.1f  median %.1f  max %.1f", v[1], v[int((NR+1)/2)], v[NR]}'; }
for b in "${builds[@]}"; do
    printf '%-4s MB/s: %s   VmHWM MiB: %s\n' "$b" "$(echo "${speeds[$b]}" | stats)" "$(echo "${hwms[$b]}" | stats)"
done
