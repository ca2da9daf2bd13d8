"""Which limit each GPU should hold, and that the Actuator writes it with the fewest NVML calls."""

from __future__ import annotations

import pytest

from tests.node_agent.conftest import UUIDS
from tests.node_agent.fakes import FakeGpu, FakeNvml, ManualClock
from wattwise.node_agent.actuation import Actuator, Target, desired_clocks, desired_limit
from wattwise.node_agent.backend import GpuReading, NvmlBackend
from wattwise.telemetry.messages import ClockRange, FailSafePolicy, GpuDirective
from wattwise.telemetry.vocabulary import ActuationResult, AgentMode, GpuStatus

U0 = UUIDS[0]


def reading(enforced: float = 700.0) -> GpuReading:
    return GpuReading(
        index=0,
        uuid=U0,
        status=GpuStatus.OK,
        monotonic_s=0.0,
        wall_s=1.8e9,
        enforced_limit_w=enforced,
        min_limit_w=200.0,
        max_limit_w=700.0,
        default_limit_w=700.0,
    )


ENFORCE_400 = GpuDirective(enforced=True, power_limit_watts=400)
FS = FailSafePolicy(grace_period_seconds=30, limit_watts={U0: 300.0}, limit_fraction=0.5)


@pytest.mark.parametrize(
    ("mode", "directive", "fail_safe", "owned", "expected"),
    [
        pytest.param(AgentMode.STANDALONE, ENFORCE_400, FS, 400.0, None, id="standalone never touches"),
        pytest.param(AgentMode.CONNECTED, ENFORCE_400, None, None, Target(400, 400), id="enforced"),
        pytest.param(
            AgentMode.CONNECTED,
            GpuDirective(enforced=True, power_limit_watts=50),
            None,
            None,
            Target(50, 200),
            id="clamped up to min",
        ),
        pytest.param(
            AgentMode.CONNECTED,
            GpuDirective(enforced=True, power_limit_watts=900),
            None,
            None,
            Target(900, 700),
            id="clamped down to max",
        ),
        pytest.param(
            AgentMode.CONNECTED,
            GpuDirective(enforced=True),
            None,
            None,
            Target(700, 700),
            id="enforced without watts is the default",
        ),
        pytest.param(
            AgentMode.CONNECTED,
            GpuDirective(enforced=False, power_limit_watts=300),
            None,
            None,
            None,
            id="monitor leaves a GPU it never set alone",
        ),
        pytest.param(
            AgentMode.CONNECTED,
            None,
            None,
            400.0,
            Target(700, 700, restore=True),
            id="enforcement ended: back to default",
        ),
        pytest.param(AgentMode.GRACE, None, FS, 400.0, Target(400, 400), id="grace keeps the held limit"),
        pytest.param(AgentMode.GRACE, None, FS, None, None, id="grace leaves unowned alone"),
        pytest.param(
            AgentMode.GRACE, ENFORCE_400, FS, 310.0, Target(400, 400), id="grace: the reply's limit, not a last cap"
        ),
        pytest.param(AgentMode.FAIL_SAFE, None, FS, 400.0, Target(300, 300), id="fail-safe per GPU"),
        pytest.param(
            AgentMode.FAIL_SAFE,
            None,
            FailSafePolicy(limit_fraction=0.5),
            None,
            Target(350, 350),
            id="fail-safe fraction of default",
        ),
        pytest.param(
            AgentMode.FAIL_SAFE, None, FailSafePolicy(limit_fraction=0.1), None, Target(70, 200), id="fail-safe clamped"
        ),
        pytest.param(AgentMode.FAIL_SAFE, None, None, 400.0, Target(400, 400), id="no fail-safe keeps limits"),
    ],
)
def test_desired_limit(mode, directive, fail_safe, owned, expected) -> None:  # type: ignore[no-untyped-def]
    assert desired_limit(reading(), mode, directive, fail_safe, owned) == expected


def test_desired_clocks() -> None:
    clocks = ClockRange(min_mhz=900, max_mhz=1400)
    assert desired_clocks(AgentMode.CONNECTED, GpuDirective(enforced=True, locked_sm_clocks=clocks)) == (True, clocks)
    assert desired_clocks(AgentMode.CONNECTED, None) == (True, None)
    assert desired_clocks(AgentMode.GRACE, GpuDirective(enforced=True, locked_sm_clocks=clocks)) == (False, None)


@pytest.fixture
def rig() -> tuple[Actuator, FakeGpu, NvmlBackend, ManualClock]:
    clock = ManualClock()
    gpu = FakeGpu(U0)
    backend = NvmlBackend(FakeNvml([gpu]), clock=clock)
    backend.start()
    return Actuator(backend, retry_s=30), gpu, backend, clock


