"""Every NVML error the agent can meet ends as a clear status and metric, never a crash.

The fake raises the real pynvml.NVMLError_* classes; the agent code under test is the production code."""

from __future__ import annotations

import pynvml
import pytest

from tests.node_agent.conftest import UUIDS
from tests.node_agent.fakes import FakeGpu, FakeNvml, ManualClock, sample_value
from wattwise.node_agent import nvml
from wattwise.node_agent.agent import gpu_report
from wattwise.node_agent.backend import NvmlBackend
from wattwise.telemetry.messages import GpuDirective, ReportReply
from wattwise.telemetry.vocabulary import ActuationResult, AgentMode, GpuStatus

U0, U1 = UUIDS[0], UUIDS[1]


def test_fake_raises_the_real_pynvml_classes() -> None:
    lib = FakeNvml([FakeGpu(U0, errors={"power": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    lib.nvmlInit()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        lib.nvmlDeviceGetPowerUsage(lib.gpus[0])


@pytest.mark.parametrize(
    ("call", "field", "metric"),
    [
        ("power", "power_watts", "wattwise_gpu_power_watts"),
        ("energy", "energy_joules", "wattwise_gpu_energy_joules_total"),
        ("temperature", "temperature_celsius", "wattwise_gpu_temperature_celsius"),
        ("memory_temperature", "memory_temperature_celsius", "wattwise_gpu_memory_temperature_celsius"),
        ("field_values", "memory_temperature_celsius", "wattwise_gpu_memory_temperature_celsius"),
        ("reasons+throttle_reasons", "clock_event_reasons", "wattwise_gpu_clock_event_active"),
        ("utilization", "utilization_percent", "wattwise_gpu_utilization_ratio"),
        ("clock", "sm_clock_mhz", "wattwise_gpu_sm_clock_hertz"),
    ],
)
@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND])
def test_unsupported_field_is_left_out_not_faked(fake_agent, call: str, field: str, metric: str, code: int) -> None:  # type: ignore[no-untyped-def]
    agent, _, collector = fake_agent([FakeGpu(U0, errors=dict.fromkeys(call.split("+"), code)), FakeGpu(U1)])
    agent.tick()
    r0, r1 = agent.snapshot.readings
    assert r0.status is GpuStatus.OK and r1.status is GpuStatus.OK
    assert getattr(gpu_report(r0, None, [], None), field) is None
    assert getattr(gpu_report(r1, None, [], None), field) is not None
    assert sample_value(collector.collect, metric, uuid=U0) is None
    assert sample_value(collector.collect, metric, uuid=U1) is not None
    # asked once, then remembered as unsupported: no error storm at 1 Hz
    errors = dict(agent.snapshot.nvml_error_counts)
    agent.tick()
    assert agent.snapshot.nvml_error_counts == errors
    assert any(device == U0 for device, _ in agent.backend.session.unsupported)


def test_old_driver_reasons_through_the_deprecated_call(fake_agent) -> None:  # type: ignore[no-untyped-def]
    """Drivers before 535 lack nvmlDeviceGetCurrentClocksEventReasons; the throttle-reasons call has the bits."""
    agent, _, _ = fake_agent([FakeGpu(U0, errors={"reasons": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND})])
    agent.tick()
    assert agent.snapshot.readings[0].clock_event_reasons == 0x4


def test_lost_gpu_is_reported_lost_and_the_rest_go_on(fake_agent) -> None:  # type: ignore[no-untyped-def]
    agent, lib, collector = fake_agent()
    agent.tick()
    lib.gpus[0].errors["power"] = pynvml.NVML_ERROR_GPU_IS_LOST
    agent.tick()
    r0, r1 = agent.snapshot.readings
    assert r0.status is GpuStatus.LOST and "lost" in (r0.error or "")
    assert r1.status is GpuStatus.OK and r1.power_w == 350.0
    assert sample_value(collector.collect, "wattwise_gpu_status", uuid=U0, status="lost") == 1.0
    assert sample_value(collector.collect, "wattwise_gpu_status", uuid=U1, status="ok") == 1.0
    assert sample_value(collector.collect, "wattwise_gpu_power_watts", uuid=U0) is None
    assert sample_value(collector.collect, "wattwise_gpu_info", uuid=U1, name="NVIDIA H100 80GB HBM3") == 1.0
    report = gpu_report(r0, None, [], None)
    assert report.status is GpuStatus.LOST and report.power_watts is None
    assert (
        sample_value(
            collector.collect,
            "wattwise_agent_nvml_errors_total",
            call="nvmlDeviceGetPowerUsage",
            error="NVMLError_GpuIsLost",
        )
        == 1.0
    )


def test_gpu_lost_at_enumeration(fake_agent) -> None:  # type: ignore[no-untyped-def]
    agent, _, _ = fake_agent([FakeGpu(U0, errors={"uuid": pynvml.NVML_ERROR_GPU_IS_LOST}), FakeGpu(U1)])
    agent.tick()
    r0, r1 = agent.snapshot.readings
    assert (r0.status, r0.uuid) == (GpuStatus.LOST, "unknown-0")
    assert r1.status is GpuStatus.OK


def test_uninitialised_is_an_error_status_then_recovers(fake_agent) -> None:  # type: ignore[no-untyped-def]
    agent, lib, collector = fake_agent()
    agent.tick()
    lib.gpus[0].errors["power"] = pynvml.NVML_ERROR_UNINITIALIZED
    agent.tick()
    r0 = agent.snapshot.readings[0]
    assert r0.status is GpuStatus.ERROR and "Uninitialized" in (r0.error or "")
    assert sample_value(collector.collect, "wattwise_gpu_status", uuid=U0, status="error") == 1.0
    agent.tick()  # the session re-inits on the next call
    assert lib.init_calls == 2
    assert [r.status for r in agent.snapshot.readings] == [GpuStatus.OK, GpuStatus.OK]


def test_unexpected_nvml_error_on_one_gpu_is_an_error_status(fake_agent) -> None:  # type: ignore[no-untyped-def]
    agent, _, _ = fake_agent([FakeGpu(U0, errors={"power": pynvml.NVML_ERROR_UNKNOWN}), FakeGpu(U1)])
    agent.tick()
    assert [r.status for r in agent.snapshot.readings] == [GpuStatus.ERROR, GpuStatus.OK]


def _connected(agent, reply: ReportReply) -> None:  # type: ignore[no-untyped-def]
    agent.link.enabled = True
    agent.link.succeeded(agent.clock.monotonic(), reply, 1.0)


def test_no_permission_on_set_limit_is_a_status_and_metric(fake_agent) -> None:  # type: ignore[no-untyped-def]
    agent, lib, collector = fake_agent()
    lib.gpus[0].errors["set_limit"] = pynvml.NVML_ERROR_NO_PERMISSION
    _connected(agent, ReportReply(gpus={U0: GpuDirective(enforced=True, power_limit_watts=400)}))
    agent.tick()
    agent.tick()  # the snapshot's issues include the failure of the tick before
    act = agent.snapshot.actuations[U0]
    assert act.result is ActuationResult.NO_PERMISSION and "CAP_SYS_ADMIN" in (act.message or "")
    assert sample_value(collector.collect, "wattwise_gpu_actuation_result", uuid=U0, result="noPermission") == 1.0
    assert (
        sample_value(collector.collect, "wattwise_agent_actuations_total", action="power_limit", result="noPermission")
        == 1.0
    )
    assert [i.code for i in agent.snapshot.issues] == ["NvmlNoPermission"]
    assert lib.gpus[0].limit_mw == 700_000  # unchanged; and not retried every second
    assert agent.snapshot.actuation_counts[("power_limit", ActuationResult.NO_PERMISSION)] == 1


@pytest.mark.parametrize(
    ("code", "result"),
    [
        (pynvml.NVML_ERROR_NOT_SUPPORTED, ActuationResult.NOT_SUPPORTED),
        (pynvml.NVML_ERROR_INVALID_ARGUMENT, ActuationResult.INVALID_ARGUMENT),
        (pynvml.NVML_ERROR_UNKNOWN, ActuationResult.ERROR),
    ],
)
def test_setter_errors_are_classified(fake_agent, code: int, result: ActuationResult) -> None:  # type: ignore[no-untyped-def]
    agent, lib, _ = fake_agent()
    lib.gpus[0].errors["set_limit"] = code
    _connected(agent, ReportReply(gpus={U0: GpuDirective(enforced=True, power_limit_watts=400)}))
    agent.tick()
    assert agent.snapshot.actuations[U0].result is result
    assert agent.snapshot.mode is AgentMode.CONNECTED


def test_gpu_lost_while_setting_a_limit(fake_agent) -> None:  # type: ignore[no-untyped-def]
    agent, lib, _ = fake_agent()
    _connected(agent, ReportReply(gpus={U0: GpuDirective(enforced=True, power_limit_watts=400)}))
    lib.gpus[0].errors["set_limit"] = pynvml.NVML_ERROR_GPU_IS_LOST
    agent.tick()
    assert agent.snapshot.actuations[U0].result is ActuationResult.ERROR
    agent.tick()
    assert agent.snapshot.readings[0].status is GpuStatus.LOST


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so.1"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver is not loaded"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "without a reboot"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "/dev/nvidia"),
    ],
)
def test_fatal_init_errors_carry_a_hint(code: int, hint: str) -> None:
    backend = NvmlBackend(FakeNvml([FakeGpu(U0)], init_error=code), clock=ManualClock())
    with pytest.raises(nvml.NvmlUnavailable) as info:
        backend.start()
    assert hint in info.value.hint


