#!/usr/bin/env bash
# The same file workloads, in one run, on a sealvol mount, on two peers (gocryptfs, and securefs
# in its lite format) and on plain ext4 (the disk itself, no FUSE), and the memory of each FUSE
# process. Prints every figure and the ratios sealvol/best peer (the better of gocryptfs and
# securefs on that row), sealvol/gocryptfs, sealvol/securefs and sealvol/ext4: higher is better
# for sealvol on every row that has a ratio. Needs root and what `scripts/setup.sh --bench`
# installs (fio, gocryptfs, securefs).
#
#   scripts/bench-fs.sh [WORKDIR]        (default /var/tmp/sealvol-bench; must be on the disk)
#   SIZE=1G RAND_SIZE=128M DB_SIZE=1G RUNTIME=20 SMALL_FILES=3000 IDLE_WAIT=20 scripts/bench-fs.sh
#
# Variables (defaults in brackets):
#   SIZE [1G]          the sequential file (seqw, seqr)
#   RAND_SIZE [128M]   the file of the 4 KiB random rows (randw, randr, overw)
#   DB_SIZE [1G]       the file of the database-like row (dbmix)
#   RUNTIME [20]       seconds of each time-based row (randw, randr, overw, dbmix)
#   SMALL_FILES [3000] files in the small-files tarball (untar, lsR, readall, rm)
#   CHUNK [128K]       sealvol's chunk size (`init --chunk-size`)
#   IDLE_WAIT [20]     seconds between a filesystem's last workload (rm) and its idle memory
#   ROUNDS [1]         runs of every workload on every filesystem
#   SEALVOL_BASELINE   an older sealvol binary to run beside this tree's build (see below)
#
# Rows, every one run on each filesystem in turn (ext4, sealvol, gocryptfs, securefs):
#   seqw    MB/s  sequential write of SIZE, 1 MiB blocks, fsync at the end, on a fresh mount
#   seqr    MB/s  sequential read of that file, cold
#   randw   IOPS  4 KiB random writes into a new RAND_SIZE file, RUNTIME s, fsync at the end
#   randr   IOPS  4 KiB random reads of that file, cold, RUNTIME s
#   overw   IOPS  4 KiB random writes into an existing RAND_SIZE file (laid out by a sequential
#                 write with fsync and made cold beforehand, untimed), RUNTIME s, fsync at the end
#   dbmix   IOPS  database-like: 4 KiB random reads and writes, 70% reads, fsync every 32 writes,
#                 in an existing DB_SIZE file (laid out and made cold as for overw), RUNTIME s;
#                 the figure is reads + writes
#   untar   s     extract the small-files tarball (SMALL_FILES files of 100 B-16 KiB) + sync,
#                 on a fresh mount
#   lsR     s     `ls -lR` of them, cold
#   readall s     read every one, cold
#   rm      s     `rm -rf` them + sync
# and the memory of the process serving each FUSE mount, from /proc/PID/status (none for ext4;
# lower is better, the ratios are peer/sealvol, so higher is still better for sealvol):
#   memw    MiB   peak resident (VmHWM) during seqw
#   memu    MiB   peak resident (VmHWM) during untar
#                 (seqw and untar start on a freshly mounted filesystem, and the peak is reset to
#                 the resident size as they start: what was resident then counts, but nothing
#                 left over from an earlier row does)
#   idle    MiB   resident (VmRSS) IDLE_WAIT s after rm, the filesystem's last workload (the
#                 process mounted before readall, which served readall and rm)
#   lck     MiB   locked (VmLck) at that moment; no ratio (locking keeps plaintext out of swap).
#                 sealvol locks with mlockall(MCL_ONFAULT): VmLck counts its locked mappings'
#                 whole size, pages never touched included, so it can exceed VmRSS
# "Cold": the page cache is dropped and every FUSE filesystem is unmounted and mounted again, so
# no plaintext cache (sealvol's, or a peer's) holds what the step reads. sealvol's mount process
# is the pid in STORE/mount.pid; a peer's is the gocryptfs or securefs process whose command line
# names its mount point.
#
# Old against new, in one run: SEALVOL_BASELINE=/path/to/old/sealvol ROUNDS=3 scripts/bench-fs.sh
# also runs every workload on a mount served by that binary (its own store), alternating which
# sealvol goes first round by round, and prints min/median/max per row for every filesystem with
# the ratios of medians (this tree's build / the baseline, / the best peer, / each peer, / ext4),
# and the load (`uptime`) before and after each round. ROUNDS alone repeats the run as well.
#
# On a slow disk (every backing store, ext4's directory included, on a device with added latency):
# scripts/bench-slowdisk.sh, which takes the same variables and runs this script.
set -euo pipefail
# An absolute WORKDIR, relative to where the script was called from: the peers' processes are
# found by their mount point, as given on their command line.
work=$(realpath -m -- "${1:-/var/tmp/sealvol-bench}")
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu

