"""The envelope loop over the fake NVML, driven tick by tick on a manual clock: the 1 Hz tick (`agent.tick`) and
the fast tick (`agent.envelopes.tick`) as the two threads run them, with replies from a stub reporter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pynvml
import pytest

from tests.node_agent.conftest import UUIDS
from tests.node_agent.fakes import FakeGpu, FakeNvml, ManualClock, sample_value
from wattwise.node_agent.agent import AgentConfig, NodeAgent
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.metrics import AgentCollector
from wattwise.telemetry import messages
from wattwise.telemetry.vocabulary import ActuationResult, AgentMode

CRIT, STD, TOL_A, TOL_B = UUIDS  # two protected GPUs (critical, standard), two flexible (tolerant)
FAST_S = 0.1


class StubReporter:
    """Answers every report with `reply` (or fails while `failing`), in-process; keeps what was sent."""

    def __init__(self) -> None:
        self.reply = messages.ReportReply()
        self.failing = False
        self.reports: list[messages.NodeReport] = []

    def send(self, report: messages.NodeReport) -> messages.ReportReply:
        from wattwise.node_agent.reporter import ReportFailed

        self.reports.append(report)
        if self.failing:
            raise ReportFailed("operator down")
        return self.reply

    def close(self) -> None:
        pass


def directives(**limits: float | None) -> dict[str, messages.GpuDirective]:
    """uuid-name -> enforced limit (None: not enforced)."""
    names = {"crit": CRIT, "std": STD, "tol_a": TOL_A, "tol_b": TOL_B}
    return {
        names[k]: messages.GpuDirective(enforced=v is not None, power_limit_watts=v, tier=None)
        for k, v in limits.items()
    }


DIRECTIVES = directives(crit=700, std=500, tol_a=400, tol_b=400)


def envelope(watts: float = 2000, floor: float = 250, ceiling: float = 600, **kw: float) -> messages.NodeEnvelope:
    return messages.NodeEnvelope(
        watts=watts,
        protected=(CRIT, STD),
        flexible=(
            messages.FlexibleGpu(uuid=TOL_A, floor_watts=floor, ceiling_watts=ceiling),
            messages.FlexibleGpu(uuid=TOL_B, floor_watts=floor, ceiling_watts=ceiling),
        ),
        **kw,
    )


Rig = tuple[NodeAgent, FakeNvml, StubReporter]


@pytest.fixture
def rig(clock: ManualClock) -> Iterator[Callable[..., Rig]]:
    made: list[NodeAgent] = []

    def make(envelope_interval_s: float = FAST_S, gpus: list[FakeGpu] | None = None) -> Rig:
        lib = FakeNvml(gpus or [FakeGpu(u, power_mw=200_000) for u in UUIDS])
        reporter = StubReporter()
        agent = NodeAgent(
            AgentConfig(node="node-a", envelope_interval_s=envelope_interval_s),
            NvmlBackend(lib, clock=clock),
            reporter=reporter,  # type: ignore[arg-type]
            clock=clock,
        )
        agent.start()
        made.append(agent)
        return agent, lib, reporter

    yield make
    for agent in made:
        agent.close()


def second(agent: NodeAgent) -> None:
    """One 1 Hz tick, then the fast ticks up to the next one."""
    agent.tick()
    fast(agent, round(1 / FAST_S) - 1)
    agent.clock.advance(FAST_S)


def fast(agent: NodeAgent, n: int = 1) -> None:
    """`n` fast ticks, 100 ms apart."""
    for _ in range(n):
        agent.clock.advance(FAST_S)
        agent.envelopes.tick()


def gpu(lib: FakeNvml, uuid: str) -> FakeGpu:
    return next(g for g in lib.gpus if g.uuid == uuid)


def instant(lib: FakeNvml, **watts: float) -> None:
    names = {"crit": CRIT, "std": STD, "tol_a": TOL_A, "tol_b": TOL_B}
    for name, w in watts.items():
        gpu(lib, names[name]).power_instant_mw = round(w * 1000)


def source(agent: NodeAgent, index: int) -> str | None:
    """Where the backend reads this GPU's instantaneous power from."""
    assert isinstance(agent.backend, NvmlBackend)
    return agent.backend.power_source(index)


def limits(lib: FakeNvml) -> list[float]:
    return [g.limit_mw / 1000 for g in lib.gpus]


