"""Node envelopes: the node-local half of the loop (`wattwise.policy.envelope`) and what `decide` hands out."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattwise.crd.common import LatencyTier
from wattwise.crd.powerbudget import BudgetMode
from wattwise.policy import BudgetState, GpuLimits, GpuState, decide
from wattwise.policy.demand import estimate_demand
from wattwise.policy.envelope import CapTracker, FlexibleGpu, NodeEnvelope, near_cap, share
from wattwise.policy.tuning import DEFAULT_TUNING

from .strategies import fleets

H100 = GpuLimits(min_w=200.0, max_w=700.0, default_w=700.0)


def gpu(uuid: str, tier: LatencyTier, power_w: float | None, *, node: str = "node-a", **kw: Any) -> GpuState:
    kw.setdefault("enforced_limit_w", 700.0)
    return GpuState(uuid=uuid, node=node, tier=tier, limits=H100, power_w=power_w, **kw)


def site(*gpus: GpuState, cap_w: float = 10_000.0, mode: BudgetMode = BudgetMode.ENFORCE) -> BudgetState:
    return BudgetState(name="site", cap_w=cap_w, gpu_uuids=tuple(g.uuid for g in gpus), node_count=0, mode=mode)


# --- share: what the agent runs every 100 ms ------------------------------------------------------------------


@st.composite
def envelopes(draw: st.DrawFn) -> NodeEnvelope:
    flexible = []
    for i in range(draw(st.integers(0, 6))):
        floor = draw(st.floats(0.0, 400.0))
        flexible.append(FlexibleGpu(f"GPU-{i}", floor, draw(st.floats(floor, 700.0)), draw(st.integers(0, 2))))
    return NodeEnvelope("node-a", draw(st.floats(0.0, 6000.0)), ("GPU-p",), tuple(flexible))


@given(envelopes(), st.floats(0.0, 6000.0))
def test_share_gives_what_protected_leave_within_floors_and_ceilings(envelope: NodeEnvelope, drawn: float) -> None:
    caps = share(envelope, drawn)
    assert set(caps) == {g.uuid for g in envelope.flexible}
    for g in envelope.flexible:
        assert g.floor_w - 1e-6 <= caps[g.uuid] <= g.ceiling_w + 1e-6
    floors = sum(g.floor_w for g in envelope.flexible)
    ceilings = sum(g.ceiling_w for g in envelope.flexible)
    assert sum(caps.values()) == pytest.approx(min(max(envelope.watts - drawn, floors), ceilings), abs=1e-6)


@given(envelopes(), st.floats(0.0, 6000.0))
def test_share_serves_higher_priority_first(envelope: NodeEnvelope, drawn: float) -> None:
    caps = share(envelope, drawn)
    for high in envelope.flexible:
        for low in envelope.flexible:
            if high.priority > low.priority and caps[high.uuid] < high.ceiling_w - 1e-6:
                assert caps[low.uuid] == pytest.approx(low.floor_w, abs=1e-6)


def test_share_is_max_min_fair_inside_a_priority() -> None:
    envelope = NodeEnvelope(
        "n",
        1500.0,
        ("c",),
        (FlexibleGpu("a", 200.0, 700.0), FlexibleGpu("b", 200.0, 700.0), FlexibleGpu("idle", 200.0, 250.0)),
    )
    assert share(envelope, 300.0) == pytest.approx({"a": 475.0, "b": 475.0, "idle": 250.0})
    # A burst of the protected GPUs takes its watts from the flexible ones, down to their floors and no further.
    assert share(envelope, 800.0) == pytest.approx({"a": 700 / 3, "b": 700 / 3, "idle": 700 / 3})
    assert share(envelope, 5000.0) == pytest.approx({"a": 200.0, "b": 200.0, "idle": 200.0})


def test_cap_tracker_counts_half_the_ticks_at_cap_as_capped() -> None:
    tracker = CapTracker()
    for power in (448.0, 300.0, 449.0, 200.0):
        tracker.observe([("a", power, 450.0), ("b", 100.0, 450.0)])
    assert tracker.take() == {"a": True, "b": False}
    assert tracker.take() == {}  # a new period
    assert near_cap(680.0, 700.0) and not near_cap(660.0, 700.0)  # 4% of 700 W is 28 W


def test_capped_verdict_overrides_the_reading() -> None:
    # Capped for most of the second but averaging well under its limit: the verdict, not the mean, decides.
    g = gpu("t", LatencyTier.TOLERANT, 300.0, capped=True, enforced_limit_w=450.0)
    assert estimate_demand(g, None, 1.0, DEFAULT_TUNING) == 700.0
    assert estimate_demand(gpu("u", LatencyTier.TOLERANT, 300.0, capped=False), None, 1.0, DEFAULT_TUNING) < 400.0


# --- decide: which nodes get an envelope, and how large -----------------------------------------------------------


def test_envelope_counts_each_gpu_at_its_plan_and_splits_tiers() -> None:
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 100.0),
        "s": gpu("s", LatencyTier.STANDARD, 300.0),
        "t1": gpu("t1", LatencyTier.TOLERANT, 680.0, enforced_limit_w=690.0),
        "t2": gpu("t2", LatencyTier.TOLERANT, 300.0),
    }
    decision = decide([site(*gpus.values(), cap_w=1200.0)], gpus)
    envelope = decision.envelopes["node-a"]
    assert envelope.protected == ("c", "s")
    assert [f.uuid for f in envelope.flexible] == ["t1", "t2"]
    # The whole node is the whole budget here, and the plan spends all of it: t1 is capped and wants its ceiling.
    assert envelope.watts == pytest.approx(0.95 * 1200.0)
    assert decision.limits["t1"] < 700.0
    idle = next(f for f in envelope.flexible if f.uuid == "t2")
    assert idle.ceiling_w == pytest.approx(decision.demand_w["t2"])  # not handed watts it would leave idle


def test_no_envelope_for_stale_gpus_monitor_budgets_or_split_nodes() -> None:
    gpus = {"c": gpu("c", LatencyTier.CRITICAL, 100.0), "t": gpu("t", LatencyTier.TOLERANT, 600.0)}
    assert decide([site(*gpus.values())], gpus).envelopes.keys() == {"node-a"}
    stale = {**gpus, "t": gpu("t", LatencyTier.TOLERANT, None)}
    assert decide([site(*stale.values())], stale).envelopes == {}
    for mode in (BudgetMode.MONITOR, BudgetMode.RECOMMEND):
        assert decide([site(*gpus.values(), mode=mode)], gpus).envelopes == {}
    # Two budgets sharing a node unevenly: watts moved inside the node could leave the budget they were planned for.
    split = [
        BudgetState(name="a", cap_w=5000.0, gpu_uuids=("c",), node_count=0),
        BudgetState(name="b", cap_w=5000.0, gpu_uuids=("t",), node_count=0),
    ]
    assert decide(split, gpus).envelopes == {}


def test_no_envelope_while_floors_do_not_fit_or_a_critical_gpu_is_limited() -> None:
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 690.0, floor_w=600.0),
        "t": gpu("t", LatencyTier.TOLERANT, 600.0, floor_w=500.0),
    }
    assert decide([site(*gpus.values(), cap_w=900.0)], gpus).envelopes == {}  # floors 1100 W > 855 W
    squeezed = decide([site(*gpus.values(), cap_w=1250.0)], gpus)  # critical demand 700 W does not fit beside t
    assert squeezed.limits["c"] < 700.0
    assert squeezed.envelopes == {}


def test_burst_reserve_sits_in_the_envelope_of_the_critical_gpus_node() -> None:
    gpus = {
        "c": gpu("c", LatencyTier.CRITICAL, 600.0, node="node-a"),
        "ta": gpu("ta", LatencyTier.TOLERANT, 100.0, node="node-a"),
        "tb": gpu("tb", LatencyTier.TOLERANT, 100.0, node="node-b"),
    }
    budget = site(*gpus.values(), cap_w=4000.0)
    first = decide([budget], gpus)
    calm = {**gpus, "c": gpu("c", LatencyTier.CRITICAL, 100.0, node="node-a")}
    later = decide([budget], calm, first)  # the critical GPU went quiet: the pool hold keeps watts for it
    held = later.critical_hold_w["site"] - later.demand_w["c"]
    assert held > 0
    planned_a = later.envelopes["node-a"].watts
    plain_a = sum(min(later.limits[u], later.demand_w[u]) for u in ("c", "ta"))
    assert planned_a == pytest.approx(plain_a + held)


@given(fleets(modes=(BudgetMode.ENFORCE,)), st.integers(1, 3), st.data())
def test_envelopes_keep_every_budget_within_its_allowance(
    fleet: tuple[list[BudgetState], dict[str, GpuState]], ticks: int, data: st.DataObject
) -> None:
    """Each node drawing its whole envelope, every other GPU its planned draw: every budget stays at its target."""
    budgets, gpus = fleet
    decision = decide(budgets, gpus)
    for _ in range(ticks - 1):  # readings move between ticks; the last decision is judged on its own inputs
        gpus = {
            u: dataclasses.replace(g, power_w=data.draw(st.floats(0.0, g.limits.max_w))) if g.fresh else g
            for u, g in gpus.items()
        }
        decision = decide(budgets, gpus, decision)
    owner = {u: node for node, e in decision.envelopes.items() for u in (*e.protected, *(f.uuid for f in e.flexible))}
    for node, e in decision.envelopes.items():
        assert {gpus[u].tier for u in e.protected} <= {LatencyTier.CRITICAL, LatencyTier.STANDARD}
        assert all(gpus[f.uuid].tier is LatencyTier.TOLERANT for f in e.flexible)
        assert all(gpus[u].node == node and gpus[u].fresh for u in owner if owner[u] == node)
    for b in budgets:
        if not decision.budgets[b.name].feasible:
            continue
        members = [gpus[u] for u in b.gpu_uuids]
        planned = sum(decision.envelopes[n].watts for n in {owner[g.uuid] for g in members if g.uuid in owner})
        for g in members:
            if g.uuid in owner:
                continue
            planned += min(decision.demand_w[g.uuid], decision.limits[g.uuid]) if g.fresh else g.counted_w
        allowance = b.gpu_allowance_w()
        assert planned <= allowance + 1e-6 * max(1.0, abs(allowance))
