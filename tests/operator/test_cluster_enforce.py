"""Closed loop on the real control plane: load pushes a domain over its target, the operator limits tolerant GPUs
through the real agents, and lets them back up on the ramp when load falls; a lowered cap acts within seconds."""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
import time
from collections.abc import Callable

import pytest

from tests.operator.conftest import Domain, budget_manifest
from tests.operator.harness import OperatorThread, wait_until
from tests.operator.test_cluster_budget import applied, classes, tiered_pods
from tests.support.controlplane import ControlPlane, KubeApi
from wattwise.crd.common import LatencyTier
from wattwise.operator.runtime import Operator

pytestmark = pytest.mark.cluster


@dataclasses.dataclass(frozen=True)
class Tick:
    number: int
    at: float
    cap_w: float
    facility_w: float
    over_target: bool
    critical: tuple[float, ...]
    tolerant: tuple[float, ...]


class Recorder:
    """Samples the operator's decision after every tick (polls at 20 Hz, keeps one record per tick)."""

    def __init__(self, operator: OperatorThread, budget: str) -> None:
        self.operator, self.budget = operator, budget
        self.ticks: list[Tick] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, op: Operator) -> Tick | None:
        c = op.controller
        if c.decision is None or c.inputs is None or self.budget not in c.decision.budgets:
            return None
        report = c.decision.budgets[self.budget]
        by_tier: dict[LatencyTier, list[float]] = {LatencyTier.CRITICAL: [], LatencyTier.TOLERANT: []}
        for uuid, meta in sorted(c.inputs.meta.items()):
            if meta.tier in by_tier and uuid in c.decision.limits:
                by_tier[meta.tier].append(c.decision.limits[uuid])
        return Tick(
            c.ticks,
            time.monotonic(),
            report.cap_w,
            report.facility_draw_w,
            report.over_target,
            tuple(by_tier[LatencyTier.CRITICAL]),
            tuple(by_tier[LatencyTier.TOLERANT]),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            tick = self.operator.call(self._sample)
            if tick is not None and (not self.ticks or tick.number != self.ticks[-1].number):
                self.ticks.append(tick)
            time.sleep(0.05)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def steady(rec: Recorder) -> bool:
    """The tiers are known (the agents attributed the GPUs to their pods) and the critical GPUs are at full power:
    until then a GPU counts at the default tier, and a critical one may still be ramping up from a limit it got
    as such."""
    last = rec.ticks[-3:]
    return len(last) == 3 and all(len(t.tolerant) == 4 and t.critical == (700.0,) * 4 for t in last)


def agent_limits(domain: Domain, indices: range) -> list[float]:
    return [agent.limits()[i] for agent in domain.agents.values() for i in indices]


CRITICAL_GPUS, TOLERANT_GPUS = range(0, 2), range(2, 4)  # see tiered_pods
TOLERANT_FLOOR_W = 0.3 * 700  # the tolerant class's floor in `classes()`


def test_load_step_limits_tolerant_gpus_at_once_and_ramps_back(
    operator: OperatorThread, kube_api: KubeApi, domain_factory: Callable[..., Domain]
) -> None:
    """8 H100s (4 critical, 4 tolerant) under a 4 kW cap: at full load they would draw ~5 kW.

    The policy lowers tolerant limits in the tick that first sees the load step, before the draw has crossed
    the target; the test allows two ticks. Critical GPUs keep their full 700 W throughout.
    """
    domain = domain_factory(pods=tiered_pods)
    name = f"op-enforce-{secrets.token_hex(3)}"
    ramp = 60.0
    cap = 4_000.0
    spec = {"mode": "Enforce", "rampWattsPerSecond": ramp}
    with (
        applied(kube_api, *classes(), budget_manifest(name, domain.rack, cap, **spec)),
        Recorder(operator, name) as rec,
    ):
        wait_until(lambda: steady(rec), "steady state: pods attributed, critical GPUs at full power", timeout=30)
        time.sleep(2)
        before = rec.ticks[-1]
        for agent in domain.agents.values():
            agent.set_load(1.0)
        step = wait_until(lambda: next((t for t in rec.ticks if t.facility_w > 2 * before.facility_w), None), "step")
        time.sleep(3)
        # The agents applied what the operator decided: tolerant GPUs limited (each node's agent re-shares its
        # envelope among them every 100 ms, so their limits follow the critical GPUs' draw rather than equal the
        # per-GPU directives), never below their floor; critical GPUs untouched.
        wait_until(
            lambda: all(
                TOLERANT_FLOOR_W - 1 <= w < min(before.tolerant) - 20 for w in agent_limits(domain, TOLERANT_GPUS)
            ),
            "agents limit the tolerant GPUs",
            timeout=5,
        )
        assert agent_limits(domain, CRITICAL_GPUS) == [700.0] * 4
        loaded_end = len(rec.ticks)
        for agent in domain.agents.values():
            agent.set_load(0.05)
        time.sleep(6)
    ticks = {t.number: t for t in rec.ticks}
    after_step = [ticks[n] for n in (step.number, step.number + 1) if n in ticks]
    assert any(max(t.tolerant) < min(before.tolerant) - 20 for t in after_step), (before, after_step)
    assert all(t.critical == (700.0,) * 4 for t in rec.ticks if t.number >= before.number), "a critical GPU was limited"
    # Once the new limits have made the round trip to the agents (the tick after next), the draw holds under the
    # lowering threshold for as long as the load lasts.
    loaded = rec.ticks[step.number - rec.ticks[0].number + 2 : loaded_end]
    assert all(t.facility_w <= 0.98 * cap for t in loaded), [t.facility_w for t in loaded]
    # Load falls: limits come back up, never faster than the ramp.
    recovery = rec.ticks[loaded_end - 1 :]
    assert max(recovery[-1].tolerant) > max(recovery[0].tolerant) + 10
    for prev, cur in itertools.pairwise(recovery):
        dt_s = max(1.0, cur.at - prev.at)
        assert max(cur.tolerant) - max(prev.tolerant) <= ramp * dt_s + 1.0


def test_lowering_cap_with_kubectl_patch_acts_within_two_seconds(
    operator: OperatorThread,
    kube_api: KubeApi,
    control_plane: ControlPlane,
    domain_factory: Callable[..., Domain],
) -> None:
    domain = domain_factory(pods=tiered_pods)
    name = f"op-cap-{secrets.token_hex(3)}"
    with (
        applied(kube_api, *classes(), budget_manifest(name, domain.rack, 6_000, mode="Enforce")),
        Recorder(operator, name) as rec,
    ):
        for agent in domain.agents.values():
            agent.set_load(1.0)
        wait_until(lambda: steady(rec) and rec.ticks[-1].facility_w > 3_000, "loaded domain", timeout=30)
        time.sleep(2)
        before = rec.ticks[-1]
        patched_at = time.monotonic()
        control_plane.kubectl("patch", "powerbudget", name, "--type=merge", "-p", '{"spec":{"capWatts":4200}}')
        acted = wait_until(
            lambda: next((t for t in rec.ticks if t.cap_w == 4_200), None), "the new cap in a tick", timeout=10
        )
        assert acted.at - patched_at <= 2.0, f"the new cap took {acted.at - patched_at:.2f} s"
        assert max(acted.tolerant) < min(before.tolerant), (before, acted)
        assert acted.critical == (700.0,) * 4
