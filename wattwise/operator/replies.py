"""What each agent is told after a tick: the `ReportReply` for its node, serialised once per tick. Pure.

Per GPU (see `wattwise.telemetry.wire` for the agent's side of the contract):
- under at least one Enforce budget: `enforced` with the decided limit, and the class's locked SM clocks if any;
- else under a Recommend budget: not enforced, with the recommended limit as advice (metrics only);
- else (Monitor, or in no budget): not enforced. The tier is always sent, for the agent's metric labels.

The fail-safe is the strictest over the node's Enforce budgets: the shortest grace period and, per GPU, the lowest
fail-safe limit. A node under no Enforce budget gets none: Wattwise owns none of its limits, so there is nothing
to fall back from.
"""

from __future__ import annotations

from collections.abc import Mapping

from wattwise.crd.powerbudget import BudgetMode
from wattwise.operator.policy_inputs import TickInputs
from wattwise.operator.records import BudgetRecord
from wattwise.policy import Decision
from wattwise.telemetry import wire

EMPTY_REPLY = wire.ReportReply().to_json()


def _clocks(inputs: TickInputs, uuid: str) -> wire.ClockRange | None:
    klass = inputs.meta[uuid].workload_class
    clocks = klass.spec.locked_sm_clocks if klass is not None else None
    return wire.ClockRange(min_mhz=clocks.min_mhz, max_mhz=clocks.max_mhz) if clocks is not None else None


def node_reply(
    node: str,
    inputs: TickInputs,
    decision: Decision,
    budgets: Mapping[str, BudgetRecord],
    report_interval_s: float = 1.0,
) -> wire.ReportReply:
    mine = [budgets[b] for b in inputs.topology.node_budgets.get(node, ()) if b in budgets]
    enforcing = [b for b in mine if b.spec.mode is BudgetMode.ENFORCE]
    recommending = any(b.spec.mode is BudgetMode.RECOMMEND for b in mine)
    directives: dict[str, wire.GpuDirective] = {}
    fail_safe_w: dict[str, float] = {}
    for uuid in inputs.node_gpus.get(node, ()):
        meta = inputs.meta[uuid]
        if meta.placeholder:
            continue
        if uuid in decision.limits:
            directives[uuid] = wire.GpuDirective(
                enforced=True,
                power_limit_watts=round(decision.limits[uuid], 1),
                locked_sm_clocks=_clocks(inputs, uuid),
                tier=meta.tier,
            )
        elif recommending and uuid in decision.recommended:
            directives[uuid] = wire.GpuDirective(
                recommended_power_limit_watts=round(decision.recommended[uuid], 1), tier=meta.tier
            )
        else:
            directives[uuid] = wire.GpuDirective(tier=meta.tier)
        if enforcing:
            default_w = inputs.gpus[uuid].limits.default_w
            fail_safe_w[uuid] = round(min(b.spec.fail_safe.limit_for(default_w) for b in enforcing), 1)
    fail_safe = None
    if enforcing:
        fail_safe = wire.FailSafePolicy(
            grace_period_seconds=min(b.spec.fail_safe.grace_period_seconds for b in enforcing),
            limit_watts=fail_safe_w,
        )
    return wire.ReportReply(gpus=directives, fail_safe=fail_safe, next_report_interval_seconds=report_interval_s)


def all_replies(
    inputs: TickInputs,
    decision: Decision,
    budgets: Mapping[str, BudgetRecord],
    reported: set[str] | frozenset[str],
    report_interval_s: float = 1.0,
) -> dict[str, bytes]:
    """Serialised replies for every node that has reported; nodes in no active budget get the empty reply."""
    out: dict[str, bytes] = {}
    for node in reported:
        if inputs.topology.node_budgets.get(node) and node in inputs.node_gpus:
            out[node] = node_reply(node, inputs, decision, budgets, report_interval_s).to_json()
        else:
            out[node] = EMPTY_REPLY
    return out