size=${SIZE:-1G}
rand_size=${RAND_SIZE:-128M}
db_size=${DB_SIZE:-1G}
runtime=${RUNTIME:-20}
nsmall=${SMALL_FILES:-3000}
chunk=${CHUNK:-128K}
idle_wait=${IDLE_WAIT:-20}
baseline=${SEALVOL_BASELINE:-}
rounds=${ROUNDS:-1}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-fs: ROUNDS must be a positive number" >&2; exit 1; }
[[ $idle_wait =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "bench-fs: IDLE_WAIT must be a number of seconds" >&2; exit 1; }
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    echo "bench-fs: SEALVOL_BASELINE=$baseline is not an executable" >&2
    exit 1
fi

for p in fio gocryptfs securefs fusermount3 python3; do
    command -v $p >/dev/null || { echo "bench-fs: $p is missing: run scripts/setup.sh --bench" >&2; exit 1; }
done
# WORKDIR is emptied first: only a directory this script made (it holds our marker) or a new one.
if [ -e "$work" ] && [ ! -f "$work/.sealvol-bench" ]; then
    echo "bench-fs: $work exists and is not a sealvol-bench scratch directory; name another" >&2
    exit 1
fi
cargo build --release --quiet -p sealvol
bin=${CARGO_TARGET_DIR:-$(pwd)/target}/release/sealvol

# The sealvol mounts: sv (this tree's build) and, with SEALVOL_BASELINE, sv0 (that binary).
svs=(sv)
[ -n "$baseline" ] && svs+=(sv0)
svbin() { if [ "$1" = sv0 ]; then echo "$baseline"; else echo "$bin"; fi; }
svmount() { "$(svbin "$1")" mount --store "$work/$1-store" --keyfile "$work/key" "$work/$1-mnt" >/dev/null; }
# The peers: gc (gocryptfs, password file) and sf (securefs, lite format, the same key file as
# sealvol). Both at their defaults otherwise.
peers=(gc sf)
peermount() {
    case $1 in
    gc) gocryptfs -q -nosyslog -passfile "$work/pass" "$work/gc-cipher" "$work/gc-mnt" ;;
    sf) securefs mount -b --log "$work/sf.log" --keyfile "$work/key" "$work/sf-cipher" "$work/sf-mnt" </dev/null >/dev/null ;;
    esac
}

# The pid of the process serving target's mount (sv, sv0, gc, sf).
fuse_pid() {
    case $1 in
    sv | sv0) head -n1 "$work/$1-store/mount.pid" ;;
    gc | sf) python3 - "$([ "$1" = gc ] && echo gocryptfs || echo securefs)" "$work/$1-mnt" <<'PY'
import os, sys
prog, mnt = sys.argv[1], sys.argv[2]
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
        state = next(l for l in open(f"/proc/{pid}/status") if l.startswith("State:"))
    except (OSError, StopIteration):
        continue
    if os.path.basename(argv[0]) == prog and mnt in argv and "Z" not in state.split()[1]:
        found.append(pid)
