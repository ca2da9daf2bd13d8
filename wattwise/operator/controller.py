"""One control tick, without I/O: cluster state in; decision, agent replies, live state, status and Events out.

The policy decides every active budget jointly (a GPU in a rack and its row gets the lower of the two limits), so
there is one `Controller` per operator, not one per budget. The async loop (`control_loop`) calls `tick` once a
second, on a snapshot of the state in a worker thread, and does the writing; the ingest endpoint reads `replies`
(replaced whole at the end of a tick). The live state is built on demand from the last tick (`live_state`), once
per tick at most: only the extender and `wattwise status` read it, so the tick does not pay for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
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
        self._live_source: tuple[int, ClusterState, TickInputs, Decision, float, dt.datetime] | None = None
        self._live: tuple[int, LiveState] | None = None
        self._live_lock = threading.Lock()
        self.trackers: dict[str, BudgetTracker] = {}
        self.ticks = 0
        #: seconds spent in each phase of the last tick (inputs, decide, status, replies)
        self.last_timings: dict[str, float] = {}
        self._last_tick: float | None = None
        self._class_written: dict[str, tuple[dict[str, Any], float]] = {}

    def tick(self, now: float, wall: dt.datetime, state: ClusterState | None = None) -> TickOutcome:
        """One tick on `state` (a snapshot, when run off the event loop; the live state by default)."""
        s = self.settings
        state = state if state is not None else self.state
        dt_s = 1.0 if self._last_tick is None else min(s.max_dt_s, max(0.0, now - self._last_tick))
        self._last_tick = now
        t0 = time.perf_counter()
        inputs = self.builder.build(state, now)
        t1 = time.perf_counter()
        decision = decide(inputs.budgets, inputs.gpus, self.decision, dt_s, s.tuning)
        t2 = time.perf_counter()
        budget_status, events = self._budgets(state, inputs, decision, now, dt_s, wall)
        class_status = self._classes(state, inputs, now)
        t3 = time.perf_counter()
        self.replies = all_replies(inputs, decision, state.budgets, frozenset(state.reports), s.report_interval_s)
        t4 = time.perf_counter()
        self.last_timings = {"inputs": t1 - t0, "decide": t2 - t1, "status": t3 - t2, "replies": t4 - t3}
        self.decision, self.inputs = decision, inputs
        self.ticks += 1
        self._live_source = (self.ticks, state, inputs, decision, now, wall)
        return TickOutcome(inputs, decision, budget_status, class_status, events)

    def live_state(self) -> LiveState | None:
        """The live state of the last tick (None before the first), built at most once per tick; thread-safe."""
        source = self._live_source
        if source is None:
            return None
        with self._live_lock:
            if self._live is not None and self._live[0] == source[0]:
                return self._live[1]
            number, state, inputs, decision, now, wall = source
            s = self.settings.inputs
            built = live_state.build(
                state,
                inputs,
                decision,
                now=now,
                wall=wall,
                default_tier=s.default_tier,
                unknown_gpu_w=s.unknown_gpu_w,
                stale_after_s=s.stale_after_s,
            )
            self._live = (number, built)
            return built

    @property
    def live(self) -> LiveState | None:
        return self.live_state()

    def observation(self, state: ClusterState, inputs: TickInputs, decision: Decision, name: str) -> Observation:
        members = inputs.topology.members.get(name, ())
        stale = [n for n in members if n in inputs.stale_nodes]
        issues = []
        for n in members:
            record = state.reports.get(n)
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
            generation=state.budgets[name].generation,
            nodes=members,
            stale_nodes=stale,
            silent_nodes=[n for n in stale if n not in state.reports],
            issues=issues,
        )

    def _budgets(
        self, state: ClusterState, inputs: TickInputs, decision: Decision, now: float, dt_s: float, wall: dt.datetime
    ) -> tuple[dict[str, dict[str, Any]], list[ObjectEvent]]:
        statuses: dict[str, dict[str, Any]] = {}
        events: list[ObjectEvent] = []
        for name in list(self.trackers):
            if name not in decision.budgets:
                del self.trackers[name]
        for name in decision.budgets:
            record = state.budgets[name]
            tracker = self.trackers.get(name)
            if tracker is None:
                tracker = self.trackers[name] = BudgetTracker(name, self.settings.cadence, record.conditions)
            obs = self.observation(state, inputs, decision, name)
            events += [ObjectEvent("PowerBudget", name, record.uid, e) for e in tracker.observe(obs, now, dt_s)]
            body = tracker.status_due(obs, now, wall)
            if body is not None:
                statuses[name] = body
        return statuses, events

    def _classes(self, state: ClusterState, inputs: TickInputs, now: float) -> dict[str, dict[str, Any]]:
        """`.status` figures of each WorkloadClass: pods, GPUs and power of the GPUs its pods hold."""
        figures: dict[str, dict[str, Any]] = {n: {"pods": set(), "gpus": 0, "power": 0.0} for n in state.classes}
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
            if name not in state.classes:
                del self._class_written[name]
        return out

    def forget_class_status(self, name: str) -> None:
        """A class status write failed: send it again next time."""
        self._class_written.pop(name, None)
