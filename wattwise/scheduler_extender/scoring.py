"""Node scores for the extender's prioritize verb: small pure formulas, inputs clamped, 0..10 out.

Inputs are fractions computed per node from the live state:

    h = min over the node's budgets of  (guaranteed headroom left after this pod) / (cap x targetUtilization)
    t = (thermal threshold - hottest GPU temperature) / THERMAL_SPAN_C

both clamped to [0, 1]; `None` means the data is missing (no budget, stale budget, no temperature reading).

    critical:  10 x (0.7 h + 0.3 t)      more headroom and cooler GPUs win; t missing -> 10 x h
    standard:  10 x h                    more headroom wins
    tolerant:  10 x (1 - h)              pack where power is stranded, keep big headroom for critical pods

`h` missing -> NEUTRAL_SCORE (5) and the caller logs why: no data is neither a reason to prefer a node nor to
avoid it. Scores round half up to the integer kube-scheduler expects.
"""

from __future__ import annotations

import math

from wattwise.crd.common import LatencyTier

NEUTRAL_SCORE = 5
MAX_SCORE = 10
#: A GPU this many degrees below its threshold counts as fully cool.
THERMAL_SPAN_C = 30.0
CRITICAL_HEADROOM_WEIGHT = 0.7


def clamp01(x: float) -> float:
    if math.isnan(x):
        return 0.0
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def headroom_fraction(left_w: float, target_w: float) -> float | None:
    """Share of the budget's target still free after the pod; None for a budget with no capacity."""
    if not target_w > 0.0 or math.isnan(left_w):
        return None
    return clamp01(left_w / target_w)


def thermal_fraction(max_temperature_c: float | None, threshold_c: float) -> float | None:
    if max_temperature_c is None or math.isnan(max_temperature_c):
        return None
    return clamp01((threshold_c - max_temperature_c) / THERMAL_SPAN_C)


def _round(x: float) -> int:
    return max(0, min(MAX_SCORE, math.floor(clamp01(x) * MAX_SCORE + 0.5)))


def score(tier: LatencyTier, h: float | None, t: float | None) -> int:
    """The node's score for a pod of `tier` (see the module docstring for the formula)."""
    if h is None:
        return NEUTRAL_SCORE
    h = clamp01(h)
    if tier is LatencyTier.TOLERANT:
        return _round(1.0 - h)
    if tier is LatencyTier.CRITICAL and t is not None:
        return _round(CRITICAL_HEADROOM_WEIGHT * h + (1.0 - CRITICAL_HEADROOM_WEIGHT) * clamp01(t))
    return _round(h)
