"""What each agent is told: limits under Enforce, advice under Recommend, nothing under Monitor; fail-safe min;
the node envelope to nodes the reply enforces as a whole, and to no other."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.operator import builders as b
from wattwise.operator.policy_inputs import InputBuilder, InputSettings
from wattwise.operator.records import ClusterState, ReportRecord
from wattwise.operator.replies import EMPTY_REPLY, all_replies, node_reply
from wattwise.policy import decide
from wattwise.policy.envelope import FlexibleGpu, NodeEnvelope
from wattwise.telemetry import messages, wire


def _setup(**budgets: dict[str, Any]) -> tuple[ClusterState, Any]:
    specs = {name: b.budget_spec(spec.pop("cap"), **spec) for name, spec in budgets.items()}
    state = b.cluster(
        {"n1": {"rack": "r1"}, "n2": {"rack": "r9"}},
        specs,
        {"eco": b.class_spec("tolerant", mode="EnergyEfficient", lockedSmClocks={"minMHz": 900, "maxMHz": 1400})},
        {
            "n1": b.report("n1", [b.gpu("G0", 0, pods=[("default", "p")]), b.gpu("G1", 1)]),
            "n2": b.report("n2", [b.gpu("G9")]),
        },
        [b.pod("p", "n1", klass="eco")],
    )
    return state, InputBuilder(InputSettings()).build(state, now=100.5)


def test_enforce_sends_limits_clocks_tier_and_the_strictest_fail_safe() -> None:
    state, inputs = _setup(
        rack={"cap": 800.0, "mode": "Enforce", "failSafe": {"gracePeriodSeconds": 60, "limitFraction": 0.8}},
        row={"cap": 5_000.0, "mode": "Enforce", "failSafe": {"gracePeriodSeconds": 20, "limitWatts": 400}},
    )
    decision = decide(inputs.budgets, inputs.gpus)
    reply = node_reply("n1", inputs, decision, state.budgets)
    g0 = reply.gpus["G0"]
    assert g0.enforced and g0.power_limit_watts == round(decision.limits["G0"], 1)
    assert g0.locked_sm_clocks == wire.ClockRange(min_mhz=900, max_mhz=1400)
    assert (g0.tier, reply.gpus["G1"].tier) == ("tolerant", "standard")
    assert reply.fail_safe is not None
    assert reply.fail_safe.grace_period_seconds == 20
    assert reply.fail_safe.limit_watts == {"G0": 400.0, "G1": 400.0}  # min(0.8 x 700, 400)


def test_recommend_is_advice_and_monitor_says_nothing() -> None:
    state, inputs = _setup(rack={"cap": 800.0, "mode": "Recommend"})
    decision = decide(inputs.budgets, inputs.gpus)
    reply = node_reply("n1", inputs, decision, state.budgets)
    assert not reply.gpus["G0"].enforced and reply.gpus["G0"].power_limit_watts is None
    assert reply.gpus["G0"].recommended_power_limit_watts == round(decision.recommended["G0"], 1)
    assert reply.fail_safe is None

    state, inputs = _setup(rack={"cap": 800.0, "mode": "Monitor"})
    decision = decide(inputs.budgets, inputs.gpus)
    reply = node_reply("n1", inputs, decision, state.budgets)
    assert reply.gpus["G0"] == wire.GpuDirective(tier="tolerant")
    assert reply.fail_safe is None


def test_node_in_no_budget_gets_the_empty_reply() -> None:
    state, inputs = _setup(rack={"cap": 800.0, "mode": "Enforce"})
    decision = decide(inputs.budgets, inputs.gpus)
    replies = all_replies(inputs, decision, state.budgets, frozenset(state.reports))
    assert replies["n2"] == EMPTY_REPLY
    # The fast serialisation says exactly what the validated model says.
    assert wire.ReportReply.model_validate_json(replies["n1"]) == node_reply("n1", inputs, decision, state.budgets)
    assert wire.ReportReply.model_validate_json(replies["n1"]).gpus["G0"].enforced


def test_an_enforced_node_gets_its_envelope() -> None:
    state, inputs = _setup(rack={"cap": 800.0, "mode": "Enforce"})
    decision = decide(inputs.budgets, inputs.gpus)
    planned = decision.envelopes["n1"]
    reply = node_reply("n1", inputs, decision, state.budgets)
    assert reply.envelope == wire.NodeEnvelope(
        watts=round(planned.watts, 1),
        protected=["G1"],  # standard work
        flexible=[
            wire.FlexibleGpu(
                uuid="G0",  # the tolerant pod's GPU
                floor_watts=round(planned.flexible[0].floor_w, 1),
                ceiling_watts=round(planned.flexible[0].ceiling_w, 1),
            )
        ],
        valid_for_seconds=3.0,
    )
    assert all(reply.gpus[u].enforced for u in ("G0", "G1"))
    # What the agent receives is the same document, byte for byte through the fast path.
    replies = all_replies(inputs, decision, state.budgets, frozenset(state.reports))
    assert wire.ReportReply.model_validate_json(replies["n1"]) == reply
    assert messages.decode_reply(replies["n1"]).envelope == messages.NodeEnvelope(
        watts=round(planned.watts, 1),
        protected=("G1",),
        flexible=(messages.FlexibleGpu(uuid="G0", floor_watts=200.0, ceiling_watts=350.0),),
    )
    assert wire.ReportReply.model_validate_json(replies["n2"]).envelope is None  # in no budget


@pytest.mark.parametrize(("interval", "valid_for"), [(1.0, 3.0), (0.2, 2.0), (5.0, 15.0), (30.0, 60.0)])
def test_an_envelope_outlives_a_lost_reply_or_two(interval: float, valid_for: float) -> None:
    state, inputs = _setup(rack={"cap": 800.0, "mode": "Enforce"})
    decision = decide(inputs.budgets, inputs.gpus)
    reply = node_reply("n1", inputs, decision, state.budgets, report_interval_s=interval)
    assert reply.envelope is not None and reply.envelope.valid_for_seconds == valid_for


@pytest.mark.parametrize("mode", ["Monitor", "Recommend"])
def test_no_envelope_where_wattwise_does_not_enforce(mode: str) -> None:
    state, inputs = _setup(rack={"cap": 800.0, "mode": mode})
    decision = decide(inputs.budgets, inputs.gpus)
    assert node_reply("n1", inputs, decision, state.budgets).envelope is None
    # Even an envelope the decision carried for it would not be sent: the agent may not touch these limits.
    forced = dataclasses.replace(decision, envelopes={"n1": _planned("n1", protected=("G1",), flexible=("G0",))})
    assert node_reply("n1", inputs, forced, state.budgets).envelope is None


def test_no_envelope_for_a_node_with_a_stale_gpu() -> None:
    state, inputs = _setup(rack={"cap": 800.0, "mode": "Enforce"})
    lost = b.report("n1", [b.gpu("G0", 0, pods=[("default", "p")]), b.gpu("G1", 1, status=wire.GpuStatus.LOST)])
    state.reports["n1"] = ReportRecord(lost, 100.0)
    inputs = InputBuilder(InputSettings()).build(state, now=100.5)
    decision = decide(inputs.budgets, inputs.gpus)
    assert node_reply("n1", inputs, decision, state.budgets).envelope is None
    assert node_reply("n1", inputs, decision, state.budgets).gpus["G0"].enforced  # the directives still hold
    # The whole node stale (no report for longer than --stale-after): no envelope either.
    state, _ = _setup(rack={"cap": 800.0, "mode": "Enforce"})
    inputs = InputBuilder(InputSettings(stale_after_s=3.0)).build(state, now=104.0)
    decision = decide(inputs.budgets, inputs.gpus)
    assert "n1" in inputs.stale_nodes and node_reply("n1", inputs, decision, state.budgets).envelope is None


def _planned(node: str, protected: tuple[str, ...], flexible: tuple[str, ...]) -> NodeEnvelope:
    return NodeEnvelope(node, 900.0, protected, tuple(FlexibleGpu(u, 200.0, 400.0) for u in flexible))


@pytest.mark.parametrize(
    ("protected", "flexible", "sent"),
    [
        (("G1",), ("G0",), True),
        ((), ("G0", "G1"), True),  # which GPUs are flexible is the policy's call
        (("G1",), (), False),
        (("G1", "G9"), ("G0",), False),
        (("G1", "G1"), ("G0",), False),
        (("G1",), ("G0", "G0"), False),
    ],
    ids=["exact", "all-flexible", "leaves-a-gpu-out", "names-another-nodes-gpu", "names-a-gpu-twice", "flexible-twice"],
)
def test_an_envelope_is_sent_only_if_it_covers_the_node_exactly(
    protected: tuple[str, ...], flexible: tuple[str, ...], sent: bool
) -> None:
    state, inputs = _setup(rack={"cap": 800.0, "mode": "Enforce"})
    decision = dataclasses.replace(
        decide(inputs.budgets, inputs.gpus), envelopes={"n1": _planned("n1", protected, flexible)}
    )
    assert (node_reply("n1", inputs, decision, state.budgets).envelope is not None) is sent
