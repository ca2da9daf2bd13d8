"""Two replicas with kopf peering: one is active, the other stands by (503 to agents) and takes over."""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.operator.builders import report
from tests.operator.conftest import AGENT_NAMESPACE, AGENT_SA, PEERING_CRD_FILE, budget_manifest, delete_custom
from tests.operator.harness import OperatorThread, wait_until
from tests.support.controlplane import ControlPlane, KubeApi
from wattwise.operator.runtime import OperatorConfig
from wattwise.telemetry import wire

pytestmark = pytest.mark.cluster


@pytest.fixture
def peering(control_plane: ControlPlane, kube_api: KubeApi) -> Iterator[str]:
    control_plane.kubectl("apply", "-f", str(PEERING_CRD_FILE))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=30s")
    name = f"wattwise-test-{secrets.token_hex(3)}"
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    kube_api.custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body)
    yield name
    delete_custom_peering(kube_api, name)


def delete_custom_peering(kube_api: KubeApi, name: str) -> None:
    kube_api.custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)


def replica(kubeconfig: pathlib.Path, peering: str, priority: int) -> OperatorThread:
    return OperatorThread(
        OperatorConfig(
            kubeconfig=str(kubeconfig),
            host="127.0.0.1",
            agent_service_accounts=(f"{AGENT_NAMESPACE}/{AGENT_SA}",),
            peering=peering,
            peering_priority=priority,
            identity=f"replica-{priority}-{secrets.token_hex(2)}",
        )
    ).start()


def readyz(op: OperatorThread) -> int:
    return httpx.get(op.url + "/readyz", timeout=5).status_code


def test_standby_replica_refuses_agents_and_takes_over(
    operator_kubeconfig: pathlib.Path, peering: str, kube_api: KubeApi, make_gpu_node: object
) -> None:
    rack = f"rack-{secrets.token_hex(3)}"
    budget = f"op-peer-{secrets.token_hex(3)}"
    kube_api.custom.create_cluster_custom_object(
        "wattwise.dev", "v1alpha1", "powerbudgets", budget_manifest(budget, rack, 10_000)
    )
    active = replica(operator_kubeconfig, peering, priority=200)
    standby = None
    try:
        wait_until(lambda: readyz(active) == 200, "the first replica active", timeout=30)
        standby = replica(operator_kubeconfig, peering, priority=100)
        wait_until(lambda: standby.call(lambda op: op.peering is not None and op.peering.identity), "started")
        wait_until(lambda: readyz(standby) == 503, "the second replica on standby")
        answer = httpx.post(standby.url + wire.REPORT_PATH, content=report("n", []).to_json(), timeout=5)
        assert answer.status_code == 503 and "standby" in answer.json()["error"]
        assert standby.call(lambda op: op.state.active_budgets) == set()  # kopf paused its daemons
        assert active.call(lambda op: budget in op.state.active_budgets)

        active.stop()  # kopf withdraws its keep-alive on the way out
        wait_until(lambda: readyz(standby) == 200, "the standby takes over", timeout=30)
        wait_until(lambda: standby.call(lambda op: budget in op.state.active_budgets), "and controls the budget")
    finally:
        if standby is not None:
            delete_custom(kube_api, "powerbudgets", budget)  # while a replica runs, so kopf drops its finalizer
            wait_until(lambda: standby.call(lambda op: budget not in op.state.budgets), "budget gone", timeout=15)
            standby.stop()
        else:
            delete_custom(kube_api, "powerbudgets", budget)
        active.stop()
