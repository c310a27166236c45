#!/usr/bin/env bash
# Checks the Helm chart (hack/chart.py) in a Python venv kept outside the work tree, with
# Helm 4's engine from helm-python-sdk and kubernetes-validate (installed on first use).
#
#   hack/chart.sh [--write]     --write regenerates deploy/manifests/ferrolb.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'helm-python-sdk==0.2.2' 'kubernetes-validate==1.37.0' 'PyYAML>=6'
fi
exec "$venv/bin/python" hack/chart.py "$@"
