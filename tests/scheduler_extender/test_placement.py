"""The placement rules, one named situation per test, through the pure `decide` function."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tests.scheduler_extender.builders import budget, node, pod, state
from wattwise.crd.common import LatencyTier
from wattwise.live_state import ClassView, LiveState
from wattwise.scheduler_extender.placement import Decision, Outcome, PlacementConfig, decide
from wattwise.scheduler_extender.pod_power import pod_demand
from wattwise.scheduler_extender.protocol import Pod
from wattwise.scheduler_extender.reservations import BudgetClaim
from wattwise.scheduler_extender.snapshot import Snapshot

CONFIG = PlacementConfig()
NOW = 100.0


def run(
    live: LiveState | None,
    pod_doc: dict[str, Any],
    nodes: Sequence[str],
    *,
    reserved: Mapping[str, BudgetClaim] | None = None,
    age_s: float = 0.0,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Decision:
    p = Pod.model_validate(pod_doc)
    demand = pod_demand(p, live.classes if live else {}, CONFIG.default_tier)
    snap = Snapshot.from_state(live, NOW - age_s) if live else None
    return decide(
        demand,
        nodes,
        scheduler_name=p.spec.scheduler_name,
        snapshot=snap,
        reserved=reserved or {},
        labels=labels or {},
        now=NOW,
        config=CONFIG,
    )


def two_racks(**tight: Any) -> LiveState:
    """rack-a is tight (1,000 W guaranteed headroom), rack-b has plenty (8,000 W); both under one hall."""
    return state(
        [
            budget("rack-a", guaranteed_headroom_w=1_000.0, **tight),
            budget("rack-b", guaranteed_headroom_w=8_000.0),
            budget("hall", cap_w=100_000.0, guaranteed_headroom_w=50_000.0),
        ],
        {"a1": node(["rack-a", "hall"]), "b1": node(["rack-b", "hall"])},
    )


def test_critical_only_where_guaranteed_headroom_covers_it() -> None:
    d = run(two_racks(), pod(gpus=2, tier="critical"), ["a1", "b1"])
    assert d.passed == ["b1"]
    assert d.rejected["a1"] == (
        "wattwise: PowerBudget rack-a has 1000 W guaranteed headroom; "
        "this critical pod needs 1400 W (2 GPU x 700 W x PUE 1)"
    )
    assert d.outcomes == {Outcome.PASS: 1, Outcome.REJECT_HEADROOM: 1}


def test_pue_scales_the_need_to_facility_power() -> None:
    live = state([budget("r", guaranteed_headroom_w=1_500.0, pue=1.2)], {"n": node(["r"])})
    assert run(live, pod(gpus=2, tier="critical"), ["n"]).passed == []  # 2 x 700 x 1.2 = 1680 > 1500


def test_every_budget_of_a_node_must_hold() -> None:
    live = state(
        [budget("rack-b", guaranteed_headroom_w=8_000.0), budget("hall", guaranteed_headroom_w=500.0)],
        {"b1": node(["rack-b", "hall"])},
    )
    d = run(live, pod(gpus=1, tier="critical"), ["b1"])
    assert "PowerBudget hall" in d.rejected["b1"]


def test_standard_uses_its_share_of_nameplate() -> None:
    live = state([budget("r", guaranteed_headroom_w=600.0)], {"n": node(["r"])})
    assert run(live, pod(gpus=1, tier="standard"), ["n"]).passed == ["n"]  # 0.85 x 700 = 595 W
    assert run(live, pod(gpus=1, tier="critical"), ["n"]).passed == []


def test_class_expected_power_decides() -> None:
    live = state(
        [budget("r", guaranteed_headroom_w=600.0)],
        {"n": node(["r"])},
        classes={"small": ClassView(tier=LatencyTier.CRITICAL, expected_watts_per_gpu=300.0)},
    )
    assert run(live, pod(gpus=2, tier=None, workload_class="small"), ["n"]).passed == ["n"]


def test_critical_rejects_a_hot_node() -> None:
    live = state([budget("r")], {"hot": node(["r"], temperature_c=86.0), "cool": node(["r"])})
    d = run(live, pod(tier="critical"), ["hot", "cool"])
    assert d.passed == ["cool"]
    assert d.rejected["hot"].endswith("GPU is at 86 C, at or above the 83 C thermal threshold for critical pods")


def test_a_stale_nodes_old_temperature_is_not_held_against_it() -> None:
    live = state([budget("r")], {"n": node(["r"], temperature_c=95.0, stale=True)})
    d = run(live, pod(tier="critical"), ["n"])
    assert d.passed == ["n"]


def test_node_thermal_threshold_overrides_the_default() -> None:
    live = state([budget("r")], {"n": node(["r"], temperature_c=80.0, thermal_threshold_c=78.0)})
    assert run(live, pod(tier="critical"), ["n"]).outcomes == {Outcome.REJECT_THERMAL: 1}


def test_tolerant_may_use_a_tight_budget_and_prefers_it() -> None:
    d = run(two_racks(), pod(gpus=2, tier="tolerant"), ["a1", "b1"])
    assert d.passed == ["a1", "b1"]
    assert d.scores["a1"] > d.scores["b1"]


def test_critical_prefers_headroom() -> None:
    live = state(
        [budget("big", guaranteed_headroom_w=8_000.0), budget("mid", guaranteed_headroom_w=3_000.0)],
        {"big1": node(["big"]), "mid1": node(["mid"])},
    )
    d = run(live, pod(tier="critical"), ["big1", "mid1"])
    # 10 x (0.7 x 7300/9000 + 0.3 x 1) = 8.68; 10 x (0.7 x 2300/9000 + 0.3) = 4.79
    assert d.scores == {"big1": 9, "mid1": 5}


def test_tolerant_stops_at_the_oversubscription_bound() -> None:
    # bound 1.3 x 10,000 = 13,000 W; allocated 8 x 700 x 2 = 11,200 W nameplate + 1,000 W non-GPU = 12,200 W
    live = state(
        [budget("r", allocated_default_limit_w=11_200.0, non_gpu_w=1_000.0, guaranteed_headroom_w=0.0)],
        {"n": node(["r"])},
    )
    assert run(live, pod(gpus=1, tier="tolerant"), ["n"]).passed == ["n"]  # +700 -> 12,900
    d = run(live, pod(gpus=2, tier="tolerant"), ["n"])  # +1,400 -> 13,600
    assert d.outcomes == {Outcome.REJECT_OVERSUBSCRIPTION: 1}
    assert "oversubscription bound (1.3 x cap = 13000 W): 800 W of nameplate room" in d.rejected["n"]


def test_tolerant_rejected_where_floors_do_not_fit() -> None:
    live = state([budget("r", feasible=False)], {"n": node(["r"])})
    assert run(live, pod(tier="tolerant"), ["n"]).outcomes == {Outcome.REJECT_INFEASIBLE: 1}


def test_reservations_are_deducted_and_named_in_the_reason() -> None:
    live = state([budget("r", guaranteed_headroom_w=2_000.0)], {"n": node(["r"])})
    d = run(live, pod(gpus=1, tier="critical"), ["n"], reserved={"r": BudgetClaim(1_400.0, 1_400.0)})
    assert d.rejected["n"] == (
        "wattwise: PowerBudget r has 600 W guaranteed headroom after 1400 W reserved for just-placed pods; "
        "this critical pod needs 700 W (1 GPU x 700 W x PUE 1)"
    )


def test_claim_is_the_largest_need_per_budget_over_passing_nodes() -> None:
    live = state(
        [budget("r", pue=1.5), budget("hall", cap_w=100_000.0, guaranteed_headroom_w=90_000.0)],
        {"big": node(["r", "hall"], default_limit_w=700.0), "small": node(["hall"], default_limit_w=350.0)},
    )
    d = run(live, pod(gpus=2, tier="critical"), ["big", "small"])
    assert d.claim == {"r": BudgetClaim(2_100.0, 2_100.0), "hall": BudgetClaim(1_400.0, 1_400.0)}


def test_tolerant_claims_no_guaranteed_headroom() -> None:
    live = state([budget("r")], {"n": node(["r"])})
    assert run(live, pod(gpus=1, tier="tolerant"), ["n"]).claim == {"r": BudgetClaim(0.0, 700.0)}


def test_stale_state_passes_everything_and_says_why() -> None:
    d = run(two_racks(), pod(gpus=8, tier="critical"), ["a1", "b1"], age_s=30.0)
    assert d.passed == ["a1", "b1"] and d.rejected == {} and d.claim == {}
    assert d.scores == {"a1": 5, "b1": 5}
    assert d.degraded == "live state is 30s old (stale after 5s): not filtering on power"
    assert d.outcomes == {Outcome.PASS_DEGRADED: 2}


def test_no_state_yet_passes_everything() -> None:
    d = run(None, pod(tier="critical"), ["a1"])
    assert d.passed == ["a1"] and "no live state" in d.degraded


def test_stale_budget_is_not_held_against_a_node() -> None:
    live = state([budget("r", guaranteed_headroom_w=0.0, stale=True)], {"n": node(["r"])})
    d = run(live, pod(tier="critical"), ["n"])
    assert d.passed == ["n"] and d.outcomes == {Outcome.PASS_DEGRADED: 1} and d.scores == {"n": 5}


def test_unknown_and_unmanaged_nodes_pass_with_the_neutral_score() -> None:
    live = state([budget("r", guaranteed_headroom_w=0.0)], {"loose": node([])})
    d = run(live, pod(tier="critical"), ["ghost", "loose"])
    assert d.passed == ["ghost", "loose"] and d.scores == {"ghost": 5, "loose": 5}
    assert d.outcomes == {Outcome.PASS_UNKNOWN_NODE: 1, Outcome.PASS_UNMANAGED: 1}


@pytest.mark.parametrize(
    ("case", "pod_doc"),
    [
        ("another scheduler's pod", pod(tier="critical", scheduler="default-scheduler")),
        ("no scheduler name means default-scheduler", pod(tier="critical", scheduler=None)),
        ("a pod without GPUs", pod(gpus=None, tier="critical")),
    ],
)
def test_pods_that_are_not_ours_pass_through(case: str, pod_doc: dict[str, Any]) -> None:
    live = state([budget("r", guaranteed_headroom_w=0.0)], {"n": node(["r"])})
    d = run(live, pod_doc, ["n"])
    assert d.passed == ["n"] and d.outcomes == {Outcome.PASS_NOT_OURS: 1}, case


def test_nameplate_from_the_product_label_when_telemetry_lacks_it() -> None:
    live = state([budget("r", guaranteed_headroom_w=100.0)], {"n": node(["r"], default_limit_w=None)})
    labels = {"n": {"nvidia.com/gpu.product": "NVIDIA-L4"}}
    assert run(live, pod(gpus=1, tier="critical"), ["n"], labels=labels).passed == ["n"]  # 72 W
    assert run(live, pod(gpus=1, tier="critical"), ["n"]).passed == []  # unknown GPU: 700 W assumed


def test_identical_reasons_for_nodes_in_one_budget() -> None:
    live = state([budget("r", guaranteed_headroom_w=0.0)], {f"n{i}": node(["r"]) for i in range(3)})
    d = run(live, pod(tier="critical"), ["n0", "n1", "n2"])
    assert len(set(d.rejected.values())) == 1  # kube-scheduler aggregates: "3 wattwise: PowerBudget r ..."
