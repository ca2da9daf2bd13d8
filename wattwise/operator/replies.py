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

import json
from collections.abc import Mapping
from typing import Any

from wattwise.crd.powerbudget import BudgetMode
from wattwise.operator.policy_inputs import TickInputs
from wattwise.operator.records import BudgetRecord
from wattwise.policy import Decision
from wattwise.telemetry import wire

EMPTY_REPLY = wire.ReportReply().to_json()


def _clocks(inputs: TickInputs, uuid: str) -> dict[str, int] | None:
    klass = inputs.meta[uuid].workload_class
    clocks = klass.spec.locked_sm_clocks if klass is not None else None
    return {"minMHz": clocks.min_mhz, "maxMHz": clocks.max_mhz} if clocks is not None else None


def node_reply_wire(
    node: str,
    inputs: TickInputs,
    decision: Decision,
    budgets: Mapping[str, BudgetRecord],
    report_interval_s: float = 1.0,
) -> dict[str, Any]:
    """The reply as its JSON document. Built as plain data: at 10,000 GPUs a pydantic model per directive costs
    more than the rest of the reply path (`node_reply` gives the validated model, and the tests hold both equal)."""
    mine = [budgets[b] for b in inputs.topology.node_budgets.get(node, ()) if b in budgets]
    enforcing = [b for b in mine if b.spec.mode is BudgetMode.ENFORCE]
    recommending = any(b.spec.mode is BudgetMode.RECOMMEND for b in mine)
    limits, recommended = decision.limits, decision.recommended
    directives: dict[str, dict[str, Any]] = {}
    fail_safe_w: dict[str, float] = {}
    for uuid in inputs.node_gpus.get(node, ()):
        meta = inputs.meta[uuid]
        if meta.placeholder:
            continue
        directive: dict[str, Any]
        if uuid in limits:
            directive = {"enforced": True, "powerLimitWatts": round(limits[uuid], 1)}
            clocks = _clocks(inputs, uuid)
            if clocks is not None:
                directive["lockedSmClocks"] = clocks
        elif recommending and uuid in recommended:
            directive = {"enforced": False, "recommendedPowerLimitWatts": round(recommended[uuid], 1)}
        else:
            directive = {"enforced": False}
        directive["tier"] = meta.tier.value
        directives[uuid] = directive
        if enforcing:
            default_w = inputs.gpus[uuid].limits.default_w
            fail_safe_w[uuid] = round(min(b.spec.fail_safe.limit_for(default_w) for b in enforcing), 1)
    reply: dict[str, Any] = {"apiVersion": wire.API_VERSION, "kind": "ReportReply", "gpus": directives}
    if enforcing:
        reply["failSafe"] = {
            "gracePeriodSeconds": float(min(b.spec.fail_safe.grace_period_seconds for b in enforcing)),
            "limitWatts": fail_safe_w,
        }
    reply["nextReportIntervalSeconds"] = report_interval_s
    return reply


def node_reply(
    node: str,
    inputs: TickInputs,
    decision: Decision,
    budgets: Mapping[str, BudgetRecord],
    report_interval_s: float = 1.0,
) -> wire.ReportReply:
    return wire.ReportReply.model_validate(node_reply_wire(node, inputs, decision, budgets, report_interval_s))


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
            document = node_reply_wire(node, inputs, decision, budgets, report_interval_s)
            out[node] = json.dumps(document, separators=(",", ":")).encode()
        else:
            out[node] = EMPTY_REPLY
    return out
