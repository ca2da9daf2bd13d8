"""The policy's inputs and outputs: plain frozen dataclasses, no I/O, no Kubernetes.

The operator builds these from agent reports and PowerBudget/WorkloadClass objects; the simulator builds them from
simulated GPUs. Both call `wattwise.policy.decide` once per tick and pass the returned `Decision` back next tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode, EmergencyPolicy, PowerBudgetSpec
from wattwise.policy.envelope import NodeEnvelope


@dataclasses.dataclass(frozen=True, slots=True)
class GpuLimits:
    """A GPU's power-limit constraints as NVML reports them (nvmlDeviceGetPowerManagementLimitConstraints)."""

    min_w: float
    max_w: float
    default_w: float

    def clamp(self, watts: float) -> float:
        return min(self.max_w, max(self.min_w, watts))


@dataclasses.dataclass(frozen=True, slots=True)
class GpuState:
    """One GPU as seen this tick. `power_w is None` means no fresh reading: it then counts at its limit."""

    uuid: str
    node: str
    tier: LatencyTier
    limits: GpuLimits
    enforced_limit_w: float | None
    power_w: float | None
    floor_w: float | None = None
    ceiling_w: float | None = None
    priority: int = 0
    #: The class's expected draw per GPU; a critical GPU's reservation never falls below it.
    expected_w: float | None = None
    #: The agent's verdict while a node envelope sets this GPU's limit (`envelope.CapTracker`): its limit moved
    #: every 100 ms, so whether it held the GPU back cannot be read off the mean draw. None: judge from the reading.
    capped: bool | None = None
    #: Effective floor: the class floor clamped into the GPU's constraints (derived).
    floor: float = dataclasses.field(init=False, repr=False, compare=False)
    #: Effective ceiling: never below the floor, never above the GPU's maximum (derived).
    ceiling: float = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once here: the control loop reads them many times per tick for every GPU.
        floor = self.limits.clamp(self.floor_w if self.floor_w is not None else self.limits.min_w)
        top = self.limits.max_w if self.ceiling_w is None else self.limits.clamp(self.ceiling_w)
        object.__setattr__(self, "floor", floor)
        object.__setattr__(self, "ceiling", max(floor, top))

    @property
    def fresh(self) -> bool:
        return self.power_w is not None

    @property
    def current_limit_w(self) -> float:
        """Where its limit stands now: what it enforces, its default when that is unknown."""
        return self.enforced_limit_w if self.enforced_limit_w is not None else self.limits.default_w

    @property
    def counted_w(self) -> float:
        """What this GPU counts for in the facility draw: its reading, else its limit (max when unknown)."""
        if self.power_w is not None:
            return self.power_w
        return self.enforced_limit_w if self.enforced_limit_w is not None else self.limits.max_w


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetState:
    """One PowerBudget resolved to its GPUs and nodes."""

    name: str
    cap_w: float
    gpu_uuids: tuple[str, ...]
    node_count: int
    per_node_base_w: float = 0.0
    pue: float = 1.0
    target_utilization: float = 0.95
    lower_above_fraction: float = 0.98
    raise_below_fraction: float = 0.90
    ramp_w_per_s: float = 20.0
    mode: BudgetMode = BudgetMode.ENFORCE
    emergency_policy: EmergencyPolicy = EmergencyPolicy.HOLD_FLOORS

    @classmethod
    def from_spec(cls, name: str, spec: PowerBudgetSpec, gpu_uuids: Sequence[str], node_count: int) -> BudgetState:
        return cls(
            name=name,
            cap_w=spec.cap_watts,
            gpu_uuids=tuple(gpu_uuids),
            node_count=node_count,
            per_node_base_w=spec.non_gpu_power.per_node_base_watts,
            pue=spec.non_gpu_power.pue,
            target_utilization=spec.target_utilization,
            lower_above_fraction=spec.thresholds.lower_above_fraction,
            raise_below_fraction=spec.thresholds.raise_below_fraction,
            ramp_w_per_s=spec.ramp_watts_per_second,
            mode=spec.mode,
            emergency_policy=spec.emergency_policy,
        )

    @property
    def non_gpu_it_w(self) -> float:
        """Non-GPU IT power (before PUE)."""
        return self.node_count * self.per_node_base_w

    def facility_w(self, gpu_w: float) -> float:
        """Facility power for a given GPU draw: (GPU + node base) x PUE."""
        return (gpu_w + self.non_gpu_it_w) * self.pue

    def gpu_allowance_w(self) -> float:
        """GPU watts that keep facility draw at the target."""
        return self.target_utilization * self.cap_w / self.pue - self.non_gpu_it_w


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetReport:
    """What one budget looked like this tick, for status, metrics, Events and the simulator's report."""

    name: str
    mode: BudgetMode
    cap_w: float
    facility_draw_w: float
    gpu_draw_w: float
    non_gpu_w: float
    headroom_w: float
    allowance_w: float
    floors_w: float
    feasible: bool
    over_cap: bool
    over_target: bool
    gpus: int
    stale_gpus: int
    gpus_limited: int
    critical_limited: int
    tier_power_w: Mapping[LatencyTier, float]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer for one tick, and the state it carries into the next.

    `limits` holds only GPUs under at least one Enforce budget (what to actuate); `recommended` holds every GPU in
    any budget (what Wattwise would set), so Monitor and Recommend budgets can publish it.
    """

    limits: Mapping[str, float]
    recommended: Mapping[str, float]
    budgets: Mapping[str, BudgetReport]
    demand_w: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: Per budget: the held peak of its critical GPUs' summed demand (see `Tuning.critical_pool_decay_w_per_s`).
    critical_hold_w: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: Per node under Enforce budgets only: what its agent re-shares every 100 ms until the next decision
    #: (`wattwise.policy.envelope`). A node without one (stale GPUs, infeasible floors, a limited critical GPU)
    #: applies `limits` as they are.
    envelopes: Mapping[str, NodeEnvelope] = dataclasses.field(default_factory=dict)
