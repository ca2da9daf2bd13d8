"""Watts the extender has promised to pods it just let through, until the telemetry shows them.

Between kube-scheduler choosing a node and the operator's live state attributing the pod's GPUs (binding,
admission, the next agent report, the next refresh), the live state does not know about the pod. Without this
book, a burst of pods would each see the same headroom and all claim it.

A claim covers every node the pod may still land on (the extender does not see the scheduler's final choice):
each budget counts the pod once, at its largest need over those nodes. That over-reserves while several
budgets are candidates, never under-reserves. Prioritize narrows a claim to the nodes the scheduler still
considers. A claim ends when the live state shows the pod, or after `ttl_s`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetClaim:
    """What one pod holds in one budget: guaranteed-headroom watts and nameplate watts (both facility)."""

    guaranteed_w: float
    nameplate_w: float


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    pod: str
    nodes: frozenset[str]
    budgets: Mapping[str, BudgetClaim]
    expires_at: float


class ReservationBook:
    """Thread-safe; `now` is a monotonic clock reading passed in, so tests control time."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._claims: dict[str, Claim] = {}
        self._totals: dict[str, BudgetClaim] | None = None
        self._lock = threading.Lock()

    def hold(self, pod: str, nodes: Iterable[str], budgets: Mapping[str, BudgetClaim], now: float) -> None:
        """Replace the pod's claim (a retry or a narrowing never double-counts)."""
        with self._lock:
            if budgets:
                self._claims[pod] = Claim(pod, frozenset(nodes), dict(budgets), now + self.ttl_s)
            else:
                self._claims.pop(pod, None)
            self._totals = None

    def drop(self, pod: str) -> None:
        with self._lock:
            if self._claims.pop(pod, None) is not None:
                self._totals = None

    def get(self, pod: str) -> Claim | None:
        return self._claims.get(pod)

    def release(self, seen_pods: set[str], now: float) -> int:
        """Drop claims whose pod the telemetry now shows, and expired ones; return how many went."""
        with self._lock:
            gone = [p for p, c in self._claims.items() if p in seen_pods or c.expires_at <= now]
            for pod in gone:
                del self._claims[pod]
            if gone:
                self._totals = None
            return len(gone)

    def __len__(self) -> int:
        return len(self._claims)

    def totals(self, exclude: str | None = None) -> dict[str, BudgetClaim]:
        """Per budget, the sum of every live claim except `exclude`'s (the pod being placed again)."""
        with self._lock:
            if self._totals is None:
                self._totals = _sum(self._claims.values())
            totals = self._totals
            own = self._claims.get(exclude) if exclude is not None else None
        if own is None:
            return totals
        out = dict(totals)
        for name, c in own.budgets.items():
            t = out[name]
            out[name] = BudgetClaim(t.guaranteed_w - c.guaranteed_w, t.nameplate_w - c.nameplate_w)
        return out


def _sum(claims: Iterable[Claim]) -> dict[str, BudgetClaim]:
    acc: dict[str, list[float]] = {}
    for claim in claims:
        for name, c in claim.budgets.items():
            a = acc.setdefault(name, [0.0, 0.0])
            a[0] += c.guaranteed_w
            a[1] += c.nameplate_w
    return {name: BudgetClaim(g, n) for name, (g, n) in acc.items()}
