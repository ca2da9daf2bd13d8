"""Pods' tiers and the policy inputs built from the operator's state: missing data never looks like headroom."""

from __future__ import annotations

import pytest

from tests.operator import builders as b
from wattwise.crd.common import LatencyTier
from wattwise.operator import pods as pod_rules
from wattwise.operator.policy_inputs import InputBuilder, InputSettings
from wattwise.operator.records import ClassRecord, NodeRecord, ReportRecord
from wattwise.policy import decide
from wattwise.telemetry import wire

SETTINGS = InputSettings(stale_after_s=3.0, default_tier=LatencyTier.STANDARD, unknown_gpu_w=700.0)


@pytest.mark.parametrize(
    ("spec", "gpus"),
    [
        ({"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}, {"resources": {}}]}, 2),
        ({"containers": [{"resources": {"requests": {"nvidia.com/gpu": 1}}}]}, 1),
        ({"containers": [{}], "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}]}, 4),
        ({"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1k"}}}]}, 0),
        ({"containers": [{"resources": {"limits": {"cpu": "2"}}}]}, 0),
    ],
    ids=["sum-of-containers", "requests-only", "init-container-larger", "not-a-whole-number", "no-gpu"],
)
def test_gpu_request(spec: dict[str, object], gpus: int) -> None:
    assert pod_rules.gpu_request(spec) == gpus


def test_bad_tier_annotation_gets_default_and_a_problem() -> None:
    intent, problem = pod_rules.read_intent({"wattwise.dev/latency-tier": "urgent"}, LatencyTier.STANDARD)
    assert intent.tier is None
    assert problem is not None and problem.reason == "InvalidPowerAnnotation"
    assert "using the default tier standard" in problem.message


def test_tier_annotation_wins_over_class_and_unknown_class_is_a_problem() -> None:
    classes = {"chat": ClassRecord("chat", b.class_spec("critical"))}
    both = b.pod("p", "n", tier=LatencyTier.TOLERANT, klass="chat")
    assert pod_rules.effective(both, classes, LatencyTier.STANDARD)[0] is LatencyTier.TOLERANT
    assert pod_rules.effective(b.pod("q", "n", klass="chat"), classes, LatencyTier.STANDARD)[0] is LatencyTier.CRITICAL
    missing = b.pod("r", "n", klass="chta")
    assert pod_rules.effective(missing, classes, LatencyTier.STANDARD) == (LatencyTier.STANDARD, None)
    problem = pod_rules.class_problem(missing, classes, LatencyTier.STANDARD)
    assert problem is not None and problem.reason == "UnknownWorkloadClass"
    assert pod_rules.class_problem(b.pod("q", "n", klass="chat"), classes, LatencyTier.STANDARD) is None


def test_gpu_takes_its_pods_class_and_idle_gpu_the_default() -> None:
    state = b.cluster(
        {"n1": {"rack": "r1"}},
        {"rack": b.budget_spec(10_000)},
        {"batch": b.class_spec("tolerant", floor={"fraction": 0.5}, priority=3, ceilingWatts=600)},
        {"n1": b.report("n1", [b.gpu("G0", 0, pods=[("default", "train")]), b.gpu("G1", 1)])},
        [b.pod("train", "n1", klass="batch")],
    )
    inputs = InputBuilder(SETTINGS).build(state, now=101.0)
    g0, g1 = inputs.gpus["G0"], inputs.gpus["G1"]
    assert (g0.tier, g0.floor_w, g0.ceiling_w, g0.priority) == (LatencyTier.TOLERANT, 350.0, 600.0, 3)
    assert (g1.tier, g1.floor_w) == (LatencyTier.STANDARD, None)
    assert inputs.meta["G0"].pod == "default/train" and inputs.meta["G1"].pod is None
    assert inputs.budgets[0].gpu_uuids == ("G0", "G1") and inputs.budgets[0].node_count == 1


def test_shared_gpu_takes_the_most_protected_tier() -> None:
    state = b.cluster(
        {"n1": {"rack": "r1"}},
        {"rack": b.budget_spec(10_000)},
        reports={"n1": b.report("n1", [b.gpu("G0", pods=[("default", "a"), ("default", "c")])])},
        pods=[b.pod("a", "n1", tier=LatencyTier.TOLERANT), b.pod("c", "n1", tier=LatencyTier.CRITICAL)],
    )
    inputs = InputBuilder(SETTINGS).build(state, now=101.0)
    assert inputs.gpus["G0"].tier is LatencyTier.CRITICAL
    assert inputs.meta["G0"].pod == "default/c"


