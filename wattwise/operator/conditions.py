"""metav1.Condition bookkeeping: desired conditions in, the status list out, transition times kept. Pure.

A condition's `lastTransitionTime` moves only when its status changes (a new reason or message alone does not
move it), as `kubectl wait` and every controller in core Kubernetes expect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
OVER_BUDGET = "OverBudget"
DEGRADED = "Degraded"


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    type: str
    status: Status
    reason: str
    message: str = ""


def timestamp(now: dt.datetime) -> str:
    """RFC 3339 in UTC with second precision, the form metav1.Time serialises to."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    previous: Iterable[Mapping[str, Any]] | None,
    desired: Sequence[Desired],
    generation: int | None,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """The conditions to write, in the order desired, keeping each unchanged status's transition time."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for d in desired:
        old = before.get(d.type)
        moved = old is None or old.get("status") != d.status or not old.get("lastTransitionTime")
        cond: dict[str, Any] = {
            "type": d.type,
            "status": d.status,
            "reason": d.reason,
            "message": d.message[:32768],
            "lastTransitionTime": timestamp(now) if moved else old["lastTransitionTime"],  # type: ignore[index]
        }
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)
    return out


def changed(previous: Iterable[Mapping[str, Any]] | None, current: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a condition's status or reason differs: worth an immediate write. (Messages carry live figures;
    they are written on the regular cadence.)"""

    def key(conds: Iterable[Mapping[str, Any]] | None) -> dict[Any, tuple[Any, Any]]:
        return {c.get("type"): (c.get("status"), c.get("reason")) for c in conds or []}

    return key(previous) != key(current)
