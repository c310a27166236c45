#!/usr/bin/env bash
# A chaos campaign on a lab of its own (nodes as processes beside their FRR, two controller
# replicas): storms of overlapping faults and changes, each followed by a quiet period, with
# ferrolb's promises checked all along (see e2e/src/chaos/mod.rs). Needs root.
#
#   hack/chaos.sh [--nodes] [--minutes N] [--seed S]
#
# With --nodes, the campaign runs on real nodes instead (two kubelets with containerd, the
# chart as shipped, an FRR ToR, a client sending requests to two Services all along; see
# e2e/src/chaos/nodes.rs): faults of FRR's daemons, the speakers, the pods, node 2's port,
# the kubelets, kube-apiserver and etcd; it prints the requests that failed and the longest
# window of failures.
#
# N defaults to 5; S to the current time. Every fault, change and violation is printed as it
# happens; the summary ends with the seed to replay and `BENCH chaos_violations` and
# `BENCH chaos_reconverge_max_ms`. Exits 1 when a promise was broken. Refuses while a lab is
# up (the namespaces are the lab's). FERROLB_KEEP=1 keeps the logs in /run/ferrolb-chaos (on
# nodes, they also stay after a broken promise).
# A lab storm that takes over 5 s to agree, or never does, keeps the routers' and nodes' state
# and the processes' logs since it began in /run/ferrolb-chaos-diagnosis/storm-N.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "chaos: needs root (it creates network namespaces)" >&2
  exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
hack/deps.sh
cargo build --release -q -p ferrolb -p ferrolb-e2e
FERROLB_K8S_DIR="$(hack/k8s.sh build)"
FERROLB_FRR_ROOT="$(hack/rootfs.sh build)"
export FERROLB_K8S_DIR FERROLB_FRR_ROOT
if [[ " $* " == *" --nodes "* ]]; then
  FERROLB_CONTAINERD_DIR="$(hack/k8s.sh build-node)"
  export FERROLB_CONTAINERD_DIR
fi
export FERROLB_BIN="$CARGO_TARGET_DIR/release/ferrolb"
exec "$CARGO_TARGET_DIR/release/ferrolb-chaos" --dir "${FERROLB_CHAOS_DIR:-/run/ferrolb-chaos}" "$@"
