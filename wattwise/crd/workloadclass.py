"""`WorkloadClass`: a named class of inference work, its latency tier and how its GPUs may be limited."""

from __future__ import annotations

import enum
from typing import Annotated, Self

from pydantic import Field, model_validator

from wattwise.crd.common import API_VERSION, Condition, LatencyTier, Model, ObjectMeta


class OperatingMode(enum.StrEnum):
    """What the class optimises when Wattwise has a choice."""

    LOW_LATENCY = "LowLatency"
    ENERGY_EFFICIENT = "EnergyEfficient"
    THROUGHPUT = "Throughput"


class Floor(Model):
    """The limit below which the class's GPUs are never set: watts, or a fraction of the GPU's default limit."""

    watts: Annotated[float, Field(strict=True, ge=1, le=5000)] | None = None
    fraction: Annotated[float, Field(strict=True, gt=0, le=1.0)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.watts is None) == (self.fraction is None):
            raise ValueError("floor: set exactly one of watts or fraction")
        return self

    def watts_for(self, default_limit_watts: float) -> float:
        return self.watts if self.watts is not None else default_limit_watts * (self.fraction or 0.0)


class ClockRange(Model):
    """Locked SM clocks (nvmlDeviceSetGpuLockedClocks), for modes that trade clocks for energy."""

    min_mhz: Annotated[int, Field(strict=True, ge=100, le=5000, alias="minMHz")]
    max_mhz: Annotated[int, Field(strict=True, ge=100, le=5000, alias="maxMHz")]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_mhz > self.max_mhz:
            raise ValueError("lockedSmClocks: minMHz must not exceed maxMHz")
        return self


class WorkloadClassSpec(Model):
    tier: LatencyTier
    mode: OperatingMode = OperatingMode.LOW_LATENCY
    expected_watts_per_gpu: Annotated[float, Field(strict=True, ge=1, le=5000)] | None = None
    floor: Floor | None = None
    ceiling_watts: Annotated[float, Field(strict=True, ge=1, le=5000)] | None = None
    priority: Annotated[int, Field(strict=True, ge=0, le=1000)] = 0
    locked_sm_clocks: ClockRange | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        floor_watts = self.floor.watts if self.floor is not None else None
        if floor_watts is not None and self.ceiling_watts is not None and floor_watts > self.ceiling_watts:
            raise ValueError("floor.watts must not exceed ceilingWatts")
        if self.locked_sm_clocks is not None and self.mode is OperatingMode.LOW_LATENCY:
            raise ValueError("lockedSmClocks slows the GPU: not allowed with mode LowLatency")
        return self


class WorkloadClassStatus(Model):
    observed_generation: Annotated[int, Field(strict=True, ge=0)] | None = None
    pods: Annotated[int, Field(strict=True, ge=0)] | None = None
    gpus: Annotated[int, Field(strict=True, ge=0)] | None = None
    power_watts: Annotated[float, Field(strict=True, ge=0)] | None = None
    conditions: list[Condition] | None = None


class WorkloadClass(Model):
    api_version: str = API_VERSION
    kind: str = "WorkloadClass"
    metadata: ObjectMeta
    spec: WorkloadClassSpec
    status: WorkloadClassStatus | None = None