if len(found) != 1:
    sys.exit(f"bench-fs: {len(found)} {prog} processes serve {mnt}, expected one")
print(found[0])
PY
    ;;
    esac
}

peerumount() { # gc | sf: unmount and wait until its process has gone (it may be writing)
    local pid i
    pid=$(fuse_pid "$1")
    fusermount3 -u "$work/$1-mnt"
    for ((i = 0; i < 600; i++)); do
        [ -e "/proc/$pid" ] || return 0
        sleep 0.1
    done
    echo "bench-fs: $1's process $pid is still running 60 s after unmounting" >&2
    return 1
}

cleanup() {
    for s in "${svs[@]}"; do
        "$(svbin "$s")" umount "$work/$s-mnt" >/dev/null 2>&1 || fusermount3 -uz "$work/$s-mnt" 2>/dev/null || true
    done
    for p in "${peers[@]}"; do
        fusermount3 -u "$work/$p-mnt" 2>/dev/null || fusermount3 -uz "$work/$p-mnt" 2>/dev/null || true
    done
}
trap cleanup EXIT
# Ctrl-C (or TERM) stops the run once the current step returns (fio stops early on SIGINT and
# exits 0, which alone would let the run go on), and the EXIT trap cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM
cleanup
rm -rf "$work"
mkdir -p "$work"/{ext4,gc-mnt,gc-cipher,sf-mnt,sf-cipher}
touch "$work/.sealvol-bench"
(umask 077; head -c 32 /dev/urandom > "$work/key"; echo "bench passphrase" > "$work/pass")
for s in "${svs[@]}"; do
    mkdir -p "$work/$s-mnt"
    "$(svbin "$s")" init --store "$work/$s-store" --keyfile "$work/key" --chunk-size "$chunk" >/dev/null
    svmount "$s"
done
gocryptfs -q -init -passfile "$work/pass" "$work/gc-cipher"
securefs create --format 4 --keyfile "$work/key" "$work/sf-cipher" </dev/null >/dev/null
for p in "${peers[@]}"; do peermount "$p"; done

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
# Cold for the FUSE filesystems too: drop_caches empties the kernel's caches, not sealvol's
# plaintext cache (which a mount fills with what it just wrote: the tail of the sequential file,
# the whole random-I/O file, every small file), so every FUSE filesystem is unmounted and mounted
# again before each step that reads.
cold() { # target
    case $1 in
    sv | sv0) "$(svbin "$1")" umount "$work/$1-mnt" >/dev/null
        svmount "$1" ;;
    gc | sf) peerumount "$1"
        peermount "$1" ;;
    esac
    drop
}

fio_run() { # dir rw bs size extra... -> prints the "MB/s" or "IOPS" figure
    local dir=$1 rw=$2 bs=$3 sz=$4; shift 4
    fio --name=b --directory="$dir" --filename=bench.dat --rw="$rw" --bs="$bs" --size="$sz" \
        --ioengine=psync --numjobs=1 --output-format=json "$@" > "$work/fio.json"
    python3 - "$rw" "$work/fio.json" <<'PY'
import json, sys
rw, path = sys.argv[1], sys.argv[2]
j = json.load(open(path))["jobs"][0]
if rw == "randrw":
    print(f"{j['read']['iops'] + j['write']['iops']:.0f}")
    sys.exit()
side = j["write"] if "write" in rw else j["read"]
if rw.startswith("rand"):
    print(f"{side['iops']:.0f}")
else:
    print(f"{side['bw_bytes'] / 1e6:.1f}")
PY
}
# An existing file for overw and dbmix: written whole, synced, then cold (untimed).
layout() { # target dir size
    fio_run "$2" write 1M "$3" --end_fsync=1 >/dev/null
    cold "$1"
}

