#!/usr/bin/env bash
# Runs every check and test of the repository: formatting, lints, unit, golden and CLI tests.
# Build output goes to CARGO_TARGET_DIR when set (CI keeps it outside the work tree).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
