"""The allocation policy: pure code that turns GPU readings and budgets into per-GPU power limits.

No I/O and no Kubernetes here: the operator and the simulator both feed it plain dataclasses once per tick.
The names below load on first use, so the node agent can import `wattwise.policy.envelope` (the node-local loop,
no dependencies) without loading the CRD models and pydantic that the rest of the policy needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattwise.policy.control import decide
    from wattwise.policy.tuning import DEFAULT_TUNING, Tuning
    from wattwise.policy.types import BudgetReport, BudgetState, Decision, GpuLimits, GpuState

_EXPORTS = {
    "decide": "wattwise.policy.control",
    "DEFAULT_TUNING": "wattwise.policy.tuning",
    "Tuning": "wattwise.policy.tuning",
    "BudgetReport": "wattwise.policy.types",
    "BudgetState": "wattwise.policy.types",
    "Decision": "wattwise.policy.types",
    "GpuLimits": "wattwise.policy.types",
    "GpuState": "wattwise.policy.types",
}

__all__ = [
    "DEFAULT_TUNING",
    "BudgetReport",
    "BudgetState",
    "Decision",
    "GpuLimits",
    "GpuState",
    "Tuning",
    "decide",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise.policy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