def test_protected_burst_takes_watts_from_flexible_gpus_within_one_fast_tick(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=200, std=300)
    agent.tick()
    # the 1 Hz tick sets the protected GPUs and leaves the flexible ones to the envelope loop
    assert limits(lib)[:2] == [700, 500] and gpu(lib, TOL_A).set_calls == []
    fast(agent)
    # 2000 W - 500 W protected: each flexible GPU up to its ceiling
    assert limits(lib) == [700, 500, 600, 600]
    assert agent.envelopes.status.active and agent.envelopes.status.protected_draw_w == 500
    instant(lib, crit=700)  # a critical burst: 1000 W protected leaves 1000 W
    fast(agent)
    assert limits(lib)[2:] == [500, 500]
    assert gpu(lib, CRIT).set_calls == [] and limits(lib)[:2] == [700, 500]  # protected GPUs never touched
    instant(lib, crit=200)  # the burst ends: the watts go back at once, not on a ramp
    fast(agent)
    assert limits(lib)[2:] == [600, 600]
    assert agent.envelopes.status.adjustments == 6


def test_small_raises_wait_for_the_deadband_lowering_does_not(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=700, std=300)
    agent.tick()
    fast(agent)
    assert limits(lib)[2:] == [500, 500]
    instant(lib, crit=695)  # +2.5 W each: not worth an NVML write
    fast(agent, 3)
    assert gpu(lib, TOL_A).set_calls == [500_000]
    instant(lib, crit=704)  # -2 W each from what they hold: lowered at once
    fast(agent)
    assert gpu(lib, TOL_A).set_calls == [500_000, 498_000]
    instant(lib, crit=688)  # +8 W each: raised
    fast(agent)
    assert gpu(lib, TOL_A).set_calls == [500_000, 498_000, 506_000]


def test_floors_hold_whatever_the_protected_gpus_draw(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope(watts=1200))
    instant(lib, crit=700, std=500)
    agent.tick()
    fast(agent)
    assert limits(lib)[2:] == [250, 250]


def test_caps_are_clamped_to_the_gpus_constraints(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope(watts=1000, floor=100, ceiling=600))
    instant(lib, crit=700, std=300)
    agent.tick()
    fast(agent)
    assert limits(lib)[2:] == [200, 200]  # the envelope says 100 W; NVML takes no less than 200 W
    assert agent.envelopes.status.caps_w == {TOL_A: 200, TOL_B: 200}
    assert agent.actuator.last[TOL_A].requested_watts == 100 and agent.actuator.last[TOL_A].target_watts == 200


def test_expired_envelope_gives_the_directive_limits_back_at_once(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope(valid_for_seconds=2))
    instant(lib, crit=200, std=300)
    second(agent)
    assert limits(lib)[2:] == [600, 600]
    reporter.failing = True  # no newer reply: grace mode, the envelope runs out 2 s after the last reply
    second(agent)
    assert agent.snapshot.mode is AgentMode.GRACE and limits(lib)[2:] == [600, 600]
    fast(agent, 2)
    # expired mid-second: the fast tick hands the GPUs back to the last reply's limits, not the last caps
    assert limits(lib)[2:] == [400, 400]
    assert not agent.envelopes.status.active and agent.envelopes.status.reason == "expired"
    agent.tick()
    assert limits(lib)[2:] == [400, 400] and gpu(lib, TOL_A).set_calls[-1] == 400_000


def test_a_reply_without_envelope_ends_it(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=200, std=300)
    second(agent)
    assert limits(lib)[2:] == [600, 600]
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES)
    agent.tick()  # the same tick that got the reply applies the directive limits
    assert limits(lib)[2:] == [400, 400]
    fast(agent)
    assert limits(lib)[2:] == [400, 400] and agent.envelopes.status.reason == "none"


