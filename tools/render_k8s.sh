#!/usr/bin/env bash
# Regenerates k8s/rallyrobopilot.yaml (plain manifests) from the Helm chart with default values.
#   tools/render_k8s.sh            write k8s/rallyrobopilot.yaml
#   tools/render_k8s.sh --stdout   print what would be written
# Uses $HELM, else .tools/bin/helm (tools/install_helm.sh), else helm on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM="${HELM:-}"
if [ -z "$HELM" ]; then
    if [ -x .tools/bin/helm ]; then HELM=.tools/bin/helm; else HELM=helm; fi
fi

render() {
    cat <<'HEADER'
# RallyRoboPilot evaluator fleet as plain Kubernetes manifests, for clusters without Helm.
# GENERATED from charts/rallyrobopilot with default values by tools/render_k8s.sh; do not edit
# (tests/test_deploy_k8s.py fails when this file and the chart disagree).
#
#   kubectl create namespace rallyrobopilot
#   kubectl apply -f k8s/
#
# Objects live in namespace "rallyrobopilot"; the evaluators answer on
# dns://rrp-evaluator:8000 and k8s://rallyrobopilot/rrp-evaluator.
HEADER
    "$HELM" template rrp charts/rallyrobopilot --namespace rallyrobopilot --kube-version 1.35.0 --skip-tests
}

if [ "${1:-}" = "--stdout" ]; then
    render
else
    mkdir -p k8s
    render > k8s/rallyrobopilot.yaml.tmp
    mv k8s/rallyrobopilot.yaml.tmp k8s/rallyrobopilot.yaml
    echo "wrote k8s/rallyrobopilot.yaml"
fi
