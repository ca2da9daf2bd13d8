"""Constants of the control loop that are not per-budget settings, gathered so they are named and documented."""

from __future__ import annotations

import dataclasses

from wattwise.crd.common import LatencyTier


@dataclasses.dataclass(frozen=True, slots=True)
class Tuning:
    """How demand is estimated from readings.

    A GPU drawing near its limit is *capped*: its true demand is unknown, so it asks for its ceiling and the
    water-fill gives capped GPUs of a tier equal shares. An uncapped GPU asks for its draw plus a margin. Estimates
    hold their peak and decay. Critical work is held as a pool too: bursty chat must not find its reservation gone
    a second after a lull, but its GPUs rarely peak at the same instant, so the budget holds the peak of their sum
    rather than the sum of their peaks.
    """

    capped_within_w: float = 10.0
    capped_within_fraction: float = 0.04
    margin_fraction: float = 0.10
    margin_w: float = 20.0
    decay_w_per_s: tuple[tuple[LatencyTier, float], ...] = (
        (LatencyTier.CRITICAL, 100.0),
        (LatencyTier.STANDARD, 50.0),
        (LatencyTier.TOLERANT, 100.0),
    )

    #: Critical reservations are also held for the budget's critical GPUs as a pool: the held peak of their summed
    #: estimates, decaying this many W/s per critical GPU. None: per-GPU holds only.
    critical_pool_decay_w_per_s: float | None = 25.0

    def decay_for(self, tier: LatencyTier) -> float:
        return dict(self.decay_w_per_s)[tier]


DEFAULT_TUNING = Tuning()
