#!/usr/bin/env bash
# The same file workloads, in one run, on a sealvol mount, on gocryptfs and on plain ext4 (the
# disk itself, no FUSE). Prints every figure and the ratios sealvol/gocryptfs and sealvol/ext4
# (higher is better for sealvol on every row). Needs root and what `scripts/setup.sh --bench`
# installs (fio, gocryptfs).
#
#   scripts/bench-fs.sh [WORKDIR]        (default /var/tmp/sealvol-bench; must be on the disk)
#   SIZE=1G RAND_SIZE=128M RUNTIME=20 SMALL_FILES=3000 scripts/bench-fs.sh
#
# Old against new, in one run: SEALVOL_BASELINE=/path/to/old/sealvol ROUNDS=3 scripts/bench-fs.sh
# also runs every workload on a mount served by that binary (its own store), alternating which
# sealvol goes first round by round, and prints min/median/max per row for every filesystem with
# the ratios of medians (this tree's build / the baseline, and / gocryptfs), and the load
# (`uptime`) before and after each round. ROUNDS alone repeats the run as well.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu

work=${1:-/var/tmp/sealvol-bench}
size=${SIZE:-1G}
rand_size=${RAND_SIZE:-128M}
runtime=${RUNTIME:-20}
nsmall=${SMALL_FILES:-3000}
chunk=${CHUNK:-128K}
baseline=${SEALVOL_BASELINE:-}
rounds=${ROUNDS:-1}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-fs: ROUNDS must be a positive number" >&2; exit 1; }
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    echo "bench-fs: SEALVOL_BASELINE=$baseline is not an executable" >&2
    exit 1
fi

for p in fio gocryptfs python3; do
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

cleanup() {
    for s in "${svs[@]}"; do
        "$(svbin "$s")" umount "$work/$s-mnt" >/dev/null 2>&1 || fusermount3 -uz "$work/$s-mnt" 2>/dev/null || true
    done
    fusermount3 -u "$work/gc-mnt" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work"/{ext4,gc-mnt,gc-cipher}
touch "$work/.sealvol-bench"
(umask 077; head -c 32 /dev/urandom > "$work/key"; echo "bench passphrase" > "$work/pass")
for s in "${svs[@]}"; do
    mkdir -p "$work/$s-mnt"
    "$(svbin "$s")" init --store "$work/$s-store" --keyfile "$work/key" --chunk-size "$chunk" >/dev/null
    svmount "$s"
done
gocryptfs -q -init -passfile "$work/pass" "$work/gc-cipher"
gocryptfs -q -nosyslog -passfile "$work/pass" "$work/gc-cipher" "$work/gc-mnt"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
# Cold for the FUSE filesystems too: drop_caches empties the kernel's caches, not sealvol's
# plaintext cache (which a mount fills with what it just wrote: the tail of the sequential file,
# the whole random-I/O file, every small file), so both FUSE filesystems are unmounted and
# mounted again before each step that reads.
cold() { # target
    case $1 in
    sv | sv0) "$(svbin "$1")" umount "$work/$1-mnt" >/dev/null
        svmount "$1" ;;
    gc) fusermount3 -u "$work/gc-mnt"
        gocryptfs -q -nosyslog -passfile "$work/pass" "$work/gc-cipher" "$work/gc-mnt" ;;
    esac
    drop
}

fio_run() { # dir name rw bs size extra... -> prints "MB/s" or "IOPS" figure
    local dir=$1 rw=$2 bs=$3 sz=$4; shift 4
    fio --name=b --directory="$dir" --filename=bench.dat --rw="$rw" --bs="$bs" --size="$sz" \
        --ioengine=psync --numjobs=1 --output-format=json "$@" > "$work/fio.json"
    python3 - "$rw" "$work/fio.json" <<'PY'
import json, sys
rw, path = sys.argv[1], sys.argv[2]
j = json.load(open(path))["jobs"][0]
side = j["write"] if "write" in rw else j["read"]
if rw.startswith("rand"):
    print(f"{side['iops']:.0f}")
else:
    print(f"{side['bw_bytes'] / 1e6:.1f}")
PY
}

