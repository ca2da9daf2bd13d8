"""What each agent is told: limits under Enforce, advice under Recommend, nothing under Monitor; fail-safe min."""

from __future__ import annotations

from typing import Any

from tests.operator import builders as b
from wattwise.operator.policy_inputs import InputBuilder, InputSettings
from wattwise.operator.records import ClusterState
from wattwise.operator.replies import EMPTY_REPLY, all_replies, node_reply
from wattwise.policy import decide
from wattwise.telemetry import wire


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
