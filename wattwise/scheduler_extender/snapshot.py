"""An immutable, request-ready index of one live-state document, built once per refresh, not per request."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from wattwise.live_state import BudgetView, LiveState
from wattwise.scheduler_extender.pod_power import nameplate_for_product


@dataclasses.dataclass(frozen=True, slots=True)
class NodeFacts:
    budgets: tuple[str, ...]
    #: GPU nameplate (default power limit) from telemetry, else from the product name, else None.
    nameplate_w: float | None
    max_temperature_c: float | None
    thermal_threshold_c: float | None
    #: (budgets, nameplate) when the nameplate is known: nodes sharing it get one verdict per request.
    group: tuple[tuple[str, ...], float] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    state: LiveState
    #: Monotonic clock reading when the extender received the document (its age decides staleness).
    fetched_at: float
    budgets: Mapping[str, BudgetView]
    nodes: Mapping[str, NodeFacts]
    pods: frozenset[str]

    @classmethod
    def from_state(cls, state: LiveState, fetched_at: float) -> Snapshot:
        nodes = {}
        groups: dict[tuple[tuple[str, ...], float], tuple[tuple[str, ...], float]] = {}
        for name, view in state.nodes.items():
            budgets = tuple(view.budgets)
            nameplate = view.default_limit_w or nameplate_for_product(view.gpu_product)
            group = groups.setdefault((budgets, nameplate), (budgets, nameplate)) if nameplate else None
            nodes[name] = NodeFacts(
                budgets=budgets,
                nameplate_w=nameplate,
                # An old reading neither rejects a node nor vouches for it being cool.
                max_temperature_c=None if view.stale else view.max_temperature_c,
                thermal_threshold_c=view.thermal_threshold_c,
                group=group,
            )
        return cls(
            state=state,
            fetched_at=fetched_at,
            budgets={b.name: b for b in state.budgets},
            nodes=nodes,
            pods=frozenset(state.pods()),
        )

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)