def test_envelope_is_ignored_for_gpus_the_reply_does_not_enforce(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(
        gpus=directives(crit=700, std=500, tol_a=400, tol_b=None), envelope=envelope()
    )
    instant(lib, crit=200, std=300, tol_b=450)
    agent.tick()
    fast(agent, 9)
    agent.clock.advance(FAST_S)
    # TOL_B is not steered (and never written), but what it draws comes off the envelope like a protected GPU's
    assert gpu(lib, TOL_B).set_calls == []
    assert agent.envelopes.status.protected_draw_w == 950
    assert agent.envelopes.status.caps_w == {TOL_A: 600}
    assert limits(lib)[2] == 600
    # no GPU enforced at all: nothing to steer
    reporter.reply = messages.ReportReply(
        gpus=directives(crit=None, std=None, tol_a=None, tol_b=None), envelope=envelope()
    )
    agent.tick()
    fast(agent)
    assert not agent.envelopes.status.active and agent.envelopes.status.reason == "nothingToSteer"
    assert limits(lib)[2] == 700  # enforcement ended: back to the default, as without envelopes


def test_a_protected_gpu_that_cannot_be_read_counts_at_its_limit(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(
        gpus=directives(crit=650, std=500, tol_a=400, tol_b=400), envelope=envelope(watts=1800)
    )
    instant(lib, crit=200, std=300)
    agent.tick()
    fast(agent)
    assert limits(lib)[2:] == [600, 600]
    gpu(lib, CRIT).errors["power_instant"] = pynvml.NVML_ERROR_UNKNOWN  # this field fails, now
    fast(agent)
    assert agent.envelopes.status.protected_draw_w == 650 + 300  # its limit, not the 200 W it drew before
    assert limits(lib)[2:] == [425, 425]
    assert source(agent, 0) == "instant"  # a failing read is not "unsupported": no 1 s average


def test_a_lost_protected_gpu_counts_at_its_last_known_limit(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope(watts=1800))
    instant(lib, crit=200, std=300)
    agent.tick()
    fast(agent)
    gpu(lib, CRIT).errors["field_values"] = pynvml.NVML_ERROR_GPU_IS_LOST
    fast(agent)
    assert agent.envelopes.status.protected_draw_w == 700 + 300
    assert limits(lib)[2:] == [400, 400]
    fast(agent, 8)
    agent.clock.advance(FAST_S)
    agent.tick()  # the sample says lost now; the envelope goes on with it counted at its last known limit
    assert agent.snapshot.readings[0].status.value == "lost"
    fast(agent)
    assert agent.envelopes.status.active and agent.envelopes.status.protected_draw_w == 700 + 300


def test_unsupported_instant_field_falls_back_to_power_usage_decided_once(rig: Callable[..., Rig]) -> None:
    gpus = [FakeGpu(u, power_mw=200_000) for u in UUIDS]
    gpus[1].errors["power_instant"] = pynvml.NVML_ERROR_NOT_SUPPORTED  # a driver without the field
    gpus[1].power_mw, gpus[1].power_instant_mw = 300_000, 650_000
    agent, lib, reporter = rig(gpus=gpus)
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=200)
    agent.tick()
    power_calls = gpus[1].calls["power"]
    fast(agent, 5)
    assert agent.envelopes.status.protected_draw_w == 200 + 300  # nvmlDeviceGetPowerUsage's 300 W
    assert gpus[1].calls["power_instant"] == 1 and gpus[1].calls["power"] == power_calls + 5
    assert gpus[0].calls["power_instant"] == 5 and source(agent, 1) == "average"
    assert source(agent, 0) == "instant"


def test_disabled_with_interval_zero(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig(envelope_interval_s=0)
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=200, std=300)
    second(agent)
    second(agent)
    assert not agent.envelopes.enabled and limits(lib) == [700, 500, 400, 400]
    assert all(g.calls["power_instant"] == 0 for g in lib.gpus)
    assert all(g.capped is None for r in reporter.reports for g in r.gpus)
    collector = AgentCollector("node-a", lambda: agent.snapshot, lambda: agent.envelopes.status)
    assert sample_value(collector.collect, "wattwise_agent_envelope_active") == 0
    assert sample_value(collector.collect, "wattwise_agent_envelope_ticks_total") is None


def test_fail_safe_drops_the_envelope(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(
        gpus=DIRECTIVES,
        envelope=envelope(valid_for_seconds=60),
        fail_safe=messages.FailSafePolicy(grace_period_seconds=2, limit_fraction=0.5),
    )
    instant(lib, crit=200, std=300)
    second(agent)
    reporter.failing = True
    for _ in range(3):
        second(agent)
    assert agent.snapshot.mode is AgentMode.FAIL_SAFE
    assert limits(lib) == [350, 350, 350, 350]
    assert not agent.envelopes.status.active


def test_limits_the_envelope_set_are_restored_on_exit(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=700, std=300)
    agent.tick()
    fast(agent)
    assert limits(lib)[2:] == [500, 500] and agent.actuator.owned[TOL_A] == 500
    assert agent.actuator.counts[("power_limit", ActuationResult.APPLIED)] == 3  # std 500 W, two envelope caps
    agent.close()
    assert limits(lib) == [700, 700, 700, 700]


def test_capped_verdict_is_reported_for_steered_gpus_only(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=700, std=300, tol_a=498, tol_b=150)  # caps 500 W: A is held at its cap, B is not
    second(agent)
    agent.tick()
    sent = {g.uuid: g.capped for g in reporter.reports[-1].gpus}
    assert sent == {CRIT: None, STD: None, TOL_A: True, TOL_B: False}
    assert reporter.reports[0].gpus[2].capped is None  # before the first fast tick nothing was observed


def test_envelope_metrics(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    instant(lib, crit=700, std=300)
    agent.tick()
    fast(agent)
    collect = AgentCollector("node-a", lambda: agent.snapshot, lambda: agent.envelopes.status).collect
    assert sample_value(collect, "wattwise_agent_envelope_active") == 1
    assert sample_value(collect, "wattwise_agent_envelope_watts") == 2000
    assert sample_value(collect, "wattwise_agent_envelope_protected_draw_watts") == 1000
    assert sample_value(collect, "wattwise_gpu_envelope_cap_watts", uuid=TOL_A) == 500
    assert sample_value(collect, "wattwise_gpu_envelope_cap_watts", uuid=CRIT) is None
    assert sample_value(collect, "wattwise_agent_envelope_adjustments_total") == 2
    assert sample_value(collect, "wattwise_agent_envelope_ticks_total") == 1
    assert sample_value(collect, "wattwise_agent_envelope_tick_duration_seconds") is not None
    fast(agent, 8)
    agent.clock.advance(FAST_S)
    agent.tick()  # the 1 Hz snapshot counts the envelope's writes with the others
    assert sample_value(collect, "wattwise_agent_actuations_total", action="power_limit", result="applied") == 3


def test_a_failing_write_is_not_retried_every_fast_tick(rig: Callable[..., Rig]) -> None:
    agent, lib, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    gpu(lib, TOL_A).errors["set_limit"] = pynvml.NVML_ERROR_NO_PERMISSION
    instant(lib, crit=700, std=300)
    agent.tick()
    for crit in (700, 600, 650, 500):  # the cap moves every tick
        instant(lib, crit=crit)
        fast(agent)
    assert gpu(lib, TOL_A).calls["set_limit"] == 1
    assert agent.actuator.last[TOL_A].result is ActuationResult.NO_PERMISSION
    assert len(gpu(lib, TOL_B).set_calls) == 4
    agent.clock.advance(30)
    fast(agent)
    assert gpu(lib, TOL_A).calls["set_limit"] == 2


def test_a_tick_that_raises_is_counted_and_the_loop_goes_on(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _, reporter = rig()
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    agent.tick()

    def boom(index: int) -> float:
        raise RuntimeError("boom")

    monkeypatch.setattr(agent.backend, "instant_power_w", boom)
    agent.envelopes.tick_safely()
    assert agent.envelopes.status.tick_errors == 1
    monkeypatch.undo()
    agent.envelopes.tick_safely()
    assert agent.envelopes.status.active and agent.envelopes.status.tick_errors == 1


def test_the_fast_loop_sleeps_on_its_own_lock_and_stops_with_the_agent(rig: Callable[..., Rig]) -> None:
    """The fast loop does not sleep on `stop` (an Event costs more CPU per wake-up): the agent wakes it on the way
    out, so stopping does not wait for its interval to run out."""
    agent, _, reporter = rig(envelope_interval_s=30.0)
    reporter.reply = messages.ReportReply(gpus=DIRECTIVES, envelope=envelope())
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 5
    while agent.envelopes.status.ticks < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert agent.envelopes.status.ticks == 1  # the first fast tick, then a 30 s sleep
    began = time.monotonic()
    stop.set()
    runner.join(timeout=5)
    assert not runner.is_alive() and time.monotonic() - began < 2.0
    assert agent.envelopes.status.ticks == 1
