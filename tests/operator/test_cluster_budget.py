"""The operator on the real control plane with real agents (sim backend) on kwok nodes.

Each test builds its own power domain (a rack label of its own) and deletes its budgets and classes while the
operator still runs, so kopf removes its finalizers.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.operator.conftest import Domain, budget_manifest, class_manifest, delete_custom
from tests.operator.harness import OperatorThread, wait_until
from tests.support.controlplane import ControlPlane, KubeApi
from wattwise.crd.common import GROUP, VERSION, LatencyTier

pytestmark = pytest.mark.cluster


@contextlib.contextmanager
def applied(kube_api: KubeApi, *objects: dict[str, Any]) -> Iterator[None]:
    made = []
    try:
        for obj in objects:
            plural = "powerbudgets" if obj["kind"] == "PowerBudget" else "workloadclasses"
            kube_api.custom.create_cluster_custom_object(GROUP, VERSION, plural, obj)
            made.append((plural, obj["metadata"]["name"]))
        yield
    finally:
        for plural, name in reversed(made):
            delete_custom(kube_api, plural, name)


def budget(kube_api: KubeApi, name: str) -> Any:
    obj: Any = kube_api.custom.get_cluster_custom_object(GROUP, VERSION, "powerbudgets", name)
    return obj


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def tiered_pods(node: str) -> list[tuple[str, dict[str, str], list[int]]]:
    """GPUs 0-1 serve a critical chat pod, GPUs 2-3 a tolerant batch pod (by class)."""
    return [
        (f"chat-{node}", {"wattwise.dev/workload-class": "op-chat"}, [0, 1]),
        (f"batch-{node}", {"wattwise.dev/workload-class": "op-batch"}, [2, 3]),
    ]


def classes() -> list[dict[str, Any]]:
    return [
        class_manifest("op-chat", "critical", expectedWattsPerGpu=600),
        class_manifest("op-batch", "tolerant", floor={"fraction": 0.3}),
    ]


def test_budget_becomes_ready_with_status(
    operator: OperatorThread, kube_api: KubeApi, domain_factory: Callable[..., Domain]
) -> None:
    domain = domain_factory(pods=tiered_pods)
    name = f"op-ready-{secrets.token_hex(3)}"
    with applied(kube_api, *classes(), budget_manifest(name, domain.rack, 20_000, mode="Monitor")):

        def ready() -> Any:
            obj = budget(kube_api, name)
            status = obj.get("status") or {}
            cond = condition(obj, "Ready")
            if cond and cond["status"] == "True" and status.get("gpus") == 8 and status.get("staleNodes") == 0:
                return obj
            return None

        obj = wait_until(ready, "budget Ready with 8 GPUs reporting", timeout=20)
        status = obj["status"]
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert status["nodes"] == 2
        assert 0 < status["gpuDrawWatts"] <= status["facilityDrawWatts"]
        assert status["headroomWatts"] == pytest.approx(20_000 - status["facilityDrawWatts"], abs=1)
        assert status["lastUpdateTime"]
        assert {c["type"] for c in status["conditions"]} == {"Ready", "OverBudget", "Degraded"}
        assert condition(obj, "OverBudget")["status"] == "False"  # type: ignore[index]
        assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]

        # Tiers come from the pods' classes, through the agents' GPU -> pod attribution.
        tiers = operator.call(
            lambda op: sorted((m.tier for m in op.controller.inputs.meta.values()), key=lambda t: t.rank)  # type: ignore[union-attr]
        )
        assert tiers == [LatencyTier.CRITICAL] * 4 + [LatencyTier.TOLERANT] * 4
        # Monitor mode: nothing enforced, so the agents' limits stay at the default.
        time.sleep(1.5)
        assert all(limit == 700.0 for a in domain.agents.values() for limit in a.limits())


def test_status_reports_a_lost_node(
    operator: OperatorThread, kube_api: KubeApi, domain_factory: Callable[..., Domain], control_plane: ControlPlane
) -> None:
    domain = domain_factory(pods=tiered_pods)
    name = f"op-lost-{secrets.token_hex(3)}"
    with applied(kube_api, *classes(), budget_manifest(name, domain.rack, 20_000)):
        wait_until(lambda: (budget(kube_api, name).get("status") or {}).get("staleNodes") == 0, "both nodes fresh")
        domain.agents[domain.nodes[1]].stop()

        def degraded() -> bool:
            cond = condition(budget(kube_api, name), "Degraded")
            return bool(cond and cond["status"] == "True" and cond["reason"] == "NodesNotReporting")

        wait_until(degraded, "Degraded=True after an agent stops", timeout=15)
        events = control_plane.kubectl(
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "name",
            "-o",
            "custom-columns=REASON:.reason",
            "--no-headers",
        ).stdout.split()
        assert "NodeLost" in events and "Controlling" in events


def event_reasons(control_plane: ControlPlane, name: str) -> list[str]:
    out = control_plane.kubectl(
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "custom-columns=REASON:.reason",
        "--no-headers",
    ).stdout
    return out.split()


def test_infeasible_cap_is_over_budget_with_events_both_ways(
    operator: OperatorThread, kube_api: KubeApi, domain_factory: Callable[..., Domain], control_plane: ControlPlane
) -> None:
    """8 GPUs whose floors need 1.6 kW of GPU power under a 1 kW cap: the floors cannot fit."""
    domain = domain_factory(pods=tiered_pods)
    name = f"op-infeasible-{secrets.token_hex(3)}"
    for agent in domain.agents.values():
        agent.set_load(1.0)
    with applied(kube_api, *classes(), budget_manifest(name, domain.rack, 1_000, mode="Enforce")):

        def over(reason: str) -> bool:
            cond = condition(budget(kube_api, name), "OverBudget")
            return bool(cond and cond["status"] == "True" and cond["reason"] == reason)

        wait_until(lambda: over("FloorsInfeasible"), "OverBudget=True/FloorsInfeasible", timeout=20)
        wait_until(lambda: {"FloorsInfeasible", "OverBudget"} <= set(event_reasons(control_plane, name)), "events")
        # Held at their floors, the GPUs still draw more than the cap allows (emergency policy HoldFloors).
        assert all(a.limits()[i] == 210.0 for a in domain.agents.values() for i in (2, 3))

        control_plane.kubectl("patch", "powerbudget", name, "--type=merge", "-p", '{"spec":{"capWatts":20000}}')

        def within() -> bool:
            cond = condition(budget(kube_api, name), "OverBudget")
            return bool(cond and cond["status"] == "False")

        wait_until(within, "OverBudget=False after the cap is raised", timeout=20)
        reasons = event_reasons(control_plane, name)
        assert {"SpecChanged", "FloorsFeasible", "WithinBudget"} <= set(reasons), reasons
