"""One budget across ticks: conditions, Events on transitions, and when its status is worth writing. Pure.

Nothing here writes to etcd at 1 Hz. Every tick the tracker is told what the budget looked like; it answers
with the Events of that tick (transitions only: entering or leaving over-budget, floors becoming infeasible,
a node lost or back, the mode changing) and, when a write is due, the status to patch:
- at most every `interval_s` when a figure changed (watts rounded to whole watts, so noise in the last digit
  does not make a write), at least every `refresh_s` so `lastUpdateTime` shows the operator is alive;
- at once (no more often than every `min_interval_s`) when a condition changes.

Over-budget is debounced: `enter_ticks` consecutive ticks above the cap to enter, `leave_ticks` below it to
leave, so a draw hovering at the cap does not flood the object with Events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from wattwise.crd.powerbudget import BudgetMode
from wattwise.operator import conditions as cond
from wattwise.operator.above_cap import AboveCapWindow
from wattwise.policy import BudgetReport

_MODE_REASON = {BudgetMode.ENFORCE: "Enforcing", BudgetMode.RECOMMEND: "Recommending", BudgetMode.MONITOR: "Monitoring"}


@dataclasses.dataclass(frozen=True, slots=True)
class StatusCadence:
    interval_s: float = 5.0
    min_interval_s: float = 1.0
    refresh_s: float = 60.0
    window_s: float = 300.0
    enter_ticks: int = 2
    leave_ticks: int = 5


@dataclasses.dataclass(frozen=True, slots=True)
class EventSpec:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """What the control loop saw of one budget this tick."""

    report: BudgetReport
    generation: int
    nodes: Sequence[str]
    stale_nodes: Sequence[str]
    #: nodes that have never reported (a subset of stale_nodes)
    silent_nodes: Sequence[str] = ()
    #: agent-reported problems on member nodes, `node: code: message`
    issues: Sequence[str] = ()


def _names(nodes: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(nodes)[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def desired_conditions(obs: Observation, over_budget: bool) -> list[cond.Desired]:
    r = obs.report
    ready = cond.Desired(
        cond.READY,
        "True",
        _MODE_REASON[r.mode],
        f"{r.mode} mode: {len(obs.nodes)} node(s), {r.gpus} GPU(s) under the control loop",
    )
    if not r.feasible:
        over = cond.Desired(
            cond.OVER_BUDGET,
            "True",
            "FloorsInfeasible",
            f"the GPUs' floors need {r.floors_w:.0f} W of GPU power but the cap leaves {r.allowance_w:.0f} W "
            "at the target: the cap cannot be kept without going below the floors",
        )
    elif over_budget:
        over = cond.Desired(
            cond.OVER_BUDGET,
            "True",
            "AboveCap",
            f"facility draw {r.facility_draw_w:.0f} W is above the cap of {r.cap_w:.0f} W",
        )
    else:
        over = cond.Desired(
            cond.OVER_BUDGET, "False", "WithinBudget", f"facility draw {r.facility_draw_w:.0f} W of {r.cap_w:.0f} W"
        )
    if not obs.nodes:
        degraded = cond.Desired(cond.DEGRADED, "True", "NoNodesSelected", "the nodeSelector selects no node")
    elif obs.stale_nodes:
        degraded = cond.Desired(
            cond.DEGRADED,
            "True",
            "NodesNotReporting",
            f"{len(obs.stale_nodes)} of {len(obs.nodes)} node(s) without a fresh agent report "
            f"({_names(obs.stale_nodes)}); their GPUs count at their limits",
        )
    elif obs.issues:
        degraded = cond.Desired(cond.DEGRADED, "True", "AgentIssues", "; ".join(obs.issues[:5]))
    else:
        degraded = cond.Desired(cond.DEGRADED, "False", "AllNodesReporting", f"{len(obs.nodes)} node(s) reporting")
    return [ready, over, degraded]


def status_body(obs: Observation, above_cap_fraction: float, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of `.status` (camelCase, as the CRD has them), without `lastUpdateTime`."""
    r = obs.report
    return {
        "observedGeneration": obs.generation,
        "facilityDrawWatts": float(round(r.facility_draw_w)),
        "gpuDrawWatts": float(round(r.gpu_draw_w)),
        "headroomWatts": float(round(r.headroom_w)),
        "aboveCapFraction": round(above_cap_fraction, 4),
        "nodes": len(obs.nodes),
        "staleNodes": len(obs.stale_nodes),
        "gpus": r.gpus,
        "gpusLimited": r.gpus_limited,
        "tierPowerWatts": {tier.value: float(round(w)) for tier, w in r.tier_power_w.items()},
        "conditions": conditions,
    }