def test_stale_report_and_lost_gpu_have_no_reading() -> None:
    lost = b.gpu("G1", 1, status=wire.GpuStatus.LOST, power=None)
    state = b.cluster(
        {"n1": {"rack": "r1"}, "n2": {"rack": "r1"}},
        {"rack": b.budget_spec(10_000)},
        reports={"n1": b.report("n1", [b.gpu("G0"), lost]), "n2": b.report("n2", [b.gpu("G2", limit=450.0)])},
    )
    state.reports["n2"] = ReportRecord(state.reports["n2"].report, 90.0)  # 11 s old at now=101
    inputs = InputBuilder(SETTINGS).build(state, now=101.0)
    assert inputs.gpus["G0"].power_w == 300.0
    assert inputs.gpus["G1"].power_w is None
    assert inputs.gpus["G2"].power_w is None and inputs.gpus["G2"].counted_w == 450.0  # at its limit
    assert inputs.stale_nodes == {"n2"}


def test_node_that_never_reported_counts_its_gpus_at_the_unknown_maximum() -> None:
    state = b.cluster({"n1": {"rack": "r1"}}, {"rack": b.budget_spec(10_000)}, gpu_capacity=4)
    inputs = InputBuilder(SETTINGS).build(state, now=101.0)
    assert len(inputs.gpus) == 4
    assert all(g.counted_w == 700.0 for g in inputs.gpus.values())
    assert all(m.placeholder for m in inputs.meta.values())
    assert inputs.stale_nodes == {"n1"}


def test_energy_counter_mean_is_preferred_to_the_instant_sample() -> None:
    reading = b.gpu("G0").model_copy(update={"average_power_watts": 420.0})
    state = b.cluster(
        {"n1": {"rack": "r1"}}, {"rack": b.budget_spec(10_000)}, reports={"n1": b.report("n1", [reading])}
    )
    assert InputBuilder(SETTINGS).build(state, now=101.0).gpus["G0"].power_w == 420.0


def test_inactive_budgets_are_left_out_and_membership_follows_labels() -> None:
    state = b.cluster(
        {"n1": {"rack": "r1"}, "n2": {"rack": "r2"}},
        {"r1": b.budget_spec(10_000, "r1"), "r2": b.budget_spec(10_000, "r2")},
        reports={"n1": b.report("n1", [b.gpu("G0")]), "n2": b.report("n2", [b.gpu("G1")])},
    )
    builder = InputBuilder(SETTINGS)
    state.deactivate("r2")  # its daemon stopped: this replica does not control it
    inputs = builder.build(state, now=101.0)
    assert [x.name for x in inputs.budgets] == ["r1"] and set(inputs.gpus) == {"G0"}
    state.activate("r2")
    state.put_node(NodeRecord("n2", {"rack": "r1"}, 2))  # relabelled into r1
    inputs = builder.build(state, now=101.0)
    assert inputs.topology.members == {"r1": ("n1", "n2"), "r2": ()}
    assert inputs.topology.node_budgets["n2"] == ("r1",)


def test_a_class_created_after_its_pods_applies_at_the_next_tick() -> None:
    state = b.cluster(
        {"n1": {"rack": "r1"}},
        {"rack": b.budget_spec(10_000)},
        reports={"n1": b.report("n1", [b.gpu("G0", pods=[("default", "job")])])},
        pods=[b.pod("job", "n1", klass="late")],
    )
    builder = InputBuilder(SETTINGS)
    assert builder.build(state, now=101.0).gpus["G0"].tier is LatencyTier.STANDARD
    version = state.topology_version
    state.put_class(ClassRecord("late", b.class_spec("tolerant")))
    assert state.topology_version == version  # membership is untouched: the cached topology stays
    assert builder.build(state, now=101.0).gpus["G0"].tier is LatencyTier.TOLERANT


def test_the_agents_capped_verdict_reaches_the_policy_while_the_reading_is_fresh() -> None:
    """A tolerant GPU whose envelope cap moved every 100 ms averages well under its last limit: only the agent
    knows it was held back, and then the policy must ask its ceiling for it, not its mean draw."""
    capped, free, silent = (b.gpu(u, i, power=300.0, limit=450.0) for i, u in enumerate(("G0", "G1", "G2")))
    state = b.cluster(
        {"n1": {"rack": "r1"}, "n2": {"rack": "r1"}},
        {"rack": b.budget_spec(10_000)},
        reports={
            "n1": b.report(
                "n1", [capped.model_copy(update={"capped": True}), free.model_copy(update={"capped": False})]
            ),
            "n2": b.report("n2", [silent.model_copy(update={"capped": True})]),
        },
    )
    state.reports["n2"] = ReportRecord(state.reports["n2"].report, 90.0)  # stale at now=101: no reading, no verdict
    inputs = InputBuilder(SETTINGS).build(state, now=101.0)
    assert [inputs.gpus[u].capped for u in ("G0", "G1", "G2")] == [True, False, None]
    demand = decide(inputs.budgets, inputs.gpus).demand_w
    assert demand["G0"] == inputs.gpus["G0"].ceiling == 700.0
    assert demand["G1"] < 450.0  # read off its draw, as for a GPU no envelope steers
    unjudged = b.cluster(
        {"n1": {"rack": "r1"}}, {"rack": b.budget_spec(10_000)}, reports={"n1": b.report("n1", [free])}
    )
    assert InputBuilder(SETTINGS).build(unjudged, now=101.0).gpus["G1"].capped is None
