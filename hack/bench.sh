#!/usr/bin/env bash
# Runs the named benchmarks (all when none is named) in release mode. Each prints lines of
# the form `BENCH <name> <value> <unit>`; the names and goals are listed in the README.
# Every bench binary skips names that are not its own.
#
#   hack/bench.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
for bench in render alloc; do
    cargo bench -q -p ferrolb --bench "$bench" -- "$@"
done