class BudgetTracker:
    def __init__(
        self, name: str, cadence: StatusCadence, previous_conditions: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        self.name = name
        self.cadence = cadence
        self.window = AboveCapWindow(cadence.window_s)
        self.over_budget = False
        self._streak = 0
        self._mode: BudgetMode | None = None
        self._feasible = True
        self._stale: frozenset[str] = frozenset()
        self._conditions: list[dict[str, Any]] = [dict(c) for c in previous_conditions]
        self._written: dict[str, Any] | None = None
        self._written_at: float | None = None
        self.last_body: dict[str, Any] | None = None

    def observe(self, obs: Observation, now: float, dt_s: float) -> list[EventSpec]:
        """Account one tick; the Events it causes."""
        r = obs.report
        events: list[EventSpec] = []
        self.window.add(now, dt_s, r.over_cap)
        if r.over_cap != self.over_budget:
            self._streak += 1
            if self._streak >= (self.cadence.enter_ticks if r.over_cap else self.cadence.leave_ticks):
                self.over_budget, self._streak = r.over_cap, 0
                if r.over_cap:
                    events.append(
                        EventSpec(
                            "Warning",
                            "OverBudget",
                            f"facility draw {r.facility_draw_w:.0f} W is above the cap of {r.cap_w:.0f} W "
                            f"({r.gpus_limited} GPU(s) limited)",
                        )
                    )
                else:
                    events.append(
                        EventSpec(
                            "Normal",
                            "WithinBudget",
                            f"facility draw {r.facility_draw_w:.0f} W is back under the cap of {r.cap_w:.0f} W",
                        )
                    )
        else:
            self._streak = 0
        if r.feasible != self._feasible:
            self._feasible = r.feasible
            if r.feasible:
                events.append(EventSpec("Normal", "FloorsFeasible", "the GPUs' floors fit under the cap again"))
            else:
                events.append(
                    EventSpec(
                        "Warning",
                        "FloorsInfeasible",
                        f"the GPUs' floors need {r.floors_w:.0f} W of GPU power but the cap leaves "
                        f"{r.allowance_w:.0f} W at the target",
                    )
                )
        if r.mode != self._mode:
            verb = "now controlled" if self._mode is None else f"mode changed from {self._mode} to {r.mode}:"
            events.append(
                EventSpec(
                    "Normal",
                    "ModeChanged" if self._mode is not None else "Controlling",
                    f"budget {verb} in {r.mode} mode: {len(obs.nodes)} node(s), {r.gpus} GPU(s)",
                )
            )
            self._mode = r.mode
        stale = frozenset(obs.stale_nodes)
        silent = frozenset(obs.silent_nodes)
        for node in sorted(stale - self._stale):
            if node in silent:
                events.append(
                    EventSpec(
                        "Warning",
                        "NodeNotReporting",
                        f"node {node}: no agent report yet; its GPUs count at their maximum limit",
                    )
                )
            else:
                events.append(
                    EventSpec(
                        "Warning",
                        "NodeLost",
                        f"node {node}: agent reports stopped; its GPUs count at their limits until it reports again",
                    )
                )
        for node in sorted(self._stale - stale):
            if node in obs.nodes:
                events.append(EventSpec("Normal", "NodeRecovered", f"node {node}: agent reports again"))
        self._stale = stale
        return events

    def status_due(self, obs: Observation, now: float, wall: dt.datetime) -> dict[str, Any] | None:
        """The status to patch now, or None when nothing is worth a write."""
        desired = desired_conditions(obs, self.over_budget)
        conditions = cond.merge(self._conditions, desired, obs.generation, wall)
        body = status_body(obs, self.window.fraction, conditions)
        self.last_body = body
        since = None if self._written_at is None else now - self._written_at
        c = self.cadence
        urgent = cond.changed(self._conditions, conditions) or (
            self._written is not None and self._written.get("observedGeneration") != obs.generation
        )
        if since is None:
            due = True
        elif urgent:
            due = since >= c.min_interval_s
        else:
            due = (since >= c.interval_s and body != self._written) or since >= c.refresh_s
        if not due:
            return None
        self._written, self._written_at = body, now
        self._conditions = conditions
        return {**body, "lastUpdateTime": cond.timestamp(wall)}

    def write_failed(self) -> None:
        """Forget the last write so the next tick tries again."""
        self._written_at = None
