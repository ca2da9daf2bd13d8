"""Property-based tests of the control loop's invariants (ARCHITECTURE.md, "The control loop")."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from tests.policy.strategies import fleets
from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode, EmergencyPolicy
from wattwise.policy import BudgetState, Decision, GpuState, decide

EPS = 1e-6


def _planned_gpu_w(b: BudgetState, gpus: dict[str, GpuState], d: Decision) -> float:
    """GPU watts the decision plans for the next second: stale GPUs at their limit, every other GPU at what it
    is expected to draw, its demand estimate, or its new limit where that is lower."""
    total = 0.0
    for u in b.gpu_uuids:
        g = gpus[u]
        total += g.counted_w if not g.fresh else min(d.limits[u], d.demand_w[u])
    return total


def _next_tick(gpus: dict[str, GpuState], d: Decision, data: st.DataObject | None = None) -> dict[str, GpuState]:
    """GPUs after the decision was applied: limits enforced, and (with `data`) load that changed meanwhile,
    clipped by the new limits."""
    out = {}
    for u, g in gpus.items():
        limit = d.limits.get(u, g.enforced_limit_w)
        power = g.power_w
        if data is not None:
            power = data.draw(st.one_of(st.none(), st.floats(0.0, g.limits.max_w)), label=f"power {u}")
        if power is not None and limit is not None:
            power = min(power, limit)
        out[u] = dataclasses.replace(g, enforced_limit_w=limit, power_w=power)
    return out


@given(fleets())
def test_limits_stay_inside_gpu_constraints(fleet: tuple[list[BudgetState], dict[str, GpuState]]) -> None:
    budgets, gpus = fleet
    d = decide(budgets, gpus)
    for limits in (d.limits, d.recommended):
        for u, watts in limits.items():
            assert gpus[u].limits.min_w - EPS <= watts <= gpus[u].limits.max_w + EPS


@given(fleets(modes=(BudgetMode.ENFORCE,)))
def test_budget_holds_whenever_floors_fit(fleet: tuple[list[BudgetState], dict[str, GpuState]]) -> None:
    budgets, gpus = fleet
    d = decide(budgets, gpus)
    for b in budgets:
        if d.budgets[b.name].feasible:
            assert _planned_gpu_w(b, gpus, d) <= b.gpu_allowance_w() + 1e-3
            assert b.facility_w(_planned_gpu_w(b, gpus, d)) <= b.cap_w * b.target_utilization + 1e-3


@given(fleets(modes=(BudgetMode.ENFORCE,)))
def test_below_floors_keeps_the_cap_when_minimums_fit(fleet: tuple[list[BudgetState], dict[str, GpuState]]) -> None:
    budgets, gpus = fleet
    budgets = [dataclasses.replace(b, emergency_policy=EmergencyPolicy.BELOW_FLOORS) for b in budgets]
    d = decide(budgets, gpus)
    for b in budgets:
        members = [gpus[u] for u in b.gpu_uuids]
        minimums = sum(g.limits.min_w if g.fresh else g.counted_w for g in members)
        if minimums <= b.gpu_allowance_w():
            assert _planned_gpu_w(b, gpus, d) <= b.gpu_allowance_w() + 1e-3


@given(fleets(), st.integers(2, 5), st.data())
def test_no_critical_limited_while_tolerant_above_floor(
    fleet: tuple[list[BudgetState], dict[str, GpuState]], ticks: int, data: st.DataObject
) -> None:
    budgets, gpus = fleet
    d = None
    for _ in range(ticks):
        d = decide(budgets, gpus, d)
        for b in budgets:
            limits = d.limits if b.mode is BudgetMode.ENFORCE else d.recommended
            live = [gpus[u] for u in b.gpu_uuids if u in limits and gpus[u].fresh]
            critical_limited = any(g.tier is LatencyTier.CRITICAL and limits[g.uuid] < g.ceiling - 0.5 for g in live)
            if critical_limited:
                for g in live:
                    if g.tier is LatencyTier.TOLERANT:
                        assert limits[g.uuid] <= g.floor + EPS
        gpus = _next_tick(gpus, d, data)


@given(fleets(), st.integers(1, 4), st.data())
def test_upward_moves_never_exceed_the_ramp(
    fleet: tuple[list[BudgetState], dict[str, GpuState]], ticks: int, data: st.DataObject
) -> None:
    budgets, gpus = fleet
    d = None
    for _ in range(ticks):
        previous_recommended = dict(d.recommended) if d else {}
        d = decide(budgets, gpus, d)
        for u, watts in d.limits.items():
            g = gpus[u]
            if not g.fresh or g.tier is LatencyTier.CRITICAL:  # critical work is raised at once
                continue
            ramp = min(b.ramp_w_per_s for b in budgets if u in b.gpu_uuids and b.mode is BudgetMode.ENFORCE)
            start = g.enforced_limit_w if g.enforced_limit_w is not None else g.limits.default_w
            assert watts <= max(start, g.limits.min_w) + ramp + EPS
        for u, watts in d.recommended.items():
            g = gpus[u]
            if g.tier is LatencyTier.CRITICAL:
                continue
            ramp = min(b.ramp_w_per_s for b in budgets if u in b.gpu_uuids)
            start = previous_recommended.get(
                u, g.enforced_limit_w if g.enforced_limit_w is not None else g.limits.default_w
            )
            assert watts <= max(start, g.limits.min_w) + ramp + EPS
        gpus = _next_tick(gpus, d, data)


@given(fleets())
def test_decision_is_deterministic(fleet: tuple[list[BudgetState], dict[str, GpuState]]) -> None:
    budgets, gpus = fleet
    first = decide(budgets, gpus)
    assert decide(budgets, gpus) == first
    assert decide(budgets, gpus, first) == decide(budgets, gpus, first)


@given(fleets())
def test_monitor_and_recommend_actuate_nothing(fleet: tuple[list[BudgetState], dict[str, GpuState]]) -> None:
    budgets, gpus = fleet
    d = decide(budgets, gpus)
    enforced = {u for b in budgets if b.mode is BudgetMode.ENFORCE for u in b.gpu_uuids}
    assert set(d.limits) <= enforced
    assert set(d.recommended) == {u for b in budgets for u in b.gpu_uuids if gpus[u].fresh} | (
        set(d.recommended) & {u for u in gpus if not gpus[u].fresh}
    )
