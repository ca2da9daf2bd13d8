"""Hypothesis strategies for fleets and budgets: random but physically plausible GPU states."""

from __future__ import annotations

from hypothesis import strategies as st

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode, EmergencyPolicy
from wattwise.policy import BudgetState, GpuLimits, GpuState


@st.composite
def gpu_states(draw: st.DrawFn, uuid: str) -> GpuState:
    min_w = draw(st.sampled_from([100.0, 150.0, 200.0]))
    max_w = draw(st.sampled_from([300.0, 400.0, 700.0]))
    limits = GpuLimits(min_w=min_w, max_w=max_w, default_w=max_w)
    enforced = draw(st.one_of(st.none(), st.floats(min_w, max_w)))
    power = draw(st.one_of(st.none(), st.floats(0.0, max_w * 1.05)))
    floor = draw(st.one_of(st.none(), st.floats(min_w, max_w)))
    ceiling = draw(st.one_of(st.none(), st.floats(min_w, max_w)))
    return GpuState(
        uuid=uuid,
        node=f"node-{draw(st.integers(0, 3))}",
        tier=draw(st.sampled_from(list(LatencyTier))),
        limits=limits,
        enforced_limit_w=enforced,
        power_w=power,
        floor_w=floor,
        ceiling_w=ceiling,
        priority=draw(st.integers(0, 2)),
        expected_w=draw(st.one_of(st.none(), st.floats(50, max_w))),
    )


@st.composite
def fleets(
    draw: st.DrawFn, max_gpus: int = 24, modes: tuple[BudgetMode, ...] = tuple(BudgetMode)
) -> tuple[list[BudgetState], dict[str, GpuState]]:
    n = draw(st.integers(1, max_gpus))
    gpus = {f"GPU-{i}": draw(gpu_states(f"GPU-{i}")) for i in range(n)}
    uuids = sorted(gpus)
    budgets = []
    for j in range(draw(st.integers(1, 3))):
        members = draw(st.lists(st.sampled_from(uuids), min_size=1, unique=True))
        target = draw(st.floats(0.8, 1.0))
        budgets.append(
            BudgetState(
                name=f"b{j}",
                cap_w=draw(st.floats(200.0, 700.0 * len(members) * 1.2)),
                gpu_uuids=tuple(members),
                node_count=draw(st.integers(0, 4)),
                per_node_base_w=draw(st.sampled_from([0.0, 50.0, 300.0])),
                pue=draw(st.sampled_from([1.0, 1.1, 1.4])),
                target_utilization=target,
                lower_above_fraction=draw(st.floats(target, 1.0)),
                raise_below_fraction=draw(st.floats(0.5, target - 0.01)),
                ramp_w_per_s=draw(st.sampled_from([5.0, 20.0, 100.0])),
                mode=draw(st.sampled_from(modes)),
                emergency_policy=draw(st.sampled_from(list(EmergencyPolicy))),
            )
        )
    return budgets, gpus
