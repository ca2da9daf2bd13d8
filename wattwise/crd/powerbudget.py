"""`PowerBudget`: one power domain (facility, room, row, rack or PDU) and the cap it must stay under.

Facility draw is modelled as `(GPU draw + nodes x perNodeBaseWatts) x pue`: the non-GPU share a facility
system may patch at run time (a heat wave raises the PUE). A node may sit in several budgets; all hold at once.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Self

from pydantic import Field, model_validator

from wattwise.crd.common import API_VERSION, Condition, LabelSelector, Model, ObjectMeta


class BudgetMode(enum.StrEnum):
    """Graduated trust: watch first, then see what would be done, then let Wattwise act."""

    MONITOR = "Monitor"
    RECOMMEND = "Recommend"
    ENFORCE = "Enforce"


class EmergencyPolicy(enum.StrEnum):
    """What to do when even every GPU's floor does not fit under the cap."""

    #: Hold every GPU at its floor, report `OverBudget` with reason `FloorsInfeasible`; the cap may be breached.
    HOLD_FLOORS = "HoldFloors"
    #: Scale floors down (tolerant first, critical last) to the GPUs' minimum limits to keep the cap.
    BELOW_FLOORS = "BelowFloors"


class NonGpuPower(Model):
    """What the facility draws besides the GPUs."""

    per_node_base_watts: Annotated[float, Field(strict=True, ge=0, le=100_000)] = 0.0
    pue: Annotated[float, Field(strict=True, ge=1.0, le=4.0)] = 1.0


class Thresholds(Model):
    """Act before the cap, never at it: a hysteresis band around the target (see wattwise.policy.control)."""

    lower_above_fraction: Annotated[float, Field(strict=True, ge=0.5, le=1.0)] = 0.98
    raise_below_fraction: Annotated[float, Field(strict=True, ge=0.3, le=1.0)] = 0.9


class FailSafe(Model):
    """Where an agent that has lost the operator sets its GPUs once the grace period is over."""

    grace_period_seconds: Annotated[int, Field(strict=True, ge=1, le=3600)] = 30
    limit_watts: Annotated[float, Field(strict=True, ge=1, le=5000)] | None = None
    limit_fraction: Annotated[float, Field(strict=True, gt=0, le=1.0)] | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> Self:
        if self.limit_watts is not None and self.limit_fraction is not None:
            raise ValueError("failSafe: set either limitWatts or limitFraction, not both")
        return self

    def limit_for(self, default_limit_watts: float) -> float:
        """The fail-safe limit for a GPU whose default limit is given (70% of it when nothing is set)."""
        if self.limit_watts is not None:
            return self.limit_watts
        return default_limit_watts * (self.limit_fraction if self.limit_fraction is not None else 0.7)


class PowerBudgetSpec(Model):
    cap_watts: Annotated[float, Field(strict=True, ge=1, le=1e9)]
    node_selector: LabelSelector
    non_gpu_power: NonGpuPower = NonGpuPower()
    target_utilization: Annotated[float, Field(strict=True, ge=0.5, le=1.0)] = 0.95
    thresholds: Thresholds = Thresholds()
    mode: BudgetMode = BudgetMode.MONITOR
    ramp_watts_per_second: Annotated[float, Field(strict=True, ge=1, le=1000)] = 20.0
    fail_safe: FailSafe = FailSafe()
    emergency_policy: EmergencyPolicy = EmergencyPolicy.HOLD_FLOORS
    max_oversubscription: Annotated[float, Field(strict=True, ge=1.0, le=4.0)] = 1.3

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Self:
        t = self.thresholds
        if not (t.raise_below_fraction < self.target_utilization <= t.lower_above_fraction):
            raise ValueError(
                "thresholds must be ordered raiseBelowFraction < targetUtilization <= lowerAboveFraction, "
                f"got {t.raise_below_fraction} < {self.target_utilization} <= {t.lower_above_fraction}"
            )
        return self


class TierPower(Model):
    critical: Annotated[float, Field(strict=True, ge=0)] = 0.0
    standard: Annotated[float, Field(strict=True, ge=0)] = 0.0
    tolerant: Annotated[float, Field(strict=True, ge=0)] = 0.0


class PowerBudgetStatus(Model):
    observed_generation: Annotated[int, Field(strict=True, ge=0)] | None = None
    facility_draw_watts: Annotated[float, Field(strict=True, ge=0)] | None = None
    gpu_draw_watts: Annotated[float, Field(strict=True, ge=0)] | None = None
    headroom_watts: float | None = None
    above_cap_fraction: Annotated[float, Field(strict=True, ge=0, le=1)] | None = None
    nodes: Annotated[int, Field(strict=True, ge=0)] | None = None
    stale_nodes: Annotated[int, Field(strict=True, ge=0)] | None = None
    gpus: Annotated[int, Field(strict=True, ge=0)] | None = None
    gpus_limited: Annotated[int, Field(strict=True, ge=0)] | None = None
    tier_power_watts: TierPower | None = None
    last_update_time: dt.datetime | None = None
    conditions: list[Condition] | None = None


class PowerBudget(Model):
    api_version: str = API_VERSION
    kind: str = "PowerBudget"
    metadata: ObjectMeta
    spec: PowerBudgetSpec
    status: PowerBudgetStatus | None = None
