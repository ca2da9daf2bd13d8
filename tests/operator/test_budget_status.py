"""Conditions, Events on transitions only, the above-cap window, and a status cadence that never writes at 1 Hz."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode
from wattwise.operator import conditions as cond
from wattwise.operator.above_cap import AboveCapWindow
from wattwise.operator.budget_status import BudgetTracker, Observation, StatusCadence
from wattwise.policy import BudgetReport

WALL = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def report(facility: float, *, cap: float = 1_000.0, feasible: bool = True, **kw: Any) -> BudgetReport:
    values: dict[str, Any] = dict(
        name="b",
        mode=BudgetMode.ENFORCE,
        cap_w=cap,
        facility_draw_w=facility,
        gpu_draw_w=facility,
        non_gpu_w=0.0,
        headroom_w=cap - facility,
        allowance_w=0.95 * cap,
        floors_w=400.0,
        feasible=feasible,
        over_cap=facility > cap,
        over_target=facility > 0.98 * cap,
        gpus=4,
        stale_gpus=0,
        gpus_limited=0,
        critical_limited=0,
        tier_power_w=dict.fromkeys(LatencyTier, facility / 3),
    )
    values.update(kw)
    return BudgetReport(**values)


def obs(facility: float, **kw: Any) -> Observation:
    stale = kw.pop("stale", ())
    return Observation(report(facility, **kw), generation=3, nodes=("n1", "n2"), stale_nodes=stale)


def test_window_fraction_counts_observed_time_only() -> None:
    w = AboveCapWindow(window_s=10)
    assert w.fraction == 0.0
    for t in range(10):
        w.add(float(t), 1.0, above=t < 3)
    assert w.fraction == pytest.approx(0.3)
    for t in range(10, 20):
        w.add(float(t), 1.0, above=False)
    assert w.fraction == 0.0 and w.above_total_s == 3.0


def test_transition_time_moves_only_with_the_status() -> None:
    first = cond.merge(None, [cond.Desired("Ready", "True", "A", "x")], 1, WALL)
    later = WALL + dt.timedelta(minutes=5)
    same = cond.merge(first, [cond.Desired("Ready", "True", "B", "y")], 2, later)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z" and same[0]["observedGeneration"] == 2
    flipped = cond.merge(same, [cond.Desired("Ready", "False", "B", "y")], 2, later)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert cond.changed(first, same)  # new reason
    reworded = cond.merge(same, [cond.Desired("Ready", "True", "B", "z")], 2, later)
    assert not cond.changed(same, reworded)  # a new message alone waits for the regular cadence


def test_over_budget_is_debounced_and_announced_once_each_way() -> None:
    t = BudgetTracker("b", StatusCadence(enter_ticks=2, leave_ticks=3))
    reasons = []
    draws = [900, 1100, 900, 1100, 1100, 1100, 950, 1200, 950, 950, 950, 950]
    for i, draw in enumerate(draws):
        reasons.append([e.reason for e in t.observe(obs(draw), float(i), 1.0)])
    flat = [(i, r) for i, rs in enumerate(reasons) for r in rs]
    assert flat == [(0, "Controlling"), (4, "OverBudget"), (10, "WithinBudget")]
    assert t.window.above_total_s == 5.0


def test_infeasible_floors_and_lost_nodes_are_events_and_conditions() -> None:
    t = BudgetTracker("b", StatusCadence())
    t.observe(obs(500), 0.0, 1.0)
    events = t.observe(obs(500, feasible=False, stale=("n2",)), 1.0, 1.0)
    assert [e.reason for e in events] == ["FloorsInfeasible", "NodeLost"]
    body = t.status_due(obs(500, feasible=False, stale=("n2",)), 1.0, WALL)
    assert body is not None
    by_type = {c["type"]: c for c in body["conditions"]}
    assert (by_type["OverBudget"]["status"], by_type["OverBudget"]["reason"]) == ("True", "FloorsInfeasible")
    assert (by_type["Degraded"]["status"], by_type["Degraded"]["reason"]) == ("True", "NodesNotReporting")
    assert by_type["Ready"]["status"] == "True" and body["staleNodes"] == 1
    back = t.observe(obs(500), 2.0, 1.0)
    assert [e.reason for e in back] == ["FloorsFeasible", "NodeRecovered"]


def test_status_is_written_on_a_cadence_not_every_tick() -> None:
    cadence = StatusCadence(interval_s=5, min_interval_s=1, refresh_s=60)
    t = BudgetTracker("b", cadence)
    writes = []
    for second in range(0, 30):
        draw = 500.0 if second < 20 else 500.4  # unchanged after rounding from 20 s on
        o = obs(draw + (second if second < 12 else 12))
        t.observe(o, float(second), 1.0)
        if t.status_due(o, float(second), WALL) is not None:
            writes.append(second)
    assert writes == [0, 5, 10, 15]
    # A condition change is written at once (no faster than min_interval_s).
    o = obs(500, stale=("n1",))
    t.observe(o, 30.0, 1.0)
    assert t.status_due(o, 30.0, WALL) is not None
    # Nothing changes: still refreshed once a minute so lastUpdateTime shows the operator is alive.
    assert t.status_due(o, 31.0, WALL) is None
    assert t.status_due(o, 90.0, WALL) is not None


def test_generation_change_is_written_at_once() -> None:
    t = BudgetTracker("b", StatusCadence(interval_s=5))
    assert t.status_due(obs(500), 0.0, WALL) is not None
    newer = dataclasses.replace(obs(500), generation=4)
    body = t.status_due(newer, 1.5, WALL)
    assert body is not None and body["observedGeneration"] == 4
