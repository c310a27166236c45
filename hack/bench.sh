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
# On the wire, each with what it needs besides the release ferrolb binary:
#   lab          root, Debian's frr (render and apply on a lab);
#   converge     the whole lab with 10,000 Services: create/delete -> router FIB, speaker
#                memory (root, Debian's frr, the control plane from hack/k8s.sh); creating
#                the Services takes several minutes;
#   l2_failover  layer-2 failover on the lab with three speakers (root, Debian's frr, the
#                apiserver);
#   routers      routers that are not FRR on the lab: BFD failover at BIRD, and a node's restart
#                until the FRR ToR, BIRD and GoBGP hold its routes again (root, FRR, bird2,
#                gobgpd, the apiserver);
#   traffic      failure windows a client sees on real nodes with the chart as shipped (root,
#                containerd, runc, the CNI plugins, the image's root file system, Debian's frr,
#                the control plane);
#   versus       ferrolb and MetalLB (native, FRR-K8s and FRR modes) side by side on real nodes
#                with FERROLB_VERSUS_SERVICES (1,000) Services announced, and the switch from
#                MetalLB to ferrolb (root, what traffic needs, and the go command for
#                hack/metallb.sh); over an hour with the defaults, most of it MetalLB's probes;
#   load         10,000 Services, a burst of 2,000 changes, then 100 changes a second for
#                FERROLB_LOAD_MINUTES (5) on the lab (what converge needs);
#   chaos        run only when named (`hack/bench.sh chaos`): the chaos campaign for
#                FERROLB_CHAOS_MINUTES (30) on the lab (what converge needs), then for
#                FERROLB_CHAOS_NODES_MINUTES (10) on real nodes (what traffic needs).
cargo build -q --release -p ferrolb
for bench in lab converge l2_failover routers traffic versus load chaos; do
    FERROLB_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/ferrolb" \
        cargo bench -q -p ferrolb-e2e --bench "$bench" -- "$@"
done
# ferrolb's FRR apply path against frr-reload.py (root, Debian's frr); takes several minutes,
# most of it frr-reload.py removing 1,000 lines.
cargo bench -q -p ferrolb-e2e --bench frr_apply -- "$@"
# Fuzzing (cargo-fuzz and libFuzzer, a nightly toolchain or the stable one told to allow
# its flags): every input edge of operator/src/fuzzing.rs for FERROLB_FUZZ_SECONDS (600)
# each, run only when named (`hack/bench.sh fuzz`): an hour in all.
if [[ " $* " == *" fuzz "* ]]; then
    hack/fuzz.sh
fi
