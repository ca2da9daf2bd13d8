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
5. Node envelopes (`wattwise.policy.envelope`): each node's share of the plan, which its agent re-shares every
   100 ms between its protected and flexible GPUs until the next tick.
Monitor and Recommend budgets are computed the same way but only Enforce budgets contribute to `limits`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode
from wattwise.policy.allocate import allocate
from wattwise.policy.demand import estimate_demand
from wattwise.policy.envelope import FlexibleGpu, NodeEnvelope
from wattwise.policy.tuning import DEFAULT_TUNING, Tuning
from wattwise.policy.types import BudgetReport, BudgetState, Decision, GpuState

_EPS = 0.5  # watts: differences below this are not "limited"


def _members(budget: BudgetState, gpus: Mapping[str, GpuState]) -> list[GpuState]:
    return [gpus[u] for u in budget.gpu_uuids if u in gpus]


@dataclasses.dataclass(frozen=True, slots=True)
class _Targets:
    """Per-GPU target limits (min over budgets, before the ramp) and, per budget, what its allocation said."""

    limits: dict[str, float]
    feasible: dict[str, bool]
    floors_w: dict[str, float]
    critical_reserve_w: dict[str, float]


def _targets(
    budgets: Sequence[BudgetState],
    members: Mapping[str, list[GpuState]],
    demand: Mapping[str, float],
    spare: Mapping[str, bool],
    reserve: Mapping[str, float],
) -> _Targets:
    """Per-GPU target limit (min over budgets, two passes), feasibility and floor sum per budget."""
    combined: dict[str, float] = {}
    feasible: dict[str, bool] = {}
    floors: dict[str, float] = {}
    set_aside: dict[str, float] = {}
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
            set_aside[b.name] = alloc.critical_reserve_w
            for uuid, watts in alloc.limits.items():
                combined[uuid] = min(combined.get(uuid, math.inf), watts)
    return _Targets(combined, feasible, floors, set_aside)


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


def _protect(
    limits: dict[str, float], budgets: Iterable[BudgetState], members: Mapping[str, list[GpuState]]
) -> set[str]:
    """Hold standard and tolerant GPUs at their floors while a critical GPU in the same budget is limited.

    The allocation already serves critical work first; this keeps the promise while a squeezed critical GPU's
    limit ramps back up (raising the others meanwhile would take the watts it is about to need). Between
    standard and tolerant work the allocation order alone decides: holding every tolerant GPU while a standard
    GPU ramps would stall them for nothing, since the standard GPU's ramp does not go faster for it.
    Returns the budgets where it held them.
    """
    held: set[str] = set()
    for b in budgets:
        live = [g for g in members[b.name] if g.uuid in limits and g.fresh]
        if not any(g.tier is LatencyTier.CRITICAL and limits[g.uuid] < g.ceiling - _EPS for g in live):
            continue
        held.add(b.name)
        for g in live:
            if g.tier is not LatencyTier.CRITICAL:
                limits[g.uuid] = min(limits[g.uuid], g.floor)
    return held


