"""The real allocation policy in the simulator's loop: readings -> `wattwise.policy.decide` -> limits.

This is the same call the operator makes each second: one `BudgetState` for the site, one `GpuState` per GPU
built from what a node agent would report, the previous `Decision` passed back in. Between decisions it runs what
each node agent runs every 100 ms: the node envelope (`wattwise.policy.envelope.share`) over the protected GPUs'
power of the moment, and the `CapTracker` whose verdicts go back into the next decision. Only the plumbing lives
here; every decision is the policy's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from wattwise.policy import BudgetState, Decision, GpuLimits, GpuState, decide
from wattwise.policy.envelope import CAP_WITHIN_FRACTION, CAP_WITHIN_W, CapTracker, NodeEnvelope, share
from wattwise.sim.calibration import FloatArray
from wattwise.sim.fleet import FleetConfig, GpuInfo, PowerDomain, Readings, node_name

IndexArray = np.ndarray[Any, np.dtype[np.intp]]


class PolicyController:
    """Calls `decide` once per control period (one Enforce budget per power domain) with the previous Decision;
    returns the limits to apply. With `envelopes`, also re-shares each node's envelope after every physics step,
    as the node agents do; without, limits change only once per control period (a 1 Hz-only loop)."""

    def __init__(self, *, envelopes: bool = True) -> None:
        self.use_envelopes = envelopes
        self.decisions = 0
        self.last: Decision | None = None
        self._gpus: list[GpuInfo] = []
        self._budgets: list[BudgetState] = []
        self._domains: list[PowerDomain] = []
        self._limits: GpuLimits | None = None
        self._period_s = 1.0
        self._index: dict[str, int] = {}
        self._assigned = np.zeros(0)
        self._node_loops: list[_NodeLoop] = []
        # CapTracker's counts, kept as arrays: the simulator runs every node's loop each step.
        self._at_cap = np.zeros(0, dtype=np.int64)
        self._fast_ticks = 0

    def setup(self, config: FleetConfig, gpus: Sequence[GpuInfo]) -> None:
        spec = config.spec
        self._gpus = list(gpus)
        self._limits = GpuLimits(min_w=spec.min_limit_w, max_w=spec.max_limit_w, default_w=spec.default_limit_w)
        self._budgets = []
        self._domains = list(config.domains)
        for domain in config.domains:
            nodes = config.domain_nodes(domain)
            names = {node_name(n) for n in nodes}
            self._budgets.append(
                BudgetState(
                    name=domain.name,
                    cap_w=domain.cap_w,
                    gpu_uuids=tuple(g.uuid for g in gpus if g.node in names),
                    node_count=len(nodes),
                    per_node_base_w=domain.per_node_base_w,
                    pue=domain.pue,
                    target_utilization=domain.target_utilization,
                    lower_above_fraction=domain.lower_above_fraction,
                    raise_below_fraction=domain.raise_below_fraction,
                    ramp_w_per_s=domain.ramp_w_per_s,
                )
            )
        self._period_s = config.control_period_s
        self._index = {g.uuid: i for i, g in enumerate(gpus)}
        self._assigned = np.full(len(gpus), spec.default_limit_w)
        self._node_loops = []
        self._at_cap = np.zeros(len(gpus), dtype=np.int64)
        self._fast_ticks = 0
        self.last = None
        self.decisions = 0

    def tick(self, readings: Readings) -> FloatArray | None:
        assert self._budgets and self._limits is not None, "setup() first"
        capped = {
            self._gpus[i].uuid: CapTracker.verdict(int(self._at_cap[i]), self._fast_ticks)
            for loop in self._node_loops
            for i in loop.flexible
        }
        self._at_cap[:] = 0
        self._fast_ticks = 0
        states = {
            g.uuid: GpuState(
                uuid=g.uuid,
                node=g.node,
                tier=g.tier,
                limits=self._limits,
                enforced_limit_w=float(readings.enforced_limit_w[i]),
                power_w=float(readings.power_w[i]),
                floor_w=g.floor_w,
                ceiling_w=g.ceiling_w,
                priority=g.priority,
                expected_w=g.expected_w,
                capped=capped.get(g.uuid),
            )
            for i, g in enumerate(self._gpus)
        }
        # The PUE as facility systems report it now (a heat wave patches it at run time).
        now = np.array([readings.now_s])
        budgets = [
            dataclasses.replace(b, pue=float(d.pue_at(now)[0])) if d.pue_schedule else b
            for b, d in zip(self._budgets, self._domains, strict=True)
        ]
        decision = decide(budgets, states, self.last, dt_s=self._period_s)
        self.last = decision
        self.decisions += 1
        limits = readings.enforced_limit_w.copy()
        for i, g in enumerate(self._gpus):
            watts = decision.limits.get(g.uuid)
            if watts is not None:
                limits[i] = watts
        self._assigned = np.asarray(limits, dtype=np.float64)
        self._node_loops = []
        if self.use_envelopes:
            for envelope in decision.envelopes.values():
                protected = np.array([self._index[u] for u in envelope.protected], dtype=np.intp)
                flexible = np.array([self._index[f.uuid] for f in envelope.flexible], dtype=np.intp)
                if len(flexible):
                    self._node_loops.append(_NodeLoop(envelope, protected, flexible))
        return self._assigned.copy()

    def fast_tick(self, power_w: FloatArray) -> FloatArray | None:
        """What every node agent does each 100 ms: cap its flexible GPUs to what its protected GPUs leave."""
        if not self._node_loops:
            return None
        limits = self._assigned.copy()
        assert self._limits is not None
        for loop in self._node_loops:
            limits[loop.flexible] = loop.caps(float(power_w[loop.protected].sum()), self._limits)
        flexible = np.concatenate([loop.flexible for loop in self._node_loops])
        lim = limits[flexible]
        self._at_cap[flexible] += power_w[flexible] >= lim - np.maximum(CAP_WITHIN_W, CAP_WITHIN_FRACTION * lim)
        self._fast_ticks += 1
        return limits


@dataclasses.dataclass
class _NodeLoop:
    """One node's envelope with its GPUs' indices; `share` is re-run only when the protected draw moved."""

    envelope: NodeEnvelope
    protected: IndexArray
    flexible: IndexArray
    _last: tuple[float, FloatArray] | None = None

    def caps(self, protected_w: float, limits: GpuLimits) -> FloatArray:
        if self._last is not None and abs(self._last[0] - protected_w) < 0.05:
            return self._last[1]
        shared = share(self.envelope, protected_w)
        caps = np.clip([shared[f.uuid] for f in self.envelope.flexible], limits.min_w, limits.max_w)
        self._last = (protected_w, caps)
        return caps
