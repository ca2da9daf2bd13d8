"""The real agent (sim GPUs, real HTTP reporting) against a small operator that speaks the wire schema."""

from __future__ import annotations

import json
import pathlib
import urllib.error
import urllib.request
from collections.abc import Iterator

import pynvml
import pytest
from prometheus_client import CollectorRegistry

from tests.node_agent.fakes import FakeGpu, FakeNvml, FakeOperator, ManualClock, sample_value
from wattwise.node_agent.agent import AgentConfig, NodeAgent
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.metrics import AgentCollector
from wattwise.node_agent.reporter import Reporter
from wattwise.node_agent.server import HealthServer
from wattwise.node_agent.simnvml import SimNvml
from wattwise.telemetry import wire
from wattwise.telemetry.wire import AgentMode, ClockRange, FailSafePolicy, GpuDirective, ReportReply


@pytest.fixture
def operator() -> Iterator[FakeOperator]:
    with FakeOperator(token="t0k3n") as op:
        yield op


@pytest.fixture
def token(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "token"
    path.write_text("t0k3n\n")
    return path


def sim_agent(
    operator: FakeOperator, token: pathlib.Path, clock: ManualClock, **config: object
) -> tuple[NodeAgent, SimNvml]:
    lib = SimNvml(4, "h100", seed=1, monotonic=clock.monotonic)
    backend = NvmlBackend(lib, name="sim", clock=clock)
    agent = NodeAgent(
        AgentConfig(node="gpu-node-1", **config),  # type: ignore[arg-type]
        backend,
        reporter=Reporter(operator.url, token),
        clock=clock,
    )
    agent.start()
    return agent, lib


def run(agent: NodeAgent, clock: ManualClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        agent.tick()


def test_reports_and_follows_limits(operator: FakeOperator, token: pathlib.Path, clock: ManualClock) -> None:
    agent, lib = sim_agent(operator, token, clock)
    uuids = [g.uuid for g in lib.gpus]
    collector = AgentCollector("gpu-node-1", lambda: agent.snapshot)
    operator.reply = ReportReply(
        gpus={
            uuids[0]: GpuDirective(enforced=True, power_limit_watts=400, tier="tolerant"),
            uuids[1]: GpuDirective(enforced=False, recommended_power_limit_watts=500, tier="critical"),
            uuids[2]: GpuDirective(
                enforced=True, power_limit_watts=350, locked_sm_clocks=ClockRange(min_mhz=900, max_mhz=1400)
            ),
        }
    )
    try:
        run(agent, clock, 3)
        assert lib.gpus[0].power_limit_w == 400 and lib.gpus[1].power_limit_w == 700
        assert lib.gpus[2].power_limit_w == 350 and lib.gpus[2].clocks_locked
        assert agent.snapshot.mode is AgentMode.CONNECTED
        # the report after a write carries the outcome, read back from NVML
        last = operator.reports[-1]
        assert last.api_version == wire.API_VERSION and last.node == "gpu-node-1" and last.agent.backend == "sim"
        g0 = next(g for g in last.gpus if g.uuid == uuids[0])
        assert g0.actuation is not None and g0.actuation.result is wire.ActuationResult.APPLIED
        assert g0.actuation.readback_watts == 400 and g0.enforced_limit_watts == 400
        assert g0.limits == wire.LimitConstraints(min_watts=200, max_watts=700, default_watts=700)
        assert g0.average_power_watts is not None and g0.energy_joules is not None
        assert [r.sequence for r in operator.reports] == [0, 1, 2]
        assert set(operator.auth) == {"Bearer t0k3n"}
        # metrics: the limit, the tier from the reply, the recommendation
        assert sample_value(collector.collect, "wattwise_gpu_power_limit_watts", uuid=uuids[0], tier="tolerant") == 400
        assert sample_value(collector.collect, "wattwise_gpu_power_limit_recommended_watts", uuid=uuids[1]) == 500
        assert sample_value(collector.collect, "wattwise_gpu_power_limit_target_watts", uuid=uuids[0]) == 400
        assert sample_value(collector.collect, "wattwise_agent_operator_mode", mode="connected") == 1
        # the operator changes its mind: enforcement ends for GPU 0, its default comes back
        operator.reply = ReportReply(gpus={uuids[2]: GpuDirective(enforced=True, power_limit_watts=350)})
        run(agent, clock, 2)
        assert lib.gpus[0].power_limit_w == 700 and not lib.gpus[2].clocks_locked
    finally:
        agent.close()
    assert lib.gpus[2].power_limit_w == 700  # restored on exit


def test_keep_limits_on_exit(operator: FakeOperator, token: pathlib.Path, clock: ManualClock) -> None:
    agent, lib = sim_agent(operator, token, clock, keep_limits_on_exit=True)
    operator.reply = ReportReply(gpus={lib.gpus[0].uuid: GpuDirective(enforced=True, power_limit_watts=300)})
    run(agent, clock, 1)
    agent.close()
    assert lib.gpus[0].power_limit_w == 300


def test_operator_loss_grace_fail_safe_and_recovery(
    operator: FakeOperator, token: pathlib.Path, clock: ManualClock
) -> None:
    agent, lib = sim_agent(operator, token, clock)
    u0 = lib.gpus[0].uuid
    operator.reply = ReportReply(
        gpus={u0: GpuDirective(enforced=True, power_limit_watts=500)},
        fail_safe=FailSafePolicy(grace_period_seconds=10, limit_watts={u0: 250}, limit_fraction=0.5),
    )
    try:
        run(agent, clock, 2)
        assert agent.snapshot.mode is AgentMode.CONNECTED and lib.gpus[0].power_limit_w == 500
        operator.status = 503
        run(agent, clock, 5)
        assert agent.snapshot.mode is AgentMode.GRACE and lib.gpus[0].power_limit_w == 500
        assert lib.gpus[1].power_limit_w == 700
        run(agent, clock, 6)
        assert agent.snapshot.mode is AgentMode.FAIL_SAFE
        assert lib.gpus[0].power_limit_w == 250 and lib.gpus[1].power_limit_w == 350
        attempts = len(operator.reports)
        run(agent, clock, 10)
        assert len(operator.reports) - attempts < 10  # backing off, not posting every second
        operator.status = 200
        run(agent, clock, 20)  # recovers by itself within the back-off cap
        assert agent.snapshot.mode is AgentMode.CONNECTED
        assert lib.gpus[0].power_limit_w == 500 and lib.gpus[1].power_limit_w == 700
        states = [r.state.mode for r in operator.reports]
        assert AgentMode.FAIL_SAFE in states and states[-1] is AgentMode.CONNECTED
    finally:
        agent.close()


def test_token_is_read_fresh_and_401_is_a_failure(
    operator: FakeOperator, token: pathlib.Path, clock: ManualClock
) -> None:
    agent, _ = sim_agent(operator, token, clock)
    try:
        run(agent, clock, 1)
        token.write_text("rotated")
        operator.token = "rotated"
        run(agent, clock, 1)
        assert operator.auth[-2:] == ["Bearer t0k3n", "Bearer rotated"]
        operator.token = "something-else"
        run(agent, clock, 1)
        assert agent.snapshot.reports_failed == 1 and "HTTP 401" in (agent.link.last_error or "")
    finally:
        agent.close()


def test_unsupported_fields_are_absent_on_the_wire(operator: FakeOperator, token: pathlib.Path) -> None:
    clock = ManualClock()
    gpu = FakeGpu("GPU-11111111-0000-0000-0000-000000000000", errors={"power": pynvml.NVML_ERROR_NOT_SUPPORTED})
    agent = NodeAgent(
        AgentConfig(node="n"),
        NvmlBackend(FakeNvml([gpu]), clock=clock),
        reporter=Reporter(operator.url, token),
        clock=clock,
    )
    agent.start()
    try:
        run(agent, clock, 1)
        sent = next(operator.raw_reports())["gpus"][0]
        assert "powerWatts" not in sent and sent["enforcedLimitWatts"] == 700
        assert sent["smClockMHz"] == 1755 and sent["clockEventReasonNames"] == ["sw_power_cap"]
    finally:
        agent.close()


def test_reply_schema_round_trip_and_unknown_fields_ignored() -> None:
    raw = {
        "apiVersion": wire.API_VERSION,
        "kind": "ReportReply",
        "gpus": {
            "GPU-1": {
                "enforced": True,
                "powerLimitWatts": 300,
                "lockedSmClocks": {"minMHz": 900, "maxMHz": 1200},
                "someFutureField": 1,
            }
        },
        "failSafe": {"gracePeriodSeconds": 20, "limitFraction": 0.6},
        "nextReportIntervalSeconds": 2,
    }
    reply = ReportReply.model_validate_json(json.dumps(raw))
    assert reply.gpus["GPU-1"].locked_sm_clocks == ClockRange(min_mhz=900, max_mhz=1200)
    assert json.loads(reply.to_json())["gpus"]["GPU-1"]["lockedSmClocks"] == {"minMHz": 900, "maxMHz": 1200}
    with pytest.raises(ValueError, match="apiVersion"):
        ReportReply.model_validate({**raw, "apiVersion": "telemetry.wattwise.dev/v2"})


def get(url: str) -> tuple[int, bytes]:
    """Status and body, closing the connection (an unclosed socket is a ResourceWarning, an error here)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_health_endpoints_over_http(clock: ManualClock) -> None:
    agent = NodeAgent(
        AgentConfig(node="n"),
        NvmlBackend(SimNvml(2, "a40", monotonic=clock.monotonic), name="sim", clock=clock),
        clock=clock,
    )
    agent.start()
    registry = CollectorRegistry()
    registry.register(AgentCollector("n", lambda: agent.snapshot))
    server = HealthServer("127.0.0.1", 0, registry, lambda: agent.snapshot, stale_after_s=10, monotonic=clock.monotonic)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(f"{base}/readyz") == (503, b"no sample yet\n")
        agent.tick()
        status, body = get(f"{base}/readyz")
        assert status == 200 and body.startswith(b"ok: 2 GPU(s)")
        status, body = get(f"{base}/metrics")
        assert status == 200 and b'wattwise_gpu_power_watts{gpu="0"' in body
        assert b"wattwise_gpu_energy_joules_total" in body
        assert get(f"{base}/healthz") == (200, b"ok\n")
        clock.advance(11)  # the loop is stuck: liveness fails so the kubelet restarts the agent
        assert get(f"{base}/healthz")[0] == 503
        assert get(f"{base}/nope")[0] == 404
    finally:
        server.stop()
        agent.close()


def node_envelope(uuids: list[str], watts: float) -> wire.NodeEnvelope:
    return wire.NodeEnvelope(
        watts=watts,
        protected=uuids[:2],
        flexible=[wire.FlexibleGpu(uuid=u, floor_watts=200, ceiling_watts=700) for u in uuids[2:]],
    )


def node_draw_through_a_burst(
    operator: FakeOperator, token: pathlib.Path, clock: ManualClock, envelope_interval_s: float
) -> tuple[list[float], list[float], NodeAgent, SimNvml]:
    """Every 100 ms, the node's draw and its critical GPU's, which bursts from idle to flat out after 3 s (sim
    physics: its power follows with a 0.2 s lag, so it climbs over a few hundred ms)."""
    agent, lib = sim_agent(operator, token, clock, envelope_interval_s=envelope_interval_s)
    uuids = [g.uuid for g in lib.gpus]
    for index, load in enumerate((0.0, 0.3, 1.0, 1.0)):  # critical, standard, tolerant x2
        lib.set_load(index, load, 0.8)
    watts = (700, 700, 400, 400)
    operator.reply = ReportReply(
        gpus={u: GpuDirective(enforced=True, power_limit_watts=w) for u, w in zip(uuids, watts, strict=True)},
        envelope=node_envelope(uuids, 1600),
    )
    draws, critical = [], []
    handle = lib.nvmlDeviceGetHandleByIndex(0)
    for second in range(6):
        if second == 3:
            lib.set_load(0, 1.0, 0.8)  # the burst, right after a report
        agent.tick()
        for _ in range(10):
            clock.advance(0.1)
            agent.envelopes.tick()
            lib.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)  # the GPUs step whether or not it read
            draws.append(sum(g.power_w for g in lib.gpus))
            critical.append(lib.gpus[0].power_w)
    return draws, critical, agent, lib


def test_envelope_keeps_the_node_inside_it_through_a_critical_burst(
    operator: FakeOperator, token: pathlib.Path, clock: ManualClock
) -> None:
    draws, critical, agent, lib = node_draw_through_a_burst(operator, token, clock, envelope_interval_s=0.1)
    try:
        # before the burst, tolerant GPUs fill what the quiet ones leave, up to the envelope (not to their 400 W)
        assert min(draws[10:30]) >= 1575 and max(draws[10:30]) <= 1600
        # the burst: the node is over its envelope by at most what the critical GPU added within the last fast
        # tick (the caps written at a tick bite from the next one), and back inside once its power settles
        for k in range(30, 60):
            assert draws[k] - 1600 <= max(0.0, critical[k] - critical[k - 1]) + 2.0, k
        assert max(draws[45:]) <= 1602
        assert lib.gpus[0].power_w > 600 and lib.gpus[0].power_limit_w == 700  # critical never limited
        assert max(g.power_limit_w for g in lib.gpus[2:]) < 400  # tolerant GPUs gave up the watts
        # the reports say which GPUs the envelope held at their caps
        last = operator.reports[-1].gpus
        assert [g.capped for g in last] == [None, None, True, True]
    finally:
        agent.close()
    assert all(g.power_limit_w == 700 for g in lib.gpus)  # every limit restored on exit, envelope ones too


def test_without_the_envelope_loop_a_burst_goes_over_until_the_next_decision(
    operator: FakeOperator, token: pathlib.Path, clock: ManualClock
) -> None:
    draws, _, agent, _ = node_draw_through_a_burst(operator, token, clock, envelope_interval_s=0)
    try:
        assert max(draws[10:30]) <= 1300  # the directive limits alone strand what the quiet GPUs leave
        # and nothing takes the burst's watts back until a decision changes the limits (this operator never does)
        assert min(draws[45:]) > 1600 + 60
        assert all(g.capped is None for r in operator.reports for g in r.gpus)
    finally:
        agent.close()
