"""Max-min fair division ("water-filling") of a power amount among GPUs with individual bounds.

Every item i gets `clamp(level, lo_i, hi_i)` for the one `level` at which the allocations add up to `total`:
items with small needs are served in full and the rest share equally, which is max-min fairness on watts.
"""

from __future__ import annotations

from collections.abc import Sequence


def water_level(lows: Sequence[float], highs: Sequence[float], total: float) -> float:
    """The level L with sum(clamp(L, lo_i, hi_i)) == total; total is clamped to [sum(lo), sum(hi)].

    Exact in O(n log n): the sum is piecewise linear in L with breakpoints at every lo_i and hi_i.
    """
    if not lows:
        return 0.0
    total = min(max(total, sum(lows)), sum(highs))
    # Walk breakpoints upward; `slope` counts items strictly between their bounds.
    events = sorted([(lo, 1) for lo in lows] + [(hi, -1) for hi in highs])
    level = events[0][0]
    current = sum(lows)  # sum at the lowest breakpoint: every item at its low bound
    slope = 0
    for point, delta in events:
        if point > level:
            step = (point - level) * slope
            if current + step >= total:
                return level + (total - current) / slope if slope else level
            current += step
            level = point
        slope += delta
    return level


def water_fill(lows: Sequence[float], highs: Sequence[float], total: float) -> list[float]:
    """Allocations between each item's bounds that sum to `total` (clamped), max-min fair."""
    level = water_level(lows, highs, total)
    return [min(hi, max(lo, level)) for lo, hi in zip(lows, highs, strict=True)]
