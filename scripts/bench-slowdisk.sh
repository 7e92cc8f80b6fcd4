#!/usr/bin/env bash
# scripts/bench-fs.sh on a slow disk: every filesystem's backing store (sealvol's store, the
# peers' cipher directories, ext4's directory) on an ext4 filesystem whose device adds latency to
# every I/O, so the figures show what each filesystem costs when the disk, not the CPU, is the
# limit. Needs root, losetup and mkfs.ext4, and dmsetup for the first method below.
#
#   scripts/bench-slowdisk.sh [DIR]      (default /var/tmp/sealvol-slowdisk; on the real disk)
#   SLOW_DELAY_MS=5 SIZE=256M RUNTIME=10 scripts/bench-slowdisk.sh
#
# In DIR (emptied first: only a directory this script made, marked by .sealvol-slowdisk, or a
# new one) it makes a sparse file disk.img of SLOW_DISK_SIZE, a loop device on it (direct I/O, so
# the file's own page cache does not hide the delay), formats it ext4 and mounts it on DIR/mnt,
# then runs `scripts/bench-fs.sh DIR/mnt/bench` with the same environment (so SIZE, RAND_SIZE,
# DB_SIZE, RUNTIME, SMALL_FILES, CHUNK, IDLE_WAIT, ROUNDS and SEALVOL_BASELINE apply as there).
# On exit, Ctrl-C included, it unmounts, removes and detaches only what it made (recorded in
# DIR/state; a run killed before it could clean up is cleaned up by the next one).
#
# The latency, SLOW_METHOD [auto]:
#   delay     device-mapper dm-delay on the loop device (`0 SECTORS delay LOOP 0 SLOW_DELAY_MS`):
#             every read and write waits SLOW_DELAY_MS [5] ms, any number in flight at once.
#   throttle  when the kernel has no device-mapper (this project's build machine has none): the
#             cgroup v1 blkio throttle on the root group, SLOW_IOPS [200] reads and SLOW_IOPS
#             writes per second on the loop device. One I/O at a time then takes 1/SLOW_IOPS s
#             (5 ms at 200) like dm-delay, but concurrent I/Os share the cap rather than overlap,
#             and a large I/O counts once. The v2 equivalent (io.max) needs the io controller in
#             the unified hierarchy, which is bound to v1 there.
#   auto      delay if `dmsetup targets` lists it, else throttle.
# SLOW_DISK_SIZE [8G]: the loop file (sparse): room for every store at once plus the largest file.
set -euo pipefail
dir=$(realpath -m -- "${1:-/var/tmp/sealvol-slowdisk}")
here=$(cd "$(dirname "$0")" && pwd)
delay_ms=${SLOW_DELAY_MS:-5}
iops=${SLOW_IOPS:-200}
disk_size=${SLOW_DISK_SIZE:-8G}
method=${SLOW_METHOD:-auto}
blkio=/sys/fs/cgroup/blkio

[[ $delay_ms =~ ^[0-9]+$ ]] || { echo "bench-slowdisk: SLOW_DELAY_MS must be whole milliseconds" >&2; exit 1; }
[[ $iops =~ ^[1-9][0-9]*$ ]] || { echo "bench-slowdisk: SLOW_IOPS must be a positive number" >&2; exit 1; }
for p in losetup lsblk mkfs.ext4 mountpoint blockdev; do
    command -v $p >/dev/null || { echo "bench-slowdisk: $p is missing" >&2; exit 1; }
done
if [ "$method" = auto ]; then
    if command -v dmsetup >/dev/null && dmsetup targets 2>/dev/null | grep -q '^delay '; then
        method=delay
    else
        method=throttle
    fi
fi
case $method in
delay) dmsetup targets 2>/dev/null | grep -q '^delay ' ||
    { echo "bench-slowdisk: no dm-delay here (dmsetup targets); try SLOW_METHOD=throttle" >&2; exit 1; } ;;
throttle) [ -w $blkio/blkio.throttle.write_iops_device ] ||
    { echo "bench-slowdisk: no cgroup v1 blkio throttle at $blkio" >&2; exit 1; } ;;
*) echo "bench-slowdisk: SLOW_METHOD must be auto, delay or throttle" >&2; exit 1 ;;
esac
if [ -e "$dir" ] && [ ! -f "$dir/.sealvol-slowdisk" ]; then
    echo "bench-slowdisk: $dir exists and is not a sealvol-slowdisk scratch directory; name another" >&2
    exit 1
fi

# Undo what DIR/state records, in reverse order of making.
teardown() {
    [ -f "$dir/state" ] || return 0
    local k v loop='' dm='' thr='' i
    while IFS='=' read -r k v; do
        case $k in loop) loop=$v ;; dm) dm=$v ;; throttle) thr=$v ;; esac
    done < "$dir/state"
    if mountpoint -q "$dir/mnt"; then
        # bench-fs has unmounted its FUSE filesystems; their processes may still be closing files.
        for ((i = 0; i < 60; i++)); do
            umount "$dir/mnt" 2>/dev/null && break
            sleep 1
        done
        if mountpoint -q "$dir/mnt"; then
            echo "bench-slowdisk: $dir/mnt still busy after 60 s; detaching it lazily" >&2
            umount -l "$dir/mnt"
        fi
    fi
    if [ -n "$thr" ]; then
        echo "$thr 0" > $blkio/blkio.throttle.read_iops_device
        echo "$thr 0" > $blkio/blkio.throttle.write_iops_device
    fi
    if [ -n "$dm" ] && dmsetup info "$dm" >/dev/null 2>&1; then
        dmsetup remove --retry "$dm" || dmsetup remove --deferred "$dm"
    fi
    # Only if the loop device still serves our file (it may have been detached and reused).
    if [ -n "$loop" ] && [ "$(losetup -nO BACK-FILE "$loop" 2>/dev/null | sed 's/ *$//')" = "$dir/disk.img" ]; then
        losetup -d "$loop"
    fi
    rm -f "$dir/state" "$dir/disk.img"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
teardown
if mountpoint -q "$dir/mnt" 2>/dev/null; then
    echo "bench-slowdisk: $dir/mnt is mounted and not by a run recorded in $dir/state" >&2
    exit 1
fi
rm -rf "$dir"
mkdir -p "$dir/mnt"
touch "$dir/.sealvol-slowdisk"
: > "$dir/state"

truncate -s "$disk_size" "$dir/disk.img"
loop=$(losetup --find --show --direct-io=on "$dir/disk.img")
echo "loop=$loop" >> "$dir/state"
# Formatted before the latency is added, every inode table and the journal written now: ext4's
# lazy initialisation would otherwise write them in the background during the benchmark.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
dev=$loop
if [ "$method" = delay ]; then
    dm=sealvol-slowdisk-$$
    echo "dm=$dm" >> "$dir/state"
    dmsetup create "$dm" --table "0 $(blockdev --getsz "$loop") delay $loop 0 $delay_ms"
    dev=/dev/mapper/$dm
    what="dm-delay, $delay_ms ms per read and write"
fi
mount "$dev" "$dir/mnt"
if [ "$method" = throttle ]; then
    thr=$(lsblk -dno MAJ:MIN "$loop" | tr -d ' ')
    echo "throttle=$thr" >> "$dir/state"
    echo "$thr $iops" > $blkio/blkio.throttle.read_iops_device
    echo "$thr $iops" > $blkio/blkio.throttle.write_iops_device
    what="cgroup v1 blkio throttle, $iops read and $iops write IOPS"
fi
echo "slow disk: $dev ($what) on $dir/mnt"

"$here/bench-fs.sh" "$dir/mnt/bench"