secs() { local t0=$(date +%s.%N); "$@" >/dev/null; local t1=$(date +%s.%N); python3 -c "print(f'{$t1-$t0:.3f}')"; }

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
declare -A R
: > "$work/results"
for ((round = 1; round <= rounds; round++)); do
    # The two sealvol builds take turns going first.
    order=(ext4 sv gc)
    if [ -n "$baseline" ]; then
        if ((round % 2)); then order=(ext4 sv sv0 gc); else order=(ext4 sv0 sv gc); fi
    fi
    if [ -n "$multi" ]; then echo "round $round (${order[*]}), load before: $(uptime)"; fi
    for t in "${order[@]}"; do
        case $t in ext4) d=$work/ext4;; sv | sv0) d=$work/$t-mnt;; gc) d=$work/gc-mnt;; esac
        R[$t,seqw]=$(fio_run "$d" write 1M "$size" --end_fsync=1)
        cold $t
        R[$t,seqr]=$(fio_run "$d" read 1M "$size")
        rm -f "$d/bench.dat"
        R[$t,randw]=$(fio_run "$d" randwrite 4k "$rand_size" --time_based --runtime="$runtime" --end_fsync=1)
        cold $t
        R[$t,randr]=$(fio_run "$d" randread 4k "$rand_size" --time_based --runtime="$runtime")
        rm -f "$d/bench.dat"
        drop
        R[$t,untar]=$(secs bash -c "tar -C '$d' -xf '$work/small.tar' && sync")
        cold $t
        R[$t,lsR]=$(secs ls -lR "$d")
        cold $t
        R[$t,readall]=$(secs bash -c "find '$d' -type f -exec cat {} + > /dev/null")
        R[$t,rm]=$(secs bash -c "rm -rf '$d'/dir* && sync")
        for k in seqw seqr randw randr untar lsR readall rm; do
            echo "$t $k $round ${R[$t,$k]}" >> "$work/results"
        done
    done
    if [ -n "$multi" ]; then echo "round $round, load after: $(uptime)"; fi
done

ratio() { python3 -c "a,b=$1,$2; print(f'{(a/b):.2f}x' if b else 'n/a')"; }
inv() { python3 -c "a,b=$1,$2; print(f'{(b/a):.2f}x' if a else 'n/a')"; }

echo
echo "| workload | sealvol | gocryptfs | ext4 | sealvol/gocryptfs | sealvol/ext4 |"
echo "|---|---|---|---|---|---|"
for k in seqw seqr randw randr; do
    unit=$([[ $k == rand* ]] && echo IOPS || echo MB/s)
    echo "| $k ($unit) | ${R[sv,$k]} | ${R[gc,$k]} | ${R[ext4,$k]} | $(ratio ${R[sv,$k]} ${R[gc,$k]}) | $(ratio ${R[sv,$k]} ${R[ext4,$k]}) |"
done
for k in untar lsR readall rm; do
    echo "| $k (s, $nsmall files) | ${R[sv,$k]} | ${R[gc,$k]} | ${R[ext4,$k]} | $(inv ${R[sv,$k]} ${R[gc,$k]}) | $(inv ${R[sv,$k]} ${R[ext4,$k]}) |"
done
echo
echo "ratios: higher is better for sealvol (throughput ratio, or inverse time ratio)"

if [ -n "$multi" ]; then
    echo
    echo "(the table above is the last round; over all $rounds rounds:)"
    python3 - "$work/results" "$nsmall" "$baseline" <<'PY'
import statistics, sys
path, nsmall, baseline = sys.argv[1], sys.argv[2], sys.argv[3]
vals = {}
for line in open(path):
    t, k, _, v = line.split()
    vals.setdefault((t, k), []).append(float(v))
names = [("sv", "sealvol")] + ([("sv0", "baseline")] if baseline else []) + [("gc", "gocryptfs"), ("ext4", "ext4")]
med = lambda t, k: statistics.median(vals[(t, k)])
def cell(t, k):
    v = vals[(t, k)]
    return f"{min(v):g} / {statistics.median(v):g} / {max(v):g}"
def ratio(k, a, b):
    x, y = med(a, k), med(b, k)
    r = (x / y if y else 0) if k in ("seqw", "seqr", "randw", "randr") else (y / x if x else 0)
    return f"{r:.2f}x"
cols = [n for _, n in names]
extra = (["sealvol/baseline"] if baseline else []) + ["sealvol/gocryptfs"]
print("| workload (min / median / max) | " + " | ".join(cols + extra) + " |")
print("|---" * (1 + len(cols) + len(extra)) + "|")
for k in ["seqw", "seqr", "randw", "randr", "untar", "lsR", "readall", "rm"]:
    unit = "IOPS" if k.startswith("rand") else "MB/s" if k.startswith("seq") else f"s, {nsmall} files"
    row = [cell(t, k) for t, _ in names]
    row += ([ratio(k, "sv", "sv0")] if baseline else []) + [ratio(k, "sv", "gc")]
    print(f"| {k} ({unit}) | " + " | ".join(row) + " |")
print()
print("ratios of medians: higher is better for this tree's sealvol")
PY
fi
