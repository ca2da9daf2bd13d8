"""Small builders for the operator's unit tests: reports, specs and a populated ClusterState."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import PowerBudgetSpec
from wattwise.crd.workloadclass import WorkloadClassSpec
from wattwise.operator.records import (
    BudgetRecord,
    ClassRecord,
    ClusterState,
    NodeRecord,
    PodRecord,
    ReportRecord,
)
from wattwise.telemetry import wire

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
H100 = wire.LimitConstraints(min_watts=200, max_watts=700, default_watts=700)


def gpu(
    uuid: str,
    index: int = 0,
    *,
    power: float | None = 300.0,
    limit: float | None = 700.0,
    pods: Sequence[tuple[str, str]] = (),
    status: wire.GpuStatus = wire.GpuStatus.OK,
    temperature: float | None = 50.0,
    limits: wire.LimitConstraints | None = H100,
) -> wire.GpuReport:
    return wire.GpuReport(
        uuid=uuid,
        index=index,
        status=status,
        sampled_at=T0,
        power_watts=power,
        enforced_limit_watts=limit,
        limits=limits,
        temperature_celsius=temperature,
        pods=[wire.PodRef(namespace=ns, pod=name, container="main") for ns, name in pods],
    )


def report(
    node: str, gpus: Sequence[wire.GpuReport], *, sequence: int = 1, started: dt.datetime = T0
) -> wire.NodeReport:
    return wire.NodeReport(
        node=node,
        agent=wire.AgentInfo(version="test", backend="sim", started_at=started),
        sequence=sequence,
        sent_at=T0,
        sample_interval_seconds=1.0,
        state=wire.AgentState(mode=wire.AgentMode.CONNECTED, since=T0),
        gpus=list(gpus),
    )


def budget_spec(cap: float, rack: str = "r1", **spec: Any) -> PowerBudgetSpec:
    return PowerBudgetSpec.model_validate({"capWatts": cap, "nodeSelector": {"matchLabels": {"rack": rack}}, **spec})


def class_spec(tier: str, **spec: Any) -> WorkloadClassSpec:
    return WorkloadClassSpec.model_validate({"tier": tier, **spec})


def cluster(
    nodes: dict[str, dict[str, str]],
    budgets: dict[str, PowerBudgetSpec],
    classes: dict[str, WorkloadClassSpec] | None = None,
    reports: dict[str, wire.NodeReport] | None = None,
    pods: Sequence[PodRecord] = (),
    *,
    received_at: float = 100.0,
    gpu_capacity: int = 2,
) -> ClusterState:
    state = ClusterState()
    for name, labels in nodes.items():
        state.put_node(NodeRecord(name, labels, gpu_capacity))
    for name, b in budgets.items():
        state.put_budget(BudgetRecord(name, b, 1, f"uid-{name}"))
        state.activate(name)
    for name, c in (classes or {}).items():
        state.put_class(ClassRecord(name, c, 1, f"uid-{name}"))
    for pod in pods:
        state.put_pod(pod)
    for node, r in (reports or {}).items():
        state.reports[node] = ReportRecord(r, received_at)
    return state


def pod(name: str, node: str, *, tier: LatencyTier | None = None, klass: str | None = None, gpus: int = 1) -> PodRecord:
    return PodRecord("default", name, node, gpus, tier, klass, f"uid-{name}")