secs() {
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
    python3 -c "print(f'{$t1-$t0:.3f}')"
}

# Memory of the process serving a FUSE mount: its peak is reset as a workload starts and read
# (VmHWM) as it ends; its resident and locked sizes are read IDLE_WAIT s after the last one.
mem_reset() { [ "$1" = ext4 ] || echo 5 > "/proc/$(fuse_pid "$1")/clear_refs"; }
mem() { # target field -> MiB
    awk -v f="$2:" '$1 == f { printf "%.1f\n", $2 / 1024 }' "/proc/$(fuse_pid "$1")/status"
}

# The small-files tarball: a few thousand files of 100 B to 16 KiB in a few directories.
python3 - "$work/small-src" "$nsmall" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
for i in range(n):
    d = os.path.join(root, f"dir{i % 40:02d}", f"sub{i % 7}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i:05d}.txt"), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(100, 16384)))
PY
tar -C "$work/small-src" -cf "$work/small.tar" .

multi=
if [ -n "$baseline" ] || [ "$rounds" -gt 1 ]; then multi=1; fi
rows=(seqw seqr randw randr overw dbmix untar lsR readall rm)
memrows=(memw memu idle lck)
declare -A R
: > "$work/results"
for ((round = 1; round <= rounds; round++)); do
    # The two sealvol builds take turns going first.
    order=(ext4 sv gc sf)
    if [ -n "$baseline" ]; then
        if ((round % 2)); then order=(ext4 sv sv0 gc sf); else order=(ext4 sv0 sv gc sf); fi
    fi
    if [ -n "$multi" ]; then echo "round $round (${order[*]}), load before: $(uptime)"; fi
    for t in "${order[@]}"; do
        case $t in ext4) d=$work/ext4;; *) d=$work/$t-mnt;; esac
        # seqw and untar start on a freshly mounted filesystem: their memory peaks are theirs.
        cold "$t"
        mem_reset "$t"
        R[$t,seqw]=$(fio_run "$d" write 1M "$size" --end_fsync=1)
        [ "$t" = ext4 ] || R[$t,memw]=$(mem "$t" VmHWM)
        cold "$t"
        R[$t,seqr]=$(fio_run "$d" read 1M "$size")
        rm -f "$d/bench.dat"
        R[$t,randw]=$(fio_run "$d" randwrite 4k "$rand_size" --time_based --runtime="$runtime" --end_fsync=1)
        cold "$t"
        R[$t,randr]=$(fio_run "$d" randread 4k "$rand_size" --time_based --runtime="$runtime")
        rm -f "$d/bench.dat"
        layout "$t" "$d" "$rand_size"
        R[$t,overw]=$(fio_run "$d" randwrite 4k "$rand_size" --overwrite=1 --time_based --runtime="$runtime" --end_fsync=1)
        rm -f "$d/bench.dat"
        layout "$t" "$d" "$db_size"
        R[$t,dbmix]=$(fio_run "$d" randrw 4k "$db_size" --rwmixread=70 --fsync=32 --time_based --runtime="$runtime")
        rm -f "$d/bench.dat"
        cold "$t"
        mem_reset "$t"
        R[$t,untar]=$(secs bash -c "tar -C '$d' -xf '$work/small.tar' && sync")
        [ "$t" = ext4 ] || R[$t,memu]=$(mem "$t" VmHWM)
        cold "$t"
        R[$t,lsR]=$(secs ls -lR "$d")
        cold "$t"
        R[$t,readall]=$(secs bash -c "find '$d' -type f -exec cat {} + > /dev/null")
        R[$t,rm]=$(secs bash -c "rm -rf '$d'/dir* && sync")
        for k in "${rows[@]}"; do
            echo "$t $k $round ${R[$t,$k]}" >> "$work/results"
        done
        if [ "$t" != ext4 ]; then
            sleep "$idle_wait"
            R[$t,idle]=$(mem "$t" VmRSS)
            R[$t,lck]=$(mem "$t" VmLck)
            for k in "${memrows[@]}"; do
                echo "$t $k $round ${R[$t,$k]}" >> "$work/results"
            done
        fi
    done
    if [ -n "$multi" ]; then echo "round $round, load after: $(uptime)"; fi
