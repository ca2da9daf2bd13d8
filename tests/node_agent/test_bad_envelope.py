"""A reply whose envelope lists a GPU twice, or as both protected and flexible, is never acted on: the real agent
(fake NVML, real HTTP to a small operator) counts it as a failed report, keeps its limits and its last valid
envelope, names the GPU in its log, and carries on."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.node_agent.conftest import UUIDS
from tests.node_agent.fakes import FakeGpu, FakeNvml, FakeOperator, ManualClock
from wattwise.node_agent.agent import AgentConfig, NodeAgent
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.reporter import Reporter
from wattwise.telemetry import messages, wire
from wattwise.telemetry.vocabulary import AgentMode

CRIT, STD, TOL_A, TOL_B = UUIDS  # two protected GPUs, two flexible
FAST_S = 0.1
DIRECTIVES = {
    uuid: wire.GpuDirective(enforced=True, power_limit_watts=watts)
    for uuid, watts in ((CRIT, 700), (STD, 500), (TOL_A, 400), (TOL_B, 400))
}


def envelope(protected: list[str], flexible: list[str], *, checked: bool = True) -> wire.NodeEnvelope:
    """2000 W over the node, flexible GPUs between 250 W and 600 W; unchecked: as a faulty operator might send it."""
    gpus = [wire.FlexibleGpu(uuid=uuid, floor_watts=250, ceiling_watts=600) for uuid in flexible]
    if checked:
        return wire.NodeEnvelope(watts=2000, protected=protected, flexible=gpus)
    return wire.NodeEnvelope.model_construct(watts=2000, protected=protected, flexible=gpus, valid_for_seconds=3.0)


GOOD = wire.ReportReply(gpus=DIRECTIVES, envelope=envelope([CRIT, STD], [TOL_A, TOL_B]))


@pytest.fixture
def rig(clock: ManualClock) -> Iterator[tuple[NodeAgent, FakeNvml, FakeOperator]]:
    lib = FakeNvml([FakeGpu(uuid, power_mw=200_000) for uuid in UUIDS])
    with FakeOperator() as operator:
        agent = NodeAgent(
            AgentConfig(node="node-a", envelope_interval_s=FAST_S),
            NvmlBackend(lib, clock=clock),
            reporter=Reporter(operator.url, None),
            clock=clock,
        )
        agent.start()
        try:
            yield agent, lib, operator
        finally:
            agent.close()


def second(agent: NodeAgent) -> None:
    """One 1 Hz tick, then the fast ticks up to the next one."""
    agent.tick()
    for _ in range(round(1 / FAST_S)):
        agent.clock.advance(FAST_S)
        agent.envelopes.tick()


def mode(agent: NodeAgent) -> AgentMode:
    """The link's mode as of the last tick (read through a call: each tick changes it)."""
    return agent.snapshot.mode


def limits(lib: FakeNvml) -> list[float]:
    return [g.limit_mw / 1000 for g in lib.gpus]


def draw(lib: FakeNvml, crit: float) -> None:
    """What the GPUs draw this instant: the critical one `crit` watts, the standard one 300 W."""
    lib.gpus[0].power_instant_mw = round(crit * 1000)
    lib.gpus[1].power_instant_mw = 300_000


@pytest.mark.parametrize(
    ("protected", "flexible", "error"),
    [
        ([CRIT, STD, CRIT], [TOL_A, TOL_B], f"GPU {CRIT!r} is listed twice in protected"),
        ([CRIT, STD], [TOL_A, TOL_B, TOL_A], f"GPU {TOL_A!r} is listed twice in flexible"),
        ([CRIT, STD, TOL_A], [TOL_A, TOL_B], f"GPU {TOL_A!r} is listed both as protected and as flexible"),
    ],
    ids=["twice-protected", "twice-flexible", "both"],
)
def test_a_reply_with_a_malformed_envelope_is_a_failed_report(
    rig: tuple[NodeAgent, FakeNvml, FakeOperator],
    caplog: pytest.LogCaptureFixture,
    protected: list[str],
    flexible: list[str],
    error: str,
) -> None:
    agent, lib, operator = rig
    operator.reply = GOOD
    draw(lib, crit=200)
    second(agent)
    assert mode(agent) is AgentMode.CONNECTED and limits(lib) == [700, 500, 600, 600]
    good = agent.link.last_reply

    operator.reply = wire.ReportReply.model_construct(
        gpus=DIRECTIVES, envelope=envelope(protected, flexible, checked=False)
    )
    with caplog.at_level(logging.WARNING, logger="wattwise.node_agent.agent"):
        second(agent)
    # counted as a failed report, the GPU named; nothing raised
    assert agent.snapshot.reports_failed == 1 and agent.snapshot.reports_ok == 1 and agent.snapshot.tick_errors == 0
    assert mode(agent) is AgentMode.GRACE and f"envelope: {error}" in (agent.link.last_error or "")
    assert any(error in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    # the last good reply still rules: its limits stay, and its envelope keeps being re-shared until it expires
    assert agent.link.last_reply is good and limits(lib) == [700, 500, 600, 600]
    assert agent.envelopes.status.active and agent.envelopes.status.watts == 2000
    draw(lib, crit=700)  # a burst: the old envelope takes its watts from both flexible GPUs alike
    agent.clock.advance(FAST_S)
    agent.envelopes.tick()
    assert limits(lib) == [700, 500, 500, 500] and agent.envelopes.status.protected_draw_w == 1000

    operator.reply = GOOD  # the operator mends its reply: connected again at the next attempt (back-off <= 1 s)
    draw(lib, crit=200)
    second(agent)
    assert mode(agent) is AgentMode.CONNECTED and agent.snapshot.reports_failed == 1
    assert agent.link.last_reply is not good and agent.link.last_reply == messages.decode_reply(GOOD.to_json())
    assert limits(lib) == [700, 500, 600, 600]
