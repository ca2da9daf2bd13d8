"""From what the operator knows (`ClusterState`) to what the policy takes (`BudgetState`s and `GpuState`s). Pure.

Rules, each one so that missing data never looks like headroom:
- A node's report older than `stale_after_s` is stale: its GPUs keep their last limits and constraints but have no
  reading, so the policy counts them at their limit.
- A GPU the agent reports as lost or failing has no reading either.
- A node a budget selects that has never reported counts with `gpu_capacity` placeholder GPUs whose only known
  number is `unknown_gpu_w` (an H100's 700 W by default), until its agent reports.
- A GPU's tier is its pod's (the most protected one when pods share it); an idle GPU, or one whose pod the
  operator has not seen, gets the default tier. Its class gives floor, ceiling, priority and expected power.
- A fresh GPU whose limit a node envelope set carries the agent's `capped` verdict (held at its envelope cap for
  at least half the agent's fast ticks): its limit moved every 100 ms, so the mean draw cannot tell.

Budget membership (label selectors against node labels) only changes with `topology_version`, so it is cached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from wattwise.crd.common import LatencyTier
from wattwise.operator import pods as pod_rules
from wattwise.operator.records import BudgetRecord, ClassRecord, ClusterState, NodeRecord
from wattwise.policy import BudgetState, GpuLimits, GpuState
from wattwise.telemetry.wire import GpuReport, GpuStatus

UNREPORTED_PREFIX = "unreported:"


@dataclasses.dataclass(frozen=True, slots=True)
class InputSettings:
    stale_after_s: float = 3.0
    default_tier: LatencyTier = LatencyTier.STANDARD
    unknown_gpu_w: float = 700.0


@dataclasses.dataclass(frozen=True, slots=True)
class GpuMeta:
    """What the policy does not need but replies, status and the live state do."""

    uuid: str
    node: str
    index: int
    tier: LatencyTier
    workload_class: ClassRecord | None
    pod: str | None
    temperature_c: float | None
    placeholder: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    """Which nodes each budget selects, and the reverse."""

    version: int
    members: Mapping[str, tuple[str, ...]]
    node_budgets: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, version: int, budgets: Sequence[BudgetRecord], nodes: Mapping[str, NodeRecord]) -> Topology:
        members: dict[str, tuple[str, ...]] = {}
        node_budgets: dict[str, list[str]] = {name: [] for name in nodes}
        for b in sorted(budgets, key=lambda r: r.name):
            selected = tuple(sorted(n.name for n in nodes.values() if b.spec.node_selector.matches(dict(n.labels))))
            members[b.name] = selected
            for n in selected:
                node_budgets[n].append(b.name)
        return cls(version, members, {n: tuple(bs) for n, bs in node_budgets.items()})


@dataclasses.dataclass(frozen=True, slots=True)
class TickInputs:
    budgets: list[BudgetState]
    gpus: dict[str, GpuState]
    meta: dict[str, GpuMeta]
    topology: Topology
    #: member nodes without a fresh report (stale or never reported)
    stale_nodes: frozenset[str]
    #: GPUs by node, in index order (reported and placeholder)
    node_gpus: Mapping[str, tuple[str, ...]]


def _reading(g: GpuReport) -> float | None:
    if g.status is not GpuStatus.OK:
        return None
    # The energy-counter mean is exact over the interval; one instantaneous sample is not.
    return g.average_power_watts if g.average_power_watts is not None else g.power_watts


def _limits(g: GpuReport, unknown_w: float) -> GpuLimits:
    if g.limits is not None:
        return GpuLimits(g.limits.min_watts, g.limits.max_watts, g.limits.default_watts)
    known = g.enforced_limit_watts if g.enforced_limit_watts is not None else unknown_w
    return GpuLimits(known, known, known)


class InputBuilder:
    """Builds `TickInputs` every tick, keeping the topology until it changes."""

    def __init__(self, settings: InputSettings) -> None:
        self.settings = settings
        self._topology: Topology | None = None

    def topology(self, state: ClusterState, budgets: Sequence[BudgetRecord]) -> Topology:
        key = state.topology_version
        if self._topology is None or self._topology.version != key:
            self._topology = Topology.build(key, budgets, state.nodes)
        return self._topology

    def build(self, state: ClusterState, now: float) -> TickInputs:
        s = self.settings
        active = [state.budgets[n] for n in sorted(state.active_budgets) if n in state.budgets]
        topo = self.topology(state, active)
        wanted = {n for b in active for n in topo.members[b.name]}
        gpus: dict[str, GpuState] = {}
        meta: dict[str, GpuMeta] = {}
        node_gpus: dict[str, tuple[str, ...]] = {}
        stale: set[str] = set()
        classes = state.classes
        for node in sorted(wanted):
            record = state.reports.get(node)
            if record is None:
                stale.add(node)
                capacity = state.nodes[node].gpu_capacity if node in state.nodes else 0
                uuids = []
                for i in range(capacity):
                    uuid = f"{UNREPORTED_PREFIX}{node}/{i}"
                    w = s.unknown_gpu_w
                    gpus[uuid] = GpuState(uuid, node, s.default_tier, GpuLimits(w, w, w), None, None)
                    meta[uuid] = GpuMeta(uuid, node, i, s.default_tier, None, None, None, placeholder=True)
                    uuids.append(uuid)
                node_gpus[node] = tuple(uuids)
                continue
            fresh = now - record.received_at <= s.stale_after_s
            if not fresh:
                stale.add(node)
            uuids = []
            for g in record.report.gpus:
                tier, klass, pod_key = s.default_tier, None, None
                for ref in g.pods:
                    key = f"{ref.namespace}/{ref.pod}"
                    pod = state.pods.get(key)
                    if pod is None:
                        continue
                    pod_tier, pod_class = pod_rules.effective(pod, classes, s.default_tier)
                    if pod_key is None or pod_tier.rank < tier.rank:
                        tier, klass, pod_key = pod_tier, pod_class, key
                if pod_key is None and g.pods:
                    pod_key = f"{g.pods[0].namespace}/{g.pods[0].pod}"
                limits = _limits(g, s.unknown_gpu_w)
                spec = klass.spec if klass is not None else None
                power_w = _reading(g) if fresh else None
                gpus[g.uuid] = GpuState(
                    uuid=g.uuid,
                    node=node,
                    tier=tier,
                    limits=limits,
                    enforced_limit_w=g.enforced_limit_watts,
                    power_w=power_w,
                    floor_w=spec.floor.watts_for(limits.default_w) if spec is not None and spec.floor else None,
                    ceiling_w=spec.ceiling_watts if spec is not None else None,
                    priority=spec.priority if spec is not None else 0,
                    expected_w=spec.expected_watts_per_gpu if spec is not None else None,
                    capped=g.capped if power_w is not None else None,
                )
                meta[g.uuid] = GpuMeta(g.uuid, node, g.index, tier, klass, pod_key, g.temperature_celsius)
                uuids.append(g.uuid)
            node_gpus[node] = tuple(uuids)
        budget_states = [
            BudgetState.from_spec(
                b.name,
                b.spec,
                [u for n in topo.members[b.name] for u in node_gpus.get(n, ())],
                len(topo.members[b.name]),
            )
            for b in active
        ]
        return TickInputs(budget_states, gpus, meta, topo, frozenset(stale), node_gpus)
