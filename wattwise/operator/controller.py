"""One control tick, without I/O: cluster state in; decision, agent replies, live state, status and Events out.

The policy decides every active budget jointly (a GPU in a rack and its row gets the lower of the two limits), so
there is one `Controller` per operator, not one per budget. The async loop (`control_loop`) calls `tick` once a
second and does the writing; the ingest endpoint reads `replies` and the state endpoint reads `live`, both
replaced whole at the end of a tick.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from wattwise.live_state import LiveState
from wattwise.operator import live as live_state
from wattwise.operator.budget_status import BudgetTracker, EventSpec, Observation, StatusCadence
from wattwise.operator.policy_inputs import InputBuilder, InputSettings, TickInputs
from wattwise.operator.records import ClusterState
from wattwise.operator.replies import all_replies
from wattwise.policy import DEFAULT_TUNING, Decision, Tuning, decide
from wattwise.telemetry.wire import GpuStatus


@dataclasses.dataclass(frozen=True, slots=True)
class ControllerSettings:
    inputs: InputSettings = dataclasses.field(default_factory=InputSettings)
    cadence: StatusCadence = dataclasses.field(default_factory=StatusCadence)
    report_interval_s: float = 1.0
    tuning: Tuning = DEFAULT_TUNING
    #: the longest tick length credited to the ramp (a stalled loop must not jump limits up on its return)
    max_dt_s: float = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectEvent:
    kind: str  # PowerBudget | WorkloadClass
    name: str
    uid: str
    event: EventSpec


@dataclasses.dataclass(frozen=True, slots=True)
class TickOutcome:
    inputs: TickInputs
    decision: Decision
    budget_status: Mapping[str, dict[str, Any]]
    class_status: Mapping[str, dict[str, Any]]
    events: list[ObjectEvent]


class Controller:
    def __init__(self, state: ClusterState, settings: ControllerSettings | None = None) -> None:
        self.state = state
        self.settings = settings or ControllerSettings()
        self.builder = InputBuilder(self.settings.inputs)
        self.decision: Decision | None = None
        self.inputs: TickInputs | None = None
        #: serialised ReportReply per node, from the last tick
        self.replies: dict[str, bytes] = {}
        self.live: LiveState | None = None
        self.trackers: dict[str, BudgetTracker] = {}
        self.ticks = 0
        self._last_tick: float | None = None
        self._class_written: dict[str, tuple[dict[str, Any], float]] = {}

    def tick(self, now: float, wall: dt.datetime) -> TickOutcome:
        s = self.settings
        dt_s = 1.0 if self._last_tick is None else min(s.max_dt_s, max(0.0, now - self._last_tick))
        self._last_tick = now
        inputs = self.builder.build(self.state, now)
        decision = decide(inputs.budgets, inputs.gpus, self.decision, dt_s, s.tuning)
        budget_status, events = self._budgets(inputs, decision, now, dt_s, wall)
        class_status = self._classes(inputs, now)
        self.replies = all_replies(
            inputs, decision, self.state.budgets, frozenset(self.state.reports), s.report_interval_s
        )
        self.live = live_state.build(
            self.state,
            inputs,
            decision,
            now=now,
            wall=wall,
            default_tier=s.inputs.default_tier,
            unknown_gpu_w=s.inputs.unknown_gpu_w,
            stale_after_s=s.inputs.stale_after_s,
        )
        self.decision, self.inputs = decision, inputs
        self.ticks += 1
        return TickOutcome(inputs, decision, budget_status, class_status, events)

    def observation(self, inputs: TickInputs, decision: Decision, name: str) -> Observation:
        members = inputs.topology.members.get(name, ())
        stale = [n for n in members if n in inputs.stale_nodes]
        issues = []
        for n in members:
            record = self.state.reports.get(n)
            if record is None:
                continue
            issues += [f"{n}: {i.code}: {i.message}" for i in record.report.issues]
            issues += [
                f"{n}: GPU {g.index} {g.status}{': ' + g.error if g.error else ''}"
                for g in record.report.gpus
                if g.status is not GpuStatus.OK
            ]
        return Observation(
            report=decision.budgets[name],
            generation=self.state.budgets[name].generation,
            nodes=members,
            stale_nodes=stale,
            silent_nodes=[n for n in stale if n not in self.state.reports],
            issues=issues,
        )

    def _budgets(
        self, inputs: TickInputs, decision: Decision, now: float, dt_s: float, wall: dt.datetime
    ) -> tuple[dict[str, dict[str, Any]], list[ObjectEvent]]:
        statuses: dict[str, dict[str, Any]] = {}
        events: list[ObjectEvent] = []
        for name in list(self.trackers):
            if name not in decision.budgets:
                del self.trackers[name]
        for name in decision.budgets:
            record = self.state.budgets[name]
            tracker = self.trackers.get(name)
            if tracker is None:
                tracker = self.trackers[name] = BudgetTracker(name, self.settings.cadence, record.conditions)
            obs = self.observation(inputs, decision, name)
            events += [ObjectEvent("PowerBudget", name, record.uid, e) for e in tracker.observe(obs, now, dt_s)]
            body = tracker.status_due(obs, now, wall)
            if body is not None:
                statuses[name] = body
        return statuses, events

    def _classes(self, inputs: TickInputs, now: float) -> dict[str, dict[str, Any]]:
        """`.status` figures of each WorkloadClass: pods, GPUs and power of the GPUs its pods hold."""
        figures: dict[str, dict[str, Any]] = {n: {"pods": set(), "gpus": 0, "power": 0.0} for n in self.state.classes}
        for uuid, meta in inputs.meta.items():
            if meta.workload_class is None or meta.workload_class.name not in figures:
                continue
            f = figures[meta.workload_class.name]
            f["pods"].add(meta.pod)
            f["gpus"] += 1
            f["power"] += inputs.gpus[uuid].counted_w
        out: dict[str, dict[str, Any]] = {}
        cadence = self.settings.cadence
        for name, f in figures.items():
            body = {"pods": len(f["pods"]), "gpus": f["gpus"], "powerWatts": float(round(f["power"]))}
            previous = self._class_written.get(name)
            if previous is None or (previous[0] != body and now - previous[1] >= cadence.interval_s):
                self._class_written[name] = (body, now)
                out[name] = body
        for name in list(self._class_written):
            if name not in self.state.classes:
                del self._class_written[name]
        return out

    def forget_class_status(self, name: str) -> None:
        """A class status write failed: send it again next time."""
        self._class_written.pop(name, None)