done

# The tables: the last round's figures; with several rounds or a baseline, then min / median / max
# over every round with the ratios of medians.
report() { # last | all
    python3 - "$1" "$work/results" "$nsmall" "$baseline" "$rounds" <<'PY'
import statistics, sys
mode, path, nsmall, baseline, rounds = sys.argv[1:6]
vals = {}
for line in open(path):
    t, k, r, v = line.split()
    if mode == "all" or int(r) == int(rounds):
        vals.setdefault((t, k), []).append(float(v))
higher = ["seqw", "seqr", "randw", "randr", "overw", "dbmix"]  # throughput: higher is better
lower = ["untar", "lsR", "readall", "rm", "memw", "memu", "idle"]  # time, memory: lower is better
rows = higher + ["untar", "lsR", "readall", "rm", "memw", "memu", "idle", "lck"]
unit = {k: "MB/s" for k in ("seqw", "seqr")}
unit.update({k: "IOPS" for k in ("randw", "randr", "overw", "dbmix")})
unit.update({k: f"s, {nsmall} files" for k in ("untar", "lsR", "readall", "rm")})
unit.update({"memw": "MiB peak, seqw", "memu": "MiB peak, untar", "idle": "MiB idle", "lck": "MiB locked, idle"})
peers = [("gc", "gocryptfs"), ("sf", "securefs")]
names = [("sv", "sealvol")] + ([("sv0", "baseline")] if baseline else []) + peers + [("ext4", "ext4")]
def med(t, k):
    v = vals.get((t, k))
    return statistics.median(v) if v else None
def cell(t, k):
    v = vals.get((t, k))
    if not v:
        return "-"
    if mode == "last":
        return f"{v[0]:g}"
    return f"{min(v):g} / {statistics.median(v):g} / {max(v):g}"
def ratio(k, a):  # sealvol against figure a: higher is better for sealvol
    s = med("sv", k)
    if k not in higher + lower or s is None or a is None:
        return "-"
    r = (s / a if a else 0) if k in higher else (a / s if s else 0)
    return f"{r:.2f}x"
def best(k):  # the better peer's name and figure on row k
    got = [(n, med(t, k)) for t, n in peers if med(t, k) is not None]
    if not got or k not in higher + lower:
        return None, None
    pick = max if k in higher else min
    return pick(got, key=lambda p: p[1])
cols = [n for _, n in names]
extra = (["sealvol/baseline"] if baseline else []) + ["sealvol/best peer", "sealvol/gocryptfs", "sealvol/securefs", "sealvol/ext4"]
title = "workload" if mode == "last" else "workload (min / median / max)"
print(f"| {title} | " + " | ".join(cols + extra) + " |")
print("|---" * (1 + len(cols) + len(extra)) + "|")
for k in rows:
    row = [cell(t, k) for t, _ in names]
    if baseline:
        row.append(ratio(k, med("sv0", k)))
    bn, bv = best(k)
    row.append(f"{ratio(k, bv)} ({bn})" if bn else "-")
    row += [ratio(k, med(t, k)) for t, _ in peers] + [ratio(k, med("ext4", k))]
    print(f"| {k} ({unit[k]}) | " + " | ".join(row) + " |")
PY
}

echo
report last
echo
echo "ratios: higher is better for sealvol (throughput ratio, or inverse time or memory ratio);"
echo "best peer: the better of gocryptfs and securefs on that row"
if [ -n "$multi" ]; then
    echo
    echo "(the table above is the last round; over all $rounds rounds:)"
    report all
    echo
    echo "ratios of medians: higher is better for this tree's sealvol"
fi
