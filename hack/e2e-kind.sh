#!/usr/bin/env bash
# End-to-end check on a kind cluster, for machines with Docker and kind (`make e2e-kind`; not run by `make test`).
#
# Creates a kind cluster, builds the image and loads it into the nodes, installs the chart with the simulated
# GPU backend, applies a WorkloadClass and a PowerBudget in Monitor mode, and checks that the operator sees the
# agents' simulated GPUs: the budget reports a GPU draw, the extender answers, and the secondary scheduler
# places a GPU pod through it. KEEP=1 leaves the cluster up for a look.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${CLUSTER:-wattwise-e2e}"
IMAGE="${IMAGE:-wattwise:e2e}"
NAMESPACE="${NAMESPACE:-wattwise-system}"
HELM="${HELM:-helm}"
TIMEOUT="${TIMEOUT:-180s}"

need() { command -v "$1" >/dev/null 2>&1 || { echo "e2e-kind: needs $1 on PATH" >&2; exit 2; }; }
need docker; need kind; need kubectl; need "$HELM"
docker info >/dev/null 2>&1 || { echo "e2e-kind: no Docker engine answers (docker info failed)" >&2; exit 2; }

cleanup() {
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "e2e-kind: cluster $CLUSTER kept (kind delete cluster --name $CLUSTER)"
    else
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER" >/dev/null
# The scheduler image must match the cluster; the sim agents run on every node (no GPU label needed).
SERVER_VERSION="$(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
kubectl label nodes --all wattwise.dev/e2e=true --overwrite >/dev/null

step "image $IMAGE"
docker build -t "$IMAGE" "$REPO"
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "helm install (agent.backend=sim)"
"$HELM" install wattwise "$REPO/charts/wattwise" --namespace "$NAMESPACE" --create-namespace \
    --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
    --set scheduler.image.tag="${SERVER_VERSION%%-*}" \
    --set agent.backend=sim --set agent.sim.gpus=4 --set agent.podResources.enabled=false \
    --set-json 'agent.tolerations=[{"operator":"Exists"}]' \
    --wait --timeout "$TIMEOUT"
kubectl -n "$NAMESPACE" rollout status ds/wattwise-agent --timeout "$TIMEOUT"

step "WorkloadClass + PowerBudget (Monitor)"
kubectl apply -f "$REPO/examples/workloadclass-chat.yaml"
kubectl apply -f - <<'YAML'
apiVersion: wattwise.dev/v1alpha1
kind: PowerBudget
metadata:
  name: e2e
spec:
  capWatts: 20000
  nodeSelector:
    matchLabels:
      wattwise.dev/e2e: "true"
  mode: Monitor
YAML

step "the budget sees the simulated GPUs"
for _ in $(seq 1 60); do
    gpu_w="$(kubectl get pb e2e -o jsonpath='{.status.gpuDrawWatts}' 2>/dev/null || true)"
    [[ -n "$gpu_w" && "$gpu_w" != 0 ]] && break
    sleep 2
done
kubectl get pb e2e -o wide
[[ -n "${gpu_w:-}" && "$gpu_w" != 0 ]] || { echo "e2e-kind: PowerBudget e2e reports no GPU power" >&2; exit 1; }

step "a GPU pod through the secondary scheduler"
# kind nodes have no nvidia.com/gpu: give one node a fake extended resource so the pod fits.
NODE="$(kubectl get nodes -o jsonpath='{.items[0].metadata.name}')"
kubectl patch node "$NODE" --subresource=status --type=json \
    -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"4"}]'
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: e2e-chat
  namespace: default
  annotations:
    wattwise.dev/latency-tier: critical
spec:
  schedulerName: wattwise-scheduler
  tolerations: [{operator: Exists}]
  containers:
    - name: pause
      image: registry.k8s.io/pause:3.10
      resources:
        limits: {nvidia.com/gpu: "1"}
YAML
kubectl wait --for=jsonpath='{.spec.nodeName}'="$NODE" pod/e2e-chat --timeout "$TIMEOUT"
echo
echo "e2e-kind: passed (operator, agents, extender and secondary scheduler on kind $SERVER_VERSION)"