def test_shutdown_is_idempotent() -> None:
    lib = FakeNvml([FakeGpu(U0)])
    backend = NvmlBackend(lib, clock=ManualClock())
    backend.start()
    backend.close()
    backend.close()
    assert lib.shutdown_calls == 1


def test_nvml_gone_mid_run_is_counted_not_a_crash(fake_agent) -> None:  # type: ignore[no-untyped-def]
    """Driver unloaded under the agent: re-init fails on every tick; the loop survives and says so."""
    agent, lib, collector = fake_agent()
    agent.tick()
    lib.gpus[0].errors["power"] = pynvml.NVML_ERROR_UNINITIALIZED
    lib.init_error = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    for _ in range(3):  # GPU 0 finds NVML uninitialised, the re-init for GPU 1 fails: the tick fails
        agent.tick_safely()
    assert agent.snapshot.tick_errors == 3
    assert sample_value(collector.collect, "wattwise_agent_sample_errors_total") == 3.0
    lib.init_error = None
    agent.tick_safely()
    assert [r.status for r in agent.snapshot.readings] == [GpuStatus.OK, GpuStatus.OK]


@pytest.mark.parametrize(
    ("errors", "source"),
    [
        pytest.param({}, "instant", id="field supported"),
        pytest.param({"power_instant": pynvml.NVML_ERROR_NOT_SUPPORTED}, "average", id="field not supported"),
        pytest.param({"field_values": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}, "average", id="call missing"),
        pytest.param({"field_values": pynvml.NVML_ERROR_NOT_SUPPORTED}, "average", id="call not supported"),
    ],
)
def test_instant_power_source_is_decided_once_per_gpu(errors: dict[str, int], source: str) -> None:
    gpu = FakeGpu(U0, power_mw=300_000, power_instant_mw=650_000, errors=dict(errors))
    backend = NvmlBackend(FakeNvml([gpu, FakeGpu(U1)]), clock=ManualClock())
    backend.start()
    watts = [backend.instant_power_w(0) for _ in range(3)]
    assert backend.power_source(0) == source and backend.power_source(1) is None  # GPU 1 never asked
    assert watts == [650.0 if source == "instant" else 300.0] * 3
    assert gpu.calls["field_values"] == (3 if source == "instant" else 1)  # unsupported: never asked again


def test_instant_power_of_a_failing_or_lost_gpu_is_none_never_zero() -> None:
    gpu = FakeGpu(U0, errors={"power_instant": pynvml.NVML_ERROR_UNKNOWN})
    backend = NvmlBackend(FakeNvml([gpu]), clock=ManualClock())
    backend.start()
    assert backend.instant_power_w(0) is None and backend.power_source(0) is None  # asked again next time
    del gpu.errors["power_instant"]
    assert backend.instant_power_w(0) == 350.0 and backend.power_source(0) == "instant"
    gpu.errors["field_values"] = pynvml.NVML_ERROR_GPU_IS_LOST
    assert backend.instant_power_w(0) is None
    assert backend.sample()[0].status is GpuStatus.LOST  # marked lost for the sampling loop too
