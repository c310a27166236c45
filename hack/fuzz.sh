#!/usr/bin/env bash
# Fuzzes ferrolb's input edges (operator/src/fuzzing.rs; one cargo-fuzz target each in
# fuzz/fuzz_targets/) with libFuzzer and AddressSanitizer, FERROLB_FUZZ_SECONDS each (600),
# starting from the kept corpus in fuzz/corpus/<target>/ (which operator/tests/
# fuzz_corpus.rs replays on every test run). Prints `BENCH fuzz_<target>_runs N runs` and
# `BENCH fuzz_crashes N crashes`; a crashing input is left in fuzz/artifacts/<target>/.
# With FERROLB_FUZZ_KEEP=1, the inputs that reach code the kept corpus does not (new edges,
# not new hit counts, and at most 2 KiB each, so the kept corpus stays small) are merged in.
#
#   hack/fuzz.sh [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb/fuzz-target"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q --locked cargo-fuzz --version 0.13.2
# The sanitizer flags are unstable options: a nightly toolchain when there is one, else the
# stable compiler told to allow them.
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
seconds="${FERROLB_FUZZ_SECONDS:-600}"
if (($# > 0)); then
    targets=("$@")
else
    targets=()
    for source in fuzz_targets/*.rs; do
        targets+=("$(basename "$source" .rs)")
    done
fi
cargo "${toolchain[@]}" fuzz build -O
bin="$CARGO_TARGET_DIR/$(rustc -vV | awk '/^host:/ {print $2}')/release"
crashes=0
for target in "${targets[@]}"; do
    scratch="$(mktemp -d)"
    cp corpus/"$target"/* "$scratch"/
    log="$scratch.log"
    mkdir -p artifacts/"$target"
    if "$bin/$target" -artifact_prefix=artifacts/"$target"/ -max_total_time="$seconds" \
        -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 "$scratch" >"$log" 2>&1; then
        outcome=ok
    else
        outcome=crashed
        crashes=$((crashes + 1))
        grep -E 'panicked|ERROR|SUMMARY|artifact' "$log" | head -20 >&2 || true
    fi
    runs="$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)"
    echo "fuzz: $target $outcome after ${runs:-0} runs (log $log)" >&2
    echo "BENCH fuzz_${target}_runs ${runs:-0} runs"
    if [[ "${FERROLB_FUZZ_KEEP:-}" == 1 && "$outcome" == ok ]]; then
        "$bin/$target" -merge=1 -use_counters=0 -max_len=2048 corpus/"$target" "$scratch" \
            >>"$log" 2>&1 || true
    fi
    rm -rf "$scratch"
done
echo "BENCH fuzz_crashes $crashes crashes"
((crashes == 0))
