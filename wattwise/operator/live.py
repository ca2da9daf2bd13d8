"""The live state (`GET /v1/state`) built from one tick: the document the extender places pods against. Pure.

The arithmetic is the one `wattwise.live_state` documents. Placed pods (from the pod watch, and any pod an agent
lists on a GPU) are committed at their class's expected power per GPU (or the GPU's default limit when the class
says nothing, so an unknown pod is never free), times the budget's PUE; tolerant pods are counted at their GPUs'
floors as well, since that is what the control loop may squeeze them to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from wattwise.crd.common import LatencyTier
from wattwise.live_state import BudgetView, ClassView, EnvelopeView, GpuView, LiveState, NodeView, TierWatts
from wattwise.operator import pods as pod_rules
from wattwise.operator.policy_inputs import TickInputs
from wattwise.operator.records import ClusterState, ReportRecord
from wattwise.policy import Decision

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def _node_default_w(inputs: TickInputs, node: str, fallback_w: float) -> float:
    limits = [inputs.gpus[u].limits.default_w for u in inputs.node_gpus.get(node, ())]
    return max(limits) if limits else fallback_w


def build(
    state: ClusterState,
    inputs: TickInputs,
    decision: Decision,
    *,
    now: float,
    wall: dt.datetime,
    default_tier: LatencyTier,
    unknown_gpu_w: float,
    stale_after_s: float,
) -> LiveState:
    reports: Mapping[str, ReportRecord] = state.reports
    # Per node: the expected GPU watts of its pods by tier (class expectation, else the GPU's default limit), and
    # the default limits of the GPUs they hold. Pods from the pod watch, plus any pod an agent lists on a GPU that
    # the watch has not shown yet: the extender drops its own reservation for a pod once it is listed here.
    committed_by_node: dict[str, dict[LatencyTier, float]] = {}
    allocated_by_node: dict[str, float] = {}
    for pod in state.pods.values():
        if pod.node is None or pod.gpus <= 0:
            continue
        tier, klass = pod_rules.effective(pod, state.classes, default_tier)
        default_w = _node_default_w(inputs, pod.node, unknown_gpu_w)
        per_gpu = klass.spec.expected_watts_per_gpu if klass is not None else None
        by_tier = committed_by_node.setdefault(pod.node, dict.fromkeys(LatencyTier, 0.0))
        by_tier[tier] += (per_gpu if per_gpu is not None else default_w) * pod.gpus
        allocated_by_node[pod.node] = allocated_by_node.get(pod.node, 0.0) + default_w * pod.gpus
    for uuid, meta in inputs.meta.items():
        if meta.pod is not None and meta.pod not in state.pods:
            default_w = inputs.gpus[uuid].limits.default_w
            by_tier = committed_by_node.setdefault(meta.node, dict.fromkeys(LatencyTier, 0.0))
            by_tier[meta.tier] += default_w
            allocated_by_node[meta.node] = allocated_by_node.get(meta.node, 0.0) + default_w

    limits = decision.limits
    budgets = []
    for b in inputs.budgets:
        record = state.budgets[b.name]
        report = decision.budgets.get(b.name)
        members = inputs.topology.members.get(b.name, ())
        committed = dict.fromkeys(LatencyTier, 0.0)
        for n in members:
            for tier, w in committed_by_node.get(n, {}).items():
                committed[tier] += w * b.pue
        allocated = sum(allocated_by_node.get(n, 0.0) for n in members)
        tolerant_floors = 0.0
        for u in b.gpu_uuids:
            g, meta = inputs.gpus[u], inputs.meta[u]
            if meta.pod is not None and g.tier is LatencyTier.TOLERANT:
                tolerant_floors += g.floor * b.pue
        facility = report.facility_draw_w if report is not None else 0.0
        non_gpu = b.facility_w(0.0)
        target_w = b.cap_w * b.target_utilization
        stale = [n for n in members if n in inputs.stale_nodes]
        budgets.append(
            BudgetView(
                name=b.name,
                mode=record.spec.mode,
                cap_w=b.cap_w,
                target_utilization=b.target_utilization,
                max_oversubscription=record.spec.max_oversubscription,
                pue=b.pue,
                facility_draw_w=max(0.0, facility),
                gpu_draw_w=max(0.0, report.gpu_draw_w if report is not None else 0.0),
                non_gpu_w=max(0.0, non_gpu),
                headroom_w=target_w - facility,
                guaranteed_headroom_w=target_w
                - non_gpu
                - committed[LatencyTier.CRITICAL]
                - committed[LatencyTier.STANDARD]
                - tolerant_floors,
                committed_w=TierWatts(**{t.value: w for t, w in committed.items()}),
                tolerant_floors_w=tolerant_floors,
                allocated_default_limit_w=allocated,
                feasible=report.feasible if report is not None else True,
                stale=bool(members) and len(stale) == len(members),
                nodes=len(members),
                stale_nodes=len(stale),
                gpus=len(b.gpu_uuids),
                gpus_limited=report.gpus_limited if report is not None else 0,
            )
        )

    nodes: dict[str, NodeView] = {}
    for name, node in state.nodes.items():
        rep = reports.get(name)
        gpus = []
        for u in inputs.node_gpus.get(name, ()):
            meta = inputs.meta[u]
            if meta.placeholder:
                continue
            g = inputs.gpus[u]
            gpus.append(
                GpuView(
                    uuid=u,
                    index=meta.index,
                    temperature_c=meta.temperature_c,
                    power_w=g.power_w,
                    limit_w=limits.get(u, g.enforced_limit_w),
                    default_limit_w=g.limits.default_w,
                    tier=meta.tier if meta.pod is not None else None,
                    pod=meta.pod,
                )
            )
        if name not in inputs.node_gpus and rep is not None:  # in no budget: telemetry only
            gpus = [
                GpuView(
                    uuid=g.uuid,
                    index=g.index,
                    temperature_c=g.temperature_celsius,
                    power_w=g.power_watts,
                    limit_w=g.enforced_limit_watts,
                    default_limit_w=g.limits.default_watts if g.limits is not None else None,
                    pod=f"{g.pods[0].namespace}/{g.pods[0].pod}" if g.pods else None,
                )
                for g in rep.report.gpus
            ]
        last = None
        age = None if rep is None else max(0.0, now - rep.received_at)
        if age is not None:
            last = wall - dt.timedelta(seconds=age)
        envelope = decision.envelopes.get(name)
        nodes[name] = NodeView(
            budgets=list(inputs.topology.node_budgets.get(name, ())),
            gpu_product=node.labels.get(GPU_PRODUCT_LABEL),
            stale=age is None or age > stale_after_s,
            last_report_at=last,
            gpus=gpus,
            envelope=None
            if envelope is None
            else EnvelopeView(
                watts=max(0.0, envelope.watts),
                protected=list(envelope.protected),
                flexible=[g.uuid for g in envelope.flexible],
            ),
        )
    classes = {
        name: ClassView(
            tier=c.spec.tier, expected_watts_per_gpu=c.spec.expected_watts_per_gpu, priority=c.spec.priority
        )
        for name, c in state.classes.items()
    }
    return LiveState(generated_at=wall, budgets=budgets, nodes=nodes, classes=classes)
