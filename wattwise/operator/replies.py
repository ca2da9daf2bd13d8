"""What each agent is told after a tick: the `ReportReply` for its node, serialised once per tick. Pure.

Per GPU (see `wattwise.telemetry.wire` for the agent's side of the contract):
- under at least one Enforce budget: `enforced` with the decided limit, and the class's locked SM clocks if any;
- else under a Recommend budget: not enforced, with the recommended limit as advice (metrics only);
- else (Monitor, or in no budget): not enforced. The tier is always sent, for the agent's metric labels.

The fail-safe is the strictest over the node's Enforce budgets: the shortest grace period and, per GPU, the lowest
fail-safe limit. A node under no Enforce budget gets none: Wattwise owns none of its limits, so there is nothing
to fall back from.

The node envelope (`Decision.envelopes`) goes to a node whose every GPU the reply enforces, and to no other: the
policy plans one only for nodes whose budgets it could steer this tick (all Enforce, fresh, feasible). It is valid
for three report intervals (at least 2 s): the agent keeps re-sharing it through one or two lost replies, and
falls back to the directive limits when the operator has gone quiet.
"""

from __future__ import annotations

import json
from collections.abc import KeysView, Mapping
from typing import Any, Final

from wattwise.crd.powerbudget import BudgetMode
from wattwise.operator.policy_inputs import TickInputs
from wattwise.operator.records import BudgetRecord
from wattwise.policy import Decision
from wattwise.policy.envelope import NodeEnvelope
from wattwise.telemetry import wire

EMPTY_REPLY = wire.ReportReply().to_json()
#: `NodeEnvelope.watts` bound on the wire
_MAX_NODE_WATTS: Final = 1_000_000.0


def envelope_valid_for_s(report_interval_s: float) -> float:
    """How long an agent may re-share an envelope without a newer reply: three report intervals, 2 s to 60 s."""
    return min(60.0, max(2.0, 3.0 * report_interval_s))


def _envelope(envelope: NodeEnvelope, enforced: KeysView[str], valid_for_s: float) -> dict[str, Any] | None:
    """The envelope as its JSON document, for a node whose GPUs are all `enforced`; None unless it names each of
    them exactly once (a GPU left out would draw beside the envelope, unaccounted)."""
    protected, flexible = envelope.protected, envelope.flexible
    named = set(protected)
    named.update(g.uuid for g in flexible)
    if len(named) != len(protected) + len(flexible) or named != enforced:
        return None
    return {
        "watts": round(min(_MAX_NODE_WATTS, max(0.0, envelope.watts)), 1),
        "protected": list(protected),
        "flexible": [
            {
                "uuid": g.uuid,
                "floorWatts": round(g.floor_w, 1),
                "ceilingWatts": round(max(g.floor_w, g.ceiling_w), 1),
                "priority": g.priority,
            }
            for g in flexible
        ],
        "validForSeconds": valid_for_s,
    }


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
    all_enforced = True
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
            all_enforced = False
        else:
            directive = {"enforced": False}
            all_enforced = False
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
    envelope = decision.envelopes.get(node)
    if envelope is not None and all_enforced:
        document = _envelope(envelope, directives.keys(), envelope_valid_for_s(report_interval_s))
        if document is not None:
            reply["envelope"] = document
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
