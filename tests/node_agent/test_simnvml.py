"""The `sim` bindings behave as NVML does where the agent can tell: units, errors, determinism, wall-clock steps."""

from __future__ import annotations

from typing import Any

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


@pytest.mark.parametrize("seed", [0, 7])
def test_the_gpus_run_synthetic_load_to_the_bit_across_segments(seed: int) -> None:
    clock = ManualClock()
    lib = started(count=4, clock=clock, seed=seed)
    bank = lib._bank  # the physics behind the NVML surface
    assert bank is not None
    h = lib.nvmlDeviceGetHandleByIndex(0)
    for step in (0.1, 7.3, 12.6, 0.05, 20.0, 19.999, 41.0, 0.3):  # within, onto and across way-point segments
        clock.advance(step)
        lib.nvmlDeviceGetPowerUsage(h)  # a read steps every GPU
        loads = [synthetic_load(seed, i, clock.now - 1000.0) for i in range(4)]
        assert bank.utilization == tuple(u for u, _ in loads) and bank.compute_fraction == tuple(c for _, c in loads)
    lib.set_load(2, 1.0, 0.25)
    clock.advance(0.1)
    lib.nvmlDeviceGetPowerUsage(h)
    assert bank.utilization[2] == 1.0 and bank.compute_fraction[2] == 0.25
    assert bank.utilization[1] == synthetic_load(seed, 1, clock.now - 1000.0)[0]


def test_nvml_answers_are_the_gpus_state_after_every_step_write_and_pin() -> None:
    """NVML's units of the simulated GPUs' state: after every step, and at once after a limit, locked clocks or a
    pinned load (readings are kept as Python floats between steps)."""
    clock = ManualClock()
    lib = started(count=3, clock=clock)
    bank = lib._bank  # the physics behind the NVML surface
    assert bank is not None
    handles = [lib.nvmlDeviceGetHandleByIndex(i) for i in range(3)]

    def check() -> None:
        for i, h in enumerate(handles):
            (field,) = lib.nvmlDeviceGetFieldValues(h, [(pynvml.NVML_FI_DEV_POWER_INSTANT, 0)])
            assert field.value.uiVal == round(float(bank.power_w[i]) * 1000)
            assert lib.nvmlDeviceGetEnforcedPowerLimit(h) == round(float(bank.power_limit_w[i]) * 1000)
            assert lib.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU) == round(float(bank.temperature_c[i]))
            assert lib.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM) == round(float(bank.sm_clock_mhz[i]))
            assert lib.nvmlDeviceGetCurrentClocksEventReasons(h) == int(bank.clock_event_reasons[i])
            util = lib.nvmlDeviceGetUtilizationRates(h)
            assert util.gpu == round(float(bank.utilization[i]) * 100)
            assert util.memory == round(float(bank.utilization_memory[i]) * 100)
            assert lib.nvmlDeviceGetTotalEnergyConsumption(h) == int(float(bank.energy_j[i]) * 1000)
            assert lib.gpus[i].clocks_locked == bool(bank.clocks_locked[i])

    powers = set()
    for k in range(30):
        clock.advance(0.7)
        check()
        powers.add(lib.nvmlDeviceGetPowerUsage(handles[0]))
        if k == 5:
            lib.nvmlDeviceSetPowerManagementLimit(handles[1], 250_000)
            assert lib.nvmlDeviceGetEnforcedPowerLimit(handles[1]) == 250_000  # at once, no step in between
        if k == 10:
            lib.nvmlDeviceSetGpuLockedClocks(handles[2], 500, 1200)
            assert lib.gpus[2].clocks_locked
        if k == 15:
            lib.set_load(0, 1.0, 1.0)
        if k == 20:
            lib.nvmlDeviceResetGpuLockedClocks(handles[2])
            assert not lib.gpus[2].clocks_locked
        check()
    assert lib.gpus[0].utilization_gpu == 100 and len(powers) > 10


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


