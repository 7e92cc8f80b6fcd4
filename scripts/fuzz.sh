#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that reads bytes from disk or from a client
# (fuzz/src: records and log entries, the key header, sealed objects and chunks, the plugin's
# request bodies, volume table and option strings), with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Runs the targets one after another, each from the committed seeds (fuzz/seeds/TARGET) plus
# the corpus earlier runs grew (fuzz/corpus/TARGET, not committed). Exits non-zero if any
# target crashes, panics, times out or allocates past the limit; the input is left in
# fuzz/artifacts/TARGET/ (reproduce: scripts/fuzz.sh with the same target prints the command).
# Not part of scripts/test.sh (too long); the seeds run there as ordinary tests (fuzz_seeds).
#
# Only a stable toolchain is needed: cargo-fuzz's nightly flags are allowed with
# RUSTC_BOOTSTRAP=1, and no sanitizer is used (-s none; ASan needs a nightly std), so a crash
# here is a panic, an abort, a timeout or an allocation over -malloc_limit_mb.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(schema key_header sealed plugin)
fi

export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-/usr/lib/x86_64-linux-gnu}"
export RUSTC_BOOTSTRAP=1
target_dir="${SEALVOL_FUZZ_TARGET_DIR:-target/fuzz}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

echo "== cargo fuzz build (release, debug assertions, no sanitizer)"
for t in "${targets[@]}"; do
    cargo fuzz build -s none --fuzz-dir fuzz --target-dir "$target_dir" "$t"
done

# Inputs as large as the decoders meet: a key header is at most 64 KiB, records a few KiB,
# sealed chunks up to five 16 KiB segments in the seal-and-tamper mode.
max_len() {
    case "$1" in
        key_header) echo 70000 ;;
        sealed) echo 90000 ;;
        *) echo 16384 ;;
    esac
}

failed=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    echo "== fuzzing $t for ${secs}s"
    log="fuzz/artifacts/$t.log"
    # One process (-jobs/-workers unset): the machine is shared. Inputs are bounded, so any
    # single allocation over 256 MiB is a finding, as is one input taking over 10 s.
    if cargo fuzz run -s none --fuzz-dir fuzz --target-dir "$target_dir" "$t" \
        "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" 2>"$log"; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
    fi
    # The run's summary: last coverage line and final stats.
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb|new_units_added)' "$log" || true
    echo "== $t: $status (log: $log)"
    if [ "$status" = CRASH ]; then
        grep -E -A 30 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -n 60 || true
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "== crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "== no crash in: ${targets[*]}"
