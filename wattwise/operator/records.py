"""The cluster as the operator knows it: nodes, budgets, classes, GPU pods and the latest agent reports.

One `ClusterState` per operator process, written by the kopf handlers (objects) and the ingest endpoint (reports),
read by the control loop. Everything runs on one asyncio loop, so there are no locks; the records are frozen and
replaced whole, which keeps a tick's view consistent even if a handler runs between two awaits.

`topology_version` moves whenever something that decides budget membership changes (node labels or GPU capacity,
budgets, which budgets are active), so the control loop can cache the membership between those changes. Pods and
classes do not move it: they are read afresh at every tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import PowerBudgetSpec
from wattwise.crd.workloadclass import WorkloadClassSpec
from wattwise.telemetry.wire import NodeReport


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    labels: Mapping[str, str]
    #: allocatable `nvidia.com/gpu`: how many GPUs to count for a node that has not reported yet
    gpu_capacity: int = 0
    uid: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetRecord:
    name: str
    spec: PowerBudgetSpec
    generation: int = 0
    uid: str = ""
    #: the conditions found on the object, so transition times survive an operator restart
    conditions: tuple[Mapping[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ClassRecord:
    name: str
    spec: WorkloadClassSpec
    generation: int = 0
    uid: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class PodRecord:
    """A pod that requests GPUs and what its annotations ask for (resolved against classes at every tick)."""

    namespace: str
    name: str
    node: str | None
    gpus: int
    tier: LatencyTier | None = None
    workload_class: str | None = None
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class ReportRecord:
    """The latest report of a node and when it arrived (monotonic seconds, this process's clock)."""

    report: NodeReport
    received_at: float
    #: the agent pod that sent it (from its token), for logs and the live state
    agent_pod: str | None = None


class ClusterState:
    """Mutable registry of records; see the module docstring."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.budgets: dict[str, BudgetRecord] = {}
        self.classes: dict[str, ClassRecord] = {}
        self.pods: dict[str, PodRecord] = {}
        self.reports: dict[str, ReportRecord] = {}
        #: budgets whose kopf daemon runs: the ones this replica controls (none while peering keeps it on standby)
        self.active_budgets: set[str] = set()
        self.topology_version = 0

    def snapshot(self) -> ClusterState:
        """A copy whose dicts the caller may read from another thread while this one keeps changing."""
        copy = ClusterState()
        copy.nodes, copy.budgets, copy.classes = dict(self.nodes), dict(self.budgets), dict(self.classes)
        copy.pods, copy.reports = dict(self.pods), dict(self.reports)
        copy.active_budgets = set(self.active_budgets)
        copy.topology_version = self.topology_version
        return copy

    def _bump(self) -> None:
        self.topology_version += 1

    def put_node(self, node: NodeRecord) -> None:
        old = self.nodes.get(node.name)
        self.nodes[node.name] = node
        if old is None or old.labels != node.labels or old.gpu_capacity != node.gpu_capacity:
            self._bump()

    def drop_node(self, name: str) -> None:
        if self.nodes.pop(name, None) is not None:
            self.reports.pop(name, None)
            self._bump()

    def put_budget(self, budget: BudgetRecord) -> None:
        self.budgets[budget.name] = budget
        self._bump()

    def drop_budget(self, name: str) -> None:
        self.budgets.pop(name, None)
        self.active_budgets.discard(name)
        self._bump()

    def put_class(self, klass: ClassRecord) -> None:
        self.classes[klass.name] = klass

    def drop_class(self, name: str) -> None:
        self.classes.pop(name, None)

    def put_pod(self, pod: PodRecord) -> None:
        self.pods[pod.key] = pod

    def drop_pod(self, key: str) -> None:
        self.pods.pop(key, None)

    def activate(self, budget: str) -> None:
        self.active_budgets.add(budget)
        self._bump()

    def deactivate(self, budget: str) -> None:
        self.active_budgets.discard(budget)
        self._bump()