def power_instant(lib: SimNvml, h: Any, scope: int = pynvml.NVML_POWER_SCOPE_GPU) -> tuple[int, int]:
    """(nvmlReturn, mW) of the field, asked as pynvml takes it: (field id, scope id)."""
    (value,) = lib.nvmlDeviceGetFieldValues(h, [(pynvml.NVML_FI_DEV_POWER_INSTANT, scope)])
    assert value.fieldId == pynvml.NVML_FI_DEV_POWER_INSTANT and value.scopeId == scope
    return value.nvmlReturn, value.value.uiVal


def test_power_usage_is_a_one_second_mean_on_hopper_the_field_is_the_instant() -> None:
    clock = ManualClock()
    lib = started(clock=clock)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    lib.set_load(0, 0.0)
    for _ in range(20):
        clock.advance(0.1)
        lib.nvmlDeviceGetPowerUsage(h)
    idle_mw = lib.nvmlDeviceGetPowerUsage(h)
    lib.set_load(0, 1.0, 1.0)  # a burst
    for _ in range(3):
        clock.advance(0.1)
        mean_mw = lib.nvmlDeviceGetPowerUsage(h)
    code, instant_mw = power_instant(lib, h)
    assert code == pynvml.NVML_SUCCESS and instant_mw == round(lib.gpus[0].power_w * 1000)
    assert instant_mw > 500_000 and idle_mw < mean_mw < instant_mw - 200_000  # 300 ms into a burst
    for _ in range(15):
        clock.advance(0.1)
        lib.nvmlDeviceGetPowerUsage(h)
    assert abs(lib.nvmlDeviceGetPowerUsage(h) - power_instant(lib, h)[1]) < 5_000  # a steady second: they agree


def test_power_usage_is_the_instant_on_ga100() -> None:
    clock = ManualClock()
    lib = SimNvml(1, "a100", monotonic=clock.monotonic)
    lib.nvmlInit()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    lib.set_load(0, 1.0, 1.0)
    clock.advance(0.3)
    assert lib.nvmlDeviceGetPowerUsage(h) == power_instant(lib, h)[1] == round(lib.gpus[0].power_w * 1000)


def test_power_field_per_field_return_codes() -> None:
    lib = started()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    assert power_instant(lib, h, pynvml.NVML_POWER_SCOPE_MODULE)[0] == pynvml.NVML_ERROR_NOT_SUPPORTED  # no Grace
    old = SimNvml(1, "h100", power_instant=False)  # a driver without the field
    old.nvmlInit()
    h_old = old.nvmlDeviceGetHandleByIndex(0)
    assert power_instant(old, h_old)[0] == pynvml.NVML_ERROR_NOT_SUPPORTED
    # the call itself succeeds, and every field carries its own code
    memory, power, unknown = old.nvmlDeviceGetFieldValues(
        h_old, [pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_FI_DEV_POWER_INSTANT, 9999]
    )
    assert (memory.nvmlReturn, power.nvmlReturn, unknown.nvmlReturn) == (
        pynvml.NVML_SUCCESS,
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_NOT_SUPPORTED,
    )


@pytest.mark.parametrize("instant", [True, False])
def test_backend_reads_instant_power_from_the_field_or_falls_back(instant: bool) -> None:
    clock = ManualClock()
    lib = SimNvml(1, "h100", monotonic=clock.monotonic, power_instant=instant)
    backend = NvmlBackend(lib, name="sim", clock=clock)
    backend.start()
    lib.set_load(0, 0.0)
    clock.advance(2)
    backend.instant_power_w(0)
    lib.set_load(0, 1.0, 1.0)
    clock.advance(0.2)
    watts = backend.instant_power_w(0)
    assert backend.power_source(0) == ("instant" if instant else "average")
    if instant:
        assert watts == pytest.approx(lib.gpus[0].power_w, abs=0.001)
    else:  # the 1 s mean: well below the power 200 ms into a burst
        assert watts is not None and watts < lib.gpus[0].power_w - 100
