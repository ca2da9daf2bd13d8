"""The loop's writer: statuses coalesce per object, Events keep their order, a failed write is retried."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.operator import builders as b
from wattwise.operator.budget_status import EventSpec
from wattwise.operator.control_loop import ControlLoop, Writer
from wattwise.operator.controller import Controller


class Sink:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.fail = fail or set()
        self.statuses: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[tuple[str, str, str]] = []

    async def patch_status(self, kind: str, name: str, status: dict[str, Any]) -> bool:
        if name in self.fail:
            return False
        self.statuses.append((kind, name, status))
        return True

    async def event(self, kind: str, name: str, uid: str, event: EventSpec) -> None:
        self.events.append((kind, name, event.reason))


def controller() -> Controller:
    state = b.cluster(
        {"n1": {"rack": "r1"}},
        {"rack": b.budget_spec(5_000, mode="Enforce")},
        {"chat": b.class_spec("critical")},
        {"n1": b.report("n1", [b.gpu("G0"), b.gpu("G1", 1)])},
    )
    return Controller(state)


async def test_first_tick_writes_status_and_events_then_coalesces() -> None:
    c = controller()
    sink = Sink()
    writer = Writer(sink, c)
    loop = ControlLoop(c, writer, clock=iter([100.2, 100.25, 101.2, 101.25]).__next__)
    loop.tick()
    loop.tick()  # a second tick before the writer ran: its status (if any) replaces the first
    await writer.flush()
    kinds = [(k, n) for k, n, _ in sink.statuses]
    assert kinds.count(("PowerBudget", "rack")) == 1 and ("WorkloadClass", "chat") in kinds
    budget_status = next(s for k, n, s in sink.statuses if k == "PowerBudget")
    assert budget_status["gpus"] == 2 and budget_status["observedGeneration"] == 1
    assert {c["type"] for c in budget_status["conditions"]} == {"Ready", "OverBudget", "Degraded"}
    assert sink.events == [("PowerBudget", "rack", "Controlling")]
    assert writer.idle


async def test_failed_status_write_is_tried_again_next_tick() -> None:
    c = controller()
    sink = Sink(fail={"rack"})
    writer = Writer(sink, c)
    wall = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    writer.submit(c.tick(100.5, wall))
    await writer.flush()  # refused
    sink.fail.clear()
    writer.submit(c.tick(101.5, wall))  # well before the 5 s cadence, but the last write did not land
    await writer.flush()
    writer.submit(c.tick(102.5, wall))  # landed: back to the cadence
    await writer.flush()
    assert [n for k, n, _ in sink.statuses if k == "PowerBudget"] == ["rack"]


async def test_status_of_a_budget_dropped_since_the_tick_is_not_written() -> None:
    c = controller()
    sink = Sink()
    writer = Writer(sink, c)
    writer.submit(c.tick(100.5, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    c.state.drop_budget("rack")  # its spec turned invalid: the handler wrote Ready=False
    await writer.flush()
    assert [n for k, n, _ in sink.statuses if k == "PowerBudget"] == []
