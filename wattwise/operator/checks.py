"""Checks beyond the CRD schema: specs that are valid but will not do what their author probably meant. Pure.

Each finding is one sentence for a Warning Event on the object. They never reject the object: the schema and
its CEL rules do that at admission, and a budget that is merely odd must still be controlled.
"""

from __future__ import annotations

from collections.abc import Mapping

from wattwise.crd.powerbudget import BudgetMode, PowerBudgetSpec
from wattwise.crd.workloadclass import WorkloadClassSpec
from wattwise.operator.records import NodeRecord


def budget_findings(spec: PowerBudgetSpec, nodes: Mapping[str, NodeRecord]) -> list[str]:
    findings = []
    selected = [n for n in nodes.values() if spec.node_selector.matches(dict(n.labels))]
    if not selected:
        findings.append("nodeSelector selects no node yet: the budget controls nothing until one matches")
    non_gpu = len(selected) * spec.non_gpu_power.per_node_base_watts * spec.non_gpu_power.pue
    target = spec.cap_watts * spec.target_utilization
    if selected and non_gpu >= target:
        findings.append(
            f"the non-GPU share alone ({len(selected)} node(s) x {spec.non_gpu_power.per_node_base_watts:g} W x PUE "
            f"{spec.non_gpu_power.pue:g} = {non_gpu:.0f} W) reaches the target of {target:.0f} W: no GPU power is left"
        )
    gpus = sum(n.gpu_capacity for n in selected)
    fs = spec.fail_safe
    if spec.mode is BudgetMode.ENFORCE and gpus and fs.limit_watts is not None:
        fail_safe_total = (gpus * fs.limit_watts + non_gpu / spec.non_gpu_power.pue) * spec.non_gpu_power.pue
        if fail_safe_total > spec.cap_watts:
            findings.append(
                f"failSafe.limitWatts {fs.limit_watts:g} W on {gpus} GPU(s) would draw {fail_safe_total:.0f} W: "
                f"above the cap of {spec.cap_watts:g} W if every agent lost the operator"
            )
    return findings


def class_findings(spec: WorkloadClassSpec) -> list[str]:
    findings = []
    expected = spec.expected_watts_per_gpu
    floor_w = spec.floor.watts if spec.floor is not None else None
    if expected is not None and floor_w is not None and expected < floor_w:
        findings.append(
            f"expectedWattsPerGpu {expected:g} W is below floor.watts {floor_w:g} W: placement will under-count these "
            "pods"
        )
    if expected is not None and spec.ceiling_watts is not None and expected > spec.ceiling_watts:
        findings.append(
            f"expectedWattsPerGpu {expected:g} W is above ceilingWatts {spec.ceiling_watts:g} W: the GPUs can never "
            "draw what placement reserves for them"
        )
    return findings
