#!/usr/bin/env bash
# Runs every check and test of the repository: formatting, lints, the Helm chart, unit, golden,
# CLI and e2e tests.
# Installs what it needs first (hack/deps.sh, as root) and builds the pinned Kubernetes, etcd,
# Helm and containerd (hack/k8s.sh) and the Debian 13 root file system FRR 10.3 runs from
# (hack/rootfs.sh) once per machine, and MetalLB (hack/metallb.sh) for the switch scenario. Build output goes to CARGO_TARGET_DIR when set (CI keeps it
# outside the work tree).
set -euo pipefail
cd "$(dirname "$0")/.."

hack/deps.sh
FERROLB_K8S_DIR="$(hack/k8s.sh build)"
FERROLB_CONTAINERD_DIR="$(hack/k8s.sh build-node)"
FERROLB_FRR_ROOT="$(hack/rootfs.sh build)"
FERROLB_METALLB_DIR="$(hack/metallb.sh build)"
export FERROLB_K8S_DIR FERROLB_CONTAINERD_DIR FERROLB_FRR_ROOT FERROLB_METALLB_DIR

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== Helm chart: lint, schema, renders validated, CRDs and plain manifests in sync"
hack/chart.sh
echo "== Argo CD health checks"
lua5.4 deploy/argocd/test.lua
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
