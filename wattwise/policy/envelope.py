"""Node envelopes: the fast, node-local half of the control loop.

The 1 Hz loop sees a burst of critical work only after it started: on bursty chat traffic, a budget either keeps
watts idle for bursts it cannot see coming or goes over its cap for a second at each one. So with every decision
the policy also hands each node an *envelope*: the GPU watts its plan counted that node at. Between two decisions
the node agent re-shares the envelope every 100 ms: its protected GPUs (critical and standard) draw what they
need, never limited by the agent, and its flexible GPUs (tolerant) are capped to what the protected ones leave.
A critical burst therefore takes its watts from tolerant GPUs on the same node within one fast tick, and watts a
critical GPU stops using go back to them at once instead of waiting for the next decision and a ramp.

The envelopes of a budget's nodes add up to no more than its allowance, so a node that stays inside its envelope
keeps every budget it sits in at its target. A burst larger than a node's flexible GPUs can give (tolerant GPUs at
their floors) is left to the budget's margin between target and cap, and to the next decision.

Both the node agent and the simulator run `share` and `CapTracker`: what is measured here is what ships.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping

from wattwise.policy.waterfill import water_fill


@dataclasses.dataclass(frozen=True, slots=True)
class FlexibleGpu:
    """A GPU whose limit the agent sets from the envelope, between `floor_w` and `ceiling_w`.

    `ceiling_w` is the most the GPU can use this tick (its demand estimate, at most its ceiling): a GPU between jobs
    is not handed watts it would leave idle while its neighbours are capped.
    """

    uuid: str
    floor_w: float
    ceiling_w: float
    priority: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class NodeEnvelope:
    """One node's share of its budgets until the next decision."""

    node: str
    #: GPU watts the node may draw: the sum of what the plan counted each of its GPUs at.
    watts: float
    #: GPUs the agent never limits (critical and standard work): their draw comes off the envelope first.
    protected: tuple[str, ...]
    #: GPUs that share what the protected ones leave (tolerant work), higher priority served first.
    flexible: tuple[FlexibleGpu, ...]


def share(envelope: NodeEnvelope, protected_draw_w: float) -> dict[str, float]:
    """Every flexible GPU's limit while the protected GPUs draw `protected_draw_w` in total.

    Floors first; then higher priority groups, each max-min fair (water-filling) up to their ceilings. When the
    protected draw leaves less than the floors, the flexible GPUs sit at their floors: a floor is a promise the
    envelope does not break; the budget's margin and the next decision absorb the rest.
    """
    flexible = envelope.flexible
    caps = {g.uuid: g.floor_w for g in flexible}
    room = envelope.watts - protected_draw_w - sum(caps.values())
    by_priority = sorted(flexible, key=lambda g: -g.priority)
    for _, group_iter in itertools.groupby(by_priority, key=lambda g: g.priority):
        if room <= 0.0:
            break
        group = list(group_iter)
        lows = [g.floor_w for g in group]
        highs = [max(g.floor_w, g.ceiling_w) for g in group]
        given = min(room, sum(highs) - sum(lows))
        for g, watts in zip(group, water_fill(lows, highs, sum(lows) + given), strict=True):
            caps[g.uuid] = watts
        room -= given
    return caps


#: How close to its limit a GPU must draw to count as held back by it (the larger of the two).
CAP_WITHIN_W = 10.0
CAP_WITHIN_FRACTION = 0.04


def near_cap(
    power_w: float, limit_w: float, *, within_w: float = CAP_WITHIN_W, within_fraction: float = CAP_WITHIN_FRACTION
) -> bool:
    """Drawing within a small margin of its limit: the limit, not the load, sets the GPU's power."""
    return power_w >= limit_w - max(within_w, within_fraction * limit_w)


@dataclasses.dataclass(slots=True)
class CapTracker:
    """Counts, per GPU, the fast ticks it spent at its envelope cap since the last report.

    The 1 Hz loop needs to know whether a flexible GPU's limit held it back: a GPU capped for part of a second
    averages below its limit and would look idle. Held for at least half the fast ticks counts as capped.
    """

    ticks: int = 0
    at_cap: dict[str, int] = dataclasses.field(default_factory=dict)

    def observe(self, samples: Iterable[tuple[str, float, float]]) -> None:
        """One fast tick: (uuid, power W, limit W) of every flexible GPU."""
        self.ticks += 1
        for uuid, power_w, limit_w in samples:
            self.at_cap[uuid] = self.at_cap.get(uuid, 0) + (1 if near_cap(power_w, limit_w) else 0)

    @staticmethod
    def verdict(ticks_at_cap: int, ticks: int) -> bool:
        """Capped over a period: at the cap for at least half of its fast ticks."""
        return 2 * ticks_at_cap >= max(1, ticks)

    def take(self) -> Mapping[str, bool]:
        """Whether each observed GPU was capped over the period, and start a new period."""
        out = {uuid: self.verdict(n, self.ticks) for uuid, n in self.at_cap.items()}
        self.ticks = 0
        self.at_cap = {}
        return out
