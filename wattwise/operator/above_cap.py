"""Share of time a budget spent above its cap over a sliding window (status `aboveCapFraction`). Pure.

Fed once per tick with the tick's length and whether facility draw was above the cap. Time without ticks (the
operator on standby, or restarting) is not in the window: the fraction is of the time actually observed.
"""

from __future__ import annotations

import collections


class AboveCapWindow:
    def __init__(self, window_s: float = 300.0) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, float, bool]] = collections.deque()
        self._observed_s = 0.0
        self._above_s = 0.0
        #: every second ever spent above the cap (for the `_total` counter)
        self.above_total_s = 0.0

    def add(self, now: float, dt_s: float, above: bool) -> None:
        dt_s = max(0.0, dt_s)
        self._samples.append((now, dt_s, above))
        self._observed_s += dt_s
        if above:
            self._above_s += dt_s
            self.above_total_s += dt_s
        while self._samples and self._samples[0][0] <= now - self.window_s:
            _, old_dt, old_above = self._samples.popleft()
            self._observed_s -= old_dt
            if old_above:
                self._above_s -= old_dt

    @property
    def fraction(self) -> float:
        """0 when nothing has been observed yet."""
        if self._observed_s <= 1e-9:
            return 0.0
        return min(1.0, max(0.0, self._above_s / self._observed_s))
