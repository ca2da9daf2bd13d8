"""The `sim` bindings behave as NVML does where the agent can tell: units, errors, determinism, wall-clock steps."""

from __future__ import annotations

import pynvml
import pytest

from tests.node_agent.fakes import ManualClock
from wattwise.node_agent.backend import NvmlBackend
from wattwise.node_agent.simnvml import SimNvml, synthetic_load
from wattwise.telemetry.vocabulary import GpuStatus


def started(count: int = 2, clock: ManualClock | None = None, seed: int = 0) -> SimNvml:
    lib = SimNvml(count, "h100", seed=seed, monotonic=(clock or ManualClock()).monotonic)
    lib.nvmlInit()
    return lib


def test_calls_before_init_raise_uninitialized() -> None:
    lib = SimNvml(1, "h100")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        lib.nvmlDeviceGetCount()


def test_out_of_range_limit_raises_invalid_argument_like_nvml() -> None:
    lib = started()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    lo, hi = lib.nvmlDeviceGetPowerManagementLimitConstraints(h)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        lib.nvmlDeviceSetPowerManagementLimit(h, lo - 1)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        lib.nvmlDeviceSetPowerManagementLimit(h, hi + 1)
    lib.nvmlDeviceSetPowerManagementLimit(h, 350_000)
    assert lib.nvmlDeviceGetEnforcedPowerLimit(h) == 350_000


def test_bad_index_and_lost_gpu() -> None:
    lib = started()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        lib.nvmlDeviceGetHandleByIndex(5)
    h = lib.nvmlDeviceGetHandleByIndex(1)
    lib.lose(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        lib.nvmlDeviceGetPowerUsage(h)
    assert lib.nvmlDeviceGetPowerUsage(lib.nvmlDeviceGetHandleByIndex(0)) >= 0


def test_units_are_nvmls() -> None:
    clock = ManualClock()
    lib = started(clock=clock)
    lib.set_load(0, 1.0, 1.0)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    clock.advance(5)
    mw = lib.nvmlDeviceGetPowerUsage(h)
    assert isinstance(mw, int) and 100_000 < mw <= 700_000  # milliwatts
    assert lib.nvmlDeviceGetTotalEnergyConsumption(h) > 100_000  # millijoules after 5 s of hundreds of watts
    assert lib.nvmlDeviceGetPowerManagementDefaultLimit(h) == 700_000
    assert lib.nvmlDeviceGetName(h) == "NVIDIA H100 80GB HBM3"
    assert lib.nvmlDeviceGetUUID(h).startswith("GPU-")


def test_steps_follow_the_clock_and_limits_bite() -> None:
    clock = ManualClock()
    lib = started(clock=clock)
    lib.set_load(0, 1.0, 1.0)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    energy0 = lib.nvmlDeviceGetTotalEnergyConsumption(h)
    assert lib.nvmlDeviceGetTotalEnergyConsumption(h) == energy0  # no time passed, no energy
    lib.nvmlDeviceSetPowerManagementLimit(h, 300_000)
    clock.advance(10)
    assert lib.nvmlDeviceGetPowerUsage(h) <= 300_000
    assert lib.nvmlDeviceGetCurrentClocksEventReasons(h) & pynvml.nvmlClocksEventReasonSwPowerCap


def test_load_is_deterministic_by_seed_and_varies() -> None:
    assert synthetic_load(7, 3, 123.4) == synthetic_load(7, 3, 123.4)
    assert synthetic_load(7, 3, 123.4) != synthetic_load(8, 3, 123.4)
    utils = {round(synthetic_load(0, 0, t)[0], 3) for t in range(0, 600, 10)}
    assert len(utils) > 10 and all(0.0 <= u <= 1.0 for u in utils)


def test_same_seed_same_uuids() -> None:
    a, b = started(seed=4), started(seed=4)
    ua = [a.nvmlDeviceGetUUID(a.nvmlDeviceGetHandleByIndex(i)) for i in range(2)]
    ub = [b.nvmlDeviceGetUUID(b.nvmlDeviceGetHandleByIndex(i)) for i in range(2)]
    assert ua == ub and len(set(ua)) == 2


def test_backend_over_sim_reads_every_field() -> None:
    clock = ManualClock()
    backend = NvmlBackend(SimNvml(2, "a100", monotonic=clock.monotonic), name="sim", clock=clock)
    backend.start()
    clock.advance(1)
    r = backend.sample()[0]
    assert r.status is GpuStatus.OK
    for field in (
        "power_w",
        "energy_j",
        "enforced_limit_w",
        "min_limit_w",
        "max_limit_w",
        "default_limit_w",
        "temperature_c",
        "memory_temperature_c",
        "sm_clock_mhz",
        "mem_clock_mhz",
        "utilization_gpu",
        "utilization_memory",
        "clock_event_reasons",
    ):
        assert getattr(r, field) is not None, field


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown GPU model"):
        SimNvml(1, "v100")


def test_lose_after_a_delay() -> None:
    clock = ManualClock()
    lib = started(clock=clock)
    lib.lose_after(1, 30)
    h = lib.nvmlDeviceGetHandleByIndex(1)
    clock.advance(29)
    assert lib.nvmlDeviceGetPowerUsage(h) >= 0
    clock.advance(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        lib.nvmlDeviceGetPowerUsage(h)
