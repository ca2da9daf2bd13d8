"""Per-GPU demand: how many watts a GPU would use next second if nobody limited it, from its readings."""

from __future__ import annotations

from wattwise.policy.envelope import near_cap
from wattwise.policy.tuning import Tuning
from wattwise.policy.types import GpuState


def is_capped(gpu: GpuState, tuning: Tuning) -> bool:
    """Drawing within a small margin of its enforced limit: the limit, not the load, sets its power.

    Under a node envelope the agent's verdict (`GpuState.capped`) decides: the limit moved under the reading.
    """
    if gpu.capped is not None:
        return gpu.capped
    if gpu.power_w is None:
        return False
    limit = gpu.enforced_limit_w if gpu.enforced_limit_w is not None else gpu.limits.max_w
    if limit >= gpu.ceiling:  # at its ceiling nothing more can be given; the reading is its demand
        return False
    return near_cap(gpu.power_w, limit, within_w=tuning.capped_within_w, within_fraction=tuning.capped_within_fraction)


def estimate_demand(gpu: GpuState, previous_w: float | None, dt_s: float, tuning: Tuning) -> float:
    """Watts the GPU would use next second if not limited, at most its ceiling; needs a fresh reading.

    Not raised to the floor: a floor bounds a GPU's *limit*, while demand is what a critical GPU is reserved at.
    """
    assert gpu.power_w is not None
    capped = is_capped(gpu, tuning)
    raw = gpu.ceiling if capped else gpu.power_w * (1.0 + tuning.margin_fraction) + tuning.margin_w
    if previous_w is not None:
        raw = max(raw, previous_w - tuning.decay_for(gpu.tier) * dt_s)
    elif gpu.expected_w is not None:
        raw = max(raw, gpu.expected_w)  # first sight: trust the class until readings have a history
    return min(gpu.ceiling, raw)
