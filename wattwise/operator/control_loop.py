"""The 1 Hz loop: run a `Controller` tick on a fixed schedule and hand its writes to a background writer.

The tick runs in a worker thread on a snapshot of the state, so agent reports keep being answered while a large
fleet's tick computes (the GIL hands the event loop a turn every few milliseconds). It never waits on the API
server: status patches and Events go to a `Writer` task. Status bodies coalesce
per object (the newest wins), so a slow API server delays status but never builds a backlog. A failed status
write is retried on a later tick (the tracker forgets it wrote). While this replica is on standby the loop
idles.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from wattwise.operator.budget_status import EventSpec
from wattwise.operator.controller import Controller, ObjectEvent, TickOutcome
from wattwise.operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)


class Sink(Protocol):
    async def patch_status(self, kind: str, name: str, status: dict[str, Any]) -> bool: ...

    async def event(self, kind: str, name: str, uid: str, event: EventSpec) -> None: ...


class Writer:
    """Writes statuses (coalesced per object) and Events (in order) in the background."""

    def __init__(self, sink: Sink, controller: Controller, metrics: OperatorMetrics | None = None) -> None:
        self.sink = sink
        self.controller = controller
        self.metrics = metrics
        self._status: dict[tuple[str, str], dict[str, Any]] = {}
        self._events: list[ObjectEvent] = []
        self._wake = asyncio.Event()

    def submit(self, outcome: TickOutcome) -> None:
        for name, body in outcome.budget_status.items():
            self._status[("PowerBudget", name)] = body
        for name, body in outcome.class_status.items():
            self._status[("WorkloadClass", name)] = body
        self._events += outcome.events
        if self._status or self._events:
            self._wake.set()

    @property
    def idle(self) -> bool:
        return not self._status and not self._events and not self._wake.is_set()

    async def flush(self) -> None:
        status, self._status = self._status, {}
        events, self._events = self._events, []
        self._wake.clear()
        for e in events:
            log.info("%s %s: %s: %s", e.kind, e.name, e.event.reason, e.event.message)
            await self.sink.event(e.kind, e.name, e.uid, e.event)
            if self.metrics is not None:
                self.metrics.events.labels(e.event.reason).inc()
        state = self.controller.state
        for (kind, name), body in status.items():
            known = state.budgets if kind == "PowerBudget" else state.classes
            if name not in known:
                continue  # deleted, or found invalid since that tick: its handler owns the status now
            ok = await self.sink.patch_status(kind, name, body)
            if self.metrics is not None:
                self.metrics.status_writes.labels("ok" if ok else "failed").inc()
            if not ok:
                tracker = self.controller.trackers.get(name)  # the tick thread may drop it meanwhile
                if kind == "PowerBudget" and tracker is not None:
                    tracker.write_failed()
                elif kind == "WorkloadClass":
                    self.controller.forget_class_status(name)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            try:
                await self.flush()
            except Exception:
                log.exception("status/event writer failed; carrying on")


class ControlLoop:
    def __init__(
        self,
        controller: Controller,
        writer: Writer | None,
        *,
        interval_s: float = 1.0,
        metrics: OperatorMetrics | None = None,
        leading: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        self.controller = controller
        self.writer = writer
        self.interval_s = interval_s
        self.metrics = metrics
        self.leading = leading
        self.clock = clock
        self.on_tick = on_tick

    def tick(self) -> TickOutcome:
        """One tick on the event loop's own thread (tests, and tools that drive the loop by hand)."""
        began = self.clock()
        return self._done(began, self.controller.tick(began, dt.datetime.now(dt.UTC)))

    async def tick_in_thread(self) -> TickOutcome:
        began = self.clock()
        snapshot = self.controller.state.snapshot()
        outcome = await asyncio.to_thread(self.controller.tick, began, dt.datetime.now(dt.UTC), snapshot)
        return self._done(began, outcome)

    def _done(self, began: float, outcome: TickOutcome) -> TickOutcome:
        took = self.clock() - began
        if self.metrics is not None:
            self.metrics.tick_seconds.observe(took)
        if took > self.interval_s / 2:
            log.warning("control tick took %.0f ms (interval %.0f ms)", took * 1e3, self.interval_s * 1e3)
        if self.writer is not None:
            self.writer.submit(outcome)
        if self.on_tick is not None:
            self.on_tick(began)
        return outcome

    async def run(self) -> None:
        """Tick until cancelled; missed ticks are skipped, never bunched up."""
        next_at = self.clock()
        while True:
            if self.leading():
                try:
                    await self.tick_in_thread()
                except Exception:
                    log.exception("control tick failed; the previous limits stay in force")
            next_at += self.interval_s
            now = self.clock()
            if next_at < now:
                next_at = now + self.interval_s
            await asyncio.sleep(next_at - now)
