"""The control loop's one step: readings and the previous decision in, every GPU's next power limit out.

Per budget (ARCHITECTURE.md, "The control loop"):
1. Facility draw = (GPU readings, stale GPUs at their limit, + node base) x PUE.
2. Thresholds, a hysteresis band around the target: below `raiseBelowFraction` the watts left after every demand
   is served are handed out as spare headroom (limits above current use, so load can grow without waiting for the
   ramp); inside the band limits follow demand; above `lowerAboveFraction` the peak-hold on tolerant and standard
   demand is dropped too, so they are sized to what they draw now.
3. Allocation (`allocate`) of the GPU allowance, which is sized so that planned facility draw stays at the target
   whenever the floors fit; a GPU in several budgets gets the minimum, and a second pass lets each budget re-share
   what other budgets' tighter limits left unused.
4. Lower at once, raise by at most the ramp (critical GPUs rise at once: the allocation that raises them has
   already lowered the others); while a critical GPU is limited, the other GPUs of that budget are held at their
   floors.
Monitor and Recommend budgets are computed the same way but only Enforce budgets contribute to `limits`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode
from wattwise.policy.allocate import allocate
from wattwise.policy.demand import estimate_demand
from wattwise.policy.tuning import DEFAULT_TUNING, Tuning
from wattwise.policy.types import BudgetReport, BudgetState, Decision, GpuState

_EPS = 0.5  # watts: differences below this are not "limited"


def _members(budget: BudgetState, gpus: Mapping[str, GpuState]) -> list[GpuState]:
    return [gpus[u] for u in budget.gpu_uuids if u in gpus]


def _targets(
    budgets: Sequence[BudgetState],
    members: Mapping[str, list[GpuState]],
    demand: Mapping[str, float],
    spare: Mapping[str, bool],
    reserve: Mapping[str, float],
) -> tuple[dict[str, float], dict[str, bool], dict[str, float]]:
    """Per-GPU target limit (min over budgets, two passes), feasibility and floor sum per budget."""
    combined: dict[str, float] = {}
    feasible: dict[str, bool] = {}
    floors: dict[str, float] = {}
    for _pass in range(2):
        ceilings = dict(combined)
        combined = {}
        for b in budgets:
            alloc = allocate(
                members[b.name],
                demand,
                b.gpu_allowance_w(),
                emergency=b.emergency_policy,
                ceilings=ceilings,
                spare_headroom=spare[b.name],
                critical_reserve_w=reserve[b.name],
            )
            if _pass == 0:  # judged on the GPUs' own floors, before other budgets' limits lower them
                feasible[b.name] = alloc.feasible
                floors[b.name] = alloc.floors_w
            for uuid, watts in alloc.limits.items():
                combined[uuid] = min(combined.get(uuid, math.inf), watts)
    return combined, feasible, floors


def _ramped(
    targets: Mapping[str, float],
    start: Mapping[str, float],
    ramp: Mapping[str, float],
    dt_s: float,
) -> dict[str, float]:
    """Lower at once; raise by at most the GPU's ramp (the slowest of its budgets)."""
    out = {}
    for uuid, target in targets.items():
        base = start[uuid]
        out[uuid] = target if target <= base else min(target, base + ramp[uuid] * dt_s)
    return out


def _protect(limits: dict[str, float], budgets: Iterable[BudgetState], members: Mapping[str, list[GpuState]]) -> None:
    """Hold standard and tolerant GPUs at their floors while a critical GPU in the same budget is limited.

    The allocation already serves critical work first; this keeps the promise while a squeezed critical GPU's
    limit ramps back up (raising the others meanwhile would take the watts it is about to need). Between
    standard and tolerant work the allocation order alone decides: holding every tolerant GPU while a standard
    GPU ramps would stall them for nothing, since the standard GPU's ramp does not go faster for it.
    """
    for b in budgets:
        live = [g for g in members[b.name] if g.uuid in limits and g.fresh]
        if not any(g.tier is LatencyTier.CRITICAL and limits[g.uuid] < g.ceiling - _EPS for g in live):
            continue
        for g in live:
            if g.tier is not LatencyTier.CRITICAL:
                limits[g.uuid] = min(limits[g.uuid], g.floor)


