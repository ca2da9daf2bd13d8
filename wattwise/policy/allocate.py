"""One budget's allocation: who gets how many of its GPU watts this tick.

Order of service (ARCHITECTURE.md, "The control loop"): every GPU's floor first; then critical demand in full; then
standard; then tolerant, each tier shared max-min fair, higher priority first. While the site is well under its
target, watts still left over become spare headroom for standard, then tolerant GPUs, up to their ceilings, so a
tolerant job that ramps up is not throttled by a limit sized to its last reading. A fully served critical GPU is
not limited at all (its limit is its ceiling): its reservation is its estimated demand. Stale GPUs are not
controllable; they count at their limit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import EmergencyPolicy
from wattwise.policy.types import GpuState
from wattwise.policy.waterfill import water_fill

TIERS_BY_RANK = sorted(LatencyTier, key=lambda t: t.rank)
_EPS = 1e-6


@dataclasses.dataclass(frozen=True, slots=True)
class Allocation:
    """Per-GPU limits one budget asks for (fresh GPUs only) and whether its floors fit."""

    limits: dict[str, float]
    floors_w: float
    feasible: bool
    #: Watts set aside for critical bursts beyond the critical GPUs' demand (at most the reserve asked for).
    critical_reserve_w: float = 0.0


@dataclasses.dataclass(slots=True)
class _Slot:
    gpu: GpuState
    floor: float
    ceiling: float
    demand: float
    alloc: float


def _fill(slots: Sequence[_Slot], room: float, *, upto: str) -> float:
    """Raise `slots` toward `upto` ('demand' or 'ceiling'), max-min fair, spending at most `room`; return the rest."""
    if room <= _EPS or not slots:
        return room
    highs = [s.demand if upto == "demand" else s.ceiling for s in slots]
    lows = [s.alloc for s in slots]
    want = sum(max(0.0, h - lo) for h, lo in zip(highs, lows, strict=True))
    if want <= room:
        for s, h in zip(slots, highs, strict=True):
            s.alloc = max(s.alloc, h)
        return room - want
    for s, a in zip(
        slots, water_fill(lows, [max(h, lo) for h, lo in zip(highs, lows, strict=True)], sum(lows) + room), strict=True
    ):
        s.alloc = a
    return 0.0


def _squeeze_floors(slots: Sequence[_Slot], need: float) -> None:
    """BelowFloors emergency: take `need` watts off floors, tolerant first, critical last, down to GPU minimums."""
    for tier in reversed(TIERS_BY_RANK):
        group = [s for s in slots if s.gpu.tier is tier]
        lows = [min(s.gpu.limits.min_w, s.alloc) for s in group]
        reducible = sum(s.alloc - lo for s, lo in zip(group, lows, strict=True))
        if reducible <= _EPS:
            continue
        if reducible >= need:
            for s, a in zip(
                group, water_fill(lows, [s.alloc for s in group], sum(s.alloc for s in group) - need), strict=True
            ):
                s.alloc = a
            return
        for s, lo in zip(group, lows, strict=True):
            s.alloc = lo
        need -= reducible


def allocate(
    gpus: Sequence[GpuState],
    demand: Mapping[str, float],
    allowance_w: float,
    *,
    emergency: EmergencyPolicy,
    ceilings: Mapping[str, float] | None = None,
    spare_headroom: bool = True,
    critical_reserve_w: float = 0.0,
) -> Allocation:
    """Split `allowance_w` GPU watts among `gpus`; `ceilings` lowers individual ceilings (other budgets' limits).

    With `spare_headroom`, watts left after every demand is served raise standard, then tolerant limits toward
    their ceilings; without it, their limits stay at their demand.
    """
    ceilings = ceilings or {}
    reserved = sum(g.counted_w for g in gpus if not g.fresh)
    slots: list[_Slot] = []
    for g in gpus:
        if not g.fresh:
            continue
        ceiling = min(g.ceiling, ceilings.get(g.uuid, math.inf))
        want = min(ceiling, demand.get(g.uuid, ceiling))
        # Reserved at its demand, not its floor: a floor only bounds how far its limit may be squeezed, and an
        # idle GPU whose limit sits at its floor draws far less.
        floor = min(g.floor, ceiling, want)
        slots.append(_Slot(g, floor, ceiling, want, floor))
    floors_w = sum(s.floor for s in slots)
    room = allowance_w - reserved - floors_w
    feasible = room >= -_EPS
    if not feasible:
        below = emergency is EmergencyPolicy.BELOW_FLOORS
        if below:
            _squeeze_floors(slots, -room)
        return Allocation({s.gpu.uuid: _limit(s, below_floors=below) for s in slots}, floors_w, False)

    set_aside = 0.0
    for tier in TIERS_BY_RANK:
        tier_slots = sorted((s for s in slots if s.gpu.tier is tier), key=lambda s: -s.gpu.priority)
        for _, group in itertools.groupby(tier_slots, key=lambda s: s.gpu.priority):
            room = _fill(list(group), room, upto="demand")
        if tier is LatencyTier.CRITICAL:
            set_aside = min(max(room, 0.0), critical_reserve_w)
            room -= set_aside
    for tier in TIERS_BY_RANK[1:] if spare_headroom else ():
        room = _fill([s for s in slots if s.gpu.tier is tier], room, upto="ceiling")

    return Allocation({s.gpu.uuid: _limit(s, below_floors=False) for s in slots}, floors_w, True, set_aside)


def _limit(s: _Slot, *, below_floors: bool) -> float:
    """The limit a slot's allocation translates to. A fully served critical GPU is not limited (its ceiling);
    a squeezed one never goes under its floor unless the BelowFloors emergency took the floor away."""
    if s.gpu.tier is LatencyTier.CRITICAL and s.alloc >= s.demand - _EPS:
        return s.ceiling
    bottom = s.gpu.limits.min_w if below_floors else min(s.gpu.floor, s.ceiling)
    return max(s.alloc, bottom)
