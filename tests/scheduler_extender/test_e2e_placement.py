"""End to end on the real control plane: kube-scheduler's `wattwise-scheduler` profile calls this extender.

The extender runs in-process (uvicorn thread) where the shipped scheduler configuration points, and reads live
state from a fake operator the test controls. Nodes are kwok GPU nodes; pods opt in with `schedulerName` and a
tier annotation and are confined to this test's nodes with a nodeSelector.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from tests.scheduler_extender.e2e_support import FakeOperator, free_port, serve
from tests.support.cluster_objects import Cleanup, ObjectRef, ensure_namespace, rest_call, wait_for
from tests.support.controlplane import ControlPlane, KubeApi, MakeGpuNode
from wattwise.live_state import BudgetView, GpuView, NodeView
from wattwise.scheduler_extender.app import create_app
from wattwise.scheduler_extender.settings import ExtenderSettings

pytestmark = pytest.mark.cluster

E2E_LABEL = "wattwise.dev/e2e-run"
H100 = "NVIDIA-H100-80GB-HBM3"


class Fleet:
    """This test's nodes, namespace, fake operator and running extender."""

    def __init__(self, kube_api: KubeApi, cleanup: Cleanup, run: str, operator: FakeOperator, app: FastAPI) -> None:
        self.api = kube_api.api_client
        self.cleanup = cleanup
        self.run = run
        self.namespace = f"e2e-{run}"
        self.operator = operator
        self.app = app

    def create_pod(self, name: str, *, tier: str, gpus: int = 1) -> str:
        container = {
            "name": "model",
            "image": "example.invalid/vllm",
            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
        }
        body = {
            "metadata": {"name": name, "annotations": {"wattwise.dev/latency-tier": tier}},
            "spec": {
                "schedulerName": "wattwise-scheduler",
                "nodeSelector": {E2E_LABEL: self.run},
                "containers": [container],
            },
        }
        self.cleanup.add(rest_call(self.api, "POST", f"/api/v1/namespaces/{self.namespace}/pods", body=body))
        return name

    def pod(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = rest_call(self.api, "GET", f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        return found

    def node_of(self, name: str) -> str | None:
        node: str | None = self.pod(name)["spec"].get("nodeName")
        return node

    def unschedulable_message(self, name: str) -> str | None:
        for condition in self.pod(name)["status"].get("conditions") or []:
            if condition["type"] == "PodScheduled" and condition["status"] == "False":
                message: str = condition.get("message", "")
                return message
        return None

    def events(self, name: str) -> list[str]:
        query = [("fieldSelector", f"involvedObject.name={name}")]
        items = rest_call(self.api, "GET", f"/api/v1/namespaces/{self.namespace}/events", query=query)["items"]
        return [f"{e.get('reason')}: {e.get('message') or e.get('note') or ''}" for e in items]

    def wait_bound(self, names: list[str], timeout: float = 60) -> dict[str, str]:
        wait_for(lambda: all(self.node_of(n) for n in names), f"pods {names} not all scheduled", timeout)
        return {n: self.node_of(n) or "" for n in names}

    def sync_operator(self) -> None:
        """The fake operator's telemetry now shows the bound pods; wait until the extender has fetched it."""
        self.operator.sync_from_cluster(self.api, self.namespace)
        expected = self.operator.state
        wait_for(lambda: self.app.state.cache.snapshot.state == expected, "extender never refreshed", 10)


def _node_view(budget: str, gpus: int) -> NodeView:
    return NodeView(
        budgets=[budget],
        gpu_product=H100,
        gpus=[GpuView(uuid=f"GPU-{i}", index=i, default_limit_w=700.0, temperature_c=55.0) for i in range(gpus)],
    )


@pytest.fixture
def make_fleet(
    control_plane: ControlPlane, kube_api: KubeApi, k8s_cleanup: Cleanup, make_gpu_node: MakeGpuNode
) -> Iterator[Any]:
    """`make_fleet({rack: (nodes, gpus_per_node, BudgetView kwargs)})` -> a Fleet with the extender serving."""
    stack: list[Any] = []

    def make(racks: dict[str, tuple[int, int, dict[str, Any]]]) -> Fleet:
        run = uuid.uuid4().hex[:6]
        namespace = f"e2e-{run}"
        ensure_namespace(kube_api.core, namespace)
        k8s_cleanup.add_ref(ObjectRef("v1", "Namespace", namespace))
        budgets, views = [], {}
        for rack, (count, gpus, fields) in racks.items():
            budgets.append(
                BudgetView(**{"name": f"{rack}-{run}", "cap_w": 20_000.0, "target_utilization": 0.9, **fields})
            )
            for i in range(count):
                node = make_gpu_node(f"{rack}-{run}-{i}", gpus=gpus, product=H100, labels={E2E_LABEL: run})
                views[node] = _node_view(f"{rack}-{run}", gpus)
        operator = FakeOperator(budgets, views)
        operator_url = stack_enter(stack, serve(operator.app, "127.0.0.1", free_port()))
        settings = ExtenderSettings(operator_url=operator_url, refresh_interval_s=0.2, reservation_ttl_s=300.0)
        app = create_app(settings)
        where = urllib.parse.urlsplit(control_plane.extender_url)
        stack_enter(stack, serve(app, where.hostname or "127.0.0.1", where.port or 80))
        wait_for(lambda: app.state.cache.snapshot is not None, "extender never fetched the live state", 10)
        return Fleet(kube_api, k8s_cleanup, run, operator, app)

    yield make
    while stack:
        stack.pop().__exit__(None, None, None)


def stack_enter(stack: list[Any], manager: Any) -> Any:
    value = manager.__enter__()
    stack.append(manager)
    return value


def test_critical_gets_headroom_tolerant_packs_the_tight_rack_and_a_misfit_waits(make_fleet: Any) -> None:
    fleet: Fleet = make_fleet(
        {
            # 500 W of guaranteed headroom: no 700 W critical GPU fits; plenty of room under 1.3 x cap for tolerant
            "tight": (2, 8, {"guaranteed_headroom_w": 500.0, "allocated_default_limit_w": 8_000.0}),
            # a small rack, 4,900 W of its 5,400 W target still guaranteed: seven critical GPUs
            "roomy": (2, 8, {"cap_w": 6_000.0, "guaranteed_headroom_w": 4_900.0}),
        }
    )
    tight, roomy = f"tight-{fleet.run}", f"roomy-{fleet.run}"

    critical = [fleet.create_pod(f"chat-{i}", tier="critical") for i in range(4)]
    placed = fleet.wait_bound(critical)
    assert all(node.startswith(roomy) for node in placed.values()), placed

    tolerant = [fleet.create_pod(f"batch-{i}", tier="tolerant") for i in range(4)]
    placed = fleet.wait_bound(tolerant)
    assert all(node.startswith(tight) for node in placed.values()), placed

    fleet.sync_operator()  # telemetry shows the pods: reservations released, headroom charged instead
    assert len(fleet.app.state.book) == 0

    misfit = fleet.create_pod("chat-big", tier="critical", gpus=4)  # 2,800 W; roomy has 2,100 W left, tight 500 W
    wait_for(lambda: fleet.unschedulable_message(misfit), "misfit pod never reported unschedulable", 30)
    message = fleet.unschedulable_message(misfit) or ""
    assert f"wattwise: PowerBudget {roomy} has 2100 W guaranteed headroom; this critical pod needs 2800 W" in message
    assert f"wattwise: PowerBudget {tight} has 500 W guaranteed headroom" in message
    wait_for(lambda: any("wattwise: PowerBudget" in e for e in fleet.events(misfit)), "no event with the reason", 30)
    assert any(e.startswith("FailedScheduling") for e in fleet.events(misfit))
    assert fleet.node_of(misfit) is None


def test_a_burst_of_50_critical_pods_does_not_overcommit_guaranteed_headroom(make_fleet: Any) -> None:
    fleet: Fleet = make_fleet(
        {
            "tight": (1, 32, {"guaranteed_headroom_w": 300.0}),
            "roomy": (2, 32, {"guaranteed_headroom_w": 7_000.0}),  # ten 700 W GPUs, 64 GPUs of capacity
        }
    )
    roomy = f"roomy-{fleet.run}"
    pods = [fleet.create_pod(f"burst-{i:02d}", tier="critical") for i in range(50)]

    def settled() -> bool:
        return all(fleet.node_of(p) or fleet.unschedulable_message(p) for p in pods)

    wait_for(settled, "the burst never settled", 120, interval=0.5)
    bound = {p: fleet.node_of(p) for p in pods if fleet.node_of(p)}
    assert len(bound) == 10, bound
    assert all(node and node.startswith(roomy) for node in bound.values())
    assert fleet.app.state.book.totals()[roomy].guaranteed_w == pytest.approx(7_000.0)

    fleet.sync_operator()  # the ten now show in telemetry and use up the headroom
    assert len(fleet.app.state.book) == 0
    late = fleet.create_pod("late", tier="critical")
    wait_for(lambda: fleet.unschedulable_message(late), "late pod never reported unschedulable", 30)
    assert sum(1 for p in pods if fleet.node_of(p)) == 10