def _envelopes(
    budgets: Sequence[BudgetState],
    members: Mapping[str, list[GpuState]],
    targets: _Targets,
    demand: Mapping[str, float],
    critical_of: Mapping[str, list[str]],
    excluded: set[str],
) -> dict[str, NodeEnvelope]:
    """One envelope per node whose Enforce budgets are all steerable this tick (not in `excluded`).

    A GPU counts at min(target, demand): what the allocation planned it to draw, before the ramp (the agent's
    100 ms loop bounds the node's draw, which is what the ramp guards against at 1 Hz). A critical GPU also
    brings its even share of the watts its budget set aside for critical bursts (the least over its budgets):
    those watts sit in the envelope of the node whose critical GPUs they are held for, lent to its tolerant GPUs
    until a burst takes them back, instead of idling. A node with a stale GPU gets none: its agent is not
    answering, or that GPU cannot be steered.
    """
    nodes: dict[str, dict[str, GpuState]] = {}
    blocked: set[str] = set()
    burst_share: dict[str, float] = {}
    budgets_of: dict[str, set[str]] = {}
    for b in budgets:
        critical = critical_of[b.name]
        each = targets.critical_reserve_w.get(b.name, 0.0) / len(critical) if critical else 0.0
        for uuid in critical:
            burst_share[uuid] = min(burst_share.get(uuid, math.inf), each)
        for g in members[b.name]:
            nodes.setdefault(g.node, {})[g.uuid] = g
            budgets_of.setdefault(g.uuid, set()).add(b.name)
            if b.name in excluded or not g.fresh or g.uuid not in targets.limits:
                blocked.add(g.node)
    # Watts re-shared inside a node must stay inside every budget they were planned for: only a node whose GPUs
    # all sit in the same budgets (as budgets select whole nodes) gets an envelope.
    for node, gpus_on_node in nodes.items():
        if len({frozenset(budgets_of[u]) for u in gpus_on_node}) > 1:
            blocked.add(node)
    out = {}
    for node in sorted(nodes.keys() - blocked):
        gpus = sorted(nodes[node].values(), key=lambda g: g.uuid)
        limits = targets.limits
        planned = {g.uuid: min(limits[g.uuid], demand[g.uuid]) + burst_share.get(g.uuid, 0.0) for g in gpus}
        out[node] = NodeEnvelope(
            node=node,
            watts=sum(planned.values()),
            protected=tuple(g.uuid for g in gpus if g.tier is not LatencyTier.TOLERANT),
            flexible=tuple(
                FlexibleGpu(
                    uuid=g.uuid,
                    floor_w=min(g.floor, limits[g.uuid]),
                    ceiling_w=max(min(g.floor, limits[g.uuid]), min(g.ceiling, demand[g.uuid])),
                    priority=g.priority,
                )
                for g in gpus
                if g.tier is LatencyTier.TOLERANT
            ),
        )
    return out


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
    # Each budget's fresh critical GPUs: their pool hold here, their share of the burst reserve in the envelopes.
    critical_of = {
        b.name: [g.uuid for g in members[b.name] if g.fresh and g.tier is LatencyTier.CRITICAL] for b in budgets
    }
    for b in budgets:
        critical = critical_of[b.name]
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
    enforce_targets = _targets(enforce, members, demand, spare, reserve)
    # The common case, nothing only recommended, is computed once.
    all_targets = (
        enforce_targets if len(enforce) == len(budgets) else _targets(budgets, members, demand, spare, reserve)
    )

    # Actuated limits ramp from what each GPU enforces, except where an envelope moved it under the previous
    # decision's limit (that limit is where the GPU falls back to); recommendations from the last recommendation.
    enveloped = previous.envelopes if previous else {}
    start = {
        u: previous.limits.get(u, g.current_limit_w) if previous and g.node in enveloped else g.current_limit_w
        for u, g in in_any.items()
    }
    limits = _ramped(enforce_targets.limits, start, ramp, dt_s)
    protecting = _protect(limits, enforce, members)
    previous_recommended = previous.recommended if previous else {}
    recommended_from = {u: previous_recommended.get(u, g.current_limit_w) for u, g in in_any.items()}
    recommended = _ramped(all_targets.limits, recommended_from, ramp, dt_s)
    _protect(recommended, budgets, members)

    # A stale GPU cannot be steered: keep whatever was last decided for it so it gets that when it returns.
    previous_limits = previous.limits if previous else {}
    for b in enforce:
        for g in members[b.name]:
            if not g.fresh and g.uuid in previous_limits:
                limits[g.uuid] = previous_limits[g.uuid]

    infeasible = {name for name, ok in enforce_targets.feasible.items() if not ok}
    envelopes = _envelopes(enforce, members, enforce_targets, demand, critical_of, protecting | infeasible)

    reports = {}
    for b in budgets:
        enforced = b.mode is BudgetMode.ENFORCE
        reports[b.name] = _report(
            b,
            members[b.name],
            gpu_draw[b.name],
            limits if enforced else recommended,
            b.gpu_allowance_w(),
            (enforce_targets if enforced else all_targets).floors_w[b.name],
            (enforce_targets if enforced else all_targets).feasible[b.name],
        )
    return Decision(
        limits=limits,
        recommended=recommended,
        budgets=reports,
        demand_w=demand,
        critical_hold_w=holds,
        envelopes=envelopes,
    )
