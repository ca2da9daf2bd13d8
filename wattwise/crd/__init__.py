"""Models of Wattwise's custom resources and pod annotations (group `wattwise.dev`, version `v1alpha1`).

These pydantic models and the CRD YAML under `crds/` are two views of one contract; `tests/unit/test_crd_parity.py`
proves they accept and reject the same objects, so a change to one without the other fails the tests.
"""

from wattwise.crd.annotations import LATENCY_TIER_ANNOTATION, WORKLOAD_CLASS_ANNOTATION, PodPowerIntent
from wattwise.crd.common import API_VERSION, GROUP, VERSION, Condition, LabelSelector, LatencyTier
from wattwise.crd.powerbudget import BudgetMode, PowerBudget, PowerBudgetSpec, PowerBudgetStatus
from wattwise.crd.workloadclass import OperatingMode, WorkloadClass, WorkloadClassSpec, WorkloadClassStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "LATENCY_TIER_ANNOTATION",
    "VERSION",
    "WORKLOAD_CLASS_ANNOTATION",
    "BudgetMode",
    "Condition",
    "LabelSelector",
    "LatencyTier",
    "OperatingMode",
    "PodPowerIntent",
    "PowerBudget",
    "PowerBudgetSpec",
    "PowerBudgetStatus",
    "WorkloadClass",
    "WorkloadClassSpec",
    "WorkloadClassStatus",
]
