#!/usr/bin/env bash
# Runs the named benchmarks (all when none is named) in release mode. Each prints lines of
# the form `BENCH <name> <value> <unit>`; the names and goals are listed in the README.
#
#   hack/bench.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p ferrolb --bench render -- "$@"
