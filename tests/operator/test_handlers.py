"""What the kopf handlers do, without kopf: specs in or out of the state, conditions, Events, pods and nodes."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from wattwise.crd.common import LatencyTier
from wattwise.operator import handlers
from wattwise.operator.budget_status import EventSpec
from wattwise.operator.records import ClusterState, NodeRecord


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str, str | None]] = []

    async def event(
        self, kind: str, name: str, uid: str, event: EventSpec, *, namespace: str | None = None, api_version: str = ""
    ) -> None:
        self.posted.append((kind, name, event.reason, namespace))


def context() -> tuple[handlers.HandlerContext, Events]:
    events = Events()
    state = ClusterState()
    state.put_node(NodeRecord("n1", {"rack": "r1"}, 8))
    return handlers.HandlerContext(state, events, LatencyTier.STANDARD), events


SPEC = {"capWatts": 10_000, "nodeSelector": {"matchLabels": {"rack": "r1"}}}


async def test_valid_budget_enters_the_state_and_an_update_says_what_changed() -> None:
    ctx, events = context()
    previous = {"conditions": [{"type": "Ready", "status": "True", "reason": "Enforcing", "lastTransitionTime": "x"}]}
    patch: dict[str, Any] = {}
    await handlers.budget_changed(ctx, "rack", "u1", 1, SPEC, previous, patch)
    record = ctx.state.budgets["rack"]
    assert (record.spec.cap_watts, record.generation, record.conditions) == (10_000, 1, tuple(previous["conditions"]))
    assert patch == {} and events.posted == []  # the control loop writes a valid budget's status
    await handlers.budget_changed(ctx, "rack", "u1", 2, {**SPEC, "capWatts": 8_000, "mode": "Enforce"}, {}, patch)
    assert events.posted == [("PowerBudget", "rack", "SpecChanged", None)]
    assert ctx.state.budgets["rack"].generation == 2


async def test_invalid_budget_leaves_the_state_with_ready_false_and_a_warning() -> None:
    ctx, events = context()
    await handlers.budget_changed(ctx, "rack", "u1", 1, SPEC, {}, {})
    patch: dict[str, Any] = {}
    with pytest.raises(kopf.PermanentError, match="capWatts"):
        await handlers.budget_changed(ctx, "rack", "u1", 2, {**SPEC, "capWatts": -5}, {}, patch)
    assert "rack" not in ctx.state.budgets
    (ready,) = patch["conditions"]
    assert (ready["type"], ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "Ready",
        "False",
        "InvalidSpec",
        2,
    )
    assert events.posted == [("PowerBudget", "rack", "InvalidSpec", None)]


async def test_odd_specs_are_controlled_with_a_warning() -> None:
    ctx, events = context()
    await handlers.budget_changed(
        ctx, "elsewhere", "u1", 1, {**SPEC, "nodeSelector": {"matchLabels": {"rack": "x"}}}, {}, {}
    )
    assert "elsewhere" in ctx.state.budgets
    assert events.posted == [("PowerBudget", "elsewhere", "SpecWarning", None)]
    patch: dict[str, Any] = {}
    await handlers.class_changed(
        ctx, "chat", "u2", 3, {"tier": "critical", "expectedWattsPerGpu": 900, "ceilingWatts": 500}, {}, patch
    )
    assert ctx.state.classes["chat"].spec.tier is LatencyTier.CRITICAL
    assert (patch["observedGeneration"], patch["conditions"][0]["reason"]) == (3, "Accepted")
    assert events.posted[-1] == ("WorkloadClass", "chat", "SpecWarning", None)


async def test_gpu_pods_are_recorded_and_told_once_about_an_unknown_class() -> None:
    ctx, events = context()
    meta = {"uid": "p1", "annotations": {"wattwise.dev/workload-class": "nope"}}
    spec = {"nodeName": "n1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]}
    for _ in range(3):  # every watch event of the pod
        await handlers.pod_seen(ctx, "MODIFIED", "infer", "ml", meta, spec, {"status": {"phase": "Running"}})
    pod = ctx.state.pods["ml/infer"]
    assert (pod.node, pod.gpus, pod.workload_class) == ("n1", 2, "nope")
    assert events.posted == [("Pod", "infer", "UnknownWorkloadClass", "ml")]
    await handlers.pod_seen(ctx, "MODIFIED", "infer", "ml", meta, spec, {"status": {"phase": "Succeeded"}})
    assert "ml/infer" not in ctx.state.pods


def test_nodes_bring_labels_and_gpu_capacity() -> None:
    state = ClusterState()
    body = {"status": {"allocatable": {"nvidia.com/gpu": "4", "cpu": "96"}}}
    handlers.node_seen(state, "ADDED", "n9", {"labels": {"rack": "r2"}, "uid": "u"}, body)
    assert state.nodes["n9"] == NodeRecord("n9", {"rack": "r2"}, 4, "u")
    version = state.topology_version
    handlers.node_seen(state, "MODIFIED", "n9", {"labels": {"rack": "r2"}, "uid": "u"}, body)  # a heartbeat
    assert state.topology_version == version
    handlers.node_seen(state, "DELETED", "n9", {}, {})
    assert "n9" not in state.nodes


def test_kopf_credentials_come_from_the_client_configuration() -> None:
    from kubernetes.client import Configuration

    config = Configuration(host="https://10.0.0.1:6443", api_key={"authorization": "Bearer abc"})
    config.ssl_ca_cert = "/ca.crt"
    info = handlers.connection_info(config)
    assert (info.server, info.scheme, info.token, info.ca_path) == ("https://10.0.0.1:6443", "Bearer", "abc", "/ca.crt")