def _report(
    b: BudgetState,
    members: list[GpuState],
    gpu_w: float,
    limits: Mapping[str, float],
    allowance_w: float,
    floors_w: float,
    feasible: bool,
) -> BudgetReport:
    facility_w = b.facility_w(gpu_w)
    tier_power = dict.fromkeys(LatencyTier, 0.0)
    limited = critical_limited = 0
    for g in members:
        tier_power[g.tier] += g.counted_w
        limit = limits.get(g.uuid, g.current_limit_w)
        if limit < g.limits.default_w - _EPS:
            limited += 1
        if g.tier is LatencyTier.CRITICAL and limit < g.ceiling - _EPS:
            critical_limited += 1
    return BudgetReport(
        name=b.name,
        mode=b.mode,
        cap_w=b.cap_w,
        facility_draw_w=facility_w,
        gpu_draw_w=gpu_w,
        non_gpu_w=facility_w - gpu_w,
        headroom_w=b.cap_w - facility_w,
        allowance_w=allowance_w,
        floors_w=floors_w,
        feasible=feasible,
        over_cap=facility_w > b.cap_w,
        over_target=facility_w > b.lower_above_fraction * b.cap_w,
        gpus=len(members),
        stale_gpus=sum(1 for g in members if not g.fresh),
        gpus_limited=limited,
        critical_limited=critical_limited,
        tier_power_w=tier_power,
    )


def decide(
    budgets: Sequence[BudgetState],
    gpus: Mapping[str, GpuState],
    previous: Decision | None = None,
    dt_s: float = 1.0,
    tuning: Tuning = DEFAULT_TUNING,
) -> Decision:
    """One tick of the control loop for every budget at once. Pure and deterministic."""
    prev_demand = previous.demand_w if previous else {}
    members = {b.name: _members(b, gpus) for b in budgets}
    in_any = {g.uuid: g for ms in members.values() for g in ms}

    gpu_draw = {b.name: sum(g.counted_w for g in members[b.name]) for b in budgets}
    spare: dict[str, bool] = {}
    no_hold: set[str] = set()  # GPUs whose demand is taken from the current reading alone
    for b in budgets:
        facility_w = b.facility_w(gpu_draw[b.name])
        spare[b.name] = facility_w < b.raise_below_fraction * b.cap_w
        if facility_w > b.lower_above_fraction * b.cap_w:
            no_hold.update(g.uuid for g in members[b.name] if g.tier is not LatencyTier.CRITICAL)
    demand = {
        u: estimate_demand(g, None if u in no_hold else prev_demand.get(u), dt_s, tuning)
        for u, g in in_any.items()
        if g.fresh
    }

    holds: dict[str, float] = {}
    reserve: dict[str, float] = {}
    prev_hold = previous.critical_hold_w if previous else {}
    for b in budgets:
        critical = [g.uuid for g in members[b.name] if g.fresh and g.tier is LatencyTier.CRITICAL]
        now = sum(demand[u] for u in critical)
        if tuning.critical_pool_decay_w_per_s is None or not critical:
            holds[b.name], reserve[b.name] = now, 0.0
            continue
        held = prev_hold.get(b.name, now) - tuning.critical_pool_decay_w_per_s * len(critical) * dt_s
        holds[b.name] = max(now, held)
        reserve[b.name] = holds[b.name] - now

    ramp: dict[str, float] = {}
    for b in budgets:
        for g in members[b.name]:
            # Critical work never waits on a ramp: the same tick that raises it lowers everyone else.
            slowest = math.inf if g.tier is LatencyTier.CRITICAL else b.ramp_w_per_s
            ramp[g.uuid] = min(ramp.get(g.uuid, math.inf), slowest)

    enforce = [b for b in budgets if b.mode is BudgetMode.ENFORCE]
    enforce_targets, enforce_feasible, enforce_floors = _targets(enforce, members, demand, spare, reserve)
    if len(enforce) == len(budgets):  # the common case: nothing only recommended, so compute once
        all_targets, all_feasible, all_floors = enforce_targets, enforce_feasible, enforce_floors
    else:
        all_targets, all_feasible, all_floors = _targets(budgets, members, demand, spare, reserve)

    # Actuated limits ramp from what each GPU enforces; recommendations from the last recommendation.
    limits = _ramped(enforce_targets, {u: g.current_limit_w for u, g in in_any.items()}, ramp, dt_s)
    _protect(limits, enforce, members)
    previous_recommended = previous.recommended if previous else {}
    recommended_from = {u: previous_recommended.get(u, g.current_limit_w) for u, g in in_any.items()}
    recommended = _ramped(all_targets, recommended_from, ramp, dt_s)
    _protect(recommended, budgets, members)

    # A stale GPU cannot be steered: keep whatever was last decided for it so it gets that when it returns.
    previous_limits = previous.limits if previous else {}
    for b in enforce:
        for g in members[b.name]:
            if not g.fresh and g.uuid in previous_limits:
                limits[g.uuid] = previous_limits[g.uuid]

    reports = {}
    for b in budgets:
        enforced = b.mode is BudgetMode.ENFORCE
        reports[b.name] = _report(
            b,
            members[b.name],
            gpu_draw[b.name],
            limits if enforced else recommended,
            b.gpu_allowance_w(),
            (enforce_floors if enforced else all_floors)[b.name],
            (enforce_feasible if enforced else all_feasible)[b.name],
        )
    return Decision(
        limits=limits, recommended=recommended, budgets=reports, demand_w=demand, critical_hold_w=holds
    )
