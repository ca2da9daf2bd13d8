"""The operator's live state: the document `GET /v1/state` serves to the extender and `wattwise status`.

The operator produces it every control-loop tick from the freshest agent reports; the extender caches it and
places pods against it; `wattwise status` prints it. It is a wire contract between separately deployed
components, so field names are stable, snake_case, and in base units (`_w` watts of *facility* power unless
a name says GPU, `_c` degrees Celsius). A breaking change bumps `SCHEMA_VERSION`; an optional field does not.

What each budget number means (all facility watts, i.e. GPU watts x PUE plus the non-GPU share):

- `facility_draw_w`: measured now; a GPU whose report is stale counts at its limit (its maximum when unknown).
- `headroom_w = cap_w x target_utilization - facility_draw_w` (negative when over target).
- `committed_w`: the expected demand of pods already placed in the domain, by tier (expected power per GPU of
  the pod's class or default, x GPUs, x PUE).
- `guaranteed_headroom_w = cap_w x target_utilization - non_gpu_w - committed_w.critical
  - committed_w.standard - tolerant_floors_w`: what can still be promised to critical or standard work,
  counting tolerant pods at the floors the control loop may squeeze them to. Negative: the promises already
  made do not fit.
- `allocated_default_limit_w`: sum of the default (nameplate) power limits of the GPUs allocated to pods, in
  GPU watts; with `max_oversubscription` it bounds tolerant placement:
  `allocated_default_limit_w x pue + non_gpu_w <= cap_w x max_oversubscription`.
- A pod the document lists on a GPU (`GpuView.pod`) must already be counted in `committed_w`,
  `guaranteed_headroom_w` and `allocated_default_limit_w` of every budget of its node: the extender drops its
  own reservation for a pod as soon as it appears here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode

SCHEMA_VERSION: Literal[1] = 1
#: Path the operator serves the document at.
LIVE_STATE_PATH = "/v1/state"

Watts = Annotated[float, Field(ge=0)]


class _View(BaseModel):
    """Frozen; unknown fields ignored so an older extender still reads a newer operator's document."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class TierWatts(_View):
    critical: Watts = 0.0
    standard: Watts = 0.0
    tolerant: Watts = 0.0


class BudgetView(_View):
    """One PowerBudget as the control loop sees it this tick (see the module docstring for the arithmetic)."""

    name: Annotated[str, Field(min_length=1)]
    mode: BudgetMode = BudgetMode.MONITOR
    cap_w: Annotated[float, Field(gt=0)]
    target_utilization: Annotated[float, Field(gt=0, le=1.0)] = 0.95
    max_oversubscription: Annotated[float, Field(ge=1.0)] = 1.3
    pue: Annotated[float, Field(ge=1.0)] = 1.0
    facility_draw_w: Watts = 0.0
    gpu_draw_w: Watts = 0.0
    non_gpu_w: Watts = 0.0
    headroom_w: float = 0.0
    guaranteed_headroom_w: float = 0.0
    committed_w: TierWatts = TierWatts()
    tolerant_floors_w: Watts = 0.0
    allocated_default_limit_w: Watts = 0.0
    #: False when even the floors do not fit under the cap (the `OverBudget`/`FloorsInfeasible` case).
    feasible: bool = True
    #: True when the operator itself lacks fresh data for this budget (agents silent): do not trust headroom.
    stale: bool = False
    nodes: Annotated[int, Field(ge=0)] = 0
    stale_nodes: Annotated[int, Field(ge=0)] = 0
    gpus: Annotated[int, Field(ge=0)] = 0
    gpus_limited: Annotated[int, Field(ge=0)] = 0

    @property
    def target_w(self) -> float:
        return self.cap_w * self.target_utilization

    @property
    def nameplate_w(self) -> float:
        """Facility power the allocated GPUs could draw at their default limits."""
        return self.allocated_default_limit_w * self.pue + self.non_gpu_w

    @property
    def oversubscription_bound_w(self) -> float:
        return self.cap_w * self.max_oversubscription


class GpuView(_View):
    uuid: Annotated[str, Field(min_length=1)]
    index: Annotated[int, Field(ge=0)]
    temperature_c: float | None = None
    power_w: Watts | None = None
    limit_w: Watts | None = None
    default_limit_w: Watts | None = None
    #: The tier of the pod using the GPU, or None when idle.
    tier: LatencyTier | None = None
    #: `namespace/name` of the pod using the GPU, or None when idle.
    pod: str | None = None


class EnvelopeView(_View):
    """The node envelope of the last decision (GPU watts, not facility watts): what the node's agent re-shares every
    100 ms until the next reply. Protected GPUs are never limited by the agent; flexible ones share what they leave."""

    watts: Watts
    protected: list[str] = []
    flexible: list[str] = []


class NodeView(_View):
    #: Names of every PowerBudget whose nodeSelector selects this node (all of them hold at once).
    budgets: list[str] = []
    #: The node's `nvidia.com/gpu.product` label, e.g. `NVIDIA-H100-80GB-HBM3`.
    gpu_product: str | None = None
    #: A GPU at or above this temperature makes the node unfit for critical pods; None = extender default.
    thermal_threshold_c: float | None = None
    stale: bool = False
    last_report_at: dt.datetime | None = None
    gpus: list[GpuView] = []
    #: None when the node has no envelope (not enforced, stale, or its budgets could not be planned this tick)
    envelope: EnvelopeView | None = None

    @property
    def max_temperature_c(self) -> float | None:
        temps = [g.temperature_c for g in self.gpus if g.temperature_c is not None]
        return max(temps) if temps else None

    @property
    def default_limit_w(self) -> float | None:
        """The GPUs' nameplate limit (the largest, so a mixed node is never under-counted)."""
        limits = [g.default_limit_w for g in self.gpus if g.default_limit_w]
        return max(limits) if limits else None


class ClassView(_View):
    """The part of a WorkloadClass placement needs."""

    tier: LatencyTier
    expected_watts_per_gpu: Annotated[float, Field(gt=0)] | None = None
    priority: Annotated[int, Field(ge=0)] = 0


class LiveState(_View):
    schema_version: Literal[1] = SCHEMA_VERSION
    generated_at: dt.datetime
    budgets: list[BudgetView] = []
    nodes: dict[str, NodeView] = {}
    classes: dict[str, ClassView] = {}

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        names = [b.name for b in self.budgets]
        if len(set(names)) != len(names):
            raise ValueError("budgets: names must be unique")
        known = set(names)
        for node, view in self.nodes.items():
            missing = [b for b in view.budgets if b not in known]
            if missing:
                raise ValueError(f"nodes.{node}.budgets: unknown budget(s) {missing}")
        return self

    def budget(self, name: str) -> BudgetView | None:
        return next((b for b in self.budgets if b.name == name), None)

    def pods(self) -> set[str]:
        """Every `namespace/name` the telemetry attributes a GPU to."""
        return {g.pod for n in self.nodes.values() for g in n.gpus if g.pod}
