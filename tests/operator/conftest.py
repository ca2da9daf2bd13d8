"""Fixtures for the operator's cluster tests: one operator per module, a power domain of kwok nodes per test."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.operator.harness import OperatorThread, SimAgent, wait_until
from tests.support import cluster_bins, cluster_objects
from tests.support.controlplane import ControlPlane, KubeApi
from wattwise.crd.common import GROUP, VERSION
from wattwise.operator.runtime import OperatorConfig
from wattwise.telemetry import wire

AGENT_NAMESPACE = "wattwise-system"
AGENT_SA = "wattwise-agent"
RACK_LABEL = cluster_objects.RACK_LABEL


RBAC_FILE = cluster_bins.REPO / "deploy" / "rbac" / "operator.yaml"
PEERING_CRD_FILE = cluster_bins.REPO / "deploy" / "rbac" / "kopf-peering-crd.yaml"
OPERATOR_SA = "wattwise-operator"


@pytest.fixture(scope="module")
def operator_kubeconfig(control_plane: ControlPlane, wattwise_crds: list[str]) -> pathlib.Path:
    """Credentials of the operator's ServiceAccount under exactly the RBAC shipped in deploy/rbac/operator.yaml."""
    cluster_objects.ensure_namespace(client.CoreV1Api(control_plane.api_client), AGENT_NAMESPACE)
    control_plane.kubectl("apply", "-f", str(RBAC_FILE))
    token = control_plane.service_account_token(AGENT_NAMESPACE, OPERATOR_SA)
    return control_plane.kubeconfig_for_token(token, f"system:serviceaccount:{AGENT_NAMESPACE}:{OPERATOR_SA}")


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: pathlib.Path) -> Iterator[OperatorThread]:
    config = OperatorConfig(
        kubeconfig=str(operator_kubeconfig),
        host="127.0.0.1",
        agent_service_accounts=(f"{AGENT_NAMESPACE}/{AGENT_SA}",),
        status_interval_s=1.0,
        peering=None,
        identity=f"test-operator-{secrets.token_hex(3)}",
    )
    thread = OperatorThread(config).start()
    try:
        yield thread
    finally:
        thread.stop()


def delete_custom(kube_api: KubeApi, plural: str, name: str) -> None:
    with contextlib.suppress(ApiException):
        kube_api.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)


@dataclasses.dataclass
class Domain:
    """kwok GPU nodes sharing a rack label, an agent pod and a real agent on each, GPU pods on their GPUs."""

    rack: str
    nodes: list[str]
    agents: dict[str, SimAgent]
    tokens: dict[str, str]
    pods: dict[str, dict[int, tuple[str, str]]]


@pytest.fixture
def domain_factory(
    control_plane: ControlPlane,
    kube_api: KubeApi,
    make_gpu_node: Callable[..., str],
    k8s_cleanup: cluster_objects.Cleanup,
    operator: OperatorThread,
    tmp_path: pathlib.Path,
) -> Iterator[Callable[..., Domain]]:
    started: list[SimAgent] = []

    def make(
        nodes: int = 2,
        gpus: int = 4,
        pods: Callable[[str], list[tuple[str, dict[str, str], list[int]]]] | None = None,
        start_agents: bool = True,
    ) -> Domain:
        rack = f"rack-{secrets.token_hex(3)}"
        names = [make_gpu_node(f"op-{rack}-{i}", gpus, rack=rack) for i in range(nodes)]
        cluster_objects.ensure_namespace(kube_api.core, AGENT_NAMESPACE)
        domain = Domain(rack, names, {}, {}, {})
        for seed, node in enumerate(names):
            agent_pod = f"agent-{node}"
            k8s_cleanup.add(kube_api.core.create_namespaced_pod(AGENT_NAMESPACE, agent_pod_manifest(agent_pod, node)))
            token = control_plane.service_account_token(
                AGENT_NAMESPACE, AGENT_SA, audiences=(wire.TOKEN_AUDIENCE,), bound_pod=agent_pod
            )
            domain.tokens[node] = token
            token_file = tmp_path / f"{node}.token"
            token_file.write_text(token + "\n")
            by_index: dict[int, tuple[str, str]] = {}
            for pod_name, pod_annotations, indices in pods(node) if pods else []:
                manifest = gpu_pod_manifest(pod_name, node, len(indices), pod_annotations)
                k8s_cleanup.add(kube_api.core.create_namespaced_pod("default", manifest))
                by_index.update({i: ("default", pod_name) for i in indices})
            domain.pods[node] = by_index
            agent = SimAgent(node, operator.url, token_file, gpus=gpus, seed=100 + seed, pods=by_index)
            domain.agents[node] = agent
            if start_agents:
                started.append(agent.start())
        # The operator must know the nodes before it accepts their reports.
        wait_until(lambda: operator.call(lambda op: all(n in op.state.nodes for n in names)), "nodes in state")
        return domain

    yield make
    for agent in started:
        agent.stop()


def agent_pod_manifest(name: str, node: str) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": AGENT_NAMESPACE, "labels": {"app": "wattwise-agent"}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": AGENT_SA,
            "containers": [{"name": "agent", "image": "wattwise:test"}],
        },
    }


def gpu_pod_manifest(name: str, node: str, gpus: int, annotations: dict[str, str]) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "main",
                    "image": "vllm:test",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def budget_manifest(name: str, rack: str, cap: float, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PowerBudget",
        "metadata": {"name": name},
        "spec": {"capWatts": cap, "nodeSelector": {"matchLabels": {RACK_LABEL: rack}}, **spec},
    }


def class_manifest(name: str, tier: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkloadClass",
        "metadata": {"name": name},
        "spec": {"tier": tier, **spec},
    }