def test_writes_only_on_change(rig) -> None:  # type: ignore[no-untyped-def]
    act, gpu, backend, clock = rig
    for _ in range(5):
        act.apply(backend.sample(), AgentMode.CONNECTED, {U0: ENFORCE_400}, None, clock.monotonic())
        clock.advance(1)
    assert gpu.set_calls == [400_000]
    assert act.last[U0].result is ActuationResult.APPLIED and act.last[U0].readback_watts == 400.0
    act.apply(
        backend.sample(),
        AgentMode.CONNECTED,
        {U0: GpuDirective(enforced=True, power_limit_watts=450)},
        None,
        clock.monotonic(),
    )
    assert gpu.set_calls == [400_000, 450_000]
    assert act.owned == {U0: 450.0}


def test_already_at_target_is_unchanged_without_a_write(rig) -> None:  # type: ignore[no-untyped-def]
    act, gpu, backend, clock = rig
    act.apply(
        backend.sample(),
        AgentMode.CONNECTED,
        {U0: GpuDirective(enforced=True, power_limit_watts=700)},
        None,
        clock.monotonic(),
    )
    assert gpu.set_calls == [] and act.last[U0].result is ActuationResult.UNCHANGED


def test_readback_mismatch_is_reported_and_retried_slowly(rig) -> None:  # type: ignore[no-untyped-def]
    act, gpu, backend, clock = rig
    gpu.sticky_limit_mw = 650_000  # something else keeps the GPU at 650 W
    for _ in range(10):
        act.apply(backend.sample(), AgentMode.CONNECTED, {U0: ENFORCE_400}, None, clock.monotonic())
        clock.advance(1)
    assert act.last[U0].result is ActuationResult.MISMATCH
    assert act.last[U0].readback_watts == 650.0 and "650.0" in (act.last[U0].message or "")
    assert len(gpu.set_calls) == 1
    clock.advance(30)
    act.apply(backend.sample(), AgentMode.CONNECTED, {U0: ENFORCE_400}, None, clock.monotonic())
    assert len(gpu.set_calls) == 2


def test_restore_all_and_unlock(rig) -> None:  # type: ignore[no-untyped-def]
    act, gpu, backend, clock = rig
    directive = GpuDirective(
        enforced=True, power_limit_watts=400, locked_sm_clocks=ClockRange(min_mhz=900, max_mhz=1400)
    )
    act.apply(backend.sample(), AgentMode.CONNECTED, {U0: directive}, None, clock.monotonic())
    assert gpu.clock_calls == [(900, 1400)]
    act.apply(backend.sample(), AgentMode.CONNECTED, {U0: directive}, None, clock.monotonic())
    assert gpu.clock_calls == [(900, 1400)]  # not re-locked
    act.restore_all(backend.sample(), clock.monotonic())
    assert gpu.set_calls == [400_000, 700_000] and gpu.clock_calls == [(900, 1400), None]
    assert act.owned == {} and act.locked == {}


def test_enforcement_ending_gives_the_gpu_back(rig) -> None:  # type: ignore[no-untyped-def]
    act, gpu, backend, clock = rig
    act.apply(backend.sample(), AgentMode.CONNECTED, {U0: ENFORCE_400}, None, clock.monotonic())
    act.apply(backend.sample(), AgentMode.CONNECTED, {U0: GpuDirective(enforced=False)}, None, clock.monotonic())
    assert gpu.limit_mw == 700_000 and act.owned == {}
    act.apply(backend.sample(), AgentMode.CONNECTED, {}, None, clock.monotonic())
    assert gpu.set_calls == [400_000, 700_000]  # not owned any more: left alone


def test_lost_gpu_is_skipped(rig) -> None:  # type: ignore[no-untyped-def]
    act, gpu, _, clock = rig
    lost = GpuReading(index=0, uuid=U0, status=GpuStatus.LOST, monotonic_s=0, wall_s=0)
    act.apply([lost], AgentMode.CONNECTED, {U0: ENFORCE_400}, None, clock.monotonic())
    assert gpu.set_calls == [] and U0 not in act.last


def test_a_write_after_the_reading_counts_as_what_the_gpu_enforces(rig) -> None:  # type: ignore[no-untyped-def]
    """The envelope loop writes between two samples: a reading taken before a write must not undo or repeat it."""
    act, gpu, backend, clock = rig
    before = backend.sample()  # enforces 700 W
    clock.advance(0.5)
    act.apply(backend.sample(), AgentMode.CONNECTED, {U0: ENFORCE_400}, None, clock.monotonic())
    assert act.enforced_w(before[0]) == 400.0
    act.apply(before, AgentMode.CONNECTED, {U0: ENFORCE_400}, None, clock.monotonic())
    assert gpu.set_calls == [400_000]  # not written again on the word of the stale reading


def test_skip_limits_leaves_the_limit_to_the_envelope_loop_but_not_the_clocks(rig) -> None:  # type: ignore[no-untyped-def]
    act, gpu, backend, clock = rig
    directive = GpuDirective(
        enforced=True, power_limit_watts=400, locked_sm_clocks=ClockRange(min_mhz=900, max_mhz=1400)
    )
    act.apply(backend.sample(), AgentMode.CONNECTED, {U0: directive}, None, clock.monotonic(), skip_limits={U0})
    assert gpu.set_calls == [] and gpu.clock_calls == [(900, 1400)]
