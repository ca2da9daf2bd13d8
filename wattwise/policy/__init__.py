"""The allocation policy: pure code that turns GPU readings and budgets into per-GPU power limits.

No I/O and no Kubernetes here: the operator and the simulator both feed it plain dataclasses once per tick.
"""

from wattwise.policy.control import decide
from wattwise.policy.tuning import DEFAULT_TUNING, Tuning
from wattwise.policy.types import BudgetReport, BudgetState, Decision, GpuLimits, GpuState

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
